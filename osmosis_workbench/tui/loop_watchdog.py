"""Noticing an event loop that stopped turning, and naming the code that holds it.

Textual, the servers, the trainer and the user's agent share one event loop. Agent code that
blocks it (``time.sleep``, a sync HTTP call, a long computation in ``async def run``) freezes
the whole workbench until it returns, with no hint on the screen: nothing can draw. A thread
can still look: ``LoopWatchdog`` keeps a heartbeat on the loop and a thread that checks it.
When the heartbeat is late by more than ``threshold_s``, the thread reads the loop thread's
stack (``sys._current_frames``) and its current task (the rollout, from the SDK's task name
``rollout:<id>``) and reports a ``LoopBlock`` while it lasts (from the thread) and once it
ended (on the loop).

Plain Python, no Textual: the app decides how to show a block.
"""

from __future__ import annotations

import asyncio
import sys
import sysconfig
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType

#: Where code that is not the user's lives: the standard library, installed packages, ours.
_NOT_USER_CODE = tuple(
    str(Path(p).resolve())
    for p in {
        sysconfig.get_paths()["stdlib"],
        sysconfig.get_paths()["platstdlib"],
        sysconfig.get_paths()["purelib"],
        sysconfig.get_paths()["platlib"],
        str(Path(__file__).resolve().parents[1]),  # osmosis_workbench
        str(Path(__file__).resolve().parents[2] / "server_core"),
    }
)
#: The SDK names each rollout's task ``rollout:<rollout id>``.
_ROLLOUT_TASK_PREFIX = "rollout:"


@dataclass(frozen=True)
class LoopBlock:
    """A stretch of time one piece of code held the event loop."""

    #: How long the loop has been (or was) held, in seconds.
    seconds: float
    #: The rollout whose task was running, when it was a rollout's.
    rollout_id: str | None
    #: ``file:line in function`` of the innermost frame of user code (else the innermost).
    where: str | None
    #: Whether ``where`` is the user's code (not the standard library, a package or ours).
    in_user_code: bool


def _is_user_code(filename: str) -> bool:
    if filename.startswith("<"):  # <frozen importlib...>, <string>
        return False
    try:
        path = str(Path(filename).resolve())
    except OSError:
        return False
    return not path.startswith(_NOT_USER_CODE)


def _describe(frame: FrameType) -> str:
    code = frame.f_code
    try:
        name = str(Path(code.co_filename).resolve().relative_to(Path.cwd()))
    except ValueError:
        name = code.co_filename
    return f"{name}:{frame.f_lineno} in {code.co_name}"


def _is_loop_dispatch(frame: FrameType) -> bool:
    """Whether ``frame`` is the event loop running a callback (``asyncio.Handle._run``)."""
    code = frame.f_code
    return code.co_name == "_run" and Path(code.co_filename).parts[-2:] == ("asyncio", "events.py")


def blocking_frame(frame: FrameType | None) -> tuple[str | None, bool]:
    """``(where, in_user_code)`` for the loop thread's stack: the innermost frame of user code
    in the callback the loop is running, else the innermost frame.

    Frames below the loop's dispatch (the loop itself, the program's entry point: a script
    in the virtualenv's ``bin``) are not the callback's: they are never blamed.
    """
    innermost = frame
    while frame is not None and not _is_loop_dispatch(frame):
        if _is_user_code(frame.f_code.co_filename):
            return _describe(frame), True
        frame = frame.f_back
    return (_describe(innermost) if innermost is not None else None), False


class LoopWatchdog:
    """Watches ``loop`` from a thread; reports each time it is held longer than ``threshold_s``.

    ``on_blocked(block)`` runs on the loop once the block ended (the loop is free then: show
    it there). ``on_still_blocked(block)`` runs on the watchdog's thread about once a second
    while the loop is held (it must not touch the loop's objects).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        on_blocked: Callable[[LoopBlock], None],
        on_still_blocked: Callable[[LoopBlock], None] | None = None,
        threshold_s: float = 0.5,
        interval_s: float = 0.1,
    ) -> None:
        self.loop = loop
        self.on_blocked = on_blocked
        self.on_still_blocked = on_still_blocked
        self.threshold_s = threshold_s
        self.interval_s = interval_s
        self._beat = time.monotonic()
        self._block: LoopBlock | None = None
        self._told_at = 0.0
        self._loop_thread = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Start the heartbeat and the watching thread (call on the loop's thread)."""
        self._loop_thread = threading.get_ident()
        self._heartbeat()
        self._thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching."""
        self._stop.set()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None

    # ---- the loop's side ----------------------------------------------------------------------

    def _heartbeat(self) -> None:
        now = time.monotonic()
        block, self._block = self._block, None
        self._beat = now
        self._handle = self.loop.call_later(self.interval_s, self._heartbeat)
        if block is not None:
            # The loop turns again: the block is over, and this is the place to show it.
            self.on_blocked(replace(block, seconds=now - self._told_at + block.seconds))

    # ---- the thread's side --------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stop.wait(self.interval_s):
            now = time.monotonic()
            late = now - self._beat - self.interval_s
            if late < self.threshold_s:
                continue
            block = self._sample(late)
            if block is None:
                continue
            if self._block is None or now - self._told_at >= 1.0:
                self._block, self._told_at = block, now
                if self.on_still_blocked is not None:
                    self.on_still_blocked(block)

    def _sample(self, late: float) -> LoopBlock | None:
        """What holds the loop now (``None`` when the thread is gone)."""
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None:
            return None
        where, in_user_code = blocking_frame(frame)
        rollout_id = None
        task = asyncio.current_task(self.loop)
        name = task.get_name() if task is not None else ""
        if name.startswith(_ROLLOUT_TASK_PREFIX):
            rollout_id = name.removeprefix(_ROLLOUT_TASK_PREFIX)
        return LoopBlock(late, rollout_id, where, in_user_code)
