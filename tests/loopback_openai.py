"""A real OpenAI-compatible HTTP server on loopback: the policy model for tests and benchmarks.

It serves ``POST /v1/chat/completions`` from a thread (stdlib ``http.server``, keep-alive
HTTP/1.1), so it answers a CLI run in this process, in a subprocess, or an async test alike.
Its answers come from a ``policy(body) -> reply`` function, with a reply written compactly:
``{"content": "..."}`` or ``{"tool_calls": [{"name", "arguments"}]}``, or ``Status(code, body)``
for an error answer. It records every request with its arrival time.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Status:
    """An error answer: a status code, a JSON body and headers."""

    code: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Policy = Callable[[dict[str, Any]], "dict[str, Any] | Status"]


def calculator_policy(body: dict[str, Any]) -> dict[str, Any]:
    """Solves the sample calculator's questions step by step, as its cassette does; "OK" to
    anything else (a run's probe)."""
    from sample_project.record_cassette import PLANS, scripted_calculator

    question = next((m["content"] for m in body["messages"] if m["role"] == "user"), None)
    return scripted_calculator(body) if question in PLANS else {"content": "OK"}


@dataclass
class Received:
    """One request the server got."""

    at: float  # time.perf_counter() on arrival
    body: dict[str, Any]
    headers: dict[str, str]


class LoopbackOpenAI:
    """``with LoopbackOpenAI(policy) as server: ... server.base_url ...``."""

    def __init__(self, policy: Policy = calculator_policy, *, api_key: str | None = None) -> None:
        self.policy = policy
        self.api_key = api_key
        self.received: list[Received] = []
        self._ids = itertools.count(1)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        # A short poll: shutdown() waits for it, once per test.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        """The ``--base-url`` of this server."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> LoopbackOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, body: dict[str, Any], headers: dict[str, str]) -> Status:
        """The status and JSON of the answer to one request."""
        self.received.append(Received(time.perf_counter(), body, headers))
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return Status(
                401,
                {"error": {"message": "Incorrect API key provided", "type": "invalid_request"}},
            )
        reply = self.policy(body)
        if isinstance(reply, Status):
            return reply
        return Status(200, self.completion(body, reply))

    def completion(self, body: dict[str, Any], reply: dict[str, Any]) -> dict[str, Any]:
        """An OpenAI chat completion as vLLM writes it, for a compact reply."""
        n = next(self._ids)
        calls = [
            {
                "id": f"call_{n}_{i}",
                "type": "function",
                "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])},
            }
            for i, c in enumerate(reply.get("tool_calls") or [])
        ]
        message: dict[str, Any] = {"role": "assistant", "content": reply.get("content")}
        if calls:
            message["tool_calls"] = calls
        prompt = sum(len(str(m.get("content") or "")) for m in body["messages"]) // 4 + 1
        return {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if calls else "stop",
                    "logprobs": None,
                }
            ],
            "usage": {"prompt_tokens": prompt, "completion_tokens": 7, "total_tokens": prompt + 7},
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.path.rstrip("/") != "/v1/chat/completions":
                    status = Status(404, {"error": {"message": f"no route {self.path}"}})
                else:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    status = server.answer(json.loads(raw), headers)
                data = json.dumps(status.body if status.body is not None else {}).encode()
                self.send_response(status.code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for name, value in status.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                """Quiet: test output is for failures."""

        return Handler
