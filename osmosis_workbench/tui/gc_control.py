"""The workbench's control of the garbage collector: when full collections run, what they scan.

``freeze_long_lived_objects`` and its two companions keep long-lived data (the app, a long
trajectory, a batch's rows) out of full collections. ``AfterFrameCollections`` moves the full
collections that remain to right after a frame, not the middle of a key:

CPython starts a full (generation 2) collection once enough younger collections have run,
wherever the program is: in the workbench that is as often as not between a key and the
frame it causes, which is then 10-25 ms late (measured with ``gc.callbacks`` while scrolling
10,000 messages at 200x60). ``AfterFrameCollections`` keeps CPython's count but picks the
moment: while the app runs, automatic full collections are off, and once one is due the app
runs it when the screen is idle, after the pending frame is drawn. A person then sees the
frame first; the next key waits only if it comes within those milliseconds. If the screen
never goes idle (a frame on every tick), the collection runs on a later tick all the same.

Only for CPython before 3.14: from 3.14 the collector is incremental (no long pauses) and
ignores the third threshold this relies on, so it is left alone there.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable

#: The third threshold while installed: CPython never reaches it.
_NEVER = 1 << 30
#: Ticks a handed-over collection may wait for the idle screen before a tick runs it.
_PATIENCE_TICKS = 10


class AfterFrameCollections:
    """Runs each due full collection through ``schedule`` (the app: after the next frame).

    ``install`` turns automatic full collections off and keeps CPython's thresholds;
    ``tick`` (called every ~100 ms) hands a due collection to ``schedule``, and runs it itself
    if ``schedule`` has not after 10 ticks; ``uninstall`` gives CPython its thresholds back.
    The gc functions can be replaced for tests.
    """

    def __init__(
        self,
        schedule: Callable[[Callable[[], None]], object],
        *,
        collect: Callable[[], object] = gc.collect,
        get_count: Callable[[], tuple[int, int, int]] = gc.get_count,
        get_threshold: Callable[[], tuple[int, int, int]] = gc.get_threshold,
        set_threshold: Callable[[int, int, int], None] = gc.set_threshold,
    ) -> None:
        self._schedule = schedule
        self._collect = collect
        self._get_count = get_count
        self._get_threshold = get_threshold
        self._set_threshold = set_threshold
        self._saved: tuple[int, int, int] | None = None
        self._scheduled = False
        self._waited = 0
        #: Full collections run so far (for tests and benchmarks).
        self.collections = 0

    @property
    def installed(self) -> bool:
        """Whether automatic full collections are off because of this object."""
        return self._saved is not None

    def install(self) -> bool:
        """Turn automatic full collections off; False where there is nothing to do."""
        if self._saved is not None:
            return True
        if sys.implementation.name != "cpython" or sys.version_info >= (3, 14):
            return False
        first, second, third = self._get_threshold()
        if first == 0 or third >= _NEVER:
            return False  # collection is off, or another instance already holds it
        self._saved = (first, second, third)
        self._set_threshold(first, second, _NEVER)
        return True

    def uninstall(self) -> None:
        """Give CPython its thresholds back."""
        if self._saved is not None:
            self._set_threshold(*self._saved)
            self._saved = None

    def _due(self) -> bool:
        # The third count is the number of younger collections since the last full one:
        # CPython collects everything when it passes the third threshold.
        return self._saved is not None and self._get_count()[2] >= max(1, self._saved[2])

    def tick(self) -> bool:
        """Hand a due collection to ``schedule`` (once); whether one was handed over."""
        if self._scheduled:
            self._waited += 1
            if self._waited >= _PATIENCE_TICKS:
                self._run()  # the screen never went idle: collect now, not never
            return False
        if not self._due():
            return False
        self._scheduled, self._waited = True, 0
        self._schedule(self._run)
        return True

    def _run(self) -> None:
        self._scheduled = False
        if self._due():
            self._collect()
            self.collections += 1


def freeze_long_lived_objects(*, full_collection: bool = True) -> None:
    """Exclude every object alive now from future garbage collections.

    For the big, long-lived data of a screen (a 10,000-message trajectory, a running batch's
    rows): without this, full collections re-scan it and pause the loop for 60-250 ms
    (measured), which is a frozen frame or a late key. Collected first, so no garbage is
    frozen with it; the one collection here costs about as much as one of those pauses,
    unless most objects are frozen already. ``full_collection=False`` collects only the young
    generations (about 2 ms): the garbage already in the oldest one (a few hundred objects
    when the app opens, measured) is then kept until ``thaw_long_lived_objects``.
    """
    gc.collect(2 if full_collection else 1)
    gc.freeze()


def thaw_long_lived_objects() -> None:
    """Undo ``freeze_long_lived_objects`` (when the app ends: its objects can then go)."""
    gc.unfreeze()


def refreeze_long_lived_objects() -> None:
    """Thaw, collect everything, freeze again: after long-lived objects were let go.

    A reloaded agent module or a closed workspace was frozen while in use, and a module is a
    reference cycle (its functions point back at its globals): frozen, it and everything only
    it holds would stay in memory until the app ends, once per reload. One full collection
    (45-120 ms measured) frees them; reloading costs that much and more anyway.
    """
    gc.unfreeze()
    freeze_long_lived_objects(full_collection=True)
