"""One HTTP client interface for the SDK and the workbench, over three stacks.

``HTTPClient`` is what callers see: ``request``/``post``/``get`` returning an ``HTTPReply``,
failures raised as ``HTTPTimeout`` or ``HTTPTransportError`` (both ``HTTPError``). Three
implementations: ``AiohttpClient`` (the network at scale), ``HttpxClient`` (custom httpx
transports, e.g. tests' ``ASGITransport``), and ``server_core.asgi_client.ASGIClient`` (an ASGI
app in this process, without a socket).

Measured (benchmarks/README.md, bench_http_client.py): aiohttp costs 0.24-0.35 ms of CPU per
request whatever its pool size, while httpx's pool costs grow with queued requests x
connections (3-14 ms per request at 128 in flight) and stall at 1,024. So the hot paths use
aiohttp; httpx stays for custom transports (tests' ``ASGITransport``).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import Any
from urllib.parse import urlsplit

import httpx
import pydantic_core


class HTTPReply:
    """The parts of an HTTP response the SDK reads (an ``httpx.Response`` look-alike).

    Also what the trainer client's aiohttp transport returns, so callers see one shape.
    """

    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, headers: dict[str, str], content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content

    @property
    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON."""
        return pydantic_core.from_json(self.content)

    @property
    def is_success(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status_code < 300


class HTTPError(Exception):
    """A request got no HTTP answer."""


class HTTPTimeout(HTTPError):
    """A request got no answer in time."""


class HTTPTransportError(HTTPError):
    """A request failed below HTTP: refused, reset, DNS..."""


class HTTPClient(ABC):
    """What the SDK and the workbench send requests through: ``request``, and ``post``/``get``
    built on it. Failures are ``HTTPTimeout``/``HTTPTransportError``; any status is a reply."""

    async def request(
        self,
        method: str,
        url: str,
        *,
        content: bytes | str | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> HTTPReply:
        """One request; the whole body is read (within ``timeout`` seconds, when given).

        ``json`` is encoded here (pydantic-core: several times faster than json.dumps).
        """
        headers = {k.lower(): v for k, v in (headers or {}).items()}
        if json is not None:
            content = pydantic_core.to_json(json)
            headers.setdefault("content-type", "application/json")
        elif isinstance(content, str):
            content = content.encode()
        return await self._send(method, url, content or b"", headers, timeout)

    @abstractmethod
    async def _send(
        self, method: str, url: str, body: bytes, headers: dict[str, str], timeout: float | None
    ) -> HTTPReply:
        """Send one request with its body encoded and header names lower-cased."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release connections."""

    async def post(self, url: str, **kwargs: Any) -> HTTPReply:
        """POST ``url`` (``content=`` bytes or ``json=`` object, ``headers=``, ``timeout=``)."""
        return await self.request("POST", url, **kwargs)

    async def get(self, url: str, **kwargs: Any) -> HTTPReply:
        """GET ``url``."""
        return await self.request("GET", url, **kwargs)


class AiohttpClient(HTTPClient):
    """One pooled ``aiohttp.ClientSession`` behind an httpx-like ``post``/``get``.

    Create it inside the running loop. Errors come out as ``HTTPTimeout`` /
    ``HTTPTransportError``, replies as ``HTTPReply``.
    """

    def __init__(
        self,
        limit: int = 100,
        *,
        limit_per_host: int = 0,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 300.0,
    ) -> None:
        import aiohttp  # ~0.15 s; only when the first request is made

        self._aiohttp = aiohttp
        #: Requests being sent to one origin, at most ``limit_per_host``: the others wait
        #: here, holding only their body, for a slot (and their timeout starts once they
        #: have one). Waiting inside aiohttp for a pooled connection instead, each held its
        #: built request, headers and timers: with 1,000 rollouts ending at once that tripled
        #: the live objects the young garbage collections scan, pausing the event loop for
        #: 35-70 ms (benchmarks/README.md, bench_server.py).
        self._per_host = limit_per_host
        self._slots: dict[tuple[str, str], asyncio.Semaphore] = {}
        # No total timeout, and sock_connect rather than connect: aiohttp's "connect" includes
        # the wait for a free pooled connection, which must not time out a queued request.
        # ``limit=0`` is no total limit (``limit_per_host`` still applies).
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limit, limit_per_host=limit_per_host),
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=connect_timeout_s, sock_read=read_timeout_s
            ),
            skip_auto_headers=("User-Agent",),
        )

    def _slot(self, url: str) -> asyncio.Semaphore | None:
        """The send slots of ``url``'s origin (``None``: no per-host limit)."""
        if not self._per_host:
            return None
        parts = urlsplit(url)
        origin = (parts.scheme, parts.netloc)
        slot = self._slots.get(origin)
        if slot is None:
            slot = self._slots[origin] = asyncio.Semaphore(self._per_host)
        return slot

    async def _send(
        self, method: str, url: str, body: bytes, headers: dict[str, str], timeout: float | None
    ) -> HTTPReply:
        slot = self._slot(url)
        if slot is None:
            return await self._send_now(method, url, body, headers, timeout)
        async with slot:
            return await self._send_now(method, url, body, headers, timeout)

    async def _send_now(
        self, method: str, url: str, body: bytes, headers: dict[str, str], timeout: float | None
    ) -> HTTPReply:
        try:
            per_request = self._aiohttp.ClientTimeout(total=timeout) if timeout else None
            async with self._session.request(
                method,
                url,
                data=body,
                headers=headers,
                timeout=per_request or self._session.timeout,
            ) as response:
                content = await response.read()
                return HTTPReply(
                    response.status, {k.lower(): v for k, v in response.headers.items()}, content
                )
        except TimeoutError as exc:
            raise HTTPTimeout(str(exc) or "timed out") from None
        except self._aiohttp.ClientError as exc:
            raise HTTPTransportError(str(exc) or type(exc).__name__) from None

    async def aclose(self) -> None:
        """Close the pool."""
        await self._session.close()


class HttpxClient(HTTPClient):
    """An ``httpx.AsyncClient`` behind the same interface (for custom httpx transports)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def _send(
        self, method: str, url: str, body: bytes, headers: dict[str, str], timeout: float | None
    ) -> HTTPReply:
        extra: dict[str, Any] = {"timeout": timeout} if timeout else {}
        try:
            response = await self._client.request(
                method, url, content=body, headers=headers, **extra
            )
        except httpx.TimeoutException as exc:
            raise HTTPTimeout(str(exc) or "timed out") from None
        except httpx.TransportError as exc:
            raise HTTPTransportError(str(exc) or type(exc).__name__) from None
        return HTTPReply(
            response.status_code,
            {k.lower(): v for k, v in response.headers.items()},
            response.content,
        )

    async def aclose(self) -> None:
        """Close the httpx client."""
        await self._client.aclose()
