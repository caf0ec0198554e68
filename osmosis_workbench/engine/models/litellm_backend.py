"""A live model through litellm: any provider litellm knows, imported only when first used.

``import litellm`` costs about 5-13 s of CPU on this machine and, unless
``LITELLM_LOCAL_MODEL_COST_MAP`` is set, fetches a price table over the network. So it is
never imported with this module: ``start_loading`` begins it in a background thread as soon as
a run knows it needs litellm, or the first answer imports it in a worker thread. Its loggers
are routed to the application's handlers. OpenAI and OpenAI-compatible servers do not need it
(``openai_compatible``).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import threading
import time
import warnings
from types import ModuleType
from typing import Any

from osmosis_workbench.engine.models.base import (
    PROBE_BODY,
    ModelError,
    ModelReply,
    clean_completion,
)
from osmosis_workbench.engine.models.providers import (
    CONNECT_FAILED_HINTS,
    MISSING_KEY_HINTS,
    QUOTA_HINTS,
    UNKNOWN_MODEL_HINTS,
    ParamForwarder,
    ProviderTarget,
    RetryPolicy,
    first_line,
    missing_key_error,
    provider_error,
    with_retries,
)

logger = logging.getLogger("osmosis_workbench.engine.models")

_LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy")
_litellm: ModuleType | None = None
_import_lock = threading.Lock()
#: The thread importing litellm in the background, once ``start_loading`` began it.
_loader: threading.Thread | None = None
_loader_lock = threading.Lock()


def _import_litellm() -> ModuleType:
    """Import and quiet litellm once; runs in a worker thread (the lock makes it once)."""
    global _litellm
    with _import_lock:
        if _litellm is None:
            # Without this litellm downloads its price table at import time.
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            module = importlib.import_module("litellm")
            module.suppress_debug_info = True  # type: ignore[attr-defined]
            module.set_verbose = False  # type: ignore[attr-defined]
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


def start_loading() -> bool:
    """Start importing litellm now in a background thread; False if loaded or loading already.

    A run that will need litellm calls this at once, so the import overlaps with loading the
    agent and the dataset instead of stalling the first row.
    """
    global _loader
    with _loader_lock:
        if _litellm is not None or _loader is not None:
            return False
        # A daemon: a run that fails early must not wait for the import to finish to exit.
        _loader = threading.Thread(target=_import_quietly, name="import-litellm", daemon=True)
        _loader.start()
    return True


def _import_quietly() -> None:
    try:
        _import_litellm()
    except Exception:
        # The first call imports again and reports the failure where it is handled.
        logger.debug("background import of litellm failed", exc_info=True)


class LiteLLMBackend:
    """Answers chat calls with a live model through ``litellm.acompletion``.

    ``model`` is litellm's "provider/name". Failures are classified once (``providers``):
    rate limits, timeouts, dropped connections and 5xx are retried as ``retry`` says (3 times,
    capped exponential backoff with full jitter, or the provider's retry-after); missing
    keys, unknown models and bad requests are raised at once. ``extra_kwargs`` go to
    ``acompletion`` as they are (tests pass ``mock_response`` there).
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        retry: RetryPolicy | None = None,
        timeout_s: float | None = 300.0,
        extra_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.name = model
        self.base_url = base_url
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.extra_kwargs = dict(extra_kwargs or {})
        self.retry = retry or RetryPolicy()
        self.target = ProviderTarget(
            model, self.provider, base_url=base_url, explicit_key=bool(api_key)
        )
        self._params = ParamForwarder(model)

    @property
    def provider(self) -> str:
        """The provider part of the model name ("openai" for "openai/gpt-4o-mini")."""
        return self.model.split("/", 1)[0] if "/" in self.model else "openai"

    def request_kwargs(self, body: dict[str, Any]) -> dict[str, Any]:
        """The ``acompletion`` keyword arguments for one chat body."""
        kwargs: dict[str, Any] = {"model": self.model, "messages": body.get("messages") or []}
        kwargs.update(self._params(body))
        if self.base_url:
            kwargs["api_base"] = self.base_url
        if self.api_key:
            kwargs["api_key"] = self.api_key
        if self.timeout_s is not None:
            kwargs["timeout"] = self.timeout_s
        # Our retries are the only ones: otherwise the OpenAI SDK inside litellm adds two of
        # its own, unseen, to every attempt.
        kwargs["max_retries"] = 0
        kwargs.update(self.extra_kwargs)
        return kwargs

    async def complete(self, body: dict[str, Any]) -> ModelReply:
        """Call the model, retrying transient failures; raise ``ModelError`` on failure."""
        missing = missing_key_error(self.target)
        if missing is not None:
            raise missing
        litellm = await load_litellm()
        kwargs = self.request_kwargs(body)
        started = time.perf_counter()

        async def attempt() -> Any:
            try:
                return await litellm.acompletion(**kwargs)
            except Exception as exc:
                raise map_litellm_error(exc, self, litellm) from exc

        response = await with_retries(attempt, self.retry)
        latency_ms = (time.perf_counter() - started) * 1000
        completion = clean_completion(_as_dict(response))
        return ModelReply(completion, cost_usd=_cost(litellm, response), latency_ms=latency_ms)

    async def probe(self) -> None:
        """One tiny call, before a batch's first row."""
        await self.complete(PROBE_BODY)

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


def _as_dict(response: Any) -> dict[str, Any]:
    """litellm's ``ModelResponse`` as a plain dict."""
    return response.model_dump() if hasattr(response, "model_dump") else dict(response)


def _cost(litellm: ModuleType, response: Any) -> float | None:
    try:
        cost = litellm.completion_cost(completion_response=response)
    except Exception:
        # Models missing from litellm's price table (local servers, new models) have no cost.
        return None
    return float(cost) if cost is not None else None


def map_litellm_error(exc: Exception, backend: LiteLLMBackend, litellm: ModuleType) -> ModelError:
    """One classified ``ModelError`` for an exception out of ``litellm.acompletion``."""
    text = str(getattr(exc, "message", None) or exc) or type(exc).__name__
    # litellm prefixes "litellm.XError: " (sometimes twice); the kind already says it.
    while text.startswith("litellm.") and ": " in text:
        text = text.split(": ", 1)[1]
    detail = first_line(text)
    lowered = str(exc).lower()
    status = getattr(exc, "status_code", None)

    def is_a(*names: str) -> bool:
        types = tuple(t for t in (getattr(litellm, n, None) for n in names) if isinstance(t, type))
        return bool(types) and isinstance(exc, types)

    # Order matters: ContextWindowExceededError is a BadRequestError, APIConnectionError
    # carries status 500, a missing key arrives as a 500, and so on.
    if any(h in lowered for h in MISSING_KEY_HINTS):
        kind = "authentication"
    elif is_a("ContextWindowExceededError"):
        kind = "context_window"
    elif is_a("AuthenticationError"):
        kind = "authentication"
    elif is_a("PermissionDeniedError"):
        kind = "permission"
    elif is_a("RateLimitError"):
        kind = "quota" if any(h in lowered for h in QUOTA_HINTS) else "rate_limit"
    elif is_a("Timeout"):
        kind = "timeout"
    elif is_a("NotFoundError") or (
        is_a("BadRequestError") and any(h in lowered for h in UNKNOWN_MODEL_HINTS)
    ):
        kind = "unknown_model"
    elif (
        is_a("APIConnectionError")
        or (is_a("InternalServerError") and "connection error" in lowered)
        or any(h in lowered for h in CONNECT_FAILED_HINTS)
    ):
        # litellm reports a refused connection to a base URL as a 500 "Connection error.", and
        # an unknown host as a 500 naming it: network problems, not the server's. Only the
        # text tells a connection never made (final) from one dropped (retried).
        kind = "connection"
    elif is_a("InternalServerError", "ServiceUnavailableError", "BadGatewayError") or (
        isinstance(status, int) and status >= 500
    ):
        kind = "server_error"
    elif is_a("BadRequestError", "UnprocessableEntityError") or (
        isinstance(status, int) and 400 <= status < 500
    ):
        kind = "bad_request"
    else:
        # Escaped litellm's own mapping: report it, don't retry it blindly.
        return ModelError(
            "server_error", f"{backend.model} call failed: {type(exc).__name__}: {detail}"
        )
    if kind == "authentication" and not backend.api_key:
        detail = ""  # the fix names the variable; litellm's long hint would only repeat it
    return provider_error(
        kind,
        backend.target,
        detail,
        retry_after_s=retry_after_s(exc),
        connect_failed=kind == "connection" and any(h in lowered for h in CONNECT_FAILED_HINTS),
    )
