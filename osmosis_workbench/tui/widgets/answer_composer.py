"""The answer composer: with ``--model human`` the developer writes the model's answer here.

One LLM call at a time (an ``AnswerRequest``): what is new in the conversation, a text box for
the answer's content, the tools the init answer offered (enter adds a call), one JSON editor
per tool call with its arguments started from the tool's schema. As the developer types, the
draft is checked against each tool's JSON Schema (``AnswerRequest.check``) and the problems
are listed; ``ctrl+s`` asks for it to be sent (``SendRequested``), and problems the engine
still finds on release are shown the same way while the call keeps waiting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from rich.console import Group
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Label, OptionList, Static, TextArea
from textual.widgets.option_list import Option

from osmosis_workbench.tui.widgets.message_format import (
    argument_skeleton,
    compact_json,
    tool_function,
    tool_signature,
)
from osmosis_workbench.tui.widgets.rollout_views import render_context

if TYPE_CHECKING:
    from osmosis_workbench.engine.models import AnswerRequest

#: How long typing must pause before the draft is checked again (jsonschema per keystroke
#: would be wasted work while a word is half typed).
_CHECK_AFTER_S = 0.25


class ToolCallEditor(Vertical):
    """One tool call being written: the tool, its parameters, its arguments as JSON."""

    def __init__(self, tool: Mapping[str, Any], number: int) -> None:
        super().__init__(classes="tool-call")
        self.tool = tool
        self.number = number
        #: The arguments the call starts with (each required parameter, a placeholder).
        self.initial_arguments = compact_json(argument_skeleton(tool), width=60)

    @property
    def tool_name(self) -> str:
        """The tool's name."""
        return str(tool_function(self.tool).get("name") or "?")

    @property
    def editor(self) -> TextArea:
        """The arguments' JSON."""
        return self.query_one(TextArea)

    def compose(self) -> ComposeResult:
        yield Label(self._title(), classes="tool-call-title")
        yield TextArea(
            self.initial_arguments,
            classes="tool-call-arguments",
            soft_wrap=True,
            tab_behavior="focus",
        )

    def _title(self) -> Text:
        title = Text.assemble((f"{self.number}. ", "bold"), _tool_line(self.tool))
        title.append("  ctrl+r removes it", style="dim italic")
        return title

    def renumber(self, number: int) -> None:
        """Show this call as call ``number`` (the engine counts calls by their place)."""
        self.number = number
        if self.is_mounted:
            self.query_one(".tool-call-title", Label).update(self._title())

    def call(self) -> dict[str, Any]:
        """``{"name", "arguments"}``: the arguments as typed (checked by the request)."""
        # Just mounted, the editor may not exist yet: the arguments are still the initial ones.
        editors = self.query(TextArea)
        text = editors.first().text if editors else self.initial_arguments
        return {"name": self.tool_name, "arguments": text}


