"""``OsmosisLLMClient``: osmosis-ai 0.2's client for a trainer's two callbacks, for one rollout.

Code that calls a trainer by hand (outside ``create_app``) uses it as in 0.2: its constructor,
``async with``, ``chat_completions``, ``complete_rollout``, ``get_metrics``, the 0.2
exceptions, and a count of retries. On the wire it speaks our protocol (docs/PROTOCOL.md):
every chat parameter is forwarded and none is invented (no ``max_tokens=512``), 429 is
retried, backoff has jitter, a malformed 200 is a ``TrainerProtocolError`` that says what was
wrong, and any 2xx acknowledges a completion. It sends through ``TrainerClient`` over httpx;
served rollouts use ``server_core.rollout_llm.RolloutLLM`` over the server's shared pool.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import ConfigDict

from server_core.agent import CompletionsResult
from server_core.errors import (
    OsmosisServerError,
    OsmosisTimeoutError,
    OsmosisTransportError,
    OsmosisValidationError,
)
from server_core.messages import normalize_stop
from server_core.protocol import (
    CompletionsRequest,
    RolloutMetrics,
    RolloutResponse,
    RolloutStatus,
)
from server_core.rollout_llm import token_count
from server_core.trainer_client import TrainerClient, TrainerClientConfig

if TYPE_CHECKING:
    from server_core.settings import RolloutClientSettings

#: A retry budget so long that only the count of retries decides, as in 0.2.
_NO_TIME_LIMIT_S = 10.0**9


class _ChatBody(CompletionsRequest):
    """The chat body: 0.2's fields, checked, then any other OpenAI parameter as given."""

    model_config = ConfigDict(extra="allow")

    max_tokens: int | None = None  # type: ignore[assignment]


class OsmosisLLMClient:
    """A trainer's chat and completion callbacks for one rollout (``async with`` closes it)."""

    def __init__(
        self,
        server_url: str,
        rollout_id: str,
        api_key: str | None = None,
        timeout_seconds: float | None = None,
        max_retries: int | None = None,
        complete_rollout_retries: int | None = None,
        settings: RolloutClientSettings | None = None,
    ) -> None:
        if settings is None:
            from server_core.settings import get_settings

            settings = get_settings().client
        self.server_url = server_url.rstrip("/")
        self.rollout_id = rollout_id
        self.api_key = api_key
        self.timeout_seconds = timeout_seconds or settings.timeout_seconds
        self.max_retries = settings.max_retries if max_retries is None else max_retries
        self.complete_rollout_retries = (
            settings.complete_rollout_retries
            if complete_rollout_retries is None
            else complete_rollout_retries
        )
        self._client = TrainerClient(
            TrainerClientConfig(
                timeout_s=self.timeout_seconds,
                completion_timeout_s=self.timeout_seconds,
                chat_retry_budget_s=_NO_TIME_LIMIT_S,
                completion_retry_budget_s=_NO_TIME_LIMIT_S,
                chat_retries=self.max_retries,
                completion_retries=self.complete_rollout_retries,
                backoff_base_s=settings.retry_base_delay,
                backoff_cap_s=settings.retry_max_delay,
                max_connections=settings.max_connections,
            ),
            # httpx, one client per instance as in 0.2: tests that patch httpx reach it.
            transport=httpx.AsyncHTTPTransport(),
        )
        self._metrics = RolloutMetrics()

    async def __aenter__(self) -> OsmosisLLMClient:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP client (again: nothing happens)."""
        await self._client.aclose()

    async def chat_completions(
        self,
        messages: list[dict[str, Any]],
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_tokens: int | None = None,
        stop: Any = None,
        logprobs: bool = True,
        **kwargs: Any,
    ) -> CompletionsResult:
        """POST ``/v1/chat/completions``; 4xx is final, 5xx/429/timeouts/transport are retried.

        Raises ``OsmosisValidationError``, ``OsmosisServerError``, ``OsmosisTimeoutError``,
        ``OsmosisTransportError`` or ``TrainerProtocolError``.
        """
        body = _ChatBody(
            rollout_id=self.rollout_id,
            messages=messages,
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            stop=normalize_stop(stop),
            logprobs=logprobs,
            **kwargs,
        ).model_dump(exclude_none=True)
        started = time.monotonic()
        answer = await self._client.chat(self.server_url, body, api_key=self.api_key)
        result = CompletionsResult.from_completion(answer)
        metrics = self._metrics
        metrics.llm_latency_ms += (time.monotonic() - started) * 1000
        metrics.num_llm_calls += 1
        metrics.prompt_tokens += token_count(result.usage.get("prompt_tokens"))
        metrics.response_tokens += token_count(result.usage.get("completion_tokens"))
        return result

    async def complete_rollout(
        self,
        status: str,
        final_messages: list[dict[str, Any]],
        finish_reason: str = "stop",
        error_message: str | None = None,
        metrics: RolloutMetrics | None = None,
        reward: float | None = None,
    ) -> None:
        """POST ``/v1/rollout/completed``; any 2xx acknowledges, the last failure is raised."""
        body = RolloutResponse(
            rollout_id=self.rollout_id,
            status=RolloutStatus(status),
            final_messages=final_messages,
            finish_reason=finish_reason,
            error_message=error_message,
            reward=reward,
            metrics=metrics if metrics is not None else self.get_metrics(),
        ).wire()
        delivery = await self._client.complete(self.server_url, body, api_key=self.api_key)
        if delivery.delivered:
            return
        code, error = delivery.status_code, delivery.error or "not delivered"
        if code is not None and 400 <= code < 500 and code != 429:
            raise OsmosisValidationError(error, code)
        if code is not None and code >= 429:
            raise OsmosisServerError(error, code)
        if error.startswith("timed out"):
            raise OsmosisTimeoutError(error)
        raise OsmosisTransportError(error)

    def get_metrics(self) -> RolloutMetrics:
        """LLM latency, calls and tokens of the successful chat calls so far."""
        return self._metrics.model_copy()
