"""Driving the real workbench app in tests: press keys, let the work finish, read what it said.

``driving(app, size)`` runs an app built by ``make_app`` (the CLI's factory) under
``run_test`` with a ``message_hook`` that keeps every message, and yields a ``Driver``. Waiting
is on the app's own state (its workers, then a frame), never on a clock; the test fails
afterwards if a worker crashed.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from rich.console import Console
from textual.app import App
from textual.command import CommandInput, CommandList, CommandPalette
from textual.message import Message
from textual.notifications import Notification, Notify
from textual.pilot import Pilot
from textual.worker import Worker, WorkerFailed, WorkerState

from osmosis_workbench.tui.app import WorkbenchApp

M = TypeVar("M", bound=Message)
D = TypeVar("D", bound="Driver")


def plain(renderable: Any, width: int = 160) -> str:
    """What a renderable (a Static's content) reads as, without styles."""
    console = Console(width=width, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.file.getvalue()


async def settle(app: App[Any], pilot: Pilot[Any], *, failures: bool = False) -> None:
    """Wait until no worker is pending or running (one may start the next), then a frame.

    A worker that raises fails the test, unless ``failures`` (a test of the crash path).
    """
    for _ in range(50):
        try:
            await app.workers.wait_for_complete()
        except WorkerFailed:
            if not failures:
                raise
        await pilot.pause()
        if not any(w.state in (WorkerState.PENDING, WorkerState.RUNNING) for w in app.workers):
            return
    raise AssertionError(f"workers never finished: {list(app.workers)}")


class Driver:
    """A running workbench: the app, its pilot, every message it handled, and helpers."""

    def __init__(self, app: WorkbenchApp, pilot: Pilot, seen: list[Message]) -> None:
        self.app, self.pilot, self.seen = app, pilot, seen

    async def settle(self, *, failures: bool = False) -> None:
        """Let the work in flight finish, then a frame (see ``settle``)."""
        await settle(self.app, self.pilot, failures=failures)

    async def press(self, *keys: str) -> None:
        """Press keys, then let the work they started finish and the screen settle."""
        await self.pilot.press(*keys)
        await self.settle()

    async def until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Let the app run until ``predicate()`` holds (a rollout in flight, a row redrawn)."""
        async with asyncio.timeout(timeout):
            while not predicate():
                await self.pilot.pause(0.01)

    def messages(self, kind: type[M]) -> list[M]:
        """The messages of one kind handled so far, in order, each once (a bubbling message
        is handled by the screen and then by the app)."""
        found = {id(m): m for m in self.seen if isinstance(m, kind)}
        return list(found.values())

    def notes(self, severity: str | None = None) -> list[Notification]:
        """The notifications shown so far (each once), optionally of one severity."""
        found = {id(m.notification): m.notification for m in self.messages(Notify)}
        return [n for n in found.values() if severity is None or n.severity == severity]

    async def palette_commands(self, query: str = "") -> list[str]:
        """The names the command palette lists for ``query`` (the palette is closed again)."""
        palette = await self._open_palette(query)
        names = [str(option.hit.text) for option in palette.query_one(CommandList).options]  # type: ignore[attr-defined]
        await self.press("escape")
        return names

    async def palette(self, query: str, pick: str | None = None) -> None:
        """Run the palette command named ``pick`` (default: the best match) found by ``query``."""
        palette = await self._open_palette(query)
        commands = palette.query_one(CommandList)
        names = [str(option.hit.text) for option in commands.options]  # type: ignore[attr-defined]
        wanted = pick if pick is not None else names[0] if names else None
        assert wanted in names, f"no palette command {wanted!r} for {query!r}; it lists {names}"
        commands.highlighted = names.index(wanted)
        await self.press("enter")

    async def _open_palette(self, query: str) -> CommandPalette:
        if not isinstance(self.app.screen, CommandPalette):  # (a palette may open another)
            await self.press("ctrl+p")
        palette = self.app.screen
        assert isinstance(palette, CommandPalette), palette
        palette.query_one(CommandInput).value = query
        await self.settle()  # the palette's search is a worker
        return palette

    def failed_workers(self) -> list[Worker[Any]]:
        """Workers that raised."""
        return [
            m.worker for m in self.messages(Worker.StateChanged) if m.state is WorkerState.ERROR
        ]


@asynccontextmanager
async def driving(
    app: WorkbenchApp,
    size: tuple[int, int] = (100, 30),
    *,
    driver_type: type[D] = Driver,  # type: ignore[assignment]
    failures: bool = False,
) -> AsyncIterator[D]:
    """Run ``app`` headless until its workspace has opened; fails after if a worker crashed."""
    seen: list[Message] = []
    async with app.run_test(size=size, message_hook=seen.append) as pilot:
        driver = driver_type(app, pilot, seen)
        await driver.settle(failures=failures)
        yield driver
        if not failures:
            assert not driver.failed_workers(), "a worker crashed"
