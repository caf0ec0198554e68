"""What every live model backend shares: keys, one classification of failures, one retry loop.

A live backend (plain HTTP to an OpenAI-compatible server, or litellm for other providers)
turns each failure into a ``ModelError`` with ``provider_error`` *before* anything decides to
retry, and ``with_retries`` is the only loop that retries. Final failures (missing or refused
credentials, an unknown model, a bad request) are raised at once with the fix; only rate
limits, 5xx, timeouts and dropped connections are tried again.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from osmosis_workbench.engine.models.base import PROTOCOL_KEYS, ModelError

logger = logging.getLogger("osmosis_workbench.engine.models")

T = TypeVar("T")

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

#: Chat-callback keys forwarded to a provider: OpenAI's sampling and tool parameters. The
#: protocol's own fields (model, rollout_id, logprobs) and streaming are left out.
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

#: A provider's retry-after is honoured up to this, so one answer cannot park a run for hours.
MAX_RETRY_AFTER_S = 60.0

#: Phrases in a 400/404 body that mean the model name is wrong rather than the request.
UNKNOWN_MODEL_HINTS = (
    "llm provider not provided",
    "unmapped llm provider",
    "model_not_found",
    "does not exist",
    "unknown model",
    "invalid model",
    "model not found",
)
#: Phrases that mean the conversation is longer than the model's context.
CONTEXT_HINTS = ("context_length_exceeded", "maximum context length", "context window")
#: Phrases that mean no credentials were sent at all (some SDKs report it as a 500).
MISSING_KEY_HINTS = (
    "missing credentials",
    "api_key client option must be set",
    "no api key provided",
    "api key not found",
)
#: Phrases that mean a connection was never made (some SDKs report it as a 500): waiting for
#: a retry will not start the server nor fix the host name.
CONNECT_FAILED_HINTS = (
    "cannot connect to host",
    "connection refused",
    "name or service not known",
    "nodename nor servname",
    "temporary failure in name resolution",
)
#: Phrases of a 429 that no wait will fix: the account is out of credit.
QUOTA_HINTS = ("insufficient_quota", "exceeded your current quota")


@dataclass(frozen=True)
class ProviderTarget:
    """The model a live backend calls, as its error messages name it."""

    #: As the user wrote it: "openai/gpt-4o-mini", "Qwen/Qwen2.5-7B-Instruct".
    model: str
    #: "openai" for OpenAI and every OpenAI-compatible server, else litellm's provider.
    provider: str = "openai"
    base_url: str | None = None
    #: Whether a key was passed on the command line (else it came from the environment).
    explicit_key: bool = False

    @property
    def key_env(self) -> str | None:
        """The environment variable this provider's key is read from."""
        return PROVIDER_KEY_ENV.get(self.provider)

    @property
    def where(self) -> str:
        """ " at URL" for a custom server, else nothing."""
        return f" at {self.base_url}" if self.base_url else ""

    def key_fix(self) -> str:
        """How to give a key that works."""
        if self.explicit_key:
            return "the key passed with --model-api-key was rejected; check it"
        if self.key_env:
            return f"set {self.key_env} (export {self.key_env}=...) or pass --model-api-key"
        return "set the provider's API key variable or pass --model-api-key"

    def key_in_environment(self) -> bool:
        """Whether the provider's variable is set (providers without one count as set)."""
        return self.key_env is None or bool(os.environ.get(self.key_env))


def missing_key_error(target: ProviderTarget) -> ModelError | None:
    """The final error for a hosted provider whose key is nowhere, before any network call.

    Custom servers (``base_url``) often need no key, so they are only judged by their answer.
    """
    if target.explicit_key or target.base_url or target.key_in_environment():
        return None
    env = target.key_env
    return ModelError(
        "authentication",
        f"{env} is not set: export {env}=<your key>, or pass --model-api-key, "
        f"to use {target.model}",
        systemic=True,
    )


