"""What the workbench's screens share."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.notifications import SeverityLevel
from textual.screen import Screen

if TYPE_CHECKING:
    from osmosis_workbench.engine.workspace import Workspace


class WorkbenchScreen(Screen):
    """A screen of the workbench: reaches the engine, notifies in plain text.

    Notifications quote paths, rollout ids and error text, whose brackets Textual's markup
    would otherwise eat or choke on.
    """

    @property
    def workspace(self) -> Workspace | None:
        """The app's engine state (``None`` while it opens)."""
        return getattr(self.app, "workspace", None)

    def _ready_workspace(self, doing: str) -> Workspace | None:
        """The workspace, or ``None`` with a note when it is still opening."""
        ws = self.workspace
        # The app opens the workspace in a worker after the first frame: keys can come first.
        if ws is None or ws.trainer is None:
            self.notify(f"the workspace is still opening: {doing} in a moment", timeout=3)
            return None
        return ws

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
