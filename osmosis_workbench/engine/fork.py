"""Forks (time travel): run a rollout again from one of its LLM calls, the history before it fixed.

A fork of rollout P at LLM call k is a new rollout of P's request (the same dataset row, the
same init) sent through the real protocol to a rollout server, as any rollout. Its first k-1
chat calls are answered from P's record, exactly P's answers, so an agent that is
deterministic given the same answers and tool results rebuilds P's history up to call k; from
call k on the fork's own model answers: the same model, another one, or a hand-written answer
for call k and the model after it.

- ``ForkParent``: what a fork needs of P, its request and its calls: from a step session,
  running or finished (``from_session``), a journal entry (``from_entry``) or a run
  directory's journal (``from_run``).
- ``ForkModel``: the fork's model backend, the replayed prefix and then the chosen source. Each
  replayed call's request is checked against P's. A difference (the agent or a tool is not
  deterministic) stops the fork by default, with an error naming the call and the message:
  the fork promises P's history up to call k, and a prefix that silently differs would put the
  fork's first difference before the fork point and blame the new model for it. With
  ``on_divergence="continue"`` the difference is noted and P's answers are replayed anyway
  (for a timestamp or a random id the user knows to be harmless).
- ``ForkSession``: the fork as a ``StepSession``, so the debugger steps it with the same keys;
  it first pauses at call k. When it ends it makes its ``JournalEntry``, linked to P by a
  ``ForkOrigin``, and given a run directory appends it to the run's fork journal.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from osmosis_workbench.engine.compare import (
    MessageDifference,
    RolloutComparison,
    compare_rollouts,
    first_difference,
)
from osmosis_workbench.engine.config import EngineConfig
from osmosis_workbench.engine.journal import (
    FORKS_FILE,
    ForkOrigin,
    JournalEntry,
    append_entries,
    read_entry,
)
from osmosis_workbench.engine.models import (
    HumanBackend,
    ModelBackend,
    ModelError,
    ModelReply,
    build_completion,
)
from osmosis_workbench.engine.models.cassette import describe_divergence
from osmosis_workbench.engine.outcome import LLMCallStats, RolloutOutcome
from osmosis_workbench.engine.runs import RunInfo
from osmosis_workbench.engine.scoring import rescore_outcome
from osmosis_workbench.engine.session import StepSession
from osmosis_workbench.engine.trainer import LLMExchange, LocalTrainer, ServerTarget

#: What a fork does when the agent's request at a replayed call is not the parent's.
OnDivergence = Literal["stop", "continue"]

#: The model name a hand-written answer's completion carries.
HAND_WRITTEN = "hand-written"

#: Init fields that belong to one rollout attempt, not to its request: a fork gets its own.
_PER_ROLLOUT = ("rollout_id", "server_url", "api_key")

#: Replayed answers cost the fork nothing: no model was asked.
_NO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


class ForkError(ValueError):
    """A fork that cannot start (no such call, a call before it without an answer, no record)."""


@dataclass(frozen=True)
class RecordedCall:
    """One LLM call of the parent, as a fork replays it: what the agent sent and got back."""

    #: 1-based, in the order the trainer received the calls.
    number: int
    #: How many messages the agent sent: the parent's trajectory up to there.
    request_size: int
    #: The message the agent got (``None``: the call got no answer).
    message: dict[str, Any] | None
    finish_reason: str | None = None
    #: Why the call got no answer, when it failed.
    error: str | None = None
    #: The messages the agent sent, when known apart from the trajectory (a session's record).
    request_messages: list[dict[str, Any]] | None = field(default=None, repr=False)

    @classmethod
    def of_exchange(cls, exchange: LLMExchange) -> RecordedCall:
        """A call as the trainer saw it (while the rollout runs, or after)."""
        error = exchange.error
        if not exchange.message and error is None:
            error = "it has not been answered yet"
        return cls(
            number=exchange.turn,
            request_size=exchange.request_size,
            # A call that failed after the model answered (aborted at the gate) got nothing.
            message=None if error else exchange.message,
            finish_reason=exchange.finish_reason,
            error=error,
            # Shared, not copied: a request body never changes once it arrived, and copies
            # of every call's history would grow with the square of a long rollout's length.
            request_messages=exchange.request.get("messages") or [],
        )

    @classmethod
    def of_stats(
        cls, stats: LLMCallStats, trajectory: Sequence[dict[str, Any]], size: int
    ) -> RecordedCall:
        """A journaled call; ``size``: where its request ends in ``trajectory``."""
        if stats.error:
            return cls(stats.turn, size, None, None, stats.error)
        message = stats.answer
        if message is None and size < len(trajectory):
            message = trajectory[size]
        if message is None:
            return cls(stats.turn, size, None, None, "its answer is not in the journal")
        finish = stats.finish_reason
        if finish is None:  # journaled before finish reasons were kept
            finish = "tool_calls" if message.get("tool_calls") else "stop"
        return cls(stats.turn, size, message, finish)


@dataclass(frozen=True)
class ForkParent:
    """The rollout a fork starts from: its request, its LLM calls and where it came from."""

    rollout_id: str
    #: The init request's fields to send again (no rollout id, callback URL or key).
    request: dict[str, Any]
    calls: tuple[RecordedCall, ...]
    #: The parent's history when the fork was made (its final messages, once it ended).
    trajectory: list[dict[str, Any]]
    #: Its dataset row (-1: not from a dataset) and attempt.
    row: int
    attempt: int = 0
    ground_truth: Any = None
    #: How it ended, when it had when the fork was made.
    outcome: RolloutOutcome | None = None
    #: Its journal entry, when it comes from a journal.
    entry: JournalEntry | None = None
    #: The run it belongs to (its directory and what its ``run.json`` says), if any.
    run: RunInfo | None = None
    #: A short name (``row 3``).
    label: str = ""
    #: The step session it was taken from, still followed (its outcome may come later).
    session: StepSession | None = field(default=None, repr=False, compare=False)

    # ---- where a parent comes from --------------------------------------------------------

    @classmethod
    def from_session(cls, session: StepSession, *, attempt: int = 0) -> ForkParent:
        """The rollout of a step session, running (its calls so far) or finished."""
        request = session.run.request if session.run is not None else session.request
        metadata = request.get("metadata") or {}
        row = metadata.get("row_index")
        return cls(
            rollout_id=session.rollout_id,
            request=_request_fields(request),
            # Copied now: the session goes on (an answer held now may still be edited).
            calls=tuple(RecordedCall.of_exchange(x) for x in session.exchanges),
            trajectory=list(session.messages),
            row=row if isinstance(row, int) else -1,
            attempt=attempt,
            ground_truth=metadata.get("ground_truth"),
            outcome=session.outcome,
            label=session.label,
            session=session,
        )

    @classmethod
    def from_entry(cls, entry: JournalEntry, *, run: RunInfo | None = None) -> ForkParent:
        """A finished rollout as journaled (a run's rollout, or a fork of one)."""
        o = entry.outcome
        if not entry.request.get("messages"):
            raise ForkError(
                f"rollout {o.rollout_id} (row {entry.row}) has no request in its journal entry: "
                "a fork sends the same request again, so fork a rollout journaled with it"
            )
        sizes = _request_sizes(o.calls, o.final_messages)
        label = f"row {entry.row}" + (f" attempt {entry.attempt}" if entry.attempt else "")
        if entry.fork is not None:
            label += f" (fork at call {entry.fork.forked_at})"
        return cls(
            rollout_id=o.rollout_id,
            request=_request_fields(entry.request),
            calls=tuple(
                RecordedCall.of_stats(stats, o.final_messages, size)
                for stats, size in zip(o.calls, sizes, strict=True)
            ),
            trajectory=o.final_messages,
            row=entry.row,
            attempt=entry.attempt,
            ground_truth=entry.ground_truth,
            outcome=o,
            entry=entry,
            run=run,
            label=label,
        )

    @classmethod
    def from_run(cls, run_dir: str | Path, row: int, attempt: int = 0) -> ForkParent:
        """The journaled rollout of ``row`` (and ``attempt``) of a run directory; blocking."""
        entry = read_entry(run_dir, row, attempt)
        if entry is None:
            raise ForkError(
                f"run {run_dir} has no journaled rollout of row {row} attempt {attempt}: pick a "
                "row the run ran (its journal.jsonl lists them), or run it first"
            )
        return cls.from_entry(entry, run=RunInfo.read(run_dir))

    # ---- what a fork reads ----------------------------------------------------------------

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The parent's history now (a followed session's latest, else the recorded one)."""
        return self.session.messages if self.session is not None else self.trajectory

    def request_of(self, call: RecordedCall) -> list[dict[str, Any]]:
        """The messages the agent sent in ``call``."""
        if call.request_messages is not None:
            return call.request_messages
        return self.trajectory[: call.request_size]

    def check(self, at: int) -> None:
        """Raise ``ForkError`` unless a fork at LLM call ``at`` can replay every call before it."""
        name = f"{self.label or 'the rollout'} ({self.rollout_id})"
        n = len(self.calls)
        if n == 0:
            raise ForkError(f"cannot fork {name}: it made no LLM call, so there is none to fork at")
        if not 1 <= at <= n:
            calls = "1 LLM call: fork at call 1" if n == 1 else f"{n} LLM calls; pick 1 to {n}"
            raise ForkError(f"cannot fork {name} at LLM call {at}: it made {calls}")
        for call in self.calls[: at - 1]:
            if call.message is None:
                raise ForkError(
                    f"cannot fork {name} at LLM call {at}: call {call.number} got no answer "
                    f"({call.error}) and the calls before the fork point are replayed; fork at "
                    f"call {call.number} or earlier"
                )

    def journal_entry(self, pass_threshold: float = 1.0) -> JournalEntry | None:
        """The parent as a journal entry (``None`` while it runs): what a fork is compared with."""
        if self.entry is not None:
            return self.entry
        outcome = self.session.outcome if self.session is not None else self.outcome
        if outcome is None:
            return None
        return JournalEntry(
            row=self.row,
            attempt=self.attempt,
            verdict=outcome.verdict(pass_threshold),
            outcome=outcome,
            ground_truth=self.ground_truth,
            request=self.request,
        )


def checked_answer(answer: dict[str, Any] | str | None) -> dict[str, Any] | str | None:
    """A hand-written answer as given, if a model could have given it; else ``ForkError``.

    Text, or a message with ``content`` and/or ``tool_calls`` (each ``{"name", "arguments"}``
    or in OpenAI form), as answer scripts write them.
    """
    if answer is None or (isinstance(answer, str) and answer.strip()):
        return answer
    if isinstance(answer, dict) and (answer.get("content") or answer.get("tool_calls")):
        calls = answer.get("tool_calls") or []
        if isinstance(calls, list) and all(
            isinstance(c, dict) and ("name" in c or isinstance(c.get("function"), dict))
            for c in calls
        ):
            return answer
    raise ForkError(
        f"the hand-written answer {answer!r} is not one a model could give: write its text, "
        'or a message with "content" and/or "tool_calls", e.g. '
        '{"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}]}'
    )


def _request_fields(request: dict[str, Any]) -> dict[str, Any]:
    """The init request without what is one attempt's own."""
    return {k: v for k, v in request.items() if k not in _PER_ROLLOUT}


