"""The fork dialog (``F`` in the debugger): which LLM call to fork at, and who answers it.

A fork runs the rollout again with its LLM calls before call K answered from the parent's
record; call K on is answered by the same model, another one (the palette's model choices, or
a typed ``--model`` spec), or by an answer the developer writes (the debugger then opens the
answer editor). The dialog checks K against the parent (``check``) before it closes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Checkbox, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from osmosis_workbench.tui.widgets.key_bar import KeyBar

#: The option ids of the two sources that are not a model spec.
SAME_MODEL = "same"
HAND_WRITTEN = "answer"
_MODEL_PREFIX = "model:"


@dataclass(frozen=True)
class ForkChoice:
    """What the dialog was closed with: the call, and who answers it."""

    #: The LLM call (1-based) the fork answers anew.
    at: int
    #: A ``--model`` spec from call ``at`` on (``None``: the parent's model).
    model: str | None = None
    #: The developer writes call ``at``'s answer (the model answers after it).
    hand_written: bool = False
    #: A replayed call whose request differs from the parent's: "stop" the fork (it names
    #: the call and the message), or "continue" and replay the parent's answer anyway.
    on_divergence: Literal["stop", "continue"] = "stop"


class ForkDialog(ModalScreen[ForkChoice | None]):
    """Asks for the call K to fork at and the answer's source; dismisses with a ``ForkChoice``."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="fork.cancel"),
    ]

    def __init__(
        self,
        *,
        parent_label: str,
        calls: int,
        at: int,
        same_model: str,
        models: Sequence[tuple[str, str]] = (),
        check: Callable[[int], str | None] | None = None,
    ) -> None:
        super().__init__()
        self.parent_label = parent_label
        self.calls = calls
        self.at = at
        self.same_model = same_model
        self.models = [(spec, why) for spec, why in models if spec != same_model]
        #: Why a fork at call K cannot be made (``None``: it can).
        self.check = check

    def compose(self) -> ComposeResult:
        # Scrolls when the terminal is too short for it (80x24 fits it whole).
        with VerticalScroll(id="fork-dialog", classes="dialog"):
            yield Label(f"Fork {self.parent_label}", classes="dialog-title")
            yield Static(
                "The rollout runs again through the protocol: its LLM calls before call K get "
                "this rollout's answers (its history up to there stays as it is), call K on "
                "is answered by what you pick. enter: fork · tab: next field (space ticks a box) "
                "· esc: cancel",
                classes="dialog-help",
            )
            with Horizontal(id="fork-call-row"):
                yield Label(f"Fork at LLM call (1-{self.calls}): ")
                yield Input(str(self.at), type="integer", id="fork-call", compact=True)
            options = [
                Option(Text.assemble("Same model ", (self.same_model, "bold")), id=SAME_MODEL),
                Option("Hand-written answer for call K (the same model after it)", id=HAND_WRITTEN),
            ]
            options += [
                Option(
                    Text.assemble("Model ", (spec, "bold"), (f"  {why}", "dim")),
                    id=_MODEL_PREFIX + spec,
                )
                for spec, why in self.models
            ]
            yield OptionList(*options, id="fork-source")
            yield Checkbox(
                "Replay on past a call that differs from the parent's",
                id="fork-continue",
                compact=True,
                tooltip="An agent whose requests carry a timestamp or a random id never repeats "
                "them: the fork would stop at the first one. Ticked, the difference is noted "
                "and the parent's answers are replayed anyway.",
            )
            yield Input(
                placeholder="or type a --model spec (openai/NAME, script:FILE, human), enter",
                id="fork-model",
                compact=True,
            )
            yield Static("", id="fork-error")
        yield KeyBar()

    @property
    def call_input(self) -> Input:
        """Where K is typed."""
        return self.query_one("#fork-call", Input)

    @property
    def sources(self) -> OptionList:
        """Who answers call K."""
        return self.query_one("#fork-source", OptionList)

    def on_mount(self) -> None:
        self.sources.highlighted = 0
        self.sources.focus()

    def _show_error(self, text: str) -> None:
        error = self.query_one("#fork-error", Static)
        error.update(text)
        error.add_class("-shown")

    def _call(self) -> int | None:
        """K as typed and checked, or ``None`` with the reason shown."""
        try:
            at = int(self.call_input.value)
        except ValueError:
            self._show_error(f"Type the LLM call to fork at: a number from 1 to {self.calls}.")
            self.call_input.focus()
            return None
        problem = self.check(at) if self.check is not None else None
        if problem:
            self._show_error(problem)
            self.call_input.focus()
            return None
        return at

    def _choose(self, option_id: str | None, typed: str = "") -> None:
        at = self._call()
        if at is None:
            return
        drift: Literal["stop", "continue"] = (
            "continue" if self.query_one("#fork-continue", Checkbox).value else "stop"
        )
        if typed:
            self.dismiss(ForkChoice(at, model=typed, on_divergence=drift))
        elif option_id == HAND_WRITTEN:
            self.dismiss(ForkChoice(at, hand_written=True, on_divergence=drift))
        elif option_id and option_id.startswith(_MODEL_PREFIX):
            model = option_id.removeprefix(_MODEL_PREFIX)
            self.dismiss(ForkChoice(at, model=model, on_divergence=drift))
        else:
            self.dismiss(ForkChoice(at, on_divergence=drift))

    @on(OptionList.OptionSelected, "#fork-source")
    def _source_chosen(self, event: OptionList.OptionSelected) -> None:
        self._choose(event.option.id)

    @on(Input.Submitted, "#fork-call")
    def _call_submitted(self, _event: Input.Submitted) -> None:
        highlighted = self.sources.highlighted
        option = self.sources.get_option_at_index(highlighted or 0)
        self._choose(option.id)

    @on(Input.Submitted, "#fork-model")
    def _model_typed(self, event: Input.Submitted) -> None:
        spec = event.value.strip()
        if not spec:
            self._show_error("Type a --model spec, or pick one in the list.")
            return
        self._choose(None, spec)

    def action_cancel(self) -> None:
        """Fork nothing."""
        self.dismiss(None)
