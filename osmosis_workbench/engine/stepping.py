"""Stepping one rollout: the interface the step debugger drives, and the paused answer it shows.

Two gates hold a model answer before the agent sees it: the local trainer's chat endpoint
(``session.StepSession``, a dataset row the workbench runs) and the served agent's hooks
(``live.LiveStepSession``, a rollout a real trainer sent). Both implement ``SteppedRollout``;
the debugger knows only this interface, so the same keys step either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

if TYPE_CHECKING:
    from osmosis_workbench.engine.models import AnswerRequest
    from osmosis_workbench.engine.outcome import RolloutOutcome
    from osmosis_workbench.engine.trainer import LLMExchange


@dataclass(frozen=True, eq=False)
class PausedAnswer:
    """A model answer held at a gate: the rollout waits until it is released.

    A session hands out one object per held answer (compare with ``is``): a new object means
    the rollout moved on to another answer.
    """

    turn: int
    message: dict[str, Any]
    finish_reason: str | None
    #: The history the model answered (the edited one, when the user changed a tool result).
    request_messages: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    latency_ms: float | None = None
    #: Whether the user edited this answer before.
    replaced: bool = False

    @property
    def tool_results(self) -> list[Mapping[str, Any]]:
        """The tool messages this answer replies to (those at the end of its history)."""
        results: list[Mapping[str, Any]] = []
        for message in reversed(self.request_messages):
            if message.get("role") != "tool":
                break
            results.append(message)
        return results[::-1]

    def finish_reason_for(self, edited: dict[str, Any]) -> str | None:
        """The finish reason an edited answer gets: tool calls, a final answer, or as it was."""
        if edited.get("tool_calls"):
            return "tool_calls"
        if self.finish_reason == "tool_calls":
            return "stop"  # the tool calls were edited away: a final answer now
        return self.finish_reason


#: Where a stepped rollout stops: an answer held at a gate, or an LLM call waiting for the
#: developer to write the answer (``--model human``).
Stop: TypeAlias = "PausedAnswer | AnswerRequest"


class SteppedRollout(Protocol):
    """One rollout the debugger steps through, whichever gate holds its answers."""

    #: A short name for the rollout (``row 3``, ``live <id>``).
    label: str

    @property
    def paused(self) -> PausedAnswer | None:
        """The answer held right now, if any."""
        ...

    @property
    def finished(self) -> bool:
        """Whether the rollout has ended."""
        ...

    @property
    def outcome(self) -> RolloutOutcome | None:
        """How the rollout ended, once it has (and while its result is known)."""
        ...

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The history so far, the held answer included."""
        ...

    @property
    def tools(self) -> list[dict[str, Any]]:
        """The tools the agent returned at init (empty until known)."""
        ...

    @property
    def cannot_regenerate(self) -> str | None:
        """Why ``edit_tool_results`` cannot have the model answer again, with what would
        (``None``: it can: our trainer holds the call and the model answers new input)."""
        ...

    @property
    def exchanges(self) -> Sequence[LLMExchange]:
        """The LLM calls so far, as the trainer saw them (empty when another trainer drives)."""
        ...

    async def start(self) -> None:
        """Start following the rollout (and start it, if it is ours); a second call does nothing."""
        ...

    async def wait(self) -> Stop | None:
        """Wait for the next stop (a held answer, a call for the developer to answer);
        ``None`` when the rollout finished instead."""
        ...

    async def finish(self) -> RolloutOutcome | None:
        """Wait for the end of the rollout and return its outcome."""
        ...

    def next(self, edited: dict[str, Any] | None = None) -> bool:
        """Release the held answer (``n``), or ``edited`` (a message) in its place."""
        ...

    def continue_(self) -> bool:
        """Release the held answer and stop pausing (``c``)."""
        ...

    def abort(self, reason: str = "aborted by user") -> bool:
        """End the rollout as ERROR (``q``); if nothing is held, at its next answer."""
        ...

    def edit_tool_results(self, contents: dict[str, str]) -> bool:
        """Ask the model again with edited tool results (``tool_call_id -> content``).

        False when nothing is held or the model cannot be asked (``cannot_regenerate``).
        """
        ...

    def let_go(self) -> None:
        """Stop following: the held answer is released and the rollout runs on unpaused."""
        ...
