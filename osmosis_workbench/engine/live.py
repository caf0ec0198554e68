"""Live view of the rollouts a real trainer sends to the served agent, and pausing them.

``LiveRollouts`` is a ``server_core.hooks`` observer that keeps one ``LiveRollout`` per rollout
(state, turns, elapsed, reward, the history it reached) and a gate: a rollout marked with
``pause(rollout_id)`` stops at its next LLM response, before the agent sees it, until the user
releases, edits, continues or aborts it, exactly like the step debugger.

``LiveStepSession`` gives one such rollout the interface of ``session.StepSession`` (``wait``,
``paused``, ``next``, ``continue_``, ``abort``, ``messages``, ``outcome``...), so the debugger
screen steps a training rollout with the same keys as a dataset row.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from osmosis_workbench.engine.trainer import LLMExchange, RolloutOutcome
from server_core.agent import ChatResult
from server_core.errors import RolloutCancelled
from server_core.hooks import HookEvent, RolloutHooks

_FINAL_STATES = frozenset({"completed", "error", "cancelled"})


@dataclass
class LiveRollout:
    """What is known of one rollout served to a real trainer."""

    rollout_id: str
    state: str = "running"  # running | paused | completed | error | cancelled
    turns: int = 0
    started: float = field(default_factory=time.time)
    finished: float | None = None
    reward: float | None = None
    error: str | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)
    pending: ChatResult | None = None
    _release: asyncio.Future | None = None
    #: The init request (api_key removed), as the server received it.
    request: dict[str, Any] = field(default_factory=dict)
    #: The completion body the server sent, once finished.
    completion: dict[str, Any] | None = None
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


class LiveRollouts:
    """Observer + gate over a served agent's rollouts; install with ``attach(hooks)``."""

    def __init__(self, max_kept: int = 5000) -> None:
        self.rollouts: OrderedDict[str, LiveRollout] = OrderedDict()
        self.max_kept = max_kept
        self.pause_requested: set[str] = set()
        self.pause_all = False
        #: Called after every change with the rollout that changed (the UI refreshes here).
        self.on_change: Callable[[LiveRollout], None] | None = None
        # More listeners besides ``on_change`` (step sessions), so they never displace the UI's.
        self._listeners: list[Callable[[LiveRollout], None]] = []

    def attach(self, hooks: RolloutHooks) -> Callable[[], None]:
        """Observe ``hooks`` and install the gate; returns a function that detaches."""
        remove = hooks.add_observer(self)
        hooks.set_gate(self.gate)

        def detach() -> None:
            remove()
            hooks.set_gate(None)

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
        rollout = self.rollouts.get(rid)
        if rollout is None:
            return
        if event.kind == "llm_request":
            rollout.messages = list(data["body"].get("messages") or [])
        elif event.kind == "llm_response":
            rollout.turns = data.get("turn", rollout.turns + 1)
            rollout.last_latency_ms = float(data.get("latency_ms") or 0.0)
        elif event.kind == "rollout_finished":
            completion = data.get("completion") or {}
            rollout.completion = completion
            rollout.finished = event.time
            rollout.reward = completion.get("reward")
            rollout.messages = completion.get("final_messages") or rollout.messages
            category = (completion.get("extra_fields") or {}).get("error_category")
            if completion.get("status") == "COMPLETED":
                rollout.state = "completed"
            else:
                rollout.state = "cancelled" if category == "cancelled" else "error"
                rollout.error = completion.get("error_message")
            self.pause_requested.discard(rid)
        self._changed(rollout)

    # ---- the gate ---------------------------------------------------------------------------

    def pause(self, rollout_id: str) -> None:
        """Pause this rollout at its next LLM response."""
        self.pause_requested.add(rollout_id)

    async def gate(self, rollout_id: str, body: dict, result: ChatResult) -> ChatResult | None:
        """The hooks gate: holds marked rollouts until released."""
        if not (self.pause_all or rollout_id in self.pause_requested):
            return None
        rollout = self.rollouts.get(rollout_id)
        if rollout is None:
            return None
        rollout.state = "paused"
        rollout.pending = result
        rollout.messages = list(body.get("messages") or []) + [result.message]
        rollout._release = asyncio.get_running_loop().create_future()
        self._changed(rollout)
        try:
            decision = await rollout._release
        finally:
            rollout._release = None
            rollout.pending = None
            if rollout.state == "paused":
                rollout.state = "running"
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

    def release(
        self,
        rollout_id: str,
        message: dict[str, Any] | None = None,
        *,
        finish_reason: str | None = None,
    ) -> bool:
        """Let the paused answer through, optionally replaced by an edited ``message``."""
        replacement = None
        rollout = self.rollouts.get(rollout_id)
        if message is not None and rollout is not None and rollout.pending is not None:
            old = rollout.pending
            replacement = dataclasses.replace(
                old, message=message, finish_reason=finish_reason or old.finish_reason
            )
        return self._resolve(rollout_id, replacement)

    def continue_(self, rollout_id: str) -> bool:
        """Stop pausing this rollout and release it."""
        self.pause_requested.discard(rollout_id)
        return self._resolve(rollout_id, None)

    def abort(self, rollout_id: str, reason: str = "aborted by user") -> bool:
        """End the paused rollout as ERROR (category cancelled)."""
        self.pause_requested.discard(rollout_id)
        return self._resolve(rollout_id, RolloutCancelled(reason))


