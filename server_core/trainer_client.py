"""The two callbacks a rollout server makes to the trainer, over one shared pooled client.

The 0.2.x SDK built an HTTP client (and a TLS context) per rollout, about 43 ms of CPU each.
Here one aiohttp session serves every rollout of the server, with its connection limit from
``TrainerClientConfig`` (benchmarks/bench_http_client.py has the figures behind the choice).
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Any

import httpx
import pydantic_core

from server_core.asgi_client import ASGIClient
from server_core.errors import LLMCallError, TrainerProtocolError
from server_core.http_client import AiohttpClient, HTTPTimeout, HTTPTransportError

logger = logging.getLogger("server_core.trainer_client")

#: Bodies with more messages than this are encoded in a thread, off the event loop.
_LARGE_BODY_MESSAGES = 400


@dataclass(frozen=True)
class TrainerClientConfig:
    """Timeouts, retries and pool limits of the callbacks."""

    timeout_s: float = 300.0
    connect_timeout_s: float = 10.0
    chat_retries: int = 3
    completion_retries: int = 5
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 16.0
    #: Connections for chat calls: one per running rollout is cheap with aiohttp (its cost per
    #: request is flat in the pool size), so ``create_app`` sets it to ``max_concurrent``.
    #: Completions get a pool of their own, an eighth of this size (at least 8).
    max_connections: int = 100


@dataclass(frozen=True)
class Delivery:
    """How the completion callback ended: ``delivered`` or ``failed`` with the reason."""

    delivered: bool
    status_code: int | None
    attempts: int
    error: str | None = None


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


async def _encode(body: dict, list_key: str) -> bytes:
    """``body`` as JSON bytes; a long ``body[list_key]`` is encoded in a thread."""
    if len(body.get(list_key, ())) > _LARGE_BODY_MESSAGES:
        return await asyncio.to_thread(pydantic_core.to_json, body)
    return pydantic_core.to_json(body)


def _retryable_status(code: int) -> bool:
    return code == 429 or code >= 500


class _HttpxPoster:
    """POSTs over an ``httpx.AsyncClient`` (custom transports, e.g. tests' ASGITransport),
    with httpx's errors translated to ours."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def post(self, url: str, *, content: bytes, headers: dict[str, str]) -> Any:
        try:
            return await self._client.post(url, content=content, headers=headers)
        except httpx.TimeoutException as exc:
            raise HTTPTimeout(str(exc) or "timed out") from None
        except httpx.TransportError as exc:
            raise HTTPTransportError(str(exc) or type(exc).__name__) from None

    async def aclose(self) -> None:
        await self._client.aclose()


class TrainerClient:
    """Posts chat and completion callbacks to trainers; one instance per server process.

    The callbacks go over one shared aiohttp session (chat calls) plus a small one of their
    own for completions, so a finished rollout's result never queues behind chat calls.
    ``transport``/``mounts`` route through httpx instead (tests use ``httpx.ASGITransport``).
    ``local_apps`` maps a trainer base URL to an ASGI app in this process, reached with
    ``ASGIClient``: the same HTTP requests into the same app, without a socket (the
    workbench's local trainer).
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
        self._chat_poster: Any = None
        self._completion_poster: Any = None

    def _new_poster(self, limit: int) -> Any:
        cfg = self.config
        if self._transport is None and self._mounts is None:
            return AiohttpClient(
                limit, connect_timeout_s=cfg.connect_timeout_s, read_timeout_s=cfg.timeout_s
            )
        return _HttpxPoster(
            httpx.AsyncClient(
                timeout=httpx.Timeout(cfg.timeout_s, connect=cfg.connect_timeout_s),
                limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
                transport=self._transport,
                mounts=self._mounts,
            )
        )

    def _poster(self, server_url: str, *, completion: bool) -> Any:
        local = self._local.get(server_url)
        if local is not None:
            return local
        # Created on first use, inside the running loop.
        if completion:
            if self._completion_poster is None:
                limit = max(8, self.config.max_connections // 8)
                self._completion_poster = self._new_poster(limit)
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

    async def chat(self, server_url: str, body: dict, *, api_key: str | None) -> Any:
        """POST one chat callback; returns the parsed JSON of the 200 answer.

        4xx is final (raised as ``LLMCallError`` with the trainer's detail); 5xx, 429,
        timeouts and transport errors are retried with jittered backoff.
        """
        content = await _encode(body, "messages")
        url = f"{server_url}/v1/chat/completions"
        client = self._poster(server_url, completion=False)
        cfg = self.config
        last_error = ""
        for attempt in range(cfg.chat_retries + 1):
            delay: float | None = None
            try:
                response = await client.post(url, content=content, headers=self._headers(api_key))
            except HTTPTimeout:
                last_error = f"timed out after {cfg.timeout_s:g}s"
            except HTTPTransportError as exc:
                last_error = f"transport error: {exc}"
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
                if not _retryable_status(code):
                    raise LLMCallError(
                        f"trainer refused the chat request: HTTP {code}: {detail}",
                        status_code=code,
                    )
                last_error = f"HTTP {code}: {detail}"
                delay = _retry_after(response, cfg.backoff_cap_s)
            if attempt < cfg.chat_retries:
                if delay is None:
                    delay = backoff_delay(attempt, cfg.backoff_base_s, cfg.backoff_cap_s)
                await asyncio.sleep(delay)
        raise LLMCallError(
            f"chat callback to {url} failed after {cfg.chat_retries + 1} attempts: {last_error}"
        )

    async def complete(self, server_url: str, body: dict, *, api_key: str | None) -> Delivery:
        """POST the completion callback; any 2xx acknowledges it. Never raises."""
        url = f"{server_url}/v1/rollout/completed"
        client = self._poster(server_url, completion=True)
        try:
            content = await _encode(body, "final_messages")
        except Exception as exc:
            return Delivery(False, None, 0, f"completion body is not JSON: {exc}")
        cfg = self.config
        error = ""
        code: int | None = None
        attempts = 0
        for attempt in range(cfg.completion_retries + 1):
            attempts += 1
            delay: float | None = None
            try:
                response = await client.post(url, content=content, headers=self._headers(api_key))
            except HTTPTimeout:
                error = f"timed out after {cfg.timeout_s:g}s"
            except HTTPTransportError as exc:
                error = f"transport error: {exc}"
            except Exception as exc:  # never let delivery raise into the rollout driver
                error = f"{type(exc).__name__}: {exc}"
            else:
                code = response.status_code
                if 200 <= code < 300:
                    return Delivery(True, code, attempts)
                error = f"HTTP {code}: {response.text[:300]}"
                if not _retryable_status(code):
                    return Delivery(False, code, attempts, error)
                delay = _retry_after(response, cfg.backoff_cap_s)
            if attempt < cfg.completion_retries:
                if delay is None:
                    delay = backoff_delay(attempt, cfg.backoff_base_s, cfg.backoff_cap_s)
                await asyncio.sleep(delay)
        return Delivery(False, code, attempts, error)