def provider_error(
    kind: str,
    target: ProviderTarget,
    detail: str = "",
    *,
    retry_after_s: float | None = None,
    connect_failed: bool = False,
) -> ModelError:
    """The one ``ModelError`` for a classified failure: its message, fix and whether to retry.

    ``kind`` is one of ``ErrorKind``, plus ``"permission"`` (a key that may not use the model)
    and ``"quota"`` (a 429 that no wait fixes). ``connect_failed`` marks a connection that was
    never made (refused, unknown host): retrying will not start the server.
    """
    model, where = target.model, target.where
    said = f" ({detail})" if detail else ""
    if kind == "authentication":
        if not detail or any(h in detail.lower() for h in MISSING_KEY_HINTS):
            error = missing_key_error(target)
            if error is not None:
                return error
        return ModelError(
            "authentication",
            f"authentication failed for {model}{where}: {target.key_fix()}{said}",
            systemic=True,
        )
    if kind == "permission":
        return ModelError(
            "authentication",
            f"permission denied for {model}{where}: this key may not use this model; "
            f"{target.key_fix()}{said}",
            systemic=True,
        )
    if kind == "quota":
        return ModelError(
            "rate_limit",
            f"quota exhausted for {model}: add credit to the provider account{said}",
            systemic=True,
        )
    if kind == "rate_limit":
        return ModelError(
            "rate_limit",
            f"rate limited by {target.base_url or target.provider} for {model}: lower the "
            f"concurrency or wait{said}",
            retryable=True,
            retry_after_s=retry_after_s,
        )
    if kind == "context_window":
        return ModelError(
            "context_window",
            f"context window exceeded for {model}: the conversation is too long for this "
            f"model; shorten it, lower max_tokens or use a model with a larger context{said}",
        )
    if kind == "timeout":
        return ModelError(
            "timeout",
            f"{model}{where} did not answer in time: retry later or raise the timeout{said}",
            retryable=True,
        )
    if kind == "unknown_model":
        fix = "check the model name, written provider/name as in openai/gpt-4o-mini"
        if target.base_url:
            fix = "check the model name the server serves and --base-url (it usually ends in /v1)"
        return ModelError(
            "unknown_model", f"unknown model {model}{where}: {fix}{said}", systemic=True
        )
    if kind == "connection":
        server = target.base_url or f"the {target.provider} API"
        if connect_failed:
            # A connection never made will not be made by waiting: say so once.
            fix = (
                "is the server running? check --base-url"
                if target.base_url
                else "check the network"
            )
            message = f"cannot connect to {server} for {model}: {fix}{said}"
        else:
            fix = "check the network" + (" and --base-url" if target.base_url else "")
            message = f"cannot reach {server} for {model}: {fix}{said}"
        return ModelError(
            "connection", message, retryable=not connect_failed, systemic=connect_failed
        )
    if kind == "server_error":
        return ModelError(
            "server_error",
            f"{target.base_url or target.provider} server error for {model}: retry later{said}",
            retryable=True,
            retry_after_s=retry_after_s,
        )
    if kind == "bad_request":
        return ModelError(
            "bad_request",
            f"{model}{where} rejected the request{said} (check the agent's messages, tools and "
            "sampling params)",
        )
    raise ValueError(f"unknown provider failure kind {kind!r}")


def classify_http_status(
    status: int, detail: str, target: ProviderTarget, *, retry_after_s: float | None = None
) -> ModelError:
    """The ``ModelError`` for an HTTP error answer of an OpenAI-compatible server."""
    lowered = detail.lower()
    if status == 401:
        kind = "authentication"
    elif status == 403:
        kind = "permission"
    elif status == 404 or (status in (400, 422) and any(h in lowered for h in UNKNOWN_MODEL_HINTS)):
        kind = "unknown_model"
    elif status in (400, 413) and any(h in lowered for h in CONTEXT_HINTS):
        kind = "context_window"
    elif status == 408:
        kind = "timeout"
    elif status == 429:
        kind = "quota" if any(h in lowered for h in QUOTA_HINTS) else "rate_limit"
    elif status >= 500:
        kind = "server_error"
    else:
        kind = "bad_request"
    return provider_error(kind, target, f"HTTP {status}: {detail}", retry_after_s=retry_after_s)


class ParamForwarder:
    """Picks the keys of a chat body that go to the provider, warning once per dropped key.

    OpenAI's parameters (``FORWARDED_PARAMS``) always go; the protocol's own keys never do.
    Anything else is dropped (hosted providers reject unknown parameters) unless
    ``pass_unknown``: self-hosted servers accept extensions such as vLLM's ``top_k``.
    """

    def __init__(self, name: str, *, pass_unknown: bool = False) -> None:
        self.name = name
        self.pass_unknown = pass_unknown
        self._warned: set[str] = set()

    def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        """The parameters to send, without ``messages``."""
        params: dict[str, Any] = {}
        for key, value in body.items():
            if key == "messages" or key in PROTOCOL_KEYS or value is None:
                continue
            if key in FORWARDED_PARAMS or self.pass_unknown:
                params[key] = value
            elif key not in self._warned:
                self._warned.add(key)
                logger.warning(
                    "%s: not forwarding %r, not an OpenAI chat parameter", self.name, key
                )
        return params


def first_line(text: str, limit: int = 200) -> str:
    """``text`` squeezed to one line of at most ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait before trying a retryable failure again."""

    max_retries: int = 3
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    #: Injected by tests to record the waits instead of sleeping.
    sleep: Callable[[float], Awaitable[Any]] = field(default=asyncio.sleep, compare=False)

    def delay(self, attempt: int, error: ModelError) -> float:
        """The wait before retry ``attempt``: the provider's retry-after, else jittered backoff."""
        if error.retry_after_s is not None:
            return min(max(0.0, error.retry_after_s), MAX_RETRY_AFTER_S)
        # The SDK's helper, so trainer callbacks and model calls back off alike. Imported here:
        # `import server_core` pulls in FastAPI (~1.7 s cold), which only the retry path needs.
        from server_core.trainer_client import backoff_delay

        return backoff_delay(attempt, self.base_delay_s, self.max_delay_s)


async def with_retries(attempt: Callable[[], Awaitable[T]], policy: RetryPolicy) -> T:
    """Await ``attempt()`` until it succeeds, retrying only ``ModelError.retryable`` failures.

    ``attempt`` must raise classified ``ModelError``s; a final one is raised at once, and the
    last retryable one after ``policy.max_retries`` retries, saying how many attempts it made.
    """
    tries = 0
    while True:
        try:
            return await attempt()
        except ModelError as error:
            if not error.retryable or tries >= policy.max_retries:
                if tries:
                    raise ModelError(
                        error.kind,
                        f"{error.message} (gave up after {tries + 1} attempts)",
                        retryable=error.retryable,
                        systemic=error.systemic,
                    ) from error.__cause__
                raise
            delay = policy.delay(tries, error)
            logger.warning(
                "%s; retry %d/%d in %.1f s", error.message, tries + 1, policy.max_retries, delay
            )
            await policy.sleep(delay)
            tries += 1
