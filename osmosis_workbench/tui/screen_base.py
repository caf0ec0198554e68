"""What the workbench's screens share."""

from __future__ import annotations

from textual.notifications import SeverityLevel
from textual.screen import Screen


class PlainNotifyScreen(Screen):
    """A screen whose notifications are plain text unless asked otherwise.

    Their messages quote paths, rollout ids and error text, whose brackets Textual's markup
    would otherwise eat or choke on.
    """

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