def _request_sizes(
    calls: Sequence[LLMCallStats], trajectory: Sequence[dict[str, Any]]
) -> list[int]:
    """Where each journaled call's request ends in the trajectory.

    Journals written before calls kept their ``request_size``: each answered call is taken
    to be answered by the trajectory's next assistant message (an append-only agent's
    history), and a failed call to have asked with the history up to there.
    """
    if all(call.request_size is not None for call in calls):
        return [int(call.request_size or 0) for call in calls]
    answers = iter([i for i, m in enumerate(trajectory) if m.get("role") == "assistant"])
    upcoming = next(answers, len(trajectory))
    sizes = []
    for call in calls:
        sizes.append(call.request_size if call.request_size is not None else upcoming)
        if not call.error:
            upcoming = next(answers, len(trajectory))
    return sizes


# ---- the fork's model --------------------------------------------------------------------------


class ForkModel:
    """A fork's model backend: the parent's answers before the fork point, then its own.

    Calls are numbered in the order they arrive, as the trainer numbers them (an answer the
    debugger has the model give again counts as a further call: that only happens from the
    fork point on, where every call goes to ``continuation``).
    """

    def __init__(
        self,
        parent: ForkParent,
        at: int,
        continuation: ModelBackend,
        *,
        answer: dict[str, Any] | str | None = None,
        on_divergence: OnDivergence = "stop",
        owns_continuation: bool = False,
    ) -> None:
        if on_divergence not in ("stop", "continue"):
            raise ValueError(f"on_divergence must be 'stop' or 'continue', not {on_divergence!r}")
        self.parent = parent
        self.at = at
        self.continuation = continuation
        self.answer = answer
        self.on_divergence = on_divergence
        self.owns_continuation = owns_continuation
        source = HAND_WRITTEN + f" then {continuation.name}" if answer else continuation.name
        self.name = f"fork of {parent.rollout_id} at call {at}: {source}"
        self.calls = 0
        #: Where the fork's requests left the parent's before the fork point, one line each.
        self.divergences: list[str] = []

    async def complete(self, body: dict[str, Any]) -> ModelReply:
        """The parent's answer (a call before the fork point), else the fork's own."""
        self.calls += 1
        number = self.calls
        if number < self.at:
            return self._replay(self.parent.calls[number - 1], body)
        if number == self.at and self.answer is not None:
            return ModelReply(build_completion(self.answer, body, model=HAND_WRITTEN), 0.0)
        try:
            return await self.continuation.complete(body)
        except ModelError as exc:
            if exc.kind != "replay_miss" or self.answer is None:
                raise
            # The cassette's own advice (re-record) misleads here: the history is new by design.
            raise ModelError(
                "replay_miss",
                f"{exc}. After the hand-written answer at call {self.at} the history is one "
                "no model answered before, and a replay answers only the histories it "
                "recorded: fork with a model that answers anything (a live one, script:FILE "
                "or human)",
                systemic=exc.systemic,
            ) from None

    def _replay(self, call: RecordedCall, body: dict[str, Any]) -> ModelReply:
        assert call.message is not None, "ForkParent.check lets only answered calls be replayed"
        got = body.get("messages") or []
        recorded = self.parent.request_of(call)
        if got != recorded:
            problem = describe_divergence(
                {"messages": got, "params": {}}, [{"messages": recorded, "params": {}}]
            )
            self.divergences.append(f"call {call.number}: {problem}")
            if self.on_divergence == "stop":
                raise ModelError(
                    "replay_miss",
                    f"the fork of {self.parent.rollout_id} at LLM call {self.at} stopped: the "
                    f"agent's request at replayed call {call.number} is not the parent's "
                    f"({problem}). The agent or its tools are not deterministic, so the "
                    "history before the fork point cannot be the parent's; fork at call "
                    f"{call.number} or earlier, or fork with on_divergence='continue' "
                    "(--on-divergence continue) to replay the parent's answers anyway",
                )
        completion = {
            "choices": [
                {"index": 0, "message": dict(call.message), "finish_reason": call.finish_reason}
            ],
            "usage": dict(_NO_USAGE),
        }
        model = f"replay of {self.parent.rollout_id}"
        return ModelReply(build_completion(completion, body, model=model), cost_usd=0.0)

    async def aclose(self) -> None:
        """Close the continuation model when the fork built it (not a shared one)."""
        if self.owns_continuation:
            await self.continuation.aclose()


