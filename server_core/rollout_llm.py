"""``RolloutLLM``: the LLM client a served rollout's context talks through.

It implements ``LLMClientProtocol`` over the server's shared ``TrainerClient``: it builds the
chat callback body (the request's ``completion_params`` under the agent's own arguments, every
OpenAI parameter forwarded), counts the metrics, emits the hook events, passes each answer
through the workbench's gate, and remembers the trajectory reached so a failed rollout still
reports it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from server_core.agent import CompletionsResult
from server_core.protocol import RolloutMetrics, RolloutRequest

if TYPE_CHECKING:
    from server_core.hooks import RolloutEvents
    from server_core.trainer_client import TrainerClient

#: Chat-callback fields the protocol always sends, with the defaults PROTOCOL.md section 4 gives.
_CHAT_DEFAULTS: dict[str, Any] = {
    "model": "default",
    "temperature": 1.0,
    "top_p": 1.0,
    "logprobs": True,
}


def token_count(value: Any) -> int:
    """A usage count as an int; a trainer's missing or odd value counts as 0."""
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError, OverflowError):
        return 0


class RolloutLLM:
    """The chat callbacks of one served rollout (``ctx.llm`` under ``create_app``)."""

    def __init__(
        self, request: RolloutRequest, client: TrainerClient, events: RolloutEvents | None = None
    ) -> None:
        self.request = request
        self._client = client
        self._events = events
        self._metrics = RolloutMetrics()
        #: The most recent history the agent reached: the messages of the last chat, plus its
        #: answer once it came (what an ERROR completion without messages reports).
        self.partial_messages: list[dict[str, Any]] = list(request.messages)

    def body(self, messages: list[dict[str, Any]], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The chat callback body for ``messages`` with the agent's ``kwargs``."""
        merged = {**_CHAT_DEFAULTS, **self.request.completion_params, **kwargs}
        stop = merged.get("stop")
        if isinstance(stop, str):
            merged["stop"] = [stop]
        body = {k: v for k, v in merged.items() if v is not None}
        # The history and the id are the protocol's, whatever a parameter says.
        body["messages"] = messages
        body["rollout_id"] = self.request.rollout_id
        return body

    async def chat_completions(
        self, messages: list[dict[str, Any]], **kwargs: Any
    ) -> CompletionsResult:
        """POST one chat callback and return the answer (after the gate, if one is set)."""
        messages = list(messages)
        self.partial_messages = messages  # a failing call still reports what it was sent
        body = self.body(messages, kwargs)
        events = self._events
        turn = self._metrics.num_llm_calls + 1
        if events is not None and events.active:
            await events.emit("llm_request", turn=turn, body=body)
        started = time.perf_counter()
        answer = await self._client.chat(
            self.request.trainer_url, body, api_key=self.request.api_key
        )
        result = CompletionsResult.from_completion(answer)
        latency_ms = (time.perf_counter() - started) * 1000
        self._account(result, latency_ms)
        if events is not None:
            if events.active:
                await events.emit(
                    "llm_response",
                    turn=turn,
                    message=result.message,
                    finish_reason=result.finish_reason,
                    usage=result.usage,
                    latency_ms=latency_ms,
                )
            result = await events.hooks.pass_gate(self.request.rollout_id, body, result)
        # A new list: ``body["messages"]`` (held by observers and the gate) stays as sent.
        self.partial_messages = [*messages, result.message]
        return result

    def _account(self, result: CompletionsResult, latency_ms: float) -> None:
        metrics = self._metrics
        metrics.num_llm_calls += 1
        metrics.llm_latency_ms += latency_ms
        prompt = token_count(result.usage.get("prompt_tokens"))
        completion = token_count(result.usage.get("completion_tokens"))
        metrics.prompt_tokens += prompt
        metrics.response_tokens += completion
        metrics.max_context_tokens = max(metrics.max_context_tokens, prompt + completion)

    def get_metrics(self) -> RolloutMetrics:
        """LLM latency, call count and tokens so far (a copy)."""
        return self._metrics.model_copy()

    @property
    def max_context_tokens(self) -> int:
        """The largest prompt + completion of any call so far."""
        return self._metrics.max_context_tokens