# ---- stepping one live rollout like a dataset row ----------------------------------------------


@dataclass
class LivePausedCall:
    """A live rollout's answer held at the gate, shaped like ``session.PausedCall``."""

    rollout_id: str
    exchange: LLMExchange
    result: ChatResult

    @property
    def turn(self) -> int:
        """1-based number of the LLM call."""
        return self.exchange.turn

    @property
    def message(self) -> dict[str, Any]:
        """The pending answer's message (content and tool calls)."""
        return self.result.message

    @property
    def finish_reason(self) -> str | None:
        """The pending answer's finish reason."""
        return self.result.finish_reason


def _completion_of(result: ChatResult) -> dict[str, Any]:
    """The chat completion behind a ``ChatResult`` (rebuilt when the gate got none)."""
    return {
        "choices": [{"index": 0, "message": result.message, "finish_reason": result.finish_reason}],
        "usage": result.usage,
    }


class LiveStepSession:
    """One rollout served to a real trainer, driven through the ``StepSession`` interface.

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
        self._paused_call: LivePausedCall | None = None
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
    def paused(self) -> LivePausedCall | None:
        """The answer held at the gate right now, if any."""
        rollout = self.rollout
        if rollout is None or not rollout.held or rollout.pending is None:
            return None
        cached = self._paused_call
        # One object per held answer, so the debugger can tell a new pause from the same one.
        if cached is None or cached.result is not rollout.pending:
            exchange = LLMExchange(
                turn=rollout.turns,
                request={"messages": rollout.messages[:-1]},
                completion=_completion_of(rollout.pending),
                latency_ms=rollout.last_latency_ms,
            )
            cached = self._paused_call = LivePausedCall(self.rollout_id, exchange, rollout.pending)
        return cached

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
        return live_outcome(rollout)

    async def wait(self) -> LivePausedCall | None:
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

    def next(self, replacement: dict[str, Any] | None = None) -> bool:
        """Release the held answer (``n``); ``replacement``: an edited completion or message."""
        if self.paused is None:
            return False
        if replacement is None:
            return self.live.release(self.rollout_id)
        # The debugger's edit dialog hands a whole completion (as for StepSession.next).
        if replacement.get("choices"):
            choice = replacement["choices"][0]
            message, finish = choice.get("message") or {}, choice.get("finish_reason")
        else:
            message, finish = replacement, None
        # The agent gets it as ChatResult.from_completion would have built it.
        message = {k: v for k, v in message.items() if v is not None}
        message.setdefault("role", "assistant")
        if finish is None and message.get("tool_calls"):
            finish = "tool_calls"
        return self.live.release(self.rollout_id, message, finish_reason=finish)

    def continue_(self) -> bool:
        """Stop pausing this rollout and release the held answer (``c``)."""
        return self.live.continue_(self.rollout_id)

    def abort(self, reason: str = "aborted by user") -> bool:
        """End the rollout as ERROR (``q``); if not held now, at its next LLM answer."""
        if self.live.abort(self.rollout_id, reason):
            return True
        if not self.finished:
            self._abort_reason = reason
            self.live.pause(self.rollout_id)
        return False

    def close(self) -> None:
        """Stop listening (the rollout itself is left as it is)."""
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None


def live_outcome(rollout: LiveRollout) -> RolloutOutcome:
    """A finished live rollout as a ``RolloutOutcome`` (what the trajectory view shows)."""
    # The completion body is the server's word on how it ended; the live record fills gaps
    # (a rollout cut off before its completion was seen).
    completion = rollout.completion or {}
    metrics = completion.get("metrics") if isinstance(completion.get("metrics"), dict) else {}
    extra = completion.get("extra_fields")
    extra = extra if isinstance(extra, dict) else {}
    ok = completion.get("status") == "COMPLETED"
    reward = completion.get("reward")
    return RolloutOutcome(
        rollout_id=rollout.rollout_id,
        status="COMPLETED" if ok else "ERROR",
        final_messages=completion.get("final_messages") or list(rollout.messages),
        finish_reason=completion.get("finish_reason"),
        error=None if ok else (completion.get("error_message") or rollout.error),
        error_category=None if ok else extra.get("error_category"),
        traceback=extra.get("traceback"),
        reward=float(reward) if isinstance(reward, int | float) else None,
        metrics=metrics,
        duration_ms=rollout.elapsed_s * 1000,
        tokens=int(metrics.get("prompt_tokens") or 0) + int(metrics.get("response_tokens") or 0),
        cost_usd=None,
        llm_calls=int(metrics.get("num_llm_calls") or rollout.turns),
        tools=list(rollout.tools),
        violations=[],
        completion=rollout.completion,
    )
