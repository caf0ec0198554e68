"""What the workbench's three screens share: the frame, the workspace, plain notifications.

Each screen is a ``WorkbenchScreen``: a header, its own body (``compose_body``) and the one-line
``KeyBar`` at the bottom. The app hands each screen the workspace when it opens
(``set_workspace``); the screen tells the app what the user wants by posting the messages of
``tui/messages.py``, never by reading the app's attributes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.notifications import SeverityLevel
from textual.reactive import Reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Header
from textual.worker import Worker, WorkerState

from osmosis_workbench.tui.messages import CrashReported
from osmosis_workbench.tui.widgets.key_bar import KeyBar

if TYPE_CHECKING:
    from osmosis_workbench.engine.workspace import Workspace


class WorkbenchScreen(Screen[None]):
    """A screen of the workbench: header, body, key bar; knows the workspace once it is open.

    Notifications quote paths, rollout ids and error text, whose brackets Textual's markup
    would otherwise eat or choke on: they are plain text here.
    """

    #: Textual repaints the whole screen when the focus moves (``Screen.focused`` repaints):
    #: 15-20 ms at 200x60, on every focus change (``/`` into the search bar, ``esc`` back, tab).
    #: The widgets whose look depends on the focus restyle and repaint themselves.
    focused: Reactive[Widget | None] = Reactive(None, repaint=False)

    def __init__(self) -> None:
        super().__init__()
        #: The engine state (``None`` until the app has opened it).
        self.workspace: Workspace | None = None
        #: Why the dataset could not be read when the workspace opened, if it could not.
        self.dataset_error: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield from self.compose_body()
        yield KeyBar()

    def compose_body(self) -> ComposeResult:
        """The screen's own widgets, between the header and the key bar."""
        yield from ()

    # ---- the workspace ------------------------------------------------------------------------

    def set_workspace(self, workspace: Workspace, dataset_error: str | None = None) -> None:
        """The app opened (or reopened) the workspace: show it (now, or once mounted)."""
        self.workspace, self.dataset_error = workspace, dataset_error
        if self.is_mounted:
            self.workspace_opened(workspace)

    def on_mount(self) -> None:
        # A screen built after the workspace opened is given it before it is mounted.
        if self.workspace is not None:
            self.workspace_opened(self.workspace)

    def workspace_opened(self, workspace: Workspace) -> None:
        """Show what the (re)opened workspace holds (screens override this)."""

    def _ready_workspace(self, doing: str) -> Workspace | None:
        """The workspace, or ``None`` with a note when it is still opening."""
        ws = self.workspace
        # The app opens the workspace in a worker after the first frame: keys can come first.
        if ws is None or ws.trainer is None:
            self.notify(f"the workspace is still opening: {doing} in a moment", timeout=3)
            return None
        return ws

    # ---- failures and notes -------------------------------------------------------------------

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker of this screen raised: a bug, shown by the app with its traceback."""
        worker = event.worker
        if event.state is WorkerState.ERROR and worker.error is not None:
            what = worker.description or worker.name or "a task"
            self.post_message(CrashReported(f"Unexpected error in {what}", worker.error))

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """Notify without markup by default."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)
