"""OpenAI and OpenAI-compatible servers (vLLM, SGLang, Ollama, llama.cpp) over plain HTTP.

The common case of RL work is a policy served by vLLM or SGLang. Talking to its
``{base_url}/chat/completions`` directly with aiohttp (imported in ~0.1 s) lets a run start
its first row within a second of the command, where going through litellm costs its 5-13 s
import first. Failures are classified and retried in ``providers``.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import aiohttp
import pydantic_core

from osmosis_workbench.engine.models.base import (
    PROBE_BODY,
    ModelError,
    ModelReply,
    clean_completion,
)
from osmosis_workbench.engine.models.providers import (
    ParamForwarder,
    ProviderTarget,
    RetryPolicy,
    classify_http_status,
    first_line,
    missing_key_error,
    provider_error,
    with_retries,
)
from osmosis_workbench.engine.pricing import ModelPrice, price_of

#: Where ``openai/NAME`` goes without ``--base-url`` (``$OPENAI_BASE_URL`` overrides it, as
#: for the OpenAI SDK).
OPENAI_API_URL = "https://api.openai.com/v1"


class OpenAICompatibleBackend:
    """Answers chat calls from ``POST {base_url}/chat/completions`` of an OpenAI-style server.

    ``model`` is sent as the request's ``model`` ("gpt-4o-mini", "Qwen/Qwen2.5-7B-Instruct").
    The key is ``api_key``, else ``$OPENAI_API_KEY``; a custom server may need none. Tools,
    tool_choice and sampling params are forwarded, and to a custom server also its own
    extensions (``top_k``, ``min_p``...). Connections are pooled for the backend's lifetime.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        retry: RetryPolicy | None = None,
        timeout_s: float = 300.0,
        connect_timeout_s: float = 10.0,
        max_connections: int = 1024,
    ) -> None:
        custom = base_url or os.environ.get("OPENAI_BASE_URL")
        self.base_url = (custom or OPENAI_API_URL).rstrip("/")
        self.model = model
        self.name = f"openai/{model}" if not custom else f"{model} at {self.base_url}"
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or None
        self.target = ProviderTarget(
            self.name if not custom else model,
            "openai",
            base_url=self.base_url if custom else None,
            explicit_key=bool(api_key),
        )
        self.retry = retry or RetryPolicy()
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_connections = max_connections
        self._params = ParamForwarder(self.name, pass_unknown=bool(custom))
        self._session: aiohttp.ClientSession | None = None
        #: The price of the model's tokens (litellm's map), looked up at the first answer.
        self._price: ModelPrice | None = None
        self._priced = False

    @property
    def url(self) -> str:
        """The endpoint every call posts to."""
        return f"{self.base_url}/chat/completions"

    def request_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """The JSON sent to the server for one chat-callback body."""
        return {"model": self.model, "messages": body.get("messages") or [], **self._params(body)}

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use: a session belongs to the event loop that creates it.
        if self._session is None or self._session.closed:
            headers = {"content-type": "application/json"}
            if self.api_key:
                headers["authorization"] = f"Bearer {self.api_key}"
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections),
                # No total: a queued request must not time out while waiting for a connection;
                # the read timeout bounds one generation.
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self.connect_timeout_s, sock_read=self.timeout_s
                ),
                headers=headers,
            )
        return self._session

    async def complete(self, body: dict[str, Any]) -> ModelReply:
        """Call the server, retrying transient failures; raise ``ModelError`` on failure."""
        missing = missing_key_error(self.target)
        if missing is not None:
            raise missing
        # Encoded once for every attempt; pydantic_core's encoder is several times json's.
        payload = pydantic_core.to_json(self.request_body(body))
        started = time.perf_counter()
        completion = await with_retries(lambda: self._attempt(payload), self.retry)
        latency_ms = (time.perf_counter() - started) * 1000
        return ModelReply(completion, cost_usd=await self._cost(completion), latency_ms=latency_ms)

    async def _cost(self, completion: dict[str, Any]) -> float | None:
        """What the answer cost at the model's list price (``None``: no price known)."""
        if not self._priced:
            # Reading the price map takes ~60 ms, once: off the event loop.
            self._price = await asyncio.to_thread(price_of, self.model)
            self._priced = True
        if self._price is None:
            return None
        usage = completion.get("usage") or {}
        return self._price.cost(usage.get("prompt_tokens"), usage.get("completion_tokens"))

    async def _attempt(self, payload: bytes) -> dict[str, Any]:
        try:
            async with self._client().post(self.url, data=payload) as response:
                raw = await response.read()
                status = response.status
                retry_after = _retry_after_s(response.headers)
        except aiohttp.ClientConnectorError as exc:
            raise provider_error(
                "connection", self.target, first_line(str(exc)), connect_failed=True
            ) from exc
        except TimeoutError as exc:
            raise provider_error("timeout", self.target) from exc
        except aiohttp.ClientError as exc:
            # A connection dropped mid-answer (a reused keep-alive socket the server closed).
            raise provider_error("connection", self.target, first_line(repr(exc))) from exc
        if status >= 400:
            raise classify_http_status(
                status, _error_detail(raw), self.target, retry_after_s=retry_after
            )
        return self._parse(raw)

    def _parse(self, raw: bytes) -> dict[str, Any]:
        try:
            data = pydantic_core.from_json(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            what = "a body that is not JSON" if data is None else "200 without a 'choices' list"
            raise ModelError(
                "server_error",
                f"{self.url} answered {what} ({first_line(raw.decode('utf-8', 'replace'), 120)}):"
                " is --base-url an OpenAI-compatible server (it usually ends in /v1)?",
                systemic=True,
            )
        completion = clean_completion(data)
        completion.setdefault("id", f"chatcmpl-{int(time.time() * 1000)}")
        completion.setdefault("created", int(time.time()))
        completion.setdefault("model", self.model)
        return completion

    async def probe(self) -> None:
        """One tiny call, before a batch's first row."""
        await self.complete(PROBE_BODY)

    async def aclose(self) -> None:
        """Close the pooled connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def _retry_after_s(headers: Any) -> float | None:
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return max(0.0, float(value) / scale)
            except ValueError:
                return None  # an HTTP date: rare from model servers; our backoff applies
    return None


def _error_detail(raw: bytes) -> str:
    """The message of an OpenAI-style error body (``{"error": {"message"}}``), else its text."""
    text = raw.decode("utf-8", "replace")
    try:
        data = pydantic_core.from_json(raw)
    except ValueError:
        return first_line(text) or "(empty body)"
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return first_line(str(error["message"]))
    if isinstance(error, str):
        return first_line(error)
    if isinstance(data, dict) and data.get("detail"):
        return first_line(str(data["detail"]))
    return first_line(text)