class AnswerComposer(Vertical, can_focus=True):
    """Write the answer to one LLM call: text and/or tool calls, checked as you type."""

    BINDINGS: ClassVar[list[BindingType]] = [
        # Priority: the text boxes would otherwise keep ctrl+s to themselves.
        Binding(
            "ctrl+s",
            "send",
            "Send answer",
            priority=True,
            tooltip="Check the answer and send it to the agent as the model's",
            id="answer.send",
        ),
        Binding(
            "ctrl+t",
            "pick_tool",
            "Add tool call",
            tooltip="Go to the tools the agent offered: enter adds a call of one",
            id="answer.pick_tool",
        ),
        Binding(
            "ctrl+r",
            "remove_call",
            "Remove call",
            tooltip="Remove the tool call whose arguments you are editing",
            id="answer.remove_call",
        ),
        # Shown: while a text box has the focus, letter keys type (the bar hides them).
        Binding(
            "escape",
            "leave",
            "Done typing",
            tooltip="Stop typing: the debugger's keys (m, t, q, ?) work again",
            id="answer.leave",
        ),
    ]

    @dataclass
    class SendRequested(Message):
        """The developer asked to send this answer."""

        content: str | None
        tool_calls: list[dict[str, Any]]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.request: AnswerRequest | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="answer-context")
        yield Label(
            Text.assemble(("Text", "bold"), ("  the answer's content (may stay empty)", "dim")),
            classes="answer-label",
        )
        yield TextArea(id="answer-content", soft_wrap=True, tab_behavior="focus")
        yield Label(id="answer-tools-label", classes="answer-label")
        yield OptionList(id="answer-tools")
        yield Vertical(id="answer-calls")
        yield Static(id="answer-problems")

    # ---- typed access -------------------------------------------------------------------------

    @property
    def content_box(self) -> TextArea:
        """The answer's text."""
        return self.query_one("#answer-content", TextArea)

    @property
    def tool_list(self) -> OptionList:
        """The tools on offer."""
        return self.query_one("#answer-tools", OptionList)

    @property
    def calls(self) -> list[ToolCallEditor]:
        """The tool calls written so far, in order."""
        return list(self.query(ToolCallEditor))

    # ---- one request --------------------------------------------------------------------------

    def load(self, request: AnswerRequest) -> None:
        """Start a fresh answer to ``request``."""
        self.request = request
        context = render_context(request.messages)
        self.query_one("#answer-context", Static).update(
            Text("(no new messages)", style="dim") if not context else Group(*context)
        )
        self.content_box.load_text("")
        self.query_one("#answer-calls", Vertical).remove_children()
        tools = request.tools
        self.query_one("#answer-tools-label", Label).update(
            Text.assemble(
                ("Tool calls", "bold"),
                ("  tab (or ctrl+t) to the tools, enter adds a call of one", "dim")
                if tools
                else ("  none: the agent offered no tools", "dim"),
            )
        )
        tool_list = self.tool_list
        tool_list.clear_options()
        tool_list.add_options(
            Option(_tool_line(tool), id=f"tool-{index}") for index, tool in enumerate(tools)
        )
        tool_list.display = bool(tools)
        if tools:
            tool_list.highlighted = 0  # enter adds a call at once
        self._check()
        self.content_box.focus()

    def draft(self) -> tuple[str | None, list[dict[str, Any]]]:
        """``(content, tool calls)`` as written now (content ``None`` when blank)."""
        text = self.content_box.text
        return (text if text.strip() else None), [editor.call() for editor in self.calls]

    def show_problems(self, problems: Sequence[str], *, refused: bool = False) -> None:
        """List what stops the answer from being sent (``refused``: a send was refused)."""
        shown = self.query_one("#answer-problems", Static)
        if not problems:
            shown.update(Text("✔ ready: ctrl+s sends it to the agent", style="bold green"))
            return
        head = "Not sent: fix this first" if refused else "Before it can be sent"
        text = Text(f"{head}:", style="bold red" if refused else "bold yellow")
        for problem in problems:
            text.append(f"\n • {problem}", style="red" if refused else "yellow")
        shown.update(text)

    def _check(self) -> None:
        if self.request is not None and not self.request.done:
            self.show_problems(self.request.check(*self.draft()))

    @on(TextArea.Changed)
    def _draft_changed(self) -> None:
        # Debounced: one check when typing pauses, not one per key.
        self.set_timer(_CHECK_AFTER_S, self._check, name="answer-check")

    # ---- tool calls ---------------------------------------------------------------------------

    @on(OptionList.OptionSelected, "#answer-tools")
    def _tool_chosen(self, event: OptionList.OptionSelected) -> None:
        if self.request is None:
            return
        index = int((event.option.id or "tool-0").removeprefix("tool-"))
        self.add_call(self.request.tools[index])

    def add_call(self, tool: Mapping[str, Any]) -> ToolCallEditor:
        """Add a call of ``tool`` with its skeleton arguments, and edit them."""
        editor = ToolCallEditor(tool, len(self.calls) + 1)
        self.query_one("#answer-calls", Vertical).mount(editor)
        self.call_after_refresh(self._edit, editor)
        return editor

    def _edit(self, editor: ToolCallEditor) -> None:
        self._check()
        if editor.is_attached:
            editor.editor.focus()
            editor.scroll_visible()

    def action_pick_tool(self) -> None:
        """Go to the tool list."""
        if self.tool_list.display:
            self.tool_list.focus()

    def action_remove_call(self) -> None:
        """Remove the tool call being edited."""
        focused = self.screen.focused
        for editor in self.calls:
            if focused is not None and (focused is editor or editor in focused.ancestors):
                editor.remove()
                for number, kept in enumerate((e for e in self.calls if e is not editor), 1):
                    kept.renumber(number)
                self.call_after_refresh(self._check)
                self.content_box.focus()
                return
        self.notify("Put the cursor in a tool call's arguments to remove it.", timeout=3)

    # ---- sending ------------------------------------------------------------------------------

    def action_send(self) -> None:
        """Ask for the answer to be sent (the debugger releases it, or shows why not)."""
        content, calls = self.draft()
        self.post_message(self.SendRequested(content, calls))

    def action_leave(self) -> None:
        """Stop typing, so the debugger's single-letter keys work."""
        self.focus()


def _tool_line(tool: Mapping[str, Any]) -> Text:
    description = str(tool_function(tool).get("description") or "").strip()
    line = Text(tool_signature(tool), style="bold")
    if description:
        line.append(f"  {description.splitlines()[0]}", style="dim")
    return line
