"""A stand-in workbench app for testing one screen (the dataset and server screens' tests).

``Harness`` carries what screens use from the app: a workspace, the workspace-ready signal,
the log routing, and the three calls a screen makes (recorded in ``calls``). ``ScreenRun``
drives it: press keys and wait for workers, wait for a condition, read notifications.
``run_screen`` starts it and fails the test if a worker crashed; ``OwnWorkspaceHarness``
opens its own workspace, for snapshot tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from textual.app import App
from textual.message import Message
from textual.notifications import Notification, Notify
from textual.pilot import Pilot
from textual.signal import Signal
from textual.worker import Worker, WorkerState

from osmosis_workbench.engine.workspace import Workspace
from osmosis_workbench.tui.log_pane import install_log_routing, uninstall_log_routing

ROOT = Path(__file__).resolve().parents[1]
STYLESHEET = ROOT / "osmosis_workbench" / "tui" / "workbench.tcss"


class Harness(App[None]):
    """Stands in for the workbench app: a workspace, and the three calls screens make."""

    CSS_PATH = STYLESHEET

    def __init__(self, workspace: Workspace | None, screen: Any) -> None:
        super().__init__()
        self.workspace = workspace
        self.first_screen = screen
        self.calls: list[tuple[Any, ...]] = []
        self.workspace_ready_signal: Signal[Any] = Signal(self, "workspace-ready")

    def on_mount(self) -> None:
        install_log_routing(self)
        self.push_screen(self.first_screen)

    def on_unmount(self) -> None:
        uninstall_log_routing(self)

    def open_debugger(self, row_index: int, stepping: bool = True) -> None:
        self.calls.append(("open_debugger", row_index, stepping))

    def open_session(self, session: Any, label: str | None = None) -> None:
        self.calls.append(("open_session", session))

    def show_outcome(self, outcome: Any, title: str) -> None:
        self.calls.append(("show_outcome", outcome, title))


class OwnWorkspaceHarness(Harness):
    """Opens (and closes) its own workspace: snapshots run the app in a loop of their own."""

    async def on_mount(self) -> None:
        install_log_routing(self)
        assert self.workspace is not None
        await self.workspace.open()
        await self.push_screen(self.first_screen)

    async def on_unmount(self) -> None:
        uninstall_log_routing(self)
        assert self.workspace is not None
        await self.workspace.aclose()


class ScreenRun:
    """A running harness: the app, its pilot, the messages seen, and helpers."""

    def __init__(self, app: Harness, pilot: Pilot, seen: list[Message]) -> None:
        self.app, self.pilot, self.seen = app, pilot, seen

    async def press(self, *keys: str) -> None:
        """Press keys, then let workers finish and the screen settle."""
        await self.pilot.press(*keys)
        await self.app.workers.wait_for_complete()
        await self.pilot.pause()

    async def until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Let the app run until ``predicate()`` holds (a rollout in flight, a row redrawn)."""
        async with asyncio.timeout(timeout):
            while not predicate():
                await self.pilot.pause(0.01)

    def notes(self) -> list[Notification]:
        return [m.notification for m in self.seen if isinstance(m, Notify)]

    def failed_workers(self) -> list[Worker]:
        return [
            m.worker
            for m in self.seen
            if isinstance(m, Worker.StateChanged) and m.state is WorkerState.ERROR
        ]


R = TypeVar("R", bound=ScreenRun)


@asynccontextmanager
async def run_screen(
    run_type: type[R], workspace: Workspace | None, screen: Any, size: tuple[int, int]
) -> AsyncIterator[R]:
    """Show ``screen`` in a ``Harness``; the test fails afterwards if a worker crashed."""
    app = Harness(workspace, screen)
    seen: list[Message] = []
    async with app.run_test(size=size, message_hook=seen.append) as pilot:
        run = run_type(app, pilot, seen)
        await pilot.pause()
        yield run
        assert not run.failed_workers(), "a worker crashed"
