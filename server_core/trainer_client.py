"""The two callbacks a rollout server makes to the trainer, over shared pooled clients.

The 0.2.x SDK built an HTTP client (and a TLS context) per rollout, about 43 ms of CPU each.
Here one aiohttp session carries every rollout's chat calls and another their completions
(benchmarks/bench_http_client.py has the figures behind the choice). Both pools are limited
per trainer host, so a trainer that hangs holds at most its own share of sockets and never
delays another trainer's rollouts.

Retries are bounded by time, not by a count: a trainer that restarts for a minute loses no
rollout (0.2.x gave up after about 7 s).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pydantic_core

from server_core.asgi_client import ASGIClient
from server_core.errors import (
    OsmosisServerError,
    OsmosisTimeoutError,
    OsmosisTransportError,
    OsmosisValidationError,
    TrainerProtocolError,
)
from server_core.executors import SDK_THREADS, run_in
from server_core.http_client import (
    AiohttpClient,
    HTTPClient,
    HTTPTimeout,
    HTTPTransportError,
    HttpxClient,
)

#: Bodies with more messages than this are encoded off the event loop.
_LARGE_BODY_MESSAGES = 400


@dataclass(frozen=True)
class TrainerClientConfig:
    """Timeouts, retry budgets and pool limits of the callbacks."""

    #: Read timeout of one chat attempt (a long generation is normal).
    timeout_s: float = 300.0
    connect_timeout_s: float = 10.0
    #: How long a chat callback keeps being retried (5xx, 429, timeouts, transport errors).
    chat_retry_budget_s: float = 120.0
    #: How long a completion keeps being retried.
    completion_retry_budget_s: float = 120.0
    #: Timeout of one completion attempt: a trainer that never answers is retried, not waited on.
    completion_timeout_s: float = 30.0
    #: Optional caps on the number of retries (within the budgets); None: the budget decides.
    chat_retries: int | None = None
    completion_retries: int | None = None
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 10.0
    #: Chat connections per trainer host: one per running rollout is cheap with aiohttp (its
    #: cost per request is flat in the pool size), so ``create_app`` sets ``max_concurrent``.
    #: Completions get a pool of their own, an eighth of this per host (at least 8).
    max_connections: int = 100


@dataclass(frozen=True)
class Delivery:
    """How the completion callback ended: ``delivered`` or ``failed`` with the reason."""

    delivered: bool
    status_code: int | None
    attempts: int
    error: str | None = None


class DeliveryProgress:
    """A completion's attempts so far, readable while it is still being retried."""

    __slots__ = ("attempts", "error", "status_code")

    def __init__(self) -> None:
        self.attempts = 0
        self.error: str | None = None
        self.status_code: int | None = None

    def result(self, delivered: bool = False) -> Delivery:
        """The delivery as it stands."""
        error = None if delivered else self.error
        return Delivery(delivered, self.status_code, self.attempts, error)


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Capped exponential backoff with full jitter, for retry number ``attempt`` (0-based)."""
    return random.uniform(0, min(cap, base * (2**attempt)))


def _retry_after(response: Any, cap: float) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return min(cap, max(0.0, float(value)))
    except ValueError:
        return None


async def encode_json(body: dict[str, Any], list_key: str) -> bytes:
    """``body`` as JSON bytes; a long ``body[list_key]`` is encoded on the SDK's own thread."""
    if len(body.get(list_key, ())) > _LARGE_BODY_MESSAGES:
        return await run_in(SDK_THREADS, pydantic_core.to_json, body)
    return pydantic_core.to_json(body)


def _retryable_status(code: int) -> bool:
    return code == 429 or code >= 500


class _Retry:
    """When to try again: within a time budget and an optional count, with jittered backoff."""

    def __init__(self, budget_s: float, cap: int | None, cfg: TrainerClientConfig) -> None:
        self._deadline = time.monotonic() + budget_s
        self._cap = cap
        self._cfg = cfg
        self.retries = 0

    async def wait(self, hinted: float | None) -> bool:
        """Sleep before the next attempt; False when the budget or the count is spent."""
        if self._cap is not None and self.retries >= self._cap:
            return False
        cfg = self._cfg
        delay = (
            hinted
            if hinted is not None
            else backoff_delay(self.retries, cfg.backoff_base_s, cfg.backoff_cap_s)
        )
        if time.monotonic() + delay > self._deadline:
            return False
        self.retries += 1
        await asyncio.sleep(delay)
        return True


