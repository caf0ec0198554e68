"""The step debugger: one rollout, paused after each LLM answer, before the agent sees it.

The screen follows a ``SteppedRollout`` (``engine/stepping.py``): a dataset row's session
from ``Workspace.step`` or a live rollout from the server screen. A short worker runs the
rollout to its next stop and posts what it found (``RolloutPaused``, ``RolloutFinished``);
the keys call the session's methods, and releasing starts the next worker. No worker lives
across a pause, so ``app.workers.wait_for_complete()`` returns while the rollout waits for
the user.

With ``--model human`` the developer is the model: each LLM call stops at an answer composer
(``AnswerRequested``) instead, and the answer they send goes to the agent as the model's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import ContentSwitcher, LoadingIndicator, OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState

from osmosis_workbench.tui.commands import PaletteCommand, ScreenCommands, model_choices
from osmosis_workbench.tui.external_editor import EditorError, edit_in_editor
from osmosis_workbench.tui.gc_control import freeze_long_lived_objects
from osmosis_workbench.tui.messages import CopyRequested, WorkspaceRetryRequested
from osmosis_workbench.tui.screen_base import WorkbenchScreen
from osmosis_workbench.tui.text_search import MessageFinder, compile_query, next_match
from osmosis_workbench.tui.widgets import (
    AnswerComposer,
    EditResponseDialog,
    EditToolResultsDialog,
    MessageDetail,
    MessageList,
    SideBySide,
    answer_tokens,
    format_reward,
    render_outcome,
    render_response,
    render_tools,
)
from osmosis_workbench.tui.widgets.fork_dialog import ForkChoice, ForkDialog
from osmosis_workbench.tui.widgets.message_format import (
    call_arguments,
    call_name,
    compact_json,
    content_text,
    tool_function,
)
from osmosis_workbench.tui.widgets.search_bar import SearchBar

if TYPE_CHECKING:
    from osmosis_workbench.engine.fork import ForkParent, OnDivergence
    from osmosis_workbench.engine.journal import JournalEntry
    from osmosis_workbench.engine.models import AnswerRequest
    from osmosis_workbench.engine.outcome import RolloutOutcome
    from osmosis_workbench.engine.runs import RunInfo
    from osmosis_workbench.engine.stepping import PausedAnswer, SteppedRollout
    from osmosis_workbench.engine.trainer import LLMExchange
    from osmosis_workbench.engine.workspace import Workspace

#: The debugger's lifecycle; each state has a main view (see ``_MAIN_VIEW``).
State = str
_MAIN_VIEW: dict[State, str] = {
    "loading": "loading-view",
    "failed": "failure-view",
    "idle": "picker-view",
    "starting": "response-view",
    "running": "response-view",
    "paused": "response-view",
    "answering": "answer-view",
    "finished": "result-view",
    "viewing": "result-view",
}
_ACTIVE = ("starting", "running", "paused", "answering")
#: Where ``x``/``X`` write the open rollout (beside ``.osmosis/runs``, out of git).
EXPORT_DIR = Path(".osmosis") / "exports"

logger = logging.getLogger("osmosis_workbench.tui.debugger")


@dataclass(eq=False)
class Follower:
    """The session the screen follows (and which dataset row it runs, if any)."""

    session: SteppedRollout
    label: str
    row_index: int | None = None
    started: bool = False
    #: The rollout this one is a fork of (``F``), if it is one.
    fork_parent: ForkParent | None = None

    @property
    def owned(self) -> bool:
        """Whether the debugger started this rollout (a row's, a fork): it is aborted when
        left, where a real trainer's rollout is let run on."""
        return self.row_index is not None or self.fork_parent is not None


class RolloutPaused(Message):
    """The followed rollout stopped at the gate with ``paused``."""

    def __init__(self, follower: Follower, paused: PausedAnswer) -> None:
        super().__init__()
        self.follower = follower
        self.paused = paused


class AnswerRequested(Message):
    """The followed rollout's LLM call waits for the developer's answer (``--model human``)."""

    def __init__(self, follower: Follower, request: AnswerRequest) -> None:
        super().__init__()
        self.follower = follower
        self.request = request


class RolloutFinished(Message):
    """The followed rollout ended with ``outcome`` (``None``: its result is no longer known)."""

    def __init__(self, follower: Follower, outcome: RolloutOutcome | None) -> None:
        super().__init__()
        self.follower = follower
        self.outcome = outcome


class ExchangeUpdated(Message):
    """An LLM call of the followed rollout started or ended (while it runs unpaused)."""

    def __init__(self, follower: Follower) -> None:
        super().__init__()
        self.follower = follower

    def can_replace(self, message: Message) -> bool:
        # A fast `c` run sends many: the UI only needs the latest.
        return isinstance(message, ExchangeUpdated) and message.follower is self.follower


#: Trajectories at least this long are frozen out of garbage collection while shown.
_FREEZE_GC_FROM = 2_000


def fork_label(parent: str, at: int) -> str:
    """``fork of row 2 at call 3``; a fork of a fork adds its call: ``… at call 3, then 2``."""
    if parent.startswith("fork of "):
        return f"{parent}, then {at}"
    return f"fork of {parent} at call {at}"


class _ExchangeRelay:
    """A session's ``on_exchange``: each LLM call's change as an ``ExchangeUpdated`` to the
    screen, once the session is followed (its ``follower`` is set after it is made)."""

    def __init__(self, screen: Screen[Any]) -> None:
        self.screen = screen
        self.follower: Follower | None = None

    def __call__(self, _exchange: LLMExchange) -> None:
        if self.follower is not None:
            self.screen.post_message(ExchangeUpdated(self.follower))


class DebuggerCommands(ScreenCommands):
    """The debugger's palette: its keys, and copies finer than ``y``'s (each tool call's
    arguments, each tool's JSON Schema, a message's bare text).

    Commands about one LLM call of the rollout belong here too, built from the selected
    message the way ``copy_commands`` is.
    """

    def screen_commands(self) -> list[PaletteCommand]:
        screen = self.screen
        if not isinstance(screen, DebuggerScreen):
            return []
        return [
            PaletteCommand(name, "y copies the whole message", functools.partial(
                screen.copy_text, text, what))
            for name, text, what in screen.copy_commands()
        ] + [
            PaletteCommand(
                f"Fork from LLM call {call}",
                f"Run this rollout again from LLM call {call}: the calls before it replay its "
                "answers; pick the same model, another one, or write the answer",
                functools.partial(screen.ask_fork, call),
                "F",
            )
            for call in range(1, screen.fork_calls() + 1)
        ]  # fmt: skip


class DebuggerScreen(WorkbenchScreen):
    """Step through one rollout: the paused answer, the history, the tools, the result."""

    COMMANDS: ClassVar[set] = {DebuggerCommands}

    # The most used first: a narrow key bar leaves out keys from the end (? lists them all).
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "n",
            "next",
            "Next",
            tooltip="Release the paused answer to the agent; pause at the next one",
            id="debugger.next",
        ),
        Binding(
            "c",
            "continue",
            "Continue",
            tooltip="Release the answer and run to the end without pausing",
            id="debugger.continue",
        ),
        Binding(
            "e",
            "edit",
            "Edit",
            tooltip="Edit the paused answer (content, tool calls) before releasing it",
            id="debugger.edit",
        ),
        Binding(
            "E",
            "edit_tool_results",
            "Edit tool",
            tooltip="Edit the tool results this answer replies to, and ask the model again",
            id="debugger.edit_tool_results",
        ),
        Binding(
            "F",
            "fork",
            "Fork",
            tooltip="Fork this rollout at an LLM call (the selected message's): run it again "
            "from there with the same model, another one or your answer",
            id="debugger.fork",
        ),
        Binding(
            "d",
            "toggle_view('fork-view')",
            "Vs parent",
            tooltip="A fork beside its parent, the first message that differs marked; again "
            "to go back",
            id="debugger.fork_view",
        ),
        Binding(
            "P",
            "to_parent",
            "Parent",
            tooltip="Back to the rollout this fork was made from (once the fork has ended)",
            id="debugger.to_parent",
        ),
        Binding(
            "q",
            "abort",
            "Abort",
            tooltip='End this rollout as ERROR "aborted by user" (the app stays)',
            id="debugger.abort",
        ),
        Binding(
            "m",
            "toggle_view('messages-view')",
            "Messages",
            tooltip="The full message history; again to go back",
            id="debugger.messages",
        ),
        Binding(
            "t",
            "toggle_view('tools-view')",
            "Tools",
            tooltip="The agent's tools and their JSON Schemas; again to go back",
            id="debugger.tools",
        ),
        Binding(
            "slash,ctrl+f",
            "search",
            "Search",
            key_display="/",
            tooltip="Search the messages (from the list) or the message shown (from its pane)",
            id="debugger.search",
        ),
        Binding(
            "y",
            "copy",
            "Copy",
            tooltip="Copy the selected message, the held answer, the tools' JSON Schemas or the "
            "result (ctrl+p has each tool call's arguments and each tool's schema)",
            id="debugger.copy",
        ),
        Binding(
            "r",
            "rerun",
            "Rerun",
            tooltip="Run the same row again from the start",
            id="debugger.rerun",
        ),
        Binding(
            "r",
            "retry_open",
            "Retry",
            tooltip="After a failed start: open the workspace again",
            id="debugger.retry",
        ),
        Binding(
            "f",
            "toggle_markdown",
            "Markdown",
            tooltip="Show message text as markdown, or as written (the default); again to go back",
            show=False,
            id="debugger.markdown",
        ),
        Binding(
            "p",
            "toggle_view('picker-view')",
            "Rows",
            tooltip="Pick a dataset row to step",
            show=False,
            id="debugger.rows",
        ),
        Binding(
            "v",
            "open_in_editor",
            "Editor",
            tooltip="Open the held answer (or the selected message) in $EDITOR; saved edits "
            "go to the agent as e and E send them",
            show=False,
            id="debugger.editor",
        ),
        Binding(
            "x",
            "export('atif')",
            "Export",
            tooltip="Write the finished rollout as an ATIF trajectory to .osmosis/exports",
            show=False,
            id="debugger.export",
        ),
        Binding(
            "X",
            "export('json')",
            "Export JSON",
            tooltip="Write the finished rollout as its journal JSON to .osmosis/exports",
            show=False,
            id="debugger.export_json",
        ),
        Binding(
            "escape",
            "back",
            "Back",
            tooltip="From a message back to the list; else back to the main view",
            show=False,
            id="debugger.back",
        ),
    ]

    # init=False: the watcher updates widgets that do not exist before the first compose.
    state: reactive[State] = reactive("loading", init=False)

    def __init__(self, *, opening: str = "the workspace") -> None:
        super().__init__()
        #: What the workspace opens (the module or the URL), for the loading view.
        self.opening = opening
        #: Message text as markdown (f), or as written: the default, since markdown hides
        #: what a reward may read (``#### 42`` would show as a heading "42").
        self.markdown = False
        self.follower: Follower | None = None
        self.paused: PausedAnswer | None = None
        #: The LLM call waiting for the developer's answer (``--model human``), if any.
        self.answer_request: AnswerRequest | None = None
        self.outcome: RolloutOutcome | None = None
        self.outcome_title = ""
        #: The journal entry and run the shown outcome came from (what an export writes).
        self.outcome_entry: JournalEntry | None = None
        self.outcome_run: RunInfo | None = None
        #: The search of the message history (``/``): its pattern and matching messages.
        self._finder = MessageFinder()
        self._search_pattern: re.Pattern[str] | None = None
        self._search_matches: list[int] = []
        #: The tools the tools view shows (what ``y`` copies there).
        self.tools: list[dict[str, Any]] = []
        self._pending_row: tuple[int, bool] | None = None
        self._messages_stale = True
        self._frozen_messages: Any = None  # the long trajectory last kept out of GC
        self._advance_worker: Worker[None] | None = None

    # ---- layout -------------------------------------------------------------------------------

    def compose_body(self) -> ComposeResult:
        # Set before the children exist: toggled later, it restyles every widget (~20 ms).
        self._set_narrow(self.app.size.width)
        yield Static(id="status")
        with ContentSwitcher(id="views", initial="loading-view"):
            with Vertical(id="loading-view"):
                yield LoadingIndicator()
                yield Static(id="loading-text")
            with VerticalScroll(id="failure-view", classes="pane"):
                yield Static(id="failure-text")
            with Vertical(id="picker-view", classes="pane"):
                yield OptionList(id="row-picker")
            with VerticalScroll(id="response-view", classes="pane"):
                yield Static(id="response-text")
            with VerticalScroll(id="answer-view", classes="pane"):
                yield AnswerComposer(id="answer-composer")
            with Horizontal(id="messages-view"):
                yield MessageList(id="message-list", classes="pane")
                yield MessageDetail(id="message-detail", classes="pane")
            with VerticalScroll(id="tools-view", classes="pane"):
                yield Static("Loading the tools…", id="tools-text")
            with VerticalScroll(id="result-view", classes="pane"):
                yield Static(id="result-text")
            yield SideBySide(id="fork-view")
        yield SearchBar(id="search-bar")

    @property
    def views(self) -> ContentSwitcher:
        """Switches between the loading, picker, response, messages, tools and result views."""
        return self.query_one("#views", ContentSwitcher)

    @property
    def message_list(self) -> MessageList:
        """The one-line-per-message index."""
        return self.query_one(MessageList)

    @property
    def message_detail(self) -> MessageDetail:
        """The selected message, whole."""
        return self.query_one(MessageDetail)

    @property
    def fork_view(self) -> SideBySide:
        """A fork beside its parent (``d``)."""
        return self.query_one("#fork-view", SideBySide)

    @property
    def response_view(self) -> VerticalScroll:
        """The held answer's pane."""
        return self.query_one("#response-view", VerticalScroll)

    @property
    def response_text(self) -> Static:
        """The held answer, rendered."""
        return self.query_one("#response-text", Static)

    @property
    def composer(self) -> AnswerComposer:
        """Where the developer writes the model's answer (``--model human``)."""
        return self.query_one(AnswerComposer)

    @property
    def row_picker(self) -> OptionList:
        """The dataset rows to choose from."""
        return self.query_one("#row-picker", OptionList)

    @property
    def search_bar(self) -> SearchBar:
        """The search bar under the message history (``/``)."""
        return self.query_one(SearchBar)

    @property
    def session(self) -> SteppedRollout | None:
        """The followed session, if any."""
        return self.follower.session if self.follower else None

    @property
    def current_view(self) -> str | None:
        """The id of the view on screen."""
        return self.views.current

    def on_mount(self) -> None:
        self.query_one("#loading-text", Static).update(self._loading_text())
        self.query_one("#picker-view").border_title = "Pick a row to step through"
        self.response_view.border_title = "Answer"
        self.message_list.border_title = "Messages"
        self.message_detail.border_title = "Message"
        self.message_list.link_detail(self.message_detail)
        self.query_one("#tools-view").border_title = "Tools"
        self.query_one("#result-view").border_title = "Result"
        self.query_one("#failure-view").border_title = "The workbench could not start"
        self._update_status()

    def on_resize(self, event: events.Resize) -> None:
        self._set_narrow(event.size.width)
        self._update_status()  # what the status line leaves out depends on the width

    def _set_narrow(self, width: int) -> None:
        # Side by side on wide terminals; list above detail when narrow, so lines stay readable.
        self.set_class(width < 140, "-narrow")

    def _loading_text(self) -> Text:
        return Text(f"Loading {self.opening}…\n(importing the engine and the agent module)")

    # ---- state and views ----------------------------------------------------------------------

    def watch_state(self, _old: State, new: State) -> None:
        self.refresh_bindings()
        self._update_status()

    def show_view(self, view: str) -> None:
        """Switch to ``view`` and focus what it holds."""
        if view != "messages-view" and self.search_bar.is_open:
            self.search_bar.close()  # it searches the history: not for the other views
        self.views.current = view
        if view == "messages-view":
            if self._messages_stale:
                self._refresh_messages()
            self.message_list.focus()
        elif view == "fork-view":
            self._refresh_fork_view(to_difference=True)
            self.fork_view.list("b").focus()
        elif view == "picker-view":
            self.row_picker.focus()
        elif view == "answer-view":
            self.composer.content_box.focus()
        elif view in ("response-view", "tools-view", "result-view", "failure-view"):
            self.query_one(f"#{view}").focus()
        if view == "tools-view":
            self._load_tools()

    def show_main_view(self) -> None:
        """The view that belongs to the current state."""
        self.show_view(_MAIN_VIEW[self.state])

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Show only the keys that do something now (the footer follows)."""
        state = self.state
        # False hides the key from the key bar and lets it fall through to the app.
        if action in ("next", "continue", "edit"):
            return state == "paused"
        if action == "edit_tool_results":
            # Offered when tools were answered; a model that cannot answer again (a replay)
            # is explained when pressed, not hidden.
            paused = self.paused
            return state == "paused" and paused is not None and bool(paused.tool_results)
        if action == "abort":
            return state in _ACTIVE
        if action == "fork":
            return state not in ("loading", "failed") and self.fork_calls() > 0
        if action == "rerun":
            return (
                state != "failed"
                and self.follower is not None
                and (self.follower.row_index is not None)
            )
        if action == "retry_open":
            return state == "failed"
        if action == "search":
            return self.current_view == "messages-view"
        if action == "copy":
            return self._copy_target() is not None
        if action == "open_in_editor":
            return self._editor_target() is not None
        if action == "export":
            return self.outcome is not None
        if action == "toggle_view":
            view = parameters[0] if parameters else None
            if view == "messages-view":
                return self.follower is not None or self.outcome is not None
            if view == "tools-view":
                return state not in ("loading", "failed")
            if view == "fork-view":
                return self.follower is not None and self.follower.fork_parent is not None
        if action == "to_parent":
            return self.follower is not None and self.follower.fork_parent is not None
            if view == "picker-view":
                ws = self.workspace
                return state not in ("loading", "failed") and bool(
                    ws is not None and (ws.rows or ws.bad_rows)
                )
        return True

    def _update_status(self) -> None:
        status = self.query_one("#status", Static)
        state = self.state
        # One line. The explanation after the state (``hint``) and then the totals go first
        # when it is narrow; what still does not fit ends in "…".
        text = Text(no_wrap=True, overflow="ellipsis")
        hint = Text()
        label = self.follower.label if self.follower else self.outcome_title
        if label:
            text.append(f" {label} ", style="bold reverse")
            text.append("  ")
        if state == "loading":
            text.append(f"Loading {self.opening}…", style="italic")
        elif state == "failed":
            text.append(
                "Could not open the workspace: fix the cause, then press r to retry",
                style="bold red",
            )
        elif state == "idle":
            rows = len(self.workspace.rows) if self.workspace is not None else 0
            text.append(f"{rows} rows. Pick one with enter to step through it", style="dim")
        elif state in ("starting", "running"):
            text.append("▶ running", style="bold green")
            exchanges = self._exchanges()
            if state == "starting":
                hint.append("  · sending the rollout request")
            elif exchanges and exchanges[-1].completion is None:
                hint.append(f"  · waiting for the model (LLM call {len(exchanges)})")
            else:
                hint.append("  · the agent is working (tools, then its next LLM call)")
        elif state == "answering" and self.answer_request is not None:
            call = self.answer_request.turn + 1
            text.append(f"✎ LLM call {call} waits for your answer", style="bold magenta")
            hint.append("  · you are the model", style="dim")
        elif state == "paused" and self.paused is not None:
            text.append(f"⏸ paused at turn {self.paused.turn}", style="bold yellow")
            hint.append("  · the agent has not seen this answer yet", style="dim")
        elif state in ("finished", "viewing") and self.outcome is not None:
            ok = self.outcome.ok
            text.append(
                ("✔ " if ok else "✘ ") + self.outcome.status,
                style="bold green" if ok else "bold red",
            )
            if self.outcome.reward is not None:
                text.append(f"  · reward {format_reward(self.outcome.reward)}")
            if self.outcome.error:
                text.append(f"  · {self.outcome.error.splitlines()[0][:120]}", style="red")
        tokens, calls = self._totals()
        totals = Text(f"   {calls} LLM calls · {tokens} tokens" if calls else "", style="dim")
        width = status.size.width or self.app.size.width
        if text.cell_len + hint.cell_len + totals.cell_len <= width:
            text.append_text(hint)
        if text.cell_len + totals.cell_len <= width:
            text.append_text(totals)
        status.update(text, layout=False)  # one line whatever it says

    def _exchanges(self) -> Sequence[LLMExchange]:
        session = self.session
        return session.exchanges if session is not None else ()

    def _totals(self) -> tuple[int, int]:
        if self.outcome is not None:
            return self.outcome.tokens, self.outcome.llm_calls
        exchanges = self._exchanges()
        tokens = sum(int(x.usage.get("total_tokens") or 0) for x in exchanges)
        return tokens, len(exchanges)

    # ---- the workspace ------------------------------------------------------------------------

    def workspace_opened(self, workspace: Workspace) -> None:
        """The app's workspace is ready: list the rows, open a requested row."""
        self._fill_row_picker()
        if self._pending_row is not None:
            row, stepping = self._pending_row
            self._pending_row = None
            self.start_row(row, stepping=stepping)
        elif self.state in ("loading", "failed"):
            self.state = "idle"
            self.show_main_view()

    def workspace_failed(self, message: str) -> None:
        """The workspace could not open: say why, offer retry."""
        self.query_one("#failure-text", Static).update(
            Text.assemble(
                (message, "bold red"), "\n\nFix it and press r to retry, or ctrl+q to quit."
            )
        )
        self.state = "failed"
        self.show_main_view()

    def workspace_reopening(self) -> None:
        """A retry started: back to the loading view."""
        self.state = "loading"
        self.show_main_view()

    def _fill_row_picker(self) -> None:
        picker = self.row_picker
        picker.clear_options()
        workspace = self.workspace
        if workspace is None:
            return
        options: list[Option] = []
        for row in workspace.rows:
            prompt = row.user_prompt.strip().splitlines()[0] if row.user_prompt.strip() else ""
            options.append(
                Option(
                    Text.assemble(
                        (f"{row.index:>5}  ", "dim"),
                        prompt[:200],
                        (f"   → {row.ground_truth_text}", "dim"),
                    ),
                    id=f"row-{row.index}",
                )
            )
        for bad in workspace.bad_rows:
            options.append(
                Option(
                    Text(f"{bad.index:>5}  {bad.message}", style="red"),
                    id=f"bad-{bad.index}",
                    disabled=True,
                )
            )
        # Bad rows stay at their place in the file (disabled), where the user expects them.
        options.sort(key=lambda o: int((o.id or "row-0").split("-")[1]))
        picker.add_options(options)
        if options:
            picker.highlighted = 0  # enter works at once
        error = self.dataset_error
        if error:
            picker.add_option(Option(Text(error, style="bold red"), disabled=True))
        elif not options:
            picker.add_option(
                Option(
                    Text(
                        "No dataset: start the workbench with -d FILE to step through its rows.",
                        style="dim",
                    ),
                    disabled=True,
                )
            )

    @on(OptionList.OptionSelected, "#row-picker")
    def _row_chosen(self, event: OptionList.OptionSelected) -> None:
        option_id = event.option.id or ""
        if option_id.startswith("row-"):
            self.start_row(int(option_id.removeprefix("row-")))

    # ---- following a rollout ------------------------------------------------------------------

    def start_row(self, row_index: int, *, stepping: bool = True) -> None:
        """Start a step session on dataset row ``row_index`` (once the workspace is open)."""
        workspace = self.workspace
        if workspace is None:
            self._pending_row = (row_index, stepping)
            return
        exchange_updated = _ExchangeRelay(self)
        try:
            session = workspace.step(row_index, stepping=stepping, on_exchange=exchange_updated)
        # IndexError: no such (good) row; AssertionError: the workspace is not open.
        except (IndexError, AssertionError) as exc:
            self.notify(
                f"{exc}. Pick another row.",
                title=f"Row {row_index}",
                severity="error",
                markup=False,
            )
            if self.follower is None:
                self.state = "idle"
                self.show_main_view()
            return
        follower = Follower(session=session, label=f"row {row_index}", row_index=row_index)
        exchange_updated.follower = follower
        self._follow(follower)

    def open_session(self, session: SteppedRollout, label: str | None = None) -> None:
        """Follow a rollout's step session (started or not)."""
        self._follow(Follower(session=session, label=label or session.label or "rollout"))

    def show_outcome(
        self,
        outcome: RolloutOutcome,
        title: str,
        *,
        entry: JournalEntry | None = None,
        run: RunInfo | None = None,
    ) -> None:
        """Show a finished trajectory, read-only: its result and its messages.

        ``entry`` and ``run``: the journal entry and run it came from, for exports.
        """
        self.detach("another rollout was opened")
        self.follower = None
        self.paused = None
        self.outcome = outcome
        self.outcome_title = title
        self.outcome_entry, self.outcome_run = entry, run
        self._show_result()
        self._messages_stale = True
        self.state = "viewing"
        self.show_view("messages-view")

    def detach(self, reason: str) -> None:
        """Let go of the followed rollout: nobody would release its gate otherwise.

        A dataset row's rollout is ours: it is aborted. A session opened from elsewhere (a
        live rollout of a real trainer) is let run on without pausing instead.
        """
        follower = self.follower
        if follower is None or follower.session.finished:
            return
        if follower.owned:
            follower.session.abort(f"aborted by user ({reason})")
            self._drain(follower.session)
        else:
            follower.session.let_go()

    @work(group="rollouts", exit_on_error=False, description="end an abandoned rollout")
    async def _drain(self, session: SteppedRollout) -> None:
        """Wait for an aborted rollout to end, so its task is not left unobserved."""
        try:
            await session.finish()
        except Exception:  # nobody looks at this rollout any more: a log line is enough
            logger.exception("an abandoned rollout ended with an error")

    def _follow(self, follower: Follower) -> None:
        self.detach(
            "the row was run again"
            if self.follower and self.follower.row_index == follower.row_index
            else "another rollout was opened"
        )
        self.follower = follower
        self.paused = None
        self.answer_request = None
        self.outcome = None
        self.outcome_title = ""
        self.outcome_entry = self.outcome_run = None
        self._messages_stale = True
        self.response_view.border_title = "Answer"
        self.response_text.update(
            Text("Sending the rollout request to the server…", style="italic")
        )
        self.state = "starting"
        self._update_status()  # the label changed even if the state did not
        self.show_main_view()
        self._advance_worker = self._advance(follower)

    @work(group="rollouts", exit_on_error=False, description="the rollout")
    async def _advance(self, follower: Follower) -> None:
        """Run the rollout to its next stop: a pause, or its end."""
        session = follower.session
        if not follower.started:
            follower.started = True
            await session.start()
        # Imported here: the debugger is on the first screen, which imports no engine.
        from osmosis_workbench.engine.stepping import PausedAnswer

        stop = await session.wait()
        if isinstance(stop, PausedAnswer):
            self.post_message(RolloutPaused(follower, stop))
            return
        if stop is not None:
            self.post_message(AnswerRequested(follower, stop))
            return
        outcome = await session.finish()
        self.post_message(RolloutFinished(follower, outcome or session.outcome))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A rollout worker that raised: let go of the session (the base shows the crash)."""
        if (
            event.state == WorkerState.ERROR
            and event.worker.error is not None
            and event.worker is self._advance_worker
            and self.state in _ACTIVE
        ):
            # The session is in an unknown state: stop following it.
            self.follower = None
            self.paused = None
            self.state = "idle" if self.outcome is None else "finished"
            self.show_main_view()

    def on_rollout_paused(self, message: RolloutPaused) -> None:
        if message.follower is not self.follower:
            return
        paused = message.paused
        self.paused = paused
        self.response_view.border_title = (
            f"Answer of turn {paused.turn}: held before the agent sees it"
        )
        self._show_paused()
        self._messages_stale = True
        self.state = "paused"
        # Stay in the view the user chose: stepping with the history open keeps it open.
        if self.current_view == "messages-view":
            self._refresh_messages()
        elif self.current_view == "fork-view":
            self._refresh_fork_view()
        elif self.current_view not in ("tools-view",):
            self.show_main_view()

    def on_answer_requested(self, message: AnswerRequested) -> None:
        if message.follower is not self.follower:
            return
        request = self.answer_request = message.request
        self.query_one("#answer-view").border_title = (
            f"Your answer to LLM call {request.turn + 1} ({message.follower.label}): "
            "the agent gets it as the model's"
        )
        self.composer.load(request)
        self._messages_stale = True
        self.state = "answering"
        if self.current_view == "messages-view":
            self._refresh_messages()
        elif self.current_view != "tools-view":
            self.show_main_view()

    @on(AnswerComposer.SendRequested)
    def _send_answer(self, message: AnswerComposer.SendRequested) -> None:
        """Release the developer's answer to the agent, or show why it cannot go yet."""
        from osmosis_workbench.engine.models import AnswerRejected

        request = self.answer_request
        if request is None or request.done:
            self.notify("This LLM call is no longer waiting for an answer.", severity="warning")
            return
        try:
            request.answer(message.content, message.tool_calls)
        except AnswerRejected as exc:  # the call keeps waiting: fix and send again
            self.composer.show_problems(exc.problems, refused=True)
            return
        self._release()
        self.notify(f"Your answer to LLM call {request.turn + 1} went to the agent.", timeout=3)

    def on_rollout_finished(self, message: RolloutFinished) -> None:
        if message.follower is not self.follower:
            return
        if message.outcome is None:
            # A live rollout can drop out of the server's list before its end is known.
            self.notify(
                "The rollout ended but its result is no longer available.", severity="warning"
            )
            self.follower = None
            self.state = "idle"
            self.show_main_view()
            return
        self.paused = None
        self.outcome = message.outcome
        if message.follower.fork_parent is not None:
            self._fork_finished(message.follower, message.outcome)
        self._show_result()
        self._messages_stale = True
        self.state = "finished"
        if self.current_view == "messages-view":
            self._refresh_messages()
        elif self.current_view == "fork-view":
            self._refresh_fork_view()
        else:
            self.show_main_view()

    def _show_paused(self) -> None:
        """Draw the held answer (text as written, or as markdown)."""
        paused = self.paused
        if paused is None:
            return
        self.response_text.update(
            render_response(
                turn=paused.turn,
                message=paused.message,
                finish_reason=paused.finish_reason,
                usage=paused.usage,
                latency_ms=paused.latency_ms,
                replaced=paused.replaced,
                request_messages=paused.request_messages,
                markdown=self.markdown,
            )
        )

    def _show_result(self) -> None:
        """Draw the finished rollout's result."""
        if self.outcome is not None:
            self.query_one("#result-text", Static).update(
                render_outcome(self.outcome, title=self.outcome_title, markdown=self.markdown)
            )

    def on_exchange_updated(self, message: ExchangeUpdated) -> None:
        if message.follower is not self.follower:
            return
        self._messages_stale = True
        if self.state == "starting":
            self.state = "running"
        self._update_status()
        if self.current_view == "messages-view":
            self._refresh_messages()
        elif self.current_view == "fork-view":
            self._refresh_fork_view()

    def _refresh_messages(self) -> None:
        """Give the message list the current history (kept by reference, not copied)."""
        # Called only while the history is on screen (else it is marked stale): a `c` run
        # of a long rollout must not rebuild a 10,000-message list per LLM call.
        self._messages_stale = False
        if self.follower is not None:
            messages = self.follower.session.messages
            exact = answer_tokens(self._exchanges())
        elif self.outcome is not None:
            messages, exact = self.outcome.final_messages, {}
        else:
            messages, exact = [], {}
        pending = len(messages) - 1 if self.state == "paused" and messages else None
        if len(messages) >= _FREEZE_GC_FROM and messages is not self._frozen_messages:
            # A long trajectory lives on screen: keep it out of full GC passes, which
            # otherwise land on scroll keys (measured: 60-100 ms at 10,000 messages).
            freeze_long_lived_objects()
            self._frozen_messages = messages
            # What a search looks through, built once the trajectory is on screen rather than
            # on the first ``/`` (about 30 ms at 10,000 messages); new messages are added then.
            self.call_after_refresh(self._finder.prepare, messages)
        self.message_list.set_messages(messages, exact_tokens=exact, pending_index=pending)
        self.message_list.border_title = f"Messages ({len(messages)})"
        if self._search_pattern is not None and self.search_bar.target == "messages":
            self._search_messages()  # new messages may match too

    @on(MessageList.Selected)
    def _message_selected(self, event: MessageList.Selected) -> None:
        if event.message_list is self.message_list:  # (the side-by-side has its own)
            self.message_detail.focus()

    # ---- tools --------------------------------------------------------------------------------

    @work(group="tools", exclusive=True, exit_on_error=False, description="load the tools")
    async def _load_tools(self) -> None:
        text = self.query_one("#tools-text", Static)
        tools = list(self.session.tools) if self.session is not None else []
        self.tools = tools
        if tools:
            text.update(render_tools(tools, source="sent by the server in its init answer"))
            return
        if self.outcome is not None and self.outcome.tools:
            self.tools = list(self.outcome.tools)
            text.update(render_tools(self.outcome.tools, source="of this rollout"))
            return
        workspace = self.workspace
        if workspace is None:
            text.update("The workspace is not open yet.")
            return
        try:
            tools = await workspace.agent_tools()
        except Exception as exc:  # the user's get_tools may raise anything
            text.update(Text(f"get_tools failed: {type(exc).__name__}: {exc}", style="red"))
            return
        self.tools = tools
        text.update(render_tools(tools, source=f"{workspace.agent_name}.get_tools"))
        self.refresh_bindings()  # y can copy them now

    # ---- keys ---------------------------------------------------------------------------------

    def _release(self) -> None:
        self.paused = None
        self.answer_request = None
        self.state = "running"
        worker = self._advance_worker
        # While running (abort between pauses) a worker already waits for the next stop.
        if self.follower is not None and (worker is None or worker.is_finished):
            self._advance_worker = self._advance(self.follower)

    def action_next(self) -> None:
        """Release the paused answer to the agent; stop at the next one."""
        if self.session is not None and self.session.next():
            self._release()

    def action_continue(self) -> None:
        """Release the answer and run to the end without pausing."""
        if self.session is not None and self.session.continue_():
            self._release()

    def action_abort(self) -> None:
        """End this rollout as ERROR "aborted by user"; the app stays."""
        if self.session is None or self.session.finished:
            return
        self.session.abort("aborted by user")
        self._release()
        self.notify("The rollout ends as ERROR: aborted by user.", title="Aborted")

    def action_rerun(self) -> None:
        """Run the same row again from the start."""
        if self.follower is not None and self.follower.row_index is not None:
            self.start_row(self.follower.row_index)

    def action_retry_open(self) -> None:
        """Try to open the workspace again (after fixing the agent or the options)."""
        self.post_message(WorkspaceRetryRequested())

    def action_edit(self) -> None:
        """Edit the paused answer as JSON, then release the edited one."""
        self._edit_answer()

    def _edit_answer(self, *, in_editor: bool = False) -> None:
        """The edit dialog on the held answer (``in_editor``: started in ``$EDITOR``)."""
        follower, paused = self.follower, self.paused
        if follower is None or paused is None or follower.session.paused is not paused:
            return

        def release_edited(message: dict[str, Any] | None) -> None:
            if message is None:
                return
            # The rollout may have moved on while the dialog was open (aborted, timed out).
            if follower.session.paused is not paused:
                self.notify("The rollout is no longer paused at that answer.", severity="warning")
                return
            if follower.session.next(message):
                self._release()
                self.notify(f"Edited answer of turn {paused.turn} released to the agent.")

        self.app.push_screen(
            EditResponseDialog(paused.message, turn=paused.turn, in_editor=in_editor),
            release_edited,
        )

    def action_edit_tool_results(self) -> None:
        """Edit the tool results the paused answer replies to; the model then answers again."""
        self._edit_tool_results()

    def _edit_tool_results(self, *, in_editor: bool = False) -> None:
        """The dialog on the held answer's tool results (``in_editor``: in ``$EDITOR``)."""
        follower, paused = self.follower, self.paused
        if follower is None or paused is None or follower.session.paused is not paused:
            return
        results = paused.tool_results
        if not results:
            return
        if follower.session.cannot_regenerate:
            self.notify(
                follower.session.cannot_regenerate,
                title="E cannot ask this model again",
                severity="warning",
                timeout=20,
            )
            return

        def ask_again(contents: dict[str, str] | None) -> None:
            if contents is None:
                return
            if follower.session.paused is not paused:
                self.notify("The rollout is no longer paused at that answer.", severity="warning")
                return
            if follower.session.edit_tool_results(contents):
                self._release()
                self.notify(
                    f"Asking the model again for turn {paused.turn} with the edited tool results."
                )

        self.app.push_screen(
            EditToolResultsDialog(results, turn=paused.turn, in_editor=in_editor), ask_again
        )

    def action_toggle_markdown(self) -> None:
        """Render message text as markdown, or as written (the default)."""
        self.markdown = not self.markdown
        self._show_paused()
        self._show_result()
        self.message_detail.set_markdown(self.markdown)
        self.notify(
            "message text as markdown" if self.markdown else "message text as written", timeout=2
        )

    def action_toggle_view(self, view: str) -> None:
        """Show ``view``; pressed again, back to the main view."""
        if self.current_view == view:
            self.show_main_view()
        else:
            self.show_view(view)

    def action_back(self) -> None:
        """From a message's detail back to the list; otherwise back to the main view."""
        if self.current_view == "messages-view" and self.message_detail.has_focus_within:
            self.message_list.focus()
        elif self.current_view == "fork-view" and (
            self.fork_view.detail("a").has_focus or self.fork_view.detail("b").has_focus
        ):
            side = "a" if self.fork_view.detail("a").has_focus else "b"
            self.fork_view.list(side).focus()
        elif self.current_view != _MAIN_VIEW[self.state]:
            self.show_main_view()

    # ---- forks (F, d) -------------------------------------------------------------------------

    def fork_calls(self) -> int:
        """How many LLM calls the rollout shown has to fork at (0: it cannot be forked)."""
        if self.workspace is None:
            return 0
        from osmosis_workbench.engine.session import StepSession

        follower = self.follower
        if follower is not None:
            session = follower.session
            return len(session.exchanges) if isinstance(session, StepSession) else 0
        if self.outcome_entry is not None:
            return len(self.outcome_entry.outcome.calls)
        return 0

    def fork_parent(self) -> ForkParent:
        """What a fork starts from: the followed rollout, or the run's rollout shown.

        Raises ``ForkError`` saying why there is nothing to fork and what to open instead.
        """
        from osmosis_workbench.engine.fork import ForkError, ForkParent
        from osmosis_workbench.engine.session import StepSession

        follower = self.follower
        if follower is not None:
            session = follower.session
            if not isinstance(session, StepSession):
                raise ForkError(
                    "this rollout belongs to a real trainer (the server screen): the workbench "
                    "cannot send its request again. Fork a dataset row's rollout, or one of a "
                    "run's (the runs screen, 4)"
                )
            parent = ForkParent.from_session(session)
            grand = follower.fork_parent
            if grand is not None and grand.run is not None:
                # A fork of a run's rollout forked again: it lands in the same run's forks.
                parent = dataclasses.replace(parent, run=grand.run)
            return parent
        if self.outcome_entry is not None:
            return ForkParent.from_entry(self.outcome_entry, run=self.outcome_run)
        if self.outcome is not None:
            raise ForkError(
                "this trajectory came without its journal entry, so its request is not known: "
                "open it from a run (the runs screen, 4) to fork it"
            )
        raise ForkError("no rollout is open: step a dataset row (p) or open a run's rollout")

    def default_fork_call(self, parent: ForkParent) -> int:
        """The call ``F`` proposes: the selected message's (an answer's call, else the first
        call that saw it), the held answer's, or the last one."""
        calls = parent.calls
        if self.current_view == "messages-view" and self.message_list.count:
            index = self.message_list.cursor
            message = self.message_list.messages[index]
            if message.get("role") == "assistant":
                answered = [c.number for c in calls if c.request_size == index]
                if answered:
                    return answered[-1]
            later = [c.number for c in calls if c.request_size >= index]
            if later:
                return later[0]
        if self.paused is not None:
            return self.paused.turn
        return max(1, len(calls))

    def action_fork(self) -> None:
        """Fork the rollout at an LLM call: the dialog asks which, and who answers it."""
        self.ask_fork()

    def ask_fork(self, at: int | None = None) -> None:
        """The fork dialog, on call ``at`` (default: ``default_fork_call``)."""
        from osmosis_workbench.engine.fork import ForkError

        workspace = self._ready_workspace("forking")
        if workspace is None:
            return
        try:
            parent = self.fork_parent()
            if not parent.calls:
                parent.check(1)  # says that it made no LLM call
        except ForkError as exc:
            self._fork_failed(exc)
            return
        self._open_fork_dialog(workspace, parent, at or self.default_fork_call(parent))

    @work(group="fork", exclusive=True, exit_on_error=False, description="the fork dialog")
    async def _open_fork_dialog(self, workspace: Workspace, parent: ForkParent, at: int) -> None:
        from osmosis_workbench.engine.fork import ForkError

        models = await asyncio.to_thread(model_choices, workspace.config)

        def check(call: int) -> str | None:
            try:
                parent.check(call)
            except ForkError as exc:
                return str(exc)
            return None

        def chosen(choice: ForkChoice | None) -> None:
            if choice is None:
                return
            drift = choice.on_divergence
            if choice.hand_written:
                self._write_fork_answer(parent, choice.at, on_divergence=drift)
            else:
                self.start_fork(parent, choice.at, model=choice.model, on_divergence=drift)

        same = parent.run.model if parent.run is not None and parent.run.model else None
        self.app.push_screen(
            ForkDialog(
                parent_label=parent.label or parent.rollout_id,
                calls=len(parent.calls),
                at=min(max(at, 1), len(parent.calls)),
                same_model=same or workspace.model_name,
                models=models,
                check=check,
            ),
            chosen,
        )

    def _write_fork_answer(
        self, parent: ForkParent, at: int, *, on_divergence: OnDivergence = "stop"
    ) -> None:
        """The answer editor (as ``e``'s), on the parent's answer to call ``at``."""
        original = parent.calls[at - 1].message or {"role": "assistant", "content": ""}
        dialog = EditResponseDialog(original, turn=at)
        dialog.title_text = f"Your answer to LLM call {at} of the fork (the parent's shown)"
        dialog.help_text = (
            "content is the text; each tool call has a name and its arguments as a JSON "
            f"object. ctrl+s forks with this answer to call {at} (the model answers the calls "
            "after it); ctrl+o edits it in $EDITOR; esc forks nothing."
        )

        def fork_with(message: dict[str, Any] | None) -> None:
            if message is not None:
                self.start_fork(parent, at, answer=message, on_divergence=on_divergence)

        self.app.push_screen(dialog, fork_with)

    def start_fork(
        self,
        parent: ForkParent,
        at: int,
        *,
        model: str | None = None,
        answer: dict[str, Any] | str | None = None,
        on_divergence: OnDivergence = "stop",
    ) -> None:
        """Fork ``parent`` at LLM call ``at`` and follow the fork (it pauses first at ``at``).

        ``model``: a ``--model`` spec from call ``at`` on (``None``: the parent's model);
        ``answer``: call ``at``'s answer, written by hand; ``on_divergence``: what a replayed
        call whose request differs from the parent's does (``engine.fork``). A fork that
        cannot start says why.
        """
        self._start_fork(parent, at, model, answer, on_divergence)

    @work(group="fork", exclusive=True, exit_on_error=False, description="start the fork")
    async def _start_fork(
        self,
        parent: ForkParent,
        at: int,
        model: str | None,
        answer: dict[str, Any] | str | None,
        on_divergence: OnDivergence = "stop",
    ) -> None:
        from osmosis_workbench.engine.config import ConfigError
        from osmosis_workbench.engine.fork import ForkError

        workspace = self._ready_workspace("forking")
        if workspace is None:
            return
        exchange_updated = _ExchangeRelay(self)
        try:
            # In a thread: another model's backend (a file to read) and the run's reward
            # function (a module to import) are built here.
            fork = await asyncio.to_thread(
                functools.partial(
                    workspace.fork,
                    parent,
                    at,
                    model=model,
                    answer=answer,
                    on_divergence=on_divergence,
                    on_exchange=exchange_updated,
                )
            )
        except (ForkError, ConfigError, OSError) as exc:
            self._fork_failed(exc)
            return
        label = fork_label(parent.label or parent.rollout_id, at)
        fork.label = label
        follower = Follower(session=fork, label=label, fork_parent=parent)
        exchange_updated.follower = follower
        self._leave_for_fork(parent)
        self._follow(follower)
        source = (
            "your answer, then the model"
            if answer is not None
            else f"model {model}"
            if model
            else "the same model"
        )
        replayed = (
            "" if at == 1
            else "call 1 replays its answer; " if at == 2
            else f"calls 1-{at - 1} replay its answers; "
        )  # fmt: skip
        self.notify(
            f"{replayed}call {at} on: {source}. d shows the fork beside its parent.",
            title=f"Forked {parent.label or parent.rollout_id} at LLM call {at}",
            timeout=6,
        )

    def action_to_parent(self) -> None:
        """Back to the rollout the followed fork was made from: its session, followed again
        (it may still be running on), or its journal entry's trajectory."""
        from osmosis_workbench.engine.fork import ForkSession

        follower = self.follower
        parent = follower.fork_parent if follower is not None else None
        if follower is None or parent is None:
            self.notify("This rollout is not a fork: F makes one.", timeout=4)
            return
        if not follower.session.finished:
            self.notify(
                "The fork has not ended: c runs it to its end (q aborts it), then P goes back "
                "to its parent.",
                title="Parent",
                severity="warning",
                timeout=6,
            )
            return
        label = parent.label or parent.rollout_id
        if parent.session is not None:
            session = parent.session
            grand = session.parent if isinstance(session, ForkSession) else None
            self._follow(Follower(session=session, label=label, started=True, fork_parent=grand))
        elif parent.entry is not None:
            self.show_outcome(parent.entry.outcome, label, entry=parent.entry, run=parent.run)
        elif parent.outcome is not None:
            self.show_outcome(parent.outcome, label)

    def _leave_for_fork(self, parent: ForkParent) -> None:
        """The followed rollout, forked while it runs, runs on to its end without pausing
        (to be compared with the fork); one that waits for your answer is aborted."""
        follower = self.follower
        if follower is None or follower.session.finished or parent.session is not follower.session:
            return
        session = follower.session
        if session.human is None and session.answer_request is None:  # type: ignore[attr-defined]
            session.let_go()
            self.follower = None  # not aborted by _follow
            self._run_parent_on(session)

    @work(group="rollouts", exit_on_error=False, description="the forked rollout")
    async def _run_parent_on(self, session: SteppedRollout) -> None:
        try:
            await session.finish()
        except Exception:  # the fork is what is followed now: a log line is enough
            logger.exception("a forked rollout ended with an error")
        if self.current_view == "fork-view":
            self._refresh_fork_view()

    def _fork_failed(self, exc: Exception) -> None:
        """Why a fork cannot start, and the fix (the engine's messages name both)."""
        from osmosis_workbench.engine.config import ConfigError

        text = str(exc)
        if isinstance(exc, ConfigError):
            text += ". Pick another model in the fork dialog (F)."
        self.notify(text, title="Cannot fork", severity="error", timeout=20)

    def _fork_finished(self, follower: Follower, outcome: RolloutOutcome | None) -> None:
        """The fork ended: its journal entry (what x exports), and how it compares."""
        from osmosis_workbench.engine.fork import ForkSession

        fork, parent = follower.session, follower.fork_parent
        if not isinstance(fork, ForkSession) or parent is None or outcome is None:
            return
        self.outcome_entry = fork.entry
        self.outcome_run = parent.run
        if fork.divergences:
            self.notify(
                outcome.error or "\n".join(fork.divergences),
                title="The fork left its parent's history before the fork point",
                severity="error",
                timeout=30,
            )
            return
        self._refresh_fork_view()  # hidden or not: it finds where the two part
        found = self.fork_view.difference
        running = parent.session is not None and not parent.session.finished
        where = (
            f"the same as its parent{' so far (it still runs)' if running else ''}"
            if found is None
            else f"parts from its parent at message {found.index}"
        )
        text = f"{outcome.status}, reward {format_reward(outcome.reward)}: {where}."
        if self.current_view != "fork-view":
            text += " d shows both."
        if fork.journal_dir is not None:
            text += f" Appended to {fork.journal_dir}/forks.jsonl."
        self.notify(text, title="The fork ended", timeout=8)

    def _refresh_fork_view(self, *, to_difference: bool = False) -> None:
        """The fork beside its parent, the first message that differs marked."""
        follower = self.follower
        if follower is None or follower.fork_parent is None:
            return
        parent = follower.fork_parent
        view = self.fork_view
        mine, theirs = follower.session.messages, parent.messages
        running = not follower.session.finished or (
            parent.session is not None and not parent.session.finished
        )
        found = view.set_pair(
            theirs,
            mine,
            upto=min(len(mine), len(theirs)) if running else None,
            titles=(f"A: {parent.label or parent.rollout_id} (the parent)", follower.label),
            details=("A: the parent's message", "B: the fork's message"),
            pending=len(mine) - 1 if self.paused is not None and mine else None,
        )
        view.list("b").border_title = f"B: {follower.label} · " + (
            ("the same so far" if running else "the same") if found is None
            else f"≠ from message {found.index}"
        )  # fmt: skip
        if to_difference:
            # No difference yet: the fork point, where the fork's own answers begin.
            at = getattr(follower.session, "at", 1)
            calls = parent.calls
            view.to_first_difference(calls[at - 1].request_size if at <= len(calls) else 0)

    # ---- search (/) ---------------------------------------------------------------------------

    def action_search(self) -> None:
        """Search the messages (from the list) or the message shown (from its pane)."""
        in_message = self.message_detail.has_focus
        # The searchable strings of a 10,000-message history are built now, not on a key.
        self._finder.prepare(self.message_list.messages)
        self.search_bar.open(
            "message" if in_message else "messages",
            placeholder="search this message" if in_message else "search the messages",
        )

    @on(SearchBar.Changed, "#search-bar")
    def _search_changed(self, event: SearchBar.Changed) -> None:
        try:
            self._search_pattern = compile_query(event.query, regex=event.regex)
        except ValueError as exc:
            self._search_pattern = None
            self._search_highlights(None)
            self.search_bar.show_count(str(exc), error=True)
            return
        if event.bar.target == "message":
            self._search_highlights(None)
            self.message_detail.set_search(self._search_pattern)
        else:
            self._search_messages(jump=True)
        self._show_search_count()

    def _search_highlights(self, pattern: re.Pattern[str] | None) -> None:
        self._search_matches = []
        self.message_list.set_search(pattern, ())
        self.message_detail.set_search(pattern)

    def _search_messages(self, *, jump: bool = False) -> None:
        """Find the pattern in the history; ``jump``: to the first match from the cursor on."""
        pattern = self._search_pattern
        listing = self.message_list
        matches = self._finder.find(listing.messages, pattern) if pattern is not None else []
        self._search_matches = matches
        listing.set_search(pattern, matches)
        self.message_detail.set_search(pattern)
        if jump and matches and listing.cursor not in matches:
            target = next_match(matches, listing.cursor)
            if target is not None:
                listing.move_cursor(target)
        self._show_search_count()

    def _show_search_count(self) -> None:
        bar = self.search_bar
        if self._search_pattern is None:
            bar.show_count("")
            return
        if bar.target == "message":
            detail = self.message_detail
            total, current = len(detail.hits), detail.current_hit
            where = f"in message {detail.index}" if detail.index is not None else ""
        else:
            matches = self._search_matches
            total, where = len(matches), "messages"
            cursor = self.message_list.cursor
            current = matches.index(cursor) if cursor in matches else None
        if not total:
            bar.show_count("no match")
        elif current is None:
            bar.show_count(f"{total} {where}".strip())
        else:
            bar.show_count(f"{current + 1} of {total} {where}".strip())

    @on(SearchBar.Step, "#search-bar")
    def _search_step(self, event: SearchBar.Step) -> None:
        if self._search_pattern is None:
            return
        if event.bar.target == "message":
            self.message_detail.step_hit(event.forward)
        else:
            target = next_match(
                self._search_matches, self.message_list.cursor, forward=event.forward
            )
            if target is not None:
                self.message_list.move_cursor(target)
        self._show_search_count()

    @on(SearchBar.Closed, "#search-bar")
    def _search_closed(self, event: SearchBar.Closed) -> None:
        if self._search_pattern is not None or self._search_matches:
            self._search_highlights(None)  # (none shown: no pane to draw again)
        self._search_pattern = None
        if self.current_view == "messages-view":
            pane = self.message_detail if event.bar.target == "message" else self.message_list
            pane.focus()

    # ---- copy (y), $EDITOR (v), export (x) ----------------------------------------------------

    def _copy_target(self) -> str | None:
        """What ``y`` copies in the view shown: "message", "answer", "tools", "result"."""
        view = self.current_view
        if view == "messages-view" and self.message_list.count:
            return "message"
        if view == "response-view" and self.paused is not None:
            return "answer"
        if view == "tools-view" and self.tools:
            return "tools"
        if view == "result-view" and self.outcome is not None:
            return "result"
        return None

    def copy_text(self, text: str, what: str) -> None:
        """Ask the app to copy ``text`` (it says how that went)."""
        self.post_message(CopyRequested(text, what))

    def selected_message(self) -> tuple[int | None, Mapping[str, Any]] | None:
        """The message ``y`` and the palette's copy commands act on: (index, message)."""
        target = self._copy_target()
        if target == "message":
            listing = self.message_list
            return listing.cursor, listing.messages[listing.cursor]
        if target == "answer" and self.paused is not None:
            return None, self.paused.message
        return None

    def action_copy(self) -> None:
        """Copy the selected message, the held answer, the tools or the result."""
        target = self._copy_target()
        chosen = self.selected_message()
        if chosen is not None:
            index, message = chosen
            what = (
                f"message {index} ({message.get('role') or '?'})"
                if index is not None
                else "the held answer"
            )
            self.copy_text(compact_json(dict(message), width=100), what)
        elif target == "tools":
            self.copy_text(json.dumps(self.tools, indent=2, ensure_ascii=False), "the tools")
        elif target == "result" and self.outcome is not None:
            entry = self._export_entry()
            data = entry.to_json() if entry is not None else {}
            for bulky in ("final_messages", "tools", "calls", "request"):
                data.pop(bulky, None)
            self.copy_text(json.dumps(data, indent=2, ensure_ascii=False), "the result")

    def copy_commands(self) -> list[tuple[str, str, str]]:
        """(name, text, what) of each finer copy the palette offers: the selected message's
        text and tool call arguments, and each tool's JSON Schema."""
        found: list[tuple[str, str, str]] = []
        chosen = self.selected_message()
        if chosen is not None:
            index, message = chosen
            which = f"message {index}" if index is not None else "the held answer"
            text = content_text(message.get("content"))
            if text:
                found.append((f"Copy the text of {which}", text, f"the text of {which}"))
            for number, call in enumerate(message.get("tool_calls") or (), 1):
                arguments, ok = call_arguments(call)
                shown = compact_json(arguments) if ok else str(arguments)
                name = f"tool call {number} ({call_name(call)})"
                found.append((f"Copy the arguments of {name}", shown, f"the arguments of {name}"))
        tools = self.tools or list(self.session.tools if self.session is not None else ())
        if not tools and self.outcome is not None:
            tools = list(self.outcome.tools)
        for tool in tools:
            function = tool_function(tool)
            name = str(function.get("name") or "?")
            schema = compact_json(function.get("parameters") or {})
            found.append(
                (f"Copy the JSON Schema of tool {name}", schema, f"the JSON Schema of {name}")
            )
        return found

    def _editor_target(self) -> str | None:
        """What ``v`` opens: "answer" (the held one), "tool_results" (those it replies to),
        "message" (read only), or None."""
        paused = self.paused
        view = self.current_view
        if view == "response-view" and paused is not None:
            return "answer"
        if view != "messages-view" or not self.message_list.count:
            return None
        listing = self.message_list
        message = listing.messages[listing.cursor]
        if paused is not None and listing.cursor == listing.count - 1:
            return "answer"  # the pending one: the held answer
        if paused is not None and message.get("role") == "tool":
            ids = {r.get("tool_call_id") for r in paused.tool_results}
            if message.get("tool_call_id") in ids:
                return "tool_results"
        return "message"

    def action_open_in_editor(self) -> None:
        """Open the held answer, its tool results or the selected message in ``$EDITOR``."""
        target = self._editor_target()
        if target == "answer":
            self._edit_answer(in_editor=True)
        elif target == "tool_results":
            self._edit_tool_results(in_editor=True)
        elif target == "message":
            listing = self.message_list
            self._read_in_editor(listing.cursor, listing.messages[listing.cursor])

    @work(group="editor", exclusive=True, exit_on_error=False, description="the editor")
    async def _read_in_editor(self, index: int, message: Mapping[str, Any]) -> None:
        """A message of the history in the editor: to read, search, copy (edits stay there)."""
        text = compact_json(dict(message), width=100)
        try:
            after = await edit_in_editor(self.app, text)
        except EditorError as exc:
            self.notify(str(exc), title="$EDITOR", severity="error", timeout=10)
            return
        if after != text:
            self.notify(
                f"Message {index} is history the agent has seen: edits to it are not applied. "
                "e and E (or v on them) edit the held answer and the tool results it replies to.",
                title="Not applied",
                severity="warning",
                timeout=10,
            )

    def _export_entry(self) -> JournalEntry | None:
        """The shown outcome as a journal entry (the one it came from, if known)."""
        outcome = self.outcome
        if outcome is None:
            return None
        if self.outcome_entry is not None:
            return self.outcome_entry
        from osmosis_workbench.engine.journal import JournalEntry

        row = self.follower.row_index if self.follower is not None else None
        ws = self.workspace
        ground_truth = None
        if row is not None and ws is not None:
            # IndexError: the dataset was read again without that row.
            with contextlib.suppress(IndexError):
                ground_truth = ws.row(row).ground_truth
        threshold = ws.config.pass_threshold if ws is not None else 1.0
        return JournalEntry(
            row=row if row is not None else 0,
            attempt=0,
            verdict=outcome.verdict(threshold),
            outcome=outcome,
            ground_truth=ground_truth,
        )

    def _export_run(self) -> RunInfo:
        from osmosis_workbench.engine.runs import RunInfo

        if self.outcome_run is not None:
            return self.outcome_run
        ws = self.workspace
        if ws is None:
            return RunInfo(name="workbench")
        config = ws.config
        return RunInfo(
            name="workbench",
            agent=config.module or config.url,
            model=ws.model_name,
            dataset=config.dataset,
            pass_threshold=config.pass_threshold,
        )

    def action_export(self, fmt: str) -> None:
        """Write the finished rollout to ``.osmosis/exports`` (``atif`` or ``json``)."""
        entry = self._export_entry()
        if entry is None:
            return
        self._write_export(entry, self._export_run(), fmt)

    @work(group="export", exit_on_error=False, description="export the rollout")
    async def _write_export(self, entry: JournalEntry, run: RunInfo, fmt: str) -> None:
        from osmosis_workbench.engine.export import write_rollout

        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", entry.outcome.rollout_id or f"row{entry.row}")
        path = EXPORT_DIR / f"{stem}.{'atif' if fmt == 'atif' else 'journal'}.json"
        what = "ATIF trajectory" if fmt == "atif" else "journal JSON"
        try:
            await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
            written = await asyncio.to_thread(write_rollout, entry, run, path, fmt)
        except (OSError, ValueError) as exc:
            self.notify(f"Could not write {path}: {exc}", title="Export", severity="error")
            return
        self.notify(f"Wrote the {what} of row {entry.row} to {written}", title="Exported")
