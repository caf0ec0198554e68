"""Two trajectories side by side: their cursors move together, the first difference marked.

The runs screen shows two runs' rollouts of one row this way, the debugger a fork beside its
parent. Each side is a ``MessageList`` over a ``MessageDetail``; the first message where the
two histories part (``engine.compare.first_difference``) carries a note in the list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical

from osmosis_workbench.tui.widgets.message_list import MessageDetail, MessageList

if TYPE_CHECKING:
    from osmosis_workbench.engine.compare import MessageDifference

#: What the list writes beside the first message that differs.
DIFFERS = "≠ differs"
SIDES = ("a", "b")


class SideBySide(Horizontal):
    """Side ``a`` and side ``b``'s messages, each list above its selected message."""

    DEFAULT_CSS = """
    SideBySide {
        height: 1fr;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        #: Where the two histories first part (``None``: they do not, so far).
        self.difference: MessageDifference | None = None

    def compose(self) -> ComposeResult:
        for side in SIDES:
            with Vertical(id=f"pair-{side}", classes="pair-side"):
                yield MessageList(id=f"pair-list-{side}", classes="pane")
                yield MessageDetail(id=f"pair-detail-{side}", classes="pane")

    def on_mount(self) -> None:
        for side in SIDES:
            self.list(side).link_detail(self.detail(side))
            self.detail(side).border_title = f"{side.upper()}: message"

    def list(self, side: str) -> MessageList:
        """Side ``a`` or ``b``'s messages."""
        return self.query_one(f"#pair-list-{side}", MessageList)

    def detail(self, side: str) -> MessageDetail:
        """Side ``a`` or ``b``'s selected message, whole."""
        return self.query_one(f"#pair-detail-{side}", MessageDetail)

    @property
    def difference_index(self) -> int | None:
        """The index of the first message that differs (``None``: none does)."""
        return self.difference.index if self.difference is not None else None

    def set_pair(
        self,
        a: Sequence[Mapping[str, Any]],
        b: Sequence[Mapping[str, Any]],
        *,
        titles: tuple[str, str] = ("A", "B"),
        details: tuple[str, str] | None = None,
        upto: int | None = None,
        pending: int | None = None,
    ) -> MessageDifference | None:
        """Show ``a`` beside ``b``, the first message that differs marked; returns it.

        ``upto``: compare the first ``upto`` messages only (a side still running has not
        reached the others: missing is not different). The cursors stay where they were
        (``to_first_difference`` moves them). ``pending``: side ``b``'s message held
        before its agent saw it.
        """
        from osmosis_workbench.engine.compare import first_difference

        left, right = (a, b) if upto is None else (a[:upto], b[:upto])
        found = self.difference = first_difference(cast(Any, left), cast(Any, right))
        marked = (found.index, DIFFERS) if found is not None else None
        for side, messages, title in zip(SIDES, (a, b), titles, strict=True):
            listing = self.list(side)
            held = pending if side == "b" else None
            listing.set_messages(messages, marked=marked, follow=False, pending_index=held)
            listing.border_title = title
        if details is not None:
            for side, title in zip(SIDES, details, strict=True):
                self.detail(side).border_title = title
        return found

    def to_first_difference(self, otherwise: int = 0) -> None:
        """Both cursors to the first message that differs (none: message ``otherwise``)."""
        index = self.difference_index
        if index is None:
            index = otherwise
        for side in SIDES:
            self.list(side).move_cursor(index)

    def other_side(self) -> None:
        """Move the focus between A's and B's list."""
        a = self.list("a")
        (self.list("b") if a.has_focus else a).focus()

    @on(MessageList.Highlighted)
    def _keep_sides_together(self, event: MessageList.Highlighted) -> None:
        """The two cursors move together: message N of A beside message N of B."""
        moved = event.message_list
        # Only the list the user moves leads: the other one, clamped at its own end, would
        # otherwise pull the leader back.
        if moved.parent is None or moved.parent.parent is not self or not moved.has_focus:
            return
        for side in SIDES:
            other = self.list(side)
            if other is not moved and other.count:
                other.move_cursor(event.index)

    @on(MessageList.Selected)
    def _open_message(self, event: MessageList.Selected) -> None:
        """Enter on a message: its side's message pane (escape goes back to the list)."""
        for side in SIDES:
            if event.message_list is self.list(side):
                event.stop()
                self.detail(side).focus()