class TrainerClient:
    """Posts chat and completion callbacks to trainers; one instance per server process.

    ``transport``/``mounts`` route through httpx instead of aiohttp (tests use
    ``httpx.ASGITransport``). ``local_apps`` maps a trainer base URL to an ASGI app in this
    process, reached with ``ASGIClient``: the same HTTP requests into the same app, without a
    socket (the workbench's local trainer).
    """

    def __init__(
        self,
        config: TrainerClientConfig | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        mounts: dict[str, httpx.AsyncBaseTransport] | None = None,
        local_apps: dict[str, Any] | None = None,
    ) -> None:
        self.config = config or TrainerClientConfig()
        self._transport = transport
        self._mounts = mounts
        self._local = {url.rstrip("/"): ASGIClient(app) for url, app in (local_apps or {}).items()}
        self._chat_poster: HTTPClient | None = None
        self._completion_poster: HTTPClient | None = None

    def preload(self) -> None:
        """Import the network client now (aiohttp: ~90 ms with its TLS contexts), before the
        first rollout would pay for it on the event loop while a burst of inits waits."""
        if self._transport is None and self._mounts is None:
            import aiohttp  # noqa: F401

    def _new_poster(self, per_host: int) -> HTTPClient:
        cfg = self.config
        if self._transport is None and self._mounts is None:
            return AiohttpClient(
                0,
                limit_per_host=per_host,
                connect_timeout_s=cfg.connect_timeout_s,
                read_timeout_s=cfg.timeout_s,
            )
        return HttpxClient(
            httpx.AsyncClient(
                timeout=httpx.Timeout(cfg.timeout_s, connect=cfg.connect_timeout_s),
                limits=httpx.Limits(max_connections=per_host, max_keepalive_connections=per_host),
                transport=self._transport,
                mounts=self._mounts,
            )
        )

    def _poster(self, server_url: str, *, completion: bool) -> HTTPClient:
        local = self._local.get(server_url)
        if local is not None:
            return local
        # Created on first use, inside the running loop.
        if completion:
            if self._completion_poster is None:
                self._completion_poster = self._new_poster(max(8, self.config.max_connections // 8))
            return self._completion_poster
        if self._chat_poster is None:
            self._chat_poster = self._new_poster(self.config.max_connections)
        return self._chat_poster

    async def aclose(self) -> None:
        """Close the pools; a later call opens new ones."""
        posters = (self._chat_poster, self._completion_poster)
        self._chat_poster = self._completion_poster = None
        for poster in posters:
            if poster is not None:
                await poster.aclose()

    @staticmethod
    def _headers(api_key: str | None) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        return headers

    async def chat(self, server_url: str, body: dict[str, Any], *, api_key: str | None) -> Any:
        """POST one chat callback; returns the parsed JSON of the 200 answer.

        4xx is final (``OsmosisValidationError`` with the trainer's detail); 5xx, 429,
        timeouts and transport errors are retried with jittered backoff within the budget,
        then raised as ``OsmosisServerError``/``OsmosisTimeoutError``/``OsmosisTransportError``.
        """
        content = await encode_json(body, "messages")
        url = f"{server_url}/v1/chat/completions"
        client = self._poster(server_url, completion=False)
        cfg = self.config
        retry = _Retry(cfg.chat_retry_budget_s, cfg.chat_retries, cfg)
        attempts = 0
        while True:
            attempts += 1
            hinted: float | None = None
            try:
                response = await client.post(url, content=content, headers=self._headers(api_key))
            except HTTPTimeout:
                failure: Exception = OsmosisTimeoutError(
                    f"chat callback to {url} timed out after {cfg.timeout_s:g}s"
                )
            except HTTPTransportError as exc:
                failure = OsmosisTransportError(f"chat callback to {url} failed: {exc}")
            else:
                code = response.status_code
                if code == 200:
                    try:
                        return pydantic_core.from_json(response.content)
                    except ValueError:
                        snippet = response.text[:120]
                        raise TrainerProtocolError(
                            f"trainer answered 200 with a body that is not JSON: {snippet!r}"
                        ) from None
                detail = response.text[:500]
                if code < 400:
                    raise OsmosisValidationError(
                        f"Unexpected status code {code} from the trainer's chat endpoint "
                        "(expected 200)",
                        code,
                    )
                if not _retryable_status(code):
                    raise OsmosisValidationError(
                        f"trainer refused the chat request: HTTP {code}: {detail}", code
                    )
                failure = OsmosisServerError(f"trainer answered HTTP {code}: {detail}", code)
                hinted = _retry_after(response, cfg.backoff_cap_s)
            if not await retry.wait(hinted):
                failure.args = (f"{failure.args[0]} (gave up after {attempts} attempts)",)
                raise failure

    async def complete(
        self,
        server_url: str,
        body: dict[str, Any],
        *,
        api_key: str | None,
        progress: DeliveryProgress | None = None,
    ) -> Delivery:
        """POST the completion callback; any 2xx acknowledges it. Never raises.

        ``progress`` is updated as attempts are made, so a delivery cut short (shutdown)
        still tells how far it got.
        """
        progress = progress or DeliveryProgress()
        url = f"{server_url}/v1/rollout/completed"
        client = self._poster(server_url, completion=True)
        try:
            content = await encode_json(body, "final_messages")
        except Exception as exc:
            progress.error = f"completion body is not JSON: {exc}"
            return progress.result()
        cfg = self.config
        retry = _Retry(cfg.completion_retry_budget_s, cfg.completion_retries, cfg)
        while True:
            progress.attempts += 1
            hinted: float | None = None
            try:
                response = await client.post(
                    url,
                    content=content,
                    headers=self._headers(api_key),
                    timeout=cfg.completion_timeout_s,
                )
            except HTTPTimeout:
                progress.error = f"timed out after {cfg.completion_timeout_s:g}s"
            except HTTPTransportError as exc:
                progress.error = f"transport error: {exc}"
            except Exception as exc:  # never let delivery raise into the rollout driver
                progress.error = f"{type(exc).__name__}: {exc}"
            else:
                code = progress.status_code = response.status_code
                if 200 <= code < 300:
                    return progress.result(delivered=True)
                progress.error = f"HTTP {code}: {response.text[:300]}"
                if not _retryable_status(code):
                    return progress.result()
                hinted = _retry_after(response, cfg.backoff_cap_s)
            if not await retry.wait(hinted):
                return progress.result()