# ---- the fork as a stepped rollout -------------------------------------------------------------


class ForkSession(StepSession):
    """A fork of a rollout at one of its LLM calls: a step session (a ``SteppedRollout``).

    Made with ``Workspace.fork`` (the debugger) or directly from a built engine's trainer and
    target. It pauses first at call ``at``; the calls before it pass unpaused. Its outcome is
    a normal ``RolloutOutcome``; ``entry`` is its journal entry once it ended.
    """

    def __init__(
        self,
        trainer: LocalTrainer,
        target: ServerTarget,
        parent: ForkParent,
        at: int,
        *,
        model: ModelBackend,
        owns_model: bool = False,
        answer: dict[str, Any] | str | None = None,
        on_divergence: OnDivergence = "stop",
        stepping: bool = True,
        timeout_s: float = 600.0,
        label: str | None = None,
        on_exchange: Callable[[LLMExchange], None] | None = None,
        cannot_regenerate: str | None = None,
        human: HumanBackend | None = None,
        journal_dir: str | Path | None = None,
        reward_fn: Callable[..., Any] | None = None,
        pass_threshold: float = 1.0,
    ) -> None:
        parent.check(at)
        self.parent = parent
        self.at = at
        self.model = ForkModel(
            parent,
            at,
            model,
            answer=checked_answer(answer),
            on_divergence=on_divergence,
            owns_continuation=owns_model,
        )
        request = {
            **parent.request,
            # The parent's id, then the fork point and a nonce: forks of one call never clash.
            "rollout_id": f"{parent.rollout_id}-fork{at}-{uuid.uuid4().hex[:6]}",
        }
        super().__init__(
            trainer,
            target,
            request,
            timeout_s=timeout_s,
            stepping=stepping,
            label=label or f"{parent.label or parent.rollout_id} · fork at call {at}",
            on_exchange=on_exchange,
            cannot_regenerate=cannot_regenerate,
            human=human,
            backend=self.model,
            pause_from=at,
        )
        #: The run directory whose fork journal gets the entry (``None``: not journaled).
        self.journal_dir = Path(journal_dir) if journal_dir is not None else None
        self.reward_fn = reward_fn
        self.pass_threshold = pass_threshold
        #: The fork's journal entry, once it ended.
        self.entry: JournalEntry | None = None

    async def _run(self) -> RolloutOutcome:
        try:
            outcome = await super()._run()
        finally:
            await self.model.aclose()
        if self.reward_fn is not None and outcome.ok:
            # Scored as the parent's run scores its rollouts, so the two compare.
            metadata = self.request.get("metadata") or {}
            outcome = await rescore_outcome(
                outcome, self.reward_fn, self.parent.ground_truth, metadata
            )
        self.entry = JournalEntry(
            row=self.parent.row,
            attempt=self.parent.attempt,
            verdict=outcome.verdict(self.pass_threshold),
            outcome=outcome,
            ground_truth=self.parent.ground_truth,
            request=self.run.request if self.run is not None else self.request,
            fork=ForkOrigin(self.parent.rollout_id, self.at, tuple(self.divergences)),
        )
        if self.journal_dir is not None:
            await asyncio.to_thread(append_entries, self.journal_dir / FORKS_FILE, [self.entry])
        return outcome

    @property
    def divergences(self) -> list[str]:
        """Where the fork's history left the parent's before the fork point, one line each."""
        found = list(self.model.divergences)
        run = self.run
        if self.finished and run is not None and not run.aborted and self.model.calls < self.at:
            found.append(
                f"the agent ended after {self.model.calls} LLM calls, before the fork point "
                f"(call {self.at})"
            )
        return found

    def first_difference(self) -> MessageDifference | None:
        """Where the fork's history parts from its parent's so far (``None``: not yet)."""
        return first_difference(self.parent.messages, self.messages)

    def compare(self) -> RolloutComparison | None:
        """The fork against its parent, as runs are compared (``None`` until both ended)."""
        parent = self.parent.journal_entry(self.pass_threshold)
        if parent is None or self.entry is None:
            return None
        return compare_rollouts(parent, self.entry)


def fork_options(run: RunInfo | None) -> dict[str, Any]:
    """The scoring a fork of a run's rollout gets: the run's reward function and pass bar."""
    if run is None:
        return {}
    return {
        "reward_fn": EngineConfig(reward=run.reward).load_reward_fn(),
        "pass_threshold": run.pass_threshold,
        "journal_dir": run.run_dir,
    }
