"""The agent API: ``RolloutAgentLoop``, ``RolloutContext``, ``RolloutResult``, ``ChatResult``.

An agent subclasses ``RolloutAgentLoop``, names itself, returns its tools for a request and
implements ``async run(ctx)``. Inside ``run`` it talks to the policy model with ``ctx.chat`` and
ends with ``return ctx.complete(messages)`` (or ``ctx.error(...)``). The server delivers the
result to the trainer exactly once, whatever ``run`` does (see ``server_core.app``).
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from server_core.errors import TrainerProtocolError
from server_core.protocol import RolloutMetrics, RolloutRequest, RolloutStatus

if TYPE_CHECKING:
    from server_core.hooks import RolloutHooks
    from server_core.trainer_client import TrainerClient

#: Chat-callback fields the protocol always sends, with the defaults PROTOCOL.md section 4 gives.
_CHAT_DEFAULTS: dict[str, Any] = {"temperature": 1.0, "top_p": 1.0, "logprobs": True}


class RolloutResult(BaseModel):
    """What ``run`` returns: the outcome the server reports in the completion callback."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    status: RolloutStatus = RolloutStatus.COMPLETED
    final_messages: list[dict[str, Any]] = Field(default_factory=list)
    finish_reason: str | None = "stop"
    error_message: str | None = None
    reward: float | None = None
    metrics: RolloutMetrics = Field(default_factory=RolloutMetrics)
    extra_fields: dict[str, Any] = Field(default_factory=dict)


class ChatResult:
    """One LLM answer as the agent sees it (``message`` is ready to append to the history)."""

    __slots__ = ("message", "finish_reason", "usage", "token_ids", "logprobs", "raw")

    def __init__(
        self,
        message: dict[str, Any],
        finish_reason: str = "stop",
        usage: dict[str, Any] | None = None,
        token_ids: list[int] | None = None,
        logprobs: list[float] | None = None,
        raw: dict[str, Any] | None = None,
    ) -> None:
        self.message = message
        self.finish_reason = finish_reason
        self.usage = usage or {}
        self.token_ids = token_ids
        self.logprobs = logprobs
        self.raw = raw

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        """The tool calls of the answer (OpenAI shape), empty when there are none."""
        return self.message.get("tool_calls") or []

    @property
    def has_tool_calls(self) -> bool:
        """Whether the model asked for at least one tool call."""
        return bool(self.message.get("tool_calls"))

    @property
    def content(self) -> str | None:
        """The text of the answer, if any."""
        return self.message.get("content")

    @classmethod
    def from_completion(cls, body: Any) -> ChatResult:
        """Parse the trainer's 200 answer; a wrong shape is a ``TrainerProtocolError``."""
        if not isinstance(body, dict):
            raise TrainerProtocolError(
                f"trainer answered 200 with a JSON {type(body).__name__}, not an object"
            )
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices:
            raise TrainerProtocolError("trainer answered 200 without 'choices'")
        choice = choices[0]
        if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
            raise TrainerProtocolError("trainer answered 200 without 'choices[0].message'")
        message = {k: v for k, v in choice["message"].items() if v is not None}
        message.setdefault("role", "assistant")
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        token_ids = body.get("token_ids")
        logprobs = body.get("logprobs")
        return cls(
            message=message,
            finish_reason=choice.get("finish_reason") or "stop",
            usage=usage,
            token_ids=token_ids if isinstance(token_ids, list) else None,
            logprobs=logprobs if isinstance(logprobs, list) else None,
            raw=body,
        )

    def __repr__(self) -> str:
        return f"ChatResult(message={self.message!r}, finish_reason={self.finish_reason!r})"


