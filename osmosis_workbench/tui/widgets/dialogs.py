"""Modal dialogs: edit a paused answer (or the tool results it replies to), show a crash."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from osmosis_workbench.tui.external_editor import EditorError, edit_in_editor
from osmosis_workbench.tui.widgets.key_bar import KeyBar
from osmosis_workbench.tui.widgets.message_format import (
    editable_to_message,
    message_to_editable,
    parse_json,
)
from osmosis_workbench.tui.widgets.rollout_views import traceback_block

if TYPE_CHECKING:
    from textual.widgets import TextArea


class JsonEditDialog(ModalScreen[Any]):
    """Edit a value as JSON; ctrl+s dismisses with the parsed value, esc with None.

    Subclasses say what is edited (``title``, ``help_text``), how it reads as text
    (``initial_text``) and how the text becomes the value (``parse``, raising ``ValueError``
    with what to fix; the dialog then stays open with the text as typed). ctrl+o edits the
    text in ``$EDITOR``; opened with ``in_editor``, the dialog starts there and releases what
    the editor saved (the same checks, the same callback as ctrl+s).
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        # Priority: the TextArea would otherwise take these keys as text editing.
        Binding("ctrl+s", "release", "Save", priority=True, id="edit.release"),
        Binding("ctrl+o", "open_in_editor", "$EDITOR", priority=True, id="edit.editor"),
        Binding("escape", "cancel", "Cancel", priority=True, id="edit.cancel"),
    ]

    def __init__(self, *, in_editor: bool = False) -> None:
        super().__init__()
        #: Start in ``$EDITOR`` and release what it saved.
        self.in_editor = in_editor

    title_text = "Edit"
    help_text = ""

    def initial_text(self) -> str:
        """The text the editor starts with."""
        raise NotImplementedError

    def parse(self, text: str) -> Any:
        """The edited value, or ``ValueError`` saying what to fix."""
        raise NotImplementedError

    def compose(self) -> ComposeResult:
        # TextArea costs ~0.15 s to import: only when something is first edited.
        from textual.widgets import TextArea

        with Vertical(id="edit-dialog", classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Static(self.help_text, classes="dialog-help")
            yield TextArea(
                self.initial_text(),
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
        if self.in_editor:
            self.action_open_in_editor()

    def action_open_in_editor(self) -> None:
        """Edit the text in ``$EDITOR`` (the app steps aside until it exits)."""
        self._edit_outside()

    @work(exclusive=True, group="editor", exit_on_error=False, description="the editor")
    async def _edit_outside(self) -> None:
        before = self.editor.text
        try:
            after = await edit_in_editor(self.app, before)
        except EditorError as exc:
            self._show_error(str(exc))
            return
        self.editor.text = after
        if not self.in_editor:
            return  # back in the dialog: ctrl+s releases, as after typing
        if after == before:
            self.notify("Nothing was changed in the editor.", timeout=3)
            self.dismiss(None)
        else:
            self.action_release()

    def _show_error(self, text: str) -> None:
        self.error.update(text)
        self.error.add_class("-shown")

    def action_release(self) -> None:
        """Check the JSON and dismiss with the edited value (or say what to fix)."""
        try:
            value = self.parse(self.editor.text)
        except ValueError as exc:
            self._show_error(f"Cannot release this: {exc}")
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        """Keep the original."""
        self.dismiss(None)


class EditResponseDialog(JsonEditDialog):
    """Edit the paused answer as JSON; dismisses with the edited message, or None."""

    help_text = (
        "content is the text; each tool call has a name and its arguments as a JSON "
        "object. ctrl+s releases it to the agent instead of the model's answer; ctrl+o "
        "edits it in $EDITOR; esc keeps the original."
    )

    def __init__(self, message: Mapping[str, Any], *, turn: int, in_editor: bool = False) -> None:
        super().__init__(in_editor=in_editor)
        self.original = message
        self.turn = turn
        self.title_text = f"Edit the answer of turn {turn}"

    def initial_text(self) -> str:
        return message_to_editable(self.original)

    def parse(self, text: str) -> dict[str, Any]:
        return editable_to_message(text, self.original)


class EditToolResultsDialog(JsonEditDialog):
    """Edit the tool results the paused answer replies to; dismisses with
    ``{tool_call_id: new content}`` (the model is then asked again), or None."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "release", "Ask the model again", priority=True, id="edit.release"),
    ]
    help_text = (
        "Each tool result's content is a string. ctrl+s asks the model again with the edited "
        "results (the agent's own history keeps what its tools returned); ctrl+o edits them "
        "in $EDITOR; esc keeps them."
    )

    def __init__(
        self, results: list[Mapping[str, Any]], *, turn: int, in_editor: bool = False
    ) -> None:
        super().__init__(in_editor=in_editor)
        self.results = results
        self.title_text = f"Edit the tool results turn {turn} replies to"

    def initial_text(self) -> str:
        shown = [
            {
                "tool": r.get("name"),
                "tool_call_id": r.get("tool_call_id"),
                "content": r.get("content"),
            }
            for r in self.results
        ]
        return json.dumps(shown, indent=2, ensure_ascii=False)

    def parse(self, text: str) -> dict[str, str]:
        edited = parse_json(text)
        ids = [r.get("tool_call_id") for r in self.results]
        if not isinstance(edited, list) or len(edited) != len(ids):
            raise ValueError(f"keep the list of {len(ids)} tool results; edit their content")
        contents: dict[str, str] = {}
        for expected, item in zip(ids, edited, strict=True):
            if not isinstance(item, dict) or item.get("tool_call_id") != expected:
                raise ValueError(f"keep each result's tool_call_id (expected {expected!r})")
            content = item.get("content")
            if not isinstance(content, str):
                raise ValueError(f"the content of {expected!r} must be a string")
            contents[str(expected)] = content
        return contents


class CrashDialog(ModalScreen[None]):
    """An unexpected error: what happened, its traceback, where it was saved."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,enter", "close", "Close", id="crash.close"),
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
