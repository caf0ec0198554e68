"""Live view of the rollouts a real trainer sends to the served agent, and pausing them.

``LiveRollouts`` is a ``server_core.hooks`` observer that keeps one ``LiveRollout`` per rollout
(state, turns, elapsed, reward, the history it reached) and a gate: a rollout marked with
``pause(rollout_id)`` stops at its next LLM response, before the agent sees it, until the user
releases, edits, continues or aborts it, exactly like the step debugger.

``LiveStepSession`` makes one such rollout a ``stepping.SteppedRollout``, so the debugger
screen steps a training rollout with the same keys as a dataset row.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from osmosis_workbench.engine.outcome import RolloutOutcome
from osmosis_workbench.engine.stepping import PausedAnswer
from osmosis_workbench.engine.trainer import LLMExchange
from server_core.agent import ChatResult
from server_core.errors import RolloutCancelled
from server_core.hooks import HookEvent, RolloutHooks
from server_core.protocol import CompletedRequest


class LiveState(StrEnum):
    """Where a served rollout is: running, held at the gate, or ended (three ways)."""

    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    ERROR = "error"
    CANCELLED = "cancelled"


_FINAL_STATES = frozenset({LiveState.COMPLETED, LiveState.ERROR, LiveState.CANCELLED})


@dataclass
class LiveRollout:
    """What is known of one rollout served to a real trainer."""

    rollout_id: str
    state: LiveState = LiveState.RUNNING
    turns: int = 0
    started: float = field(default_factory=time.time)
    finished: float | None = None
    reward: float | None = None
    error: str | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)
    #: The model's answer held at the gate, and what the debugger sees of it.
    pending: ChatResult | None = None
    held_answer: PausedAnswer | None = None
    _release: asyncio.Future[Any] | None = None
    #: The init request (api_key removed), as the server received it.
    request: dict[str, Any] = field(default_factory=dict)
    #: The completion the server sent, once finished (validated).
    completion: CompletedRequest | None = None
    #: Latency of the last LLM call, in milliseconds.
    last_latency_ms: float = 0.0

    @property
    def done(self) -> bool:
        """Whether the rollout has finished (completed, error or cancelled)."""
        return self.state in _FINAL_STATES

    @property
    def held(self) -> bool:
        """Whether an answer is held at the gate right now, waiting for a decision."""
        return self._release is not None and not self._release.done()

    @property
    def elapsed_s(self) -> float:
        """Seconds since the rollout started (until it finished)."""
        return (self.finished or time.time()) - self.started

    def outcome(self) -> RolloutOutcome:
        """How the rollout ended, from the completion the server sent (what the views show)."""
        # The completion is the server's word; the live record fills gaps (a rollout cut off
        # before its completion was seen).
        completion = self.completion
        metrics = completion.metrics if completion is not None else None
        return RolloutOutcome.build(
            completion,
            rollout_id=self.rollout_id,
            messages_so_far=self.messages,
            duration_ms=self.elapsed_s * 1000,
            tokens=metrics.prompt_tokens + metrics.response_tokens if metrics else 0,
            llm_calls=(metrics.num_llm_calls if metrics else 0) or self.turns,
            tools=self.tools,
            fallback_error=self.error,
            in_progress=not self.done,
        )


class LiveRollouts:
    """Observer + gate over a served agent's rollouts; install with ``attach(hooks)``."""

    def __init__(self, max_kept: int = 5000) -> None:
        self.rollouts: OrderedDict[str, LiveRollout] = OrderedDict()
        self.max_kept = max_kept
        self.pause_requested: set[str] = set()
        #: Rollouts the user let run to their end (``continue_``): not paused by ``pause_all``.
        self.let_run: set[str] = set()
        self._pause_all = False
        #: Called after every change with the rollout that changed (the UI refreshes here).
        self.on_change: Callable[[LiveRollout], None] | None = None
        # More listeners besides ``on_change`` (step sessions), so they never displace the UI's.
        self._listeners: list[Callable[[LiveRollout], None]] = []
        #: The server's own cancel (``rollouts.cancel``), for rollouts not held at the gate.
        self._cancel: Callable[[str, str], bool] | None = None

    def attach(
        self, hooks: RolloutHooks, cancel: Callable[[str, str], bool] | None = None
    ) -> Callable[[], None]:
        """Observe ``hooks`` and install the gate; returns a function that detaches.

        ``cancel(rollout_id, reason)``: the server's way to end a running rollout (its
        ``app.state.rollouts.cancel``), so ``cancel`` below need not wait for the gate.
        """
        remove = hooks.add_observer(self)
        hooks.set_gate(self.gate)
        self._cancel = cancel

        def detach() -> None:
            remove()
            hooks.set_gate(None)
            self._cancel = None

        return detach

    def add_listener(self, listener: Callable[[LiveRollout], None]) -> Callable[[], None]:
        """Also call ``listener`` after every change; returns a function that removes it."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def _changed(self, rollout: LiveRollout) -> None:
        if self.on_change:
            self.on_change(rollout)
        for listener in tuple(self._listeners):
            listener(rollout)

    def __call__(self, event: HookEvent) -> None:
        rid = event.rollout_id
        data = event.data
        if event.kind == "rollout_started":
            rollout = LiveRollout(rid, started=event.time)
            rollout.request = dict(data.get("request") or {})
            rollout.messages = list((data.get("request") or {}).get("messages") or [])
            rollout.tools = list(data.get("tools") or [])
            self.rollouts[rid] = rollout
            while len(self.rollouts) > self.max_kept:
                self.rollouts.popitem(last=False)
        known = self.rollouts.get(rid)
        if known is None:
            return
        rollout = known
        if event.kind == "llm_request":
            rollout.messages = list(data["body"].get("messages") or [])
        elif event.kind == "llm_response":
            rollout.turns = data.get("turn", rollout.turns + 1)
            rollout.last_latency_ms = float(data.get("latency_ms") or 0.0)
        elif event.kind == "rollout_finished":
            completion = _validated(data.get("completion"))
            rollout.completion = completion
            rollout.finished = event.time
            if completion is None:
                rollout.state = LiveState.ERROR
                rollout.error = "the server's completion body is not a valid one"
            elif completion.status == "COMPLETED":
                rollout.state = LiveState.COMPLETED
            else:
                cancelled = completion.extra_fields.get("error_category") == "cancelled"
                rollout.state = LiveState.CANCELLED if cancelled else LiveState.ERROR
                rollout.error = completion.error_message
            if completion is not None:
                rollout.reward = completion.reward
                rollout.messages = completion.final_messages or rollout.messages
            self.pause_requested.discard(rid)
            self.let_run.discard(rid)
        self._changed(rollout)

    # ---- the gate ---------------------------------------------------------------------------

    @property
    def pause_all(self) -> bool:
        """Whether every rollout pauses at its next LLM answer (except those let run)."""
        return self._pause_all

    @pause_all.setter
    def pause_all(self, on: bool) -> None:
        # Turned on, it means every rollout again, including those continued before.
        if on and not self._pause_all:
            self.let_run.clear()
        self._pause_all = on

    def pause(self, rollout_id: str) -> None:
        """Pause this rollout at its next LLM response."""
        self.let_run.discard(rollout_id)
        self.pause_requested.add(rollout_id)

    async def gate(self, rollout_id: str, body: dict, result: ChatResult) -> ChatResult | None:
        """The hooks gate: holds marked rollouts until released."""
        asked = rollout_id in self.pause_requested
        if not asked and (not self._pause_all or rollout_id in self.let_run):
            return None
        rollout = self.rollouts.get(rollout_id)
        if rollout is None:
            return None
        history = list(body.get("messages") or [])
        rollout.state = LiveState.PAUSED
        rollout.pending = result
        # One object per held answer: the debugger tells a new pause from the same one by it.
        rollout.held_answer = PausedAnswer(
            turn=rollout.turns,
            message=result.message,
            finish_reason=result.finish_reason,
            request_messages=history,
            usage=dict(result.usage or {}),
            latency_ms=rollout.last_latency_ms,
        )
        rollout.messages = [*history, result.message]
        rollout._release = asyncio.get_running_loop().create_future()
        self._changed(rollout)
        try:
            decision = await rollout._release
        finally:
            rollout._release = None
            rollout.pending = None
            rollout.held_answer = None
            if rollout.state == LiveState.PAUSED:
                rollout.state = LiveState.RUNNING
            self._changed(rollout)
        if isinstance(decision, BaseException):
            raise decision
        return decision

    def _resolve(self, rollout_id: str, value: Any) -> bool:
        rollout = self.rollouts.get(rollout_id)
        if rollout is None or rollout._release is None or rollout._release.done():
            return False
        rollout._release.set_result(value)
        return True

    def release(self, rollout_id: str, edited: dict[str, Any] | None = None) -> bool:
        """Let the held answer through, optionally replaced by an ``edited`` message."""
        rollout = self.rollouts.get(rollout_id)
        if edited is None or rollout is None or rollout.pending is None:
            return self._resolve(rollout_id, None)
        held, answer = rollout.pending, rollout.held_answer
        finish = answer.finish_reason_for(edited) if answer else held.finish_reason
        # A new result, not a mutated one: the SDK's result is a frozen dataclass.
        replacement = dataclasses.replace(held, message=edited, finish_reason=finish or "stop")
        return self._resolve(rollout_id, replacement)

    def continue_(self, rollout_id: str) -> bool:
        """Stop pausing this rollout (``pause_all`` included) and release it."""
        self.pause_requested.discard(rollout_id)
        rollout = self.rollouts.get(rollout_id)
        if rollout is not None and not rollout.done:
            self.let_run.add(rollout_id)
        return self._resolve(rollout_id, None)

    def abort(self, rollout_id: str, reason: str = "aborted by user") -> bool:
        """End the paused rollout as ERROR (category cancelled)."""
        self.pause_requested.discard(rollout_id)
        return self._resolve(rollout_id, RolloutCancelled(reason))

    def cancel(self, rollout_id: str, reason: str = "aborted by user") -> bool:
        """End the rollout as ERROR now, held at the gate or not (a running tool is cancelled
        with it); False when it cannot be (finished, or no server to ask)."""
        if self.abort(rollout_id, reason):
            return True
        rollout = self.rollouts.get(rollout_id)
        if rollout is None or rollout.done or self._cancel is None:
            return False
        return self._cancel(rollout_id, reason)


# ---- stepping one live rollout like a dataset row ----------------------------------------------


class LiveStepSession:
    """One rollout served to a real trainer, stepped as a ``SteppedRollout``.

    ``start()`` asks for a pause at the rollout's next LLM answer; then the debugger's keys call
    ``next`` (release, optionally with an edited answer), ``continue_`` (release and stop
    pausing) and ``abort`` (end the rollout as ERROR, category cancelled), as for a dataset row.
    """

    def __init__(self, live: LiveRollouts, rollout_id: str) -> None:
        self.live = live
        self.rollout_id = rollout_id
        self.label = f"live {rollout_id}"
        self._changed = asyncio.Event()
        self._abort_reason: str | None = None
        self._remove_listener: Callable[[], None] | None = None
        self._known = rollout_id in live.rollouts

    @property
    def rollout(self) -> LiveRollout | None:
        """The live record (``None`` before it started, or once it was dropped from the list)."""
        rollout = self.live.rollouts.get(self.rollout_id)
        if rollout is not None:
            self._known = True
        return rollout

    @property
    def request(self) -> dict[str, Any]:
        """The init request the trainer sent."""
        rollout = self.rollout
        return rollout.request if rollout is not None else {}

    async def start(self) -> None:
        """Pause the rollout at its next LLM answer (it is already running)."""
        # A listener, not on_change: that slot belongs to the UI's rollout list.
        if self._remove_listener is None:
            self._remove_listener = self.live.add_listener(self._on_change)
        if not self.finished:
            self.live.pause(self.rollout_id)

    def _on_change(self, rollout: LiveRollout) -> None:
        if rollout.rollout_id != self.rollout_id:
            return
        if self._abort_reason is not None and rollout.held:
            # Aborted while the model was answering: end it at this gate, as StepSession does.
            self.live.abort(self.rollout_id, self._abort_reason)
        if rollout.done and self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        self._changed.set()

    @property
    def paused(self) -> PausedAnswer | None:
        """The answer held at the gate right now, if any."""
        rollout = self.rollout
        if rollout is None or not rollout.held:
            return None
        return rollout.held_answer

    @property
    def finished(self) -> bool:
        """Whether the rollout has ended (or was dropped from the list after it was seen)."""
        rollout = self.rollout
        # An accepted rollout is announced when it leaves the server's queue: not finished yet.
        return self._known if rollout is None else rollout.done

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The history so far, including the paused answer."""
        rollout = self.rollout
        return list(rollout.messages) if rollout is not None else []

    @property
    def tools(self) -> list[dict[str, Any]]:
        """The tools the agent returned at init."""
        rollout = self.rollout
        return list(rollout.tools) if rollout is not None else []

    @property
    def outcome(self) -> RolloutOutcome | None:
        """How the rollout ended, once it has (built from the completion the server sent)."""
        rollout = self.rollout
        if rollout is None or not rollout.done:
            return None
        return rollout.outcome()

    #: Another trainer drives this rollout: its LLM calls and its model are not ours.
    cannot_regenerate = (
        "this rollout's model belongs to the trainer that sent it: only that trainer can ask "
        "it again (e edits the answer instead)"
    )

    @property
    def exchanges(self) -> Sequence[LLMExchange]:
        """No exchanges: the trainer that sent the rollout sees those, not the workbench."""
        return ()

    def edit_tool_results(self, contents: dict[str, str]) -> bool:
        """Not possible here: the model belongs to the trainer that sent the rollout."""
        return False

    async def wait(self) -> PausedAnswer | None:
        """Wait for the next pause; ``None`` when the rollout finished instead."""
        while True:
            paused = self.paused
            if paused is not None:
                return paused
            if self.finished:
                return None
            self._changed.clear()
            await self._changed.wait()

    async def finish(self) -> RolloutOutcome | None:
        """Wait for the end of the rollout and return its outcome."""
        while not self.finished:
            self._changed.clear()
            await self._changed.wait()
        return self.outcome

    def next(self, edited: dict[str, Any] | None = None) -> bool:
        """Release the held answer (``n``), or the edited message in its place."""
        if self.paused is None:
            return False
        return self.live.release(self.rollout_id, edited)

    def continue_(self) -> bool:
        """Stop pausing this rollout and release the held answer (``c``)."""
        return self.live.continue_(self.rollout_id)

    def abort(self, reason: str = "aborted by user") -> bool:
        """End the rollout as ERROR (``q``): now when the server can be asked to cancel it,
        else at its next LLM answer."""
        if self.live.cancel(self.rollout_id, reason):
            return True
        if not self.finished:
            self._abort_reason = reason
            self.live.pause(self.rollout_id)
        return False

    def let_go(self) -> None:
        """Nobody follows this rollout any more: it runs on unpaused, and we stop listening."""
        self.continue_()
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None


def _validated(body: Any) -> CompletedRequest | None:
    """The completion body a server sent, validated (``None`` if it is not a valid one)."""
    try:
        return CompletedRequest.model_validate(body)
    except ValidationError:
        return None
