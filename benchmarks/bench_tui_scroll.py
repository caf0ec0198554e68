"""Benchmark: the workbench's first screen, and scrolling a 10,000-message trajectory.

Run with `uv run python benchmarks/bench_tui_scroll.py [--messages N] [--presses N]`.

1. First screen: `osmosis-workbench -m sample_project.server:agent_loop -d ... --row 0` runs in
   a pseudo-terminal (160x48, like a person's tmux); we time, from the process start, the first
   frame (the header is drawn), the loaded workspace (the row is shown paused at its first tool
   call) and the exit after ctrl+q. The bar: first frame within 1.5 s.
2. Scrolling: the real app shows a finished 10,000-message trajectory in the message view
   (`app.show_outcome`); keys are pressed one at a time through Textual's Pilot. For each key,
   the wall time from sending the key to the last frame it caused being rendered and turned
   into terminal output (frames are caught in ``App._display``, where the headless test driver
   would write them; the list and the detail pane move in one frame), and the process CPU
   time the key cost (the app is single-threaded; net of an unbound key's cost, which is
   Pilot's own). The bar: under 50 ms per key, every key (the table gives the median, the
   95th percentile and the worst). Each key scrolls the list: it starts from the edge of the
   view it leaves by. Full garbage collections run while keys are measured and count in the
   figures; the app runs them after a frame (``tui/gc_control.py``), and the table says
   how many ran and the longest. Pilot sends a key once the last one is drawn, so a
   collection run after a frame counts in no key: the held-key lines count it. There a
   key is sent every 33 ms (a terminal's key repeat) whether the app is ready or not, and
   each press counts from its sending to the first frame drawn after it was handled.
3. Search: in the same view, ``/`` opens the search bar and a query is typed one key at a
   time (each key searches all 10,000 messages and moves the list to the first match), then
   the next and previous matches, the regex toggle, the query deleted key by key, and ``esc``.
   Each key is timed as the scrolling keys are; the bar: under 50 ms per key, every key.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import fcntl
import gc
import os
import pty
import select
import statistics
import struct
import sys
import termios
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import osmosis_workbench.tui  # noqa: E402, F401  (first: it sets Textual's frame rate, as in the CLI)

SCROLL_KEYS = ("down", "up", "pagedown", "pageup", "end", "home")
#: Typed into the history's search bar, one key at a time: it matches every tenth answer.
SEARCH_QUERY = "step 12"
SEARCH_KEYS = (
    "open (/)",
    "type a key",
    "next (enter)",
    "previous (up)",
    "regex (ctrl+r)",
    "delete a key",
    "close (esc)",
)
#: A terminal's key repeat: about 30 presses a second while a key is held down.
HELD_KEY_INTERVAL_S = 0.033


# ---- first screen -----------------------------------------------------------------------------


def _read_until(fd: int, needle: bytes, buffer: bytearray, deadline: float) -> float | None:
    """Read the terminal until ``needle`` appears; the time it did (None on timeout)."""
    while time.perf_counter() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return None
        if not chunk:
            return None
        buffer.extend(chunk)
        if needle in buffer:
            return time.perf_counter()
    return None


#: A bare Textual app with the same title: the floor the workbench's first frame is held to.
_BARE_APP = (
    "from textual.app import App\n"
    "from textual.widgets import Header, Static\n"
    "class Bare(App):\n"
    "    TITLE = 'Osmosis workbench'\n"
    "    def compose(self):\n"
    "        yield Header()\n"
    "        yield Static('hello')\n"
    "Bare().run()\n"
)


def first_screen(
    command: list[str],
    columns: int = 160,
    rows: int = 48,
    loaded: bytes | None = b"paused at turn 1",
) -> dict[str, float | None]:
    """Seconds from launch to the first frame, to ``loaded`` on screen, and to a clean exit."""
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": str(rows)}
    started = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:  # the child: the app on the pseudo-terminal
        os.chdir(ROOT)
        os.execve(command[0], command, env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    buffer = bytearray()
    deadline = started + 30
    frame = _read_until(fd, b"Osmosis workbench", buffer, deadline)
    paused = _read_until(fd, loaded, buffer, deadline) if loaded else None
    os.write(fd, b"\x11")  # ctrl+q
    quit_sent = time.perf_counter()
    _read_until(fd, b"\x00never", buffer, quit_sent + 10)  # drain until the child closes
    _, status = os.waitpid(pid, 0)
    exited = time.perf_counter()
    return {
        "first frame s": None if frame is None else frame - started,
        "row 0 paused s": None if paused is None else paused - started,
        "exit after ctrl+q s": exited - quit_sent,
        "exit code": os.waitstatus_to_exitcode(status),
    }


def workbench_command() -> list[str]:
    """The README's command, as a new user types it."""
    return [
        str(ROOT / ".venv" / "bin" / "osmosis-workbench"),
        "-m",
        "sample_project.server:agent_loop",
        "-d",
        "sample_project/test_data.jsonl",
        "--row",
        "0",
    ]


