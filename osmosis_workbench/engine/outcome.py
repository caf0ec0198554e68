"""How a rollout ended: one typed outcome, built in one place from the completion it received.

The local trainer (a rollout it drove) and the live view (a rollout a real trainer drove) both
build a ``RolloutOutcome`` with ``RolloutOutcome.build`` from the validated completion body
(``server_core.protocol.CompletedRequest``) plus what only the driver knows (time, tokens, LLM
calls, violations, why it was cut short). The journal, the summary, the screens and ``rescore``
read that one shape. ``Verdict`` is what a scored outcome counts as.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from osmosis_workbench.engine.models import ModelError
    from osmosis_workbench.engine.trainer import InitRefused
    from server_core.protocol import CompletedRequest


class OutcomeStatus(StrEnum):
    """How a rollout ended, in the protocol's words."""

    COMPLETED = "COMPLETED"
    ERROR = "ERROR"


class ErrorCategory(StrEnum):
    """Why a rollout ended in ERROR: the protocol's categories and the workbench's own."""

    # Sent by rollout servers (PROTOCOL.md section 5).
    TIMEOUT = "timeout"
    LLM_ERROR = "llm_error"
    AGENT_ERROR = "agent_error"
    TOOL_ERROR = "tool_error"
    CANCELLED = "cancelled"
    PROTOCOL_ERROR = "protocol_error"
    # The workbench's: the server refused the init, the reward function raised.
    INIT_FAILED = "init_failed"
    REWARD_ERROR = "reward_error"


