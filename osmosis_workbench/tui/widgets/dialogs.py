"""Modal dialogs: edit a paused answer before the agent sees it, and show a crash's traceback."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from osmosis_workbench.tui.widgets.key_bar import KeyBar
from osmosis_workbench.tui.widgets.message_format import (
    editable_to_message,
    message_to_editable,
)
from osmosis_workbench.tui.widgets.rollout_views import traceback_block

if TYPE_CHECKING:
    from textual.widgets import TextArea


class EditResponseDialog(ModalScreen[dict[str, Any] | None]):
    """Edit the paused answer as JSON; dismisses with the edited message, or None."""

    BINDINGS: ClassVar[list[BindingType]] = [
        # Priority: the TextArea would otherwise take these keys as text editing.
        Binding("ctrl+s", "release", "Release edited answer", priority=True),
        Binding("escape", "cancel", "Cancel", priority=True),
    ]

    def __init__(self, message: Mapping[str, Any], *, turn: int) -> None:
        super().__init__()
        self.original = message
        self.turn = turn

    def compose(self) -> ComposeResult:
        # TextArea costs ~0.15 s to import: only when an answer is first edited.
        from textual.widgets import TextArea

        with Vertical(id="edit-dialog", classes="dialog"):
            yield Label(f"Edit the answer of turn {self.turn}", classes="dialog-title")
            yield Static(
                "content is the text; each tool call has a name and its arguments as a JSON "
                "object. ctrl+s releases it to the agent instead of the model's answer; "
                "esc keeps the original.",
                classes="dialog-help",
            )
            yield TextArea(
                message_to_editable(self.original),
                id="edit-text",
                show_line_numbers=True,
                tab_behavior="indent",
                soft_wrap=True,
            )
            yield Static("", id="edit-error")
        yield KeyBar()

    @property
    def editor(self) -> TextArea:
        """The JSON editor."""
        from textual.widgets import TextArea

        return self.query_one("#edit-text", TextArea)

    @property
    def error(self) -> Static:
        """Where a parse error is explained."""
        return self.query_one("#edit-error", Static)

    def on_mount(self) -> None:
        self.editor.focus()

    def action_release(self) -> None:
        """Check the JSON and dismiss with the edited message (or say what to fix)."""
        try:
            message = editable_to_message(self.editor.text, self.original)
        except ValueError as exc:  # the dialog stays open with the text as typed
            self.error.update(f"Cannot release this answer: {exc}")
            self.error.add_class("-shown")
            return
        self.dismiss(message)

    def action_cancel(self) -> None:
        """Keep the model's answer."""
        self.dismiss(None)


class CrashDialog(ModalScreen[None]):
    """An unexpected error: what happened, its traceback, where it was saved."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,enter", "close", "Close"),
    ]

    def __init__(
        self, title: str, summary: str, traceback_text: str, saved_to: str | None = None
    ) -> None:
        super().__init__()
        self.title_text = title
        self.summary = summary
        self.traceback_text = traceback_text
        self.saved_to = saved_to

    def compose(self) -> ComposeResult:
        with Vertical(id="crash-dialog", classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Static(self.summary, id="crash-summary")
            with VerticalScroll(id="crash-traceback"):
                yield Static(traceback_block(self.traceback_text))
            hint = "The workbench keeps running; esc closes this."
            if self.saved_to:
                hint += f" The traceback is also in {self.saved_to}."
            yield Static(hint, classes="dialog-help")
        yield KeyBar()

    def action_close(self) -> None:
        """Back to the workbench."""
        self.dismiss(None)
