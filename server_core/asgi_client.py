"""A minimal in-process HTTP client for ASGI apps: the same requests, without a socket.

When the workbench runs the user's agent and its local trainer in one process, every hop of the
protocol (init, chat callback, completion) still goes through the real ASGI apps: routing,
auth, validation, status codes and JSON bodies exactly as on the wire. Only the transport is
skipped. httpx's ``ASGITransport`` does the same but costs ~0.7 ms of client-side work per
request (URL parsing, header models, cookie extraction); this client costs a fraction of that,
which is what lets one process drive thousands of rollouts a second
(benchmarks/bench_batch.py).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from server_core.http_client import HTTPClient, HTTPReply

ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[..., Any], Callable[..., Any]], Awaitable[None]
]


class ASGIClient(HTTPClient):
    """Sends HTTP requests straight into an ASGI app (``post``/``get``, like httpx's)."""

    def __init__(self, app: ASGIApp, *, host: str = "in-process") -> None:
        self.app = app
        self.host = host

    async def _send(
        self, method: str, url: str, body: bytes, headers: dict[str, str], timeout: float | None
    ) -> HTTPReply:
        """One request/response exchange with the app (in process: no timeout to apply)."""
        parts = urlsplit(url)
        raw_headers = [(b"host", (parts.netloc or self.host).encode("latin-1"))]
        raw_headers.append((b"content-length", str(len(body)).encode()))
        for name, value in headers.items():
            raw_headers.append((name.encode("latin-1"), value.encode("latin-1")))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": parts.scheme or "http",
            "path": parts.path or "/",
            "raw_path": (parts.path or "/").encode(),
            "query_string": parts.query.encode(),
            "root_path": "",
            "headers": raw_headers,
            "client": ("127.0.0.1", 0),
            "server": (parts.hostname or self.host, parts.port or 80),
            "state": {},
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}

        status = 500
        response_headers: dict[str, str] = {}
        chunks: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", ()):
                    response_headers[name.decode("latin-1").lower()] = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await self.app(scope, receive, send)
        except Exception as exc:  # as a server would: the caller sees a 500, not a traceback
            return HTTPReply(
                500,
                {"content-type": "application/json"},
                _json_error(f"internal error: {type(exc).__name__}"),
            )
        return HTTPReply(status, response_headers, b"".join(chunks))

    async def aclose(self) -> None:
        """Nothing to release; here so it can stand in for an httpx client."""


def _json_error(detail: str) -> bytes:
    return json.dumps({"detail": detail}).encode()