# ---- scrolling --------------------------------------------------------------------------------


def trajectory(count: int) -> list[dict[str, Any]]:
    """A calculator trajectory of ``count`` messages: answers calling add, and results."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a calculator assistant."},
        {"role": "user", "content": "Add the numbers from 1 to 5000, one call at a time."},
    ]
    turn = 0
    while len(messages) < count:
        messages.append(
            {
                "role": "assistant",
                "content": f"Step {turn}: adding {turn}.",
                "tool_calls": [
                    {
                        "id": f"c{turn}",
                        "type": "function",
                        "function": {"name": "add", "arguments": f'{{"a": {turn}, "b": 1}}'},
                    }
                ],
            }
        )
        messages.append({"role": "tool", "tool_call_id": f"c{turn}", "content": str(turn + 1)})
        turn += 1
    return messages[:count]


async def scroll(count: int, presses: int, size: tuple[int, int]) -> dict[str, Any]:
    """Per-key CPU and wall milliseconds in the message view of a ``count``-message result."""
    from textual._compositor import CompositorUpdate

    from osmosis_workbench.engine.config import EngineConfig
    from osmosis_workbench.engine.models import ScriptedBackend
    from osmosis_workbench.engine.outcome import RolloutOutcome
    from osmosis_workbench.tui.app import make_app

    messages = trajectory(count)
    outcome = RolloutOutcome(
        rollout_id="bench",
        status="COMPLETED",
        final_messages=messages,
        finish_reason="stop",
        error=None,
        error_category=None,
        traceback=None,
        reward=1.0,
        metrics={},
        duration_ms=1.0,
        tokens=count * 10,
        cost_usd=None,
        llm_calls=count // 2,
        tools=[],
        violations=[],
    )
    config = EngineConfig(
        module="sample_project.server:agent_loop", model="scripted", search_path=str(ROOT)
    )
    app = make_app(config, backend=ScriptedBackend([]))
    results: dict[str, Any] = {}
    frames: list[float] = []
    display = app._display

    def timed_display(screen: Any, renderable: Any) -> None:
        # Headless, Textual skips the terminal write: do its work (the escape sequences)
        # here so the frame's full cost counts, and note when it was ready.
        if isinstance(renderable, CompositorUpdate):
            renderable.render_segments(app.console)
        frames.append(time.perf_counter())
        display(screen, renderable)

    app._display = timed_display  # type: ignore[method-assign]
    full_passes: list[float] = []  # milliseconds of each full collection during a key
    measuring = False
    started = 0.0

    def on_gc(phase: str, info: dict[str, int]) -> None:
        nonlocal started
        if phase == "start":
            started = time.perf_counter()
        elif measuring and info["generation"] == 2:
            full_passes.append((time.perf_counter() - started) * 1000)

    gc.callbacks.append(on_gc)
    async with app.run_test(size=size) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        shown = time.perf_counter()
        app.show_outcome(outcome, "bench")
        await pilot.pause()
        results["show 10k s"] = time.perf_counter() - shown
        listing = app.debugger.message_list
        assert listing.count == count, listing.count

        page = listing.scrollable_content_region.height - 1

        async def place(key: str) -> None:
            # The cursor on the edge the key leaves by, in the middle of the trajectory: every
            # press of it scrolls the list (the costly case), none stops at an end.
            if key in ("down", "pagedown"):
                listing.move_cursor(0)
                listing.move_cursor(count // 2)  # scrolled down to: on the bottom row
            elif key in ("up", "pageup"):
                listing.move_cursor(count - 1)
                listing.move_cursor(count // 2)  # scrolled up to: on the top row
            await pilot.pause()

        #: How far each key moves, to start again before it would stop at an end.
        steps = {"down": 1, "up": -1, "pagedown": page, "pageup": -page}

        async def measure(key: str, times: int) -> tuple[list[float], list[float]]:
            nonlocal measuring
            cpu, last = [], []
            for _ in range(times):
                if not 0 <= listing.cursor + steps.get(key, 0) < count:
                    await place(key)  # unmeasured
                frames.clear()
                measuring = True
                c0, w0 = time.process_time(), time.perf_counter()
                await pilot.press(key)
                await pilot.pause()
                measuring = False
                cpu.append((time.process_time() - c0) * 1000)
                if frames:
                    last.append((frames[-1] - w0) * 1000)
            return cpu, last

        baseline_cpu, *_ = await measure("f12", presses)  # unbound: Pilot's own cost
        base = statistics.median(baseline_cpu)
        for key in SCROLL_KEYS:
            await place(key)
            if key in ("end", "home"):
                # Each jump once per round trip, so every press moves the view.
                cpu, last = [], []
                for _ in range(max(3, presses // 4)):
                    for k in ("home", "end") if key == "end" else ("end", "home"):
                        c, la = await measure(k, 1)
                        if k == key:
                            cpu, last = cpu + c, last + la
            else:
                cpu, last = await measure(key, presses)
            net = [max(0.0, c - base) for c in cpu]
            p95 = statistics.quantiles(last, n=20)[-1]
            results[key] = (statistics.median(net), statistics.median(last), p95, max(last))
        results["baseline cpu ms"] = base

        async def hold(key: str, times: int) -> list[float]:
            # A held key: the terminal repeats it every HELD_KEY_INTERVAL_S whether or not
            # the app has drawn the last one, so a press can wait behind the previous one or
            # a garbage collection. Each press counts from when it was sent to the first frame
            # drawn after the app handled it (a late frame shows several presses at once).
            nonlocal measuring
            await place(key)
            handled: list[float] = []
            move = listing.move_cursor

            def timed_move(index: int) -> None:
                move(index)
                handled.append(time.perf_counter())

            listing.move_cursor = timed_move  # type: ignore[method-assign]
            frames.clear()
            sent: list[float] = []
            measuring = True
            start = time.perf_counter()
            for i in range(times):
                await asyncio.sleep(max(0.0, start + i * HELD_KEY_INTERVAL_S - time.perf_counter()))
                sent.append(time.perf_counter())
                app.simulate_key(key)
            while len(handled) < times:
                await asyncio.sleep(0.005)
            await pilot.pause()
            measuring = False
            del listing.move_cursor
            late = []
            for pressed, done in zip(sent, handled, strict=True):
                drawn = frames[bisect.bisect_left(frames, done)]
                late.append((drawn - pressed) * 1000)
            return late

        for key, times in (("down", presses), ("pagedown", min(presses, 80))):
            late = await hold(key, times)
            p95 = statistics.quantiles(late, n=20)[-1]
            results[f"held {key}"] = (statistics.median(late), p95, max(late), times)
        results["cursor"] = listing.cursor

        # Search: each key typed into the search bar searches the whole history again.
        listing.focus()
        listing.move_cursor(0)
        await pilot.pause()
        timings: dict[str, list[tuple[float, float]]] = {name: [] for name in SEARCH_KEYS}

        async def timed(name: str, key: str) -> None:
            cpu, last = await measure(key, 1)
            timings[name].append((max(0.0, cpu[0] - base), last[0] if last else 0.0))

        for _ in range(max(3, presses // 10)):
            await timed("open (/)", "slash")
            for char in SEARCH_QUERY:
                await timed("type a key", "space" if char == " " else char)
            for _ in range(5):
                await timed("next (enter)", "enter")
            for _ in range(5):
                await timed("previous (up)", "up")
            await timed("regex (ctrl+r)", "ctrl+r")
            await timed("regex (ctrl+r)", "ctrl+r")
            for _ in SEARCH_QUERY:
                await timed("delete a key", "backspace")
            await timed("close (esc)", "escape")
        shown = app.debugger.query_one("#search-count").render()
        results["search"] = {
            name: (
                statistics.median(c for c, _ in pairs),
                statistics.median(w for _, w in pairs),
                statistics.quantiles([w for _, w in pairs], n=20)[-1],
                max(w for _, w in pairs),
                len(pairs),
            )
            for name, pairs in timings.items()
        }
        results["search count shown"] = str(shown)
        results["full gc passes"] = list(full_passes)
    gc.callbacks.remove(on_gc)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--presses", type=int, default=100)
    parser.add_argument("--no-pty", action="store_true", help="skip the first-screen run")
    args = parser.parse_args()

    if not args.no_pty:
        print(
            f"First screen (pty 160x48, seconds from process start; load average "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
        )
        bare = [first_screen([sys.executable, "-c", _BARE_APP], loaded=None) for _ in range(3)]
        runs = [first_screen(workbench_command()) for _ in range(3)]
        rows = [("bare Textual app, first frame", [r["first frame s"] for r in bare])]
        rows += [(f"workbench, {name}", [run[name] for run in runs]) for name in runs[0]]
        for name, values in rows:
            shown = ", ".join("-" if v is None else f"{v:.2f}" for v in values)
            print(f"  {name:<36} {shown}")
        print()

    for size in ((100, 30), (200, 60)):
        results = asyncio.run(scroll(args.messages, args.presses, size))
        print(
            f"Scrolling {args.messages:,} messages at {size[0]}x{size[1]} "
            f"(show_outcome {results['show 10k s'] * 1000:.0f} ms, "
            f"Pilot baseline {results['baseline cpu ms']:.1f} ms CPU per key)"
        )
        print(f"  {'key':<10} {'CPU ms p50':>11} {'key to frame ms p50':>20} {'p95':>7} {'max':>7}")
        for key in SCROLL_KEYS:
            cpu, frame, frame_p95, frame_max = results[key]
            print(f"  {key:<10} {cpu:>11.1f} {frame:>20.1f} {frame_p95:>7.1f} {frame_max:>7.1f}")
        for key in ("down", "pagedown"):
            p50, p95, worst, times = results[f"held {key}"]
            print(
                f"  {key} held ({times} presses, one every {HELD_KEY_INTERVAL_S * 1000:.0f} ms): "
                f"sent to frame p50 {p50:.1f}, p95 {p95:.1f}, max {worst:.1f} ms"
            )
        print(f"  search the history, {args.messages:,} messages (query {SEARCH_QUERY!r}):")
        for name in SEARCH_KEYS:
            cpu, frame, frame_p95, frame_max, times = results["search"][name]
            label = f"{name} x{times}"
            print(f"  {label:<22} {cpu:>11.1f} {frame:>8.1f} {frame_p95:>7.1f} {frame_max:>7.1f}")
        passes = results["full gc passes"]
        longest = f", the longest {max(passes):.1f} ms" if passes else ""
        print(f"  full garbage collections while measuring: {len(passes)}{longest}")
        print()


if __name__ == "__main__":
    main()
