"""What the workbench's screens share."""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

from textual.notifications import SeverityLevel
from textual.screen import Screen

if TYPE_CHECKING:
    from osmosis_workbench.engine.workspace import Workspace


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