class Verdict(StrEnum):
    """What a scored rollout counts as: passed, failed (completed below the bar), or error."""

    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class LLMCallStats:
    """One LLM call of a rollout, as journaled: its numbers, and where it sits in the trajectory.

    The position (``request_size``) and ``finish_reason`` let a fork replay the call from the
    journal: the agent sent the trajectory's first ``request_size`` messages and got the one
    at that index back. ``answer`` holds that message only when the trajectory does not (the
    agent changed it before keeping it), so the journal does not store every answer twice.
    """

    turn: int
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: float
    cost_usd: float | None = None
    error: str | None = None
    #: How many messages the agent sent in this call (``None``: journaled before this was kept).
    request_size: int | None = None
    finish_reason: str | None = None
    #: The message the agent got, when the trajectory does not hold it at ``request_size``.
    answer: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The journal form (``error`` and ``answer`` only when there is one)."""
        body: dict[str, Any] = {
            "turn": self.turn,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "latency_ms": round(self.latency_ms, 3),
            "cost_usd": self.cost_usd,
            "request_size": self.request_size,
            "finish_reason": self.finish_reason,
        }
        if self.error:
            body["error"] = self.error
        if self.answer is not None:
            body["answer"] = self.answer
        return body

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LLMCallStats:
        """Read the journal form back."""
        size = data.get("request_size")
        return cls(
            turn=int(data.get("turn") or 0),
            prompt_tokens=data.get("prompt_tokens"),
            completion_tokens=data.get("completion_tokens"),
            latency_ms=float(data.get("latency_ms") or 0.0),
            cost_usd=data.get("cost_usd"),
            error=data.get("error"),
            request_size=int(size) if size is not None else None,
            finish_reason=data.get("finish_reason"),
            answer=data.get("answer"),
        )


@dataclass(frozen=True)
class RolloutOutcome:
    """The end of one rollout as its driver saw it."""

    rollout_id: str
    status: OutcomeStatus
    final_messages: list[dict[str, Any]]
    finish_reason: str | None = None
    error: str | None = None
    error_category: str | None = None
    traceback: str | None = None
    reward: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    duration_ms: float = 0.0
    tokens: int = 0
    cost_usd: float | None = None
    llm_calls: int = 0
    tools: list[dict[str, Any]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    #: Per LLM call: turn, prompt/completion tokens, latency and cost (when known).
    calls: list[LLMCallStats] = field(default_factory=list)
    #: Of ``duration_ms``, the time its answers were held paused for the user (debugger).
    paused_ms: float = 0.0
    #: The model backend's error that ended the rollout, if any (systemic ones stop batches).
    #: Known only while the run lives: never journaled.
    model_error: ModelError | None = field(default=None, compare=False)
    #: Why the server refused the init, when it did (``busy`` ones may be retried elsewhere).
    init_error: InitRefused | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        """Whether the rollout completed (reward thresholds are the batch's business)."""
        return self.status is OutcomeStatus.COMPLETED

    @property
    def working_ms(self) -> float:
        """How long the rollout took, without the time it was held paused for the user."""
        return max(0.0, self.duration_ms - self.paused_ms)

    def metrics_without_pauses(self) -> dict[str, Any]:
        """The server's metrics with the time held paused taken out of its latencies.

        The server's clock ran on while the trainer held an answer: to it, each pause was a
        slow LLM call inside a slow rollout.
        """
        if not self.paused_ms:
            return dict(self.metrics)
        metrics = dict(self.metrics)
        for name in ("llm_latency_ms", "total_latency_ms"):
            value = metrics.get(name)
            if isinstance(value, int | float):
                metrics[name] = max(0.0, value - self.paused_ms)
        return metrics

    @property
    def rollout_completed(self) -> bool:
        """Whether the agent finished its trajectory (even if the reward function then failed)."""
        return self.ok or self.error_category == ErrorCategory.REWARD_ERROR

    def verdict(self, pass_threshold: float) -> Verdict:
        """PASS when completed with no reward or one at ``pass_threshold`` or more."""
        if not self.ok:
            return Verdict.ERROR
        if self.reward is None or self.reward >= pass_threshold:
            return Verdict.PASS
        return Verdict.FAIL

    def with_reward(self, reward: float) -> RolloutOutcome:
        """This outcome scored with ``reward`` (a completed trajectory; clears a reward error)."""
        return dataclasses.replace(
            self, status=OutcomeStatus.COMPLETED, reward=reward, error=None, error_category=None
        )

    def with_reward_error(self, message: str) -> RolloutOutcome:
        """This outcome when the reward function failed on it: ERROR, category reward_error."""
        return dataclasses.replace(
            self,
            status=OutcomeStatus.ERROR,
            reward=None,
            error=message,
            error_category=ErrorCategory.REWARD_ERROR,
        )

    @classmethod
    def build(
        cls,
        completion: CompletedRequest | None,
        *,
        rollout_id: str,
        messages_so_far: Sequence[dict[str, Any]],
        duration_ms: float,
        paused_ms: float = 0.0,
        tokens: int,
        llm_calls: int,
        tools: Sequence[dict[str, Any]] = (),
        violations: Sequence[str] = (),
        calls: Sequence[LLMCallStats] = (),
        cost_usd: float | None = None,
        fallback_error: str | None = None,
        model_error: ModelError | None = None,
        init_error: InitRefused | None = None,
        aborted: str | None = None,
        in_progress: bool = False,
    ) -> RolloutOutcome:
        """The outcome of a rollout from the completion it sent (``None``: none arrived).

        The completion is the server's word on how the rollout ended; the driver's own
        knowledge wins where the server could not know better: the init was refused, no
        completion (or a malformed one, ``fallback_error``) arrived, the model failed, the
        user aborted it. ``in_progress``: the rollout has not ended; no error is made up.
        """
        ok = completion is not None and completion.status == OutcomeStatus.COMPLETED
        extra = completion.extra_fields if completion is not None else {}
        error = completion.error_message if completion is not None else None
        category = extra.get("error_category")
        if init_error is not None:
            error, category = init_error.detail, ErrorCategory.INIT_FAILED
        elif completion is None and not in_progress:
            error = fallback_error or "no completion received"
            category = ErrorCategory.PROTOCOL_ERROR
        if model_error is not None and not ok:
            error, category = str(model_error), ErrorCategory.LLM_ERROR
        if aborted:
            ok, error, category = False, aborted, ErrorCategory.CANCELLED
            # Whatever the agent managed to send before the cancel reached it, the rollout
            # did not complete: no reward, no finish reason, as for any cancelled rollout.
            completion = completion and completion.model_copy(
                update={"reward": None, "finish_reason": None}
            )
        return cls(
            rollout_id=rollout_id,
            status=OutcomeStatus.COMPLETED if ok else OutcomeStatus.ERROR,
            final_messages=(
                completion.final_messages
                if completion is not None and completion.final_messages
                else list(messages_so_far)
            ),
            finish_reason=completion.finish_reason if completion is not None else None,
            error=error,
            error_category=None if ok else category,
            traceback=extra.get("traceback"),
            reward=completion.reward if completion is not None else None,
            metrics=(
                completion.metrics.model_dump()
                if completion is not None and completion.metrics is not None
                else {}
            ),
            duration_ms=duration_ms,
            paused_ms=paused_ms,
            tokens=tokens,
            cost_usd=cost_usd,
            llm_calls=llm_calls,
            tools=list(tools),
            violations=list(violations),
            calls=list(calls),
            model_error=model_error,
            init_error=init_error,
        )
