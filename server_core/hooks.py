"""In-process observers and the LLM gate of a rollout server.

A server built with ``create_app`` emits one ``HookEvent`` for each thing that happens in a
rollout (started, llm_request, llm_response, tool_call, log_event, finished). Observers see
them in order; trace logs and the workbench's live rollout list are observers. The *gate* is
awaited after each LLM response and before the agent gets it: the workbench uses it to pause
a rollout that a real trainer sent, show the response, let the user edit it, or abort.

Observers must be quick: they run on the event loop, inline with the rollout. An observer
that raises is logged and skipped; it never breaks a rollout.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from server_core.agent import CompletionsResult as ChatResult

logger = logging.getLogger("server_core.hooks")

#: The kinds of events, in the order a rollout produces them.
EVENT_KINDS = (
    "rollout_started",
    "llm_request",
    "llm_response",
    "tool_call",
    "log_event",
    "rollout_finished",
)


@dataclass(slots=True)
class HookEvent:
    """Something that happened in one rollout; ``data`` depends on ``kind``.

    - rollout_started: ``request`` (the RolloutRequest as a dict), ``tools``
    - llm_request: ``turn``, ``body`` (the chat callback body)
    - llm_response: ``turn``, ``message``, ``finish_reason``, ``usage``, ``latency_ms``
    - tool_call: ``name``, ``latency_ms``, ``arguments``, ``result``, ``error`` (those known)
    - log_event: ``event`` and the agent's keyword data
    - rollout_finished: ``completion`` (the completion body as sent), ``delivery``
    """

    kind: str
    rollout_id: str
    data: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)


Observer = Callable[[HookEvent], "Awaitable[None] | None"]

#: ``gate(rollout_id, body, result)`` returns the result the agent gets (``None``: unchanged).
#: Raising ``RolloutCancelled`` from a gate aborts the rollout.
LLMGate = Callable[[str, dict[str, Any], "ChatResult"], "Awaitable[ChatResult | None]"]


class RolloutHooks:
    """The observers and the gate of one server (``app.state.hooks``)."""

    def __init__(self) -> None:
        self._observers: list[Observer] = []
        self._gate: LLMGate | None = None

    @property
    def active(self) -> bool:
        """Whether anything listens; the SDK skips building events when nothing does."""
        return bool(self._observers)

    def add_observer(self, observer: Observer) -> Callable[[], None]:
        """Subscribe ``observer`` to every event; returns a function that unsubscribes it."""
        self._observers.append(observer)
        return lambda: self.remove_observer(observer)

    def remove_observer(self, observer: Observer) -> None:
        """Unsubscribe ``observer`` (no error if it was not subscribed)."""
        if observer in self._observers:
            self._observers.remove(observer)

    def set_gate(self, gate: LLMGate | None) -> None:
        """Install (or with ``None`` remove) the gate awaited before each LLM response."""
        self._gate = gate

    @property
    def gate(self) -> LLMGate | None:
        """The installed gate, if any."""
        return self._gate

    async def emit(self, kind: str, rollout_id: str, **data: Any) -> None:
        """Deliver one event to every observer, in subscription order."""
        event = HookEvent(kind, rollout_id, data)
        for observer in tuple(self._observers):
            try:
                outcome = observer(event)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:  # an observer must never break a rollout
                logger.exception("rollout hook observer %r failed on %s", observer, kind)

    async def pass_gate(
        self, rollout_id: str, body: dict[str, Any], result: ChatResult
    ) -> ChatResult:
        """Hold ``result`` at the gate, if one is set; returns what the agent gets."""
        gate = self._gate
        if gate is None:
            return result
        replaced = await gate(rollout_id, body, result)
        return result if replaced is None else replaced


class RolloutEvents:
    """One rollout's events into the server's hooks, delivered in the order they happened.

    ``record_tool_call``/``log_event`` are sync in the agent API while observers may be async,
    so those events are delivered by a task; each such task waits for the one before it, and
    every awaited ``emit`` (llm_request, rollout_finished) flushes them first.
    """

    def __init__(self, hooks: RolloutHooks, rollout_id: str) -> None:
        self.hooks = hooks
        self.rollout_id = rollout_id
        self._last: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        """Whether any observer listens."""
        return self.hooks.active

    def spawn(self, kind: str, data: dict[str, Any]) -> None:
        """Deliver an event from sync code, after the ones spawned before it."""
        previous = self._last

        async def deliver() -> None:
            if previous is not None and not previous.done():
                await asyncio.wait([previous])
            await self.hooks.emit(kind, self.rollout_id, **data)

        task = asyncio.get_running_loop().create_task(deliver())
        self._last = task
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def flush(self) -> None:
        """Wait until the events spawned so far reached every observer."""
        last = self._last
        if last is not None and not last.done():
            # asyncio.wait: cancelling the rollout must not cancel the delivery itself.
            await asyncio.wait([last])

    async def emit(self, kind: str, **data: Any) -> None:
        """Deliver an event after every event spawned before it."""
        await self.flush()
        await self.hooks.emit(kind, self.rollout_id, **data)


# Tasks of spawned events, kept referenced until done (asyncio holds only weak references).
_background: set[asyncio.Task[None]] = set()