class RolloutContext:
    """Everything ``run`` needs for one rollout: the request, the LLM, metrics and events.

    One context lives exactly as long as its rollout. It keeps the last history it saw so a
    rollout that fails still reports the trajectory it had reached.
    """

    def __init__(
        self,
        request: RolloutRequest,
        *,
        client: TrainerClient,
        hooks: RolloutHooks | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> None:
        self.request = request
        self.tools = tools or []
        self.metrics = RolloutMetrics()
        self._client = client
        self._hooks = hooks
        self._started = time.perf_counter()
        #: The last of the events emitted from sync code (tool_call, log_event), in flight.
        self._last_emit: asyncio.Task | None = None
        #: The most recent history the agent reached: the messages of the last chat (plus its
        #: answer once it came), or the messages given to ``complete``.
        self.partial_messages: list[dict[str, Any]] = list(request.messages)

    @property
    def rollout_id(self) -> str:
        """The trainer's id of this rollout."""
        return self.request.rollout_id

    def _chat_body(self, messages: list[dict[str, Any]], params: dict[str, Any]) -> dict:
        # completion_params apply to every call by default; explicit kwargs win.
        merged = {
            "model": "default",
            **_CHAT_DEFAULTS,
            **self.request.completion_params,
            **params,
        }
        if isinstance(merged.get("stop"), str):
            merged["stop"] = [merged["stop"]]
        body = {k: v for k, v in merged.items() if v is not None}
        # The history and the id are the protocol's, whatever a parameter says.
        body["messages"] = messages
        body["rollout_id"] = self.rollout_id
        return body

    async def chat(self, messages: list[dict[str, Any]], **params: Any) -> ChatResult:
        """Ask the policy model for the next message, given the whole history so far.

        ``params`` are OpenAI chat parameters (``tools``, ``tool_choice``, ``temperature``,
        ``max_tokens``, ``seed``...), forwarded as given on top of the request's
        ``completion_params``. Raises ``LLMCallError`` / ``TrainerProtocolError`` on failure.
        """
        messages = list(messages)
        self.partial_messages = messages  # a failing call still reports what it was sent
        body = self._chat_body(messages, params)
        hooks = self._hooks
        turn = self.metrics.num_llm_calls + 1
        if hooks is not None and hooks.active:
            await self.flush_events()
            await hooks.emit("llm_request", self.rollout_id, turn=turn, body=body)
        started = time.perf_counter()
        answer = await self._client.chat(
            self.request.server_url, body, api_key=self.request.api_key
        )
        result = ChatResult.from_completion(answer)
        latency_ms = (time.perf_counter() - started) * 1000
        self._account(result, latency_ms)
        if hooks is not None:
            if hooks.active:
                await hooks.emit(
                    "llm_response",
                    self.rollout_id,
                    turn=turn,
                    message=result.message,
                    finish_reason=result.finish_reason,
                    usage=result.usage,
                    latency_ms=latency_ms,
                )
            result = await hooks.pass_gate(self.rollout_id, body, result)
        # A new list: ``body["messages"]`` (held by observers and the gate) stays as sent.
        self.partial_messages = [*messages, result.message]
        return result

    def _account(self, result: ChatResult, latency_ms: float) -> None:
        metrics = self.metrics
        metrics.num_llm_calls += 1
        metrics.llm_latency_ms += latency_ms
        prompt = _token_count(result.usage.get("prompt_tokens"))
        completion = _token_count(result.usage.get("completion_tokens"))
        metrics.prompt_tokens += prompt
        metrics.response_tokens += completion
        metrics.max_context_tokens = max(metrics.max_context_tokens, prompt + completion)

    def record_tool_call(
        self,
        latency_ms: float = 0.0,
        *,
        name: str | None = None,
        arguments: Any = None,
        result: Any = None,
        error: str | None = None,
    ) -> None:
        """Count one tool call in the metrics (the details are optional, for traces and UIs)."""
        self.metrics.num_tool_calls += 1
        self.metrics.tool_latency_ms += latency_ms
        hooks = self._hooks
        if hooks is not None and hooks.active:
            data = {
                "name": name,
                "latency_ms": latency_ms,
                "arguments": arguments,
                "result": result,
                "error": error,
            }
            self._spawn_emit("tool_call", {k: v for k, v in data.items() if v is not None})

    def log_event(self, event: str, **data: Any) -> None:
        """Record an agent event in the trace log and the workbench (no effect on the result)."""
        hooks = self._hooks
        if hooks is not None and hooks.active:
            self._spawn_emit("log_event", {"event": event, **data})

    def _spawn_emit(self, kind: str, data: dict[str, Any]) -> None:
        # record_tool_call/log_event are sync in the 0.2 API while observers may be async, so
        # the event is delivered by a task. Each such task waits for the one before it, and
        # every awaited emit (llm_request, rollout_finished) flushes them first: observers see
        # a rollout's events in the order they happened.
        hooks = self._hooks
        assert hooks is not None
        previous = self._last_emit

        async def deliver() -> None:
            if previous is not None and not previous.done():
                await asyncio.wait([previous])
            await hooks.emit(kind, self.rollout_id, **data)

        task = asyncio.get_running_loop().create_task(deliver())
        self._last_emit = task
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def flush_events(self) -> None:
        """Wait until the events emitted from sync code so far reached every observer."""
        last = self._last_emit
        if last is not None and not last.done():
            # asyncio.wait: cancelling this rollout must not cancel the delivery itself.
            await asyncio.wait([last])

    def complete(
        self,
        messages: list[dict[str, Any]],
        finish_reason: str = "stop",
        reward: float | None = None,
    ) -> RolloutResult:
        """The successful result of this rollout: the final trajectory and optional reward."""
        self.partial_messages = list(messages)
        return RolloutResult(
            status=RolloutStatus.COMPLETED,
            final_messages=list(messages),
            finish_reason=finish_reason,
            reward=None if reward is None else float(reward),
            metrics=self.metrics,
        )

    def error(
        self, message: str, final_messages: list[dict[str, Any]] | None = None
    ) -> RolloutResult:
        """A failed result; without ``final_messages`` it carries the trajectory reached so far."""
        return RolloutResult(
            status=RolloutStatus.ERROR,
            final_messages=list(
                final_messages if final_messages is not None else self.partial_messages
            ),
            finish_reason="error",
            error_message=message,
            metrics=self.metrics,
        )

    def elapsed_ms(self) -> float:
        """Wall-clock milliseconds since this rollout started running."""
        return (time.perf_counter() - self._started) * 1000


# Tasks of fire-and-forget hook emits, kept referenced until done (asyncio holds weak refs).
_background: set = set()


def _token_count(value: Any) -> int:
    """A usage count as an int; a trainer's missing or odd value counts as 0."""
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError, OverflowError):
        return 0


class RolloutAgentLoop(ABC):
    """Base class of an agent: subclass it, set ``name``, implement ``get_tools`` and ``run``."""

    #: Unique name of the agent, reported by ``/health`` and at start-up.
    name: str = ""

    @abstractmethod
    def get_tools(self, request: RolloutRequest) -> list[dict[str, Any]]:
        """The OpenAI function tools offered for ``request`` (sent in the init response)."""

    @abstractmethod
    async def run(self, ctx: RolloutContext) -> RolloutResult:
        """Run the agent loop; end with ``return ctx.complete(messages)`` or ``ctx.error(...)``."""
