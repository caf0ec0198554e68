"""A live model through litellm: any provider litellm knows, imported only when first used.

``import litellm`` costs about 10-13 s of CPU on this machine and, unless
``LITELLM_LOCAL_MODEL_COST_MAP`` is set, fetches a price table over the network. So it is
imported the first time a ``LiteLLMBackend`` answers, in a worker thread, never when this
module is imported, and its loggers are routed to the application's handlers.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import threading
import time
import warnings
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

from osmosis_workbench.engine.models.base import PROTOCOL_KEYS, ModelError, ModelReply

logger = logging.getLogger("osmosis_workbench.engine.models")

#: Chat-callback keys forwarded to the provider: OpenAI's sampling and tool parameters. The
#: protocol's own fields (model, rollout_id, logprobs) and streaming are left out; anything
#: else is dropped with one warning per key, since providers reject unknown parameters.
FORWARDED_PARAMS = frozenset(
    {
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "seed",
        "n",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "response_format",
        "reasoning_effort",
        "user",
        "functions",
        "function_call",
        "modalities",
        "prediction",
        "service_tier",
        "verbosity",
        "web_search_options",
    }
)

#: The key each provider reads from the environment, named in authentication errors.
PROVIDER_KEY_ENV = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "groq": "GROQ_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "together_ai": "TOGETHERAI_API_KEY",
    "fireworks_ai": "FIREWORKS_AI_API_KEY",
    "xai": "XAI_API_KEY",
    "cohere": "COHERE_API_KEY",
    "perplexity": "PERPLEXITYAI_API_KEY",
    "azure": "AZURE_API_KEY",
    "hosted_vllm": "HOSTED_VLLM_API_KEY",
}

#: A provider's retry-after is honoured up to this, so one answer cannot park a run for hours.
MAX_RETRY_AFTER_S = 60.0

_LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy")
_UNKNOWN_MODEL_HINTS = (
    "llm provider not provided",
    "unmapped llm provider",
    "model_not_found",
    "does not exist",
    "unknown model",
    "invalid model",
    "model not found",
)

_litellm: ModuleType | None = None
_import_lock = threading.Lock()


def _import_litellm() -> ModuleType:
    """Import and quiet litellm once; runs in a worker thread (the lock makes it once)."""
    global _litellm
    with _import_lock:
        if _litellm is None:
            # Without this litellm downloads its price table at import time.
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            module = importlib.import_module("litellm")
            module.suppress_debug_info = True
            module.set_verbose = False
            # litellm's first call builds pydantic schemas that warn about its own TypedDicts;
            # printed warnings would paint over the terminal UI and tell the user nothing.
            warnings.filterwarnings(
                "ignore", message=r"Items? .* using the `ReadOnly` qualifier", category=UserWarning
            )
            # litellm gives its loggers their own stderr handlers: send records to ours (the
            # log pane) instead of painting over the terminal UI.
            for name in _LITELLM_LOGGERS:
                log = logging.getLogger(name)
                for handler in list(log.handlers):
                    if isinstance(handler, logging.StreamHandler):
                        log.removeHandler(handler)
                log.propagate = True
            _litellm = module
    return _litellm


async def load_litellm() -> ModuleType:
    """litellm, imported off the event loop the first time it is needed."""
    if _litellm is not None:
        return _litellm
    return await asyncio.to_thread(_import_litellm)


class LiteLLMBackend:
    """Answers chat calls with a live model through ``litellm.acompletion``.

    ``model`` is litellm's "provider/name". Rate limits, timeouts, connection failures and 5xx
    are retried up to ``max_retries`` times with capped exponential backoff and full jitter
    (or the provider's retry-after); every failure ends as one ``ModelError``.
    ``extra_kwargs`` go to ``acompletion`` as they are (tests pass ``mock_response`` there).
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        max_retries: int = 3,
        base_delay_s: float = 0.5,
        max_delay_s: float = 8.0,
        timeout_s: float | None = 300.0,
        extra_kwargs: dict[str, Any] | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.model = model
        self.name = model
        self.base_url = base_url
        self.api_key = api_key
        self.max_retries = max_retries
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.timeout_s = timeout_s
        self.extra_kwargs = dict(extra_kwargs or {})
        self._sleep = sleep
        self._dropped_warned: set[str] = set()

    @property
    def provider(self) -> str:
        """The provider part of the model name ("openai" for "openai/gpt-4o-mini")."""
        return self.model.split("/", 1)[0] if "/" in self.model else "openai"

    def request_kwargs(self, body: dict[str, Any]) -> dict[str, Any]:
        """The ``acompletion`` keyword arguments for one chat body."""
        kwargs: dict[str, Any] = {"model": self.model, "messages": body.get("messages") or []}
        for key, value in body.items():
            if key in FORWARDED_PARAMS:
                if value is not None:
                    kwargs[key] = value
            elif key != "messages" and key not in PROTOCOL_KEYS and key not in self._dropped_warned:
                self._dropped_warned.add(key)
                logger.warning(
                    "%s: not forwarding %r, not an OpenAI chat parameter", self.name, key
                )
        if self.base_url:
            kwargs["api_base"] = self.base_url
        if self.api_key:
            kwargs["api_key"] = self.api_key
        if self.timeout_s is not None:
            kwargs["timeout"] = self.timeout_s
        # The retries below are the only ones: otherwise the OpenAI SDK inside litellm adds
        # two of its own, unseen, to every attempt.
        kwargs["max_retries"] = 0
        kwargs.update(self.extra_kwargs)
        return kwargs

    async def complete(self, body: dict[str, Any]) -> ModelReply:
        """Call the model, retrying transient failures; raise ``ModelError`` on failure."""
        litellm = await load_litellm()
        kwargs = self.request_kwargs(body)
        started = time.perf_counter()
        attempt = 0
        while True:
            try:
                response = await litellm.acompletion(**kwargs)
                break
            except Exception as exc:
                error = map_litellm_error(exc, self, litellm)
                if not error.retryable or attempt >= self.max_retries:
                    if attempt:
                        error = ModelError(
                            error.kind,
                            f"{error.message} (gave up after {attempt + 1} attempts)",
                            retryable=error.retryable,
                            systemic=error.systemic,
                        )
                    raise error from exc
                delay = self._delay(attempt, exc)
                logger.warning(
                    "%s; retry %d/%d in %.1f s", error.message, attempt + 1, self.max_retries, delay
                )
                await self._sleep(delay)
                attempt += 1
        latency_ms = (time.perf_counter() - started) * 1000
        completion = _completion_dict(response)
        return ModelReply(completion, cost_usd=_cost(litellm, response), latency_ms=latency_ms)

    def _delay(self, attempt: int, exc: BaseException) -> float:
        after = retry_after_s(exc)
        if after is not None:
            return min(after, MAX_RETRY_AFTER_S)
        # The SDK's helper, so trainer callbacks and model calls back off alike. Imported here:
        # `import server_core` pulls in FastAPI (~1.7 s cold), which only the retry path needs.
        from server_core.trainer_client import backoff_delay

        return backoff_delay(attempt, self.base_delay_s, self.max_delay_s)

    async def aclose(self) -> None:
        """Nothing held: litellm pools its own HTTP clients per process."""


def retry_after_s(exc: BaseException) -> float | None:
    """The retry-after (seconds) a provider error carries, if any."""
    value = getattr(exc, "retry_after", None)
    if value is None:
        response = getattr(exc, "response", None)
        for headers in (getattr(exc, "headers", None), getattr(response, "headers", None)):
            try:
                if headers and headers.get("retry-after-ms") is not None:
                    return max(0.0, float(headers["retry-after-ms"]) / 1000)
                value = headers.get("retry-after") if headers else None
            except (AttributeError, TypeError, ValueError):
                continue
            if value is not None:
                break
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        # An HTTP-date retry-after: rare from model APIs; fall back to our own backoff.
        return None


def _completion_dict(response: Any) -> dict[str, Any]:
    """litellm's ``ModelResponse`` as a plain OpenAI completion, without null noise."""
    data = response.model_dump() if hasattr(response, "model_dump") else dict(response)
    data.setdefault("object", "chat.completion")
    for choice in data.get("choices") or []:
        message = choice.get("message")
        if isinstance(message, dict):
            # "content": null is meaningful (a pure tool call); other nulls are not.
            choice["message"] = {
                k: v for k, v in message.items() if v is not None or k == "content"
            }
        if choice.get("finish_reason") is None:
            choice["finish_reason"] = "stop"
    usage = data.get("usage")
    if isinstance(usage, dict):
        data["usage"] = {k: v for k, v in usage.items() if v is not None}
    return {k: v for k, v in data.items() if v is not None}


def _cost(litellm: ModuleType, response: Any) -> float | None:
    try:
        cost = litellm.completion_cost(completion_response=response)
    except Exception:
        # Models missing from litellm's price table (local servers, new models) have no cost.
        return None
    return float(cost) if cost is not None else None


def _first_line(exc: BaseException, limit: int = 200) -> str:
    text = str(getattr(exc, "message", None) or exc) or type(exc).__name__
    # litellm prefixes "litellm.XError: " (sometimes twice); the kind already says it.
    while text.startswith("litellm.") and ": " in text:
        text = text.split(": ", 1)[1]
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def map_litellm_error(exc: Exception, backend: LiteLLMBackend, litellm: ModuleType) -> ModelError:
    """One ``ModelError`` for an exception out of ``litellm.acompletion``."""
    model = backend.model
    detail = _first_line(exc)
    lowered = str(exc).lower()
    status = getattr(exc, "status_code", None)
    key_env = PROVIDER_KEY_ENV.get(backend.provider)
    if backend.api_key:
        key_fix = "the key passed with --api-key was rejected; check it"
    elif key_env:
        key_fix = f"check {key_env} or pass --api-key"
    else:
        key_fix = "set the provider's API key variable or pass --api-key"
    where = f" at {backend.base_url}" if backend.base_url else ""

    def is_a(*names: str) -> bool:
        types = tuple(t for t in (getattr(litellm, n, None) for n in names) if isinstance(t, type))
        return bool(types) and isinstance(exc, types)

    # Order matters: ContextWindowExceededError is a BadRequestError, APIConnectionError
    # carries status 500, and so on.
    if is_a("ContextWindowExceededError"):
        return ModelError(
            "context_window",
            f"context window exceeded for {model}: the conversation is too long for this model; "
            f"shorten it, lower max_tokens or use a model with a larger context ({detail})",
        )
    if is_a("AuthenticationError"):
        return ModelError(
            "authentication", f"authentication failed for {model}: {key_fix}", systemic=True
        )
    if is_a("PermissionDeniedError"):
        return ModelError(
            "authentication",
            f"permission denied for {model}: this key may not use this model; {key_fix} ({detail})",
            systemic=True,
        )
    if is_a("RateLimitError"):
        if "insufficient_quota" in lowered or "exceeded your current quota" in lowered:
            # A 429 that no wait will fix: the account is out of credit.
            return ModelError(
                "rate_limit",
                f"quota exhausted for {model}: add credit to the provider account ({detail})",
                systemic=True,
            )
        return ModelError(
            "rate_limit",
            f"rate limited by {backend.provider} for {model}: lower the concurrency or wait "
            f"({detail})",
            retryable=True,
        )
    if is_a("Timeout"):
        return ModelError(
            "timeout",
            f"{model}{where} did not answer in time: retry later or raise the timeout ({detail})",
            retryable=True,
        )
    if is_a("NotFoundError") or (
        is_a("BadRequestError") and any(h in lowered for h in _UNKNOWN_MODEL_HINTS)
    ):
        fix = "check the model name, written provider/name as in openai/gpt-4o-mini"
        if backend.base_url:
            fix += " (and --base-url)"
        return ModelError(
            "unknown_model", f"unknown model {model}{where}: {fix} ({detail})", systemic=True
        )
    if is_a("APIConnectionError") or (
        is_a("InternalServerError") and "connection error" in lowered
    ):
        # litellm reports a refused connection to an OpenAI-compatible base URL as a 500
        # "Connection error."; it is a network problem, not the server's.
        target = backend.base_url or f"the {backend.provider} API"
        return ModelError(
            "connection",
            f"cannot connect to {target} for {model}: check the network"
            + (" and --base-url" if backend.base_url else "")
            + f" ({detail})",
            retryable=True,
        )
    if is_a("InternalServerError", "ServiceUnavailableError", "BadGatewayError") or (
        isinstance(status, int) and status >= 500
    ):
        return ModelError(
            "server_error",
            f"{backend.provider} server error for {model}: retry later ({detail})",
            retryable=True,
        )
    if is_a("BadRequestError", "UnprocessableEntityError") or (
        isinstance(status, int) and 400 <= status < 500
    ):
        return ModelError(
            "bad_request",
            f"{model} rejected the request: {detail} (check the agent's messages, tools and "
            "sampling params)",
        )
    # Anything else escaped litellm's own mapping: report it, don't retry it blindly.
    return ModelError(
        "server_error", f"{model} call failed: {type(exc).__name__}: {detail}", retryable=False
    )
