"""Live view of the rollouts a real trainer sends to the served agent, and pausing them.

``LiveRollouts`` is a ``server_core.hooks`` observer that keeps one ``LiveRollout`` per rollout
(state, turns, elapsed, reward, the history it reached) and a gate: a rollout marked with
``pause(rollout_id)`` stops at its next LLM response, before the agent sees it, until the user
releases, edits, continues or aborts it, exactly like the step debugger.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from server_core.agent import ChatResult
from server_core.errors import RolloutCancelled
from server_core.hooks import HookEvent, RolloutHooks


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

    def attach(self, hooks: RolloutHooks) -> Callable[[], None]:
        """Observe ``hooks`` and install the gate; returns a function that detaches."""
        remove = hooks.add_observer(self)
        hooks.set_gate(self.gate)

        def detach() -> None:
            remove()
            hooks.set_gate(None)

        return detach

    def _changed(self, rollout: LiveRollout) -> None:
        if self.on_change:
            self.on_change(rollout)

    def __call__(self, event: HookEvent) -> None:
        rid = event.rollout_id
        data = event.data
        if event.kind == "rollout_started":
            rollout = LiveRollout(rid, started=event.time)
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
        elif event.kind == "rollout_finished":
            completion = data.get("completion") or {}
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

    def release(self, rollout_id: str, message: dict[str, Any] | None = None) -> bool:
        """Let the paused answer through, optionally replaced by an edited ``message``."""
        replacement = None
        rollout = self.rollouts.get(rollout_id)
        if message is not None and rollout is not None and rollout.pending is not None:
            old = rollout.pending
            replacement = ChatResult(message, old.finish_reason, old.usage, old.token_ids,
                                     old.logprobs, old.raw)
        return self._resolve(rollout_id, replacement)

    def continue_(self, rollout_id: str) -> bool:
        """Stop pausing this rollout and release it."""
        self.pause_requested.discard(rollout_id)
        return self._resolve(rollout_id, None)

    def abort(self, rollout_id: str, reason: str = "aborted by user") -> bool:
        """End the paused rollout as ERROR (category cancelled)."""
        self.pause_requested.discard(rollout_id)
        return self._resolve(rollout_id, RolloutCancelled(reason))
