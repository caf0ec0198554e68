"""The workbench's Textual app.

Textual paces frames with a timer at ``TEXTUAL_FPS`` (60 by default, read once, when Textual
is first imported). A frame of a 10,000-message trajectory at 200x60 takes about one period at
60, and after a frame that long the timer waits for the third period: while a key is held
(30 presses a second), the app drew 20 frames a second and a press waited 45 ms for its frame
(median; 70 ms worst, ``benchmarks/bench_tui_scroll.py``). At 120 the same frame is two
periods and the next one follows it: 19 ms for a held down-arrow, 31 ms for a held page-down.
Frames are drawn only when something changed, so an idle screen costs nothing more. Set here,
before the app's modules import Textual; a program that imported Textual already keeps its rate.
"""

import os

os.environ.setdefault("TEXTUAL_FPS", "120")
