"""Helpers for the 0.2 compatibility suite: a trainer on a real loopback socket,
a fake LLM client as 0.2 users write one, and request/answer builders.

Everything here is written from ../shared/SDK-0.2-API.md and PROTOCOL.md, not from server_core's
internals: the trainer is a plain FastAPI app served by uvicorn on 127.0.0.1, so whatever HTTP
client server_core uses for its callbacks, it is exercised for real.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response
from trainer_replies import Reply, Scripted
from trainer_replies import tool_call as tool_call  # the compat tests take it from here

_ids = itertools.count(1)


def new_id(prefix: str = "compat") -> str:
    """A rollout id unique in this test session."""
    return f"{prefix}-{next(_ids)}-{time.monotonic_ns() % 1_000_000}"


# ---- answers ------------------------------------------------------------------------------------


def answer(
    content: str | None = "done",
    *,
    tool_calls: list[dict] | None = None,
    finish_reason: str | None = "stop",
    usage: dict | None = None,
    token_ids: list[int] | None = None,
    logprobs: list[float] | None = None,
    message: dict | None = None,
) -> dict:
    """An OpenAI chat completion with one choice. ``message`` replaces the built message."""
    if message is None:
        message = {"role": "assistant", "content": content}
        if tool_calls:
            message["tool_calls"] = tool_calls
    choice: dict[str, Any] = {"index": 0, "message": message}
    if finish_reason is not None:
        choice["finish_reason"] = finish_reason
    body: dict[str, Any] = {
        "id": "chatcmpl-compat",
        "object": "chat.completion",
        "created": 1,
        "model": "default",
        "choices": [choice],
    }
    if usage is not None:
        body["usage"] = usage
    if token_ids is not None:
        body["token_ids"] = token_ids
    if logprobs is not None:
        body["logprobs"] = logprobs
    return body


# ---- a trainer on a loopback socket ---------------------------------------------------------


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class ThreadedServer:
    """An ASGI app served by uvicorn on 127.0.0.1 in a daemon thread."""

    def __init__(self, app: Any, *, lifespan: str = "on") -> None:
        self._sock = _free_socket()
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # log_config=None and no log_level: uvicorn must not reconfigure the process's logging
        # (its default dictConfig stops the "uvicorn" loggers propagating, which other tests of
        # the suite rely on).
        config = uvicorn.Config(
            app,
            log_config=None,
            log_level=None,
            lifespan=lifespan,
            loop="asyncio",
            access_log=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def start(self, timeout: float = 10.0) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("loopback uvicorn did not start")
            time.sleep(0.005)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self._sock.close()


class LoopbackTrainer:
    """The trainer side of the protocol on a real socket: records everything, answers a script.

    ``chat_script`` / ``completion_script`` are consumed in order, one item per request; when
    empty, ``chat_default`` (a "done" answer) / ``completion_default`` (200) answer. An item is a
    completion dict, a ``Reply``, or a function of the request body returning either.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.reset()
        self.app = self._build_app()
        self.server: ThreadedServer | None = None
        self.url = ""

    def reset(self) -> None:
        with self._cond:
            self.chat_requests: list[dict] = []
            self.chat_raw: list[bytes] = []
            self.chat_headers: list[dict[str, str]] = []
            self.completion_attempts: list[dict] = []
            self.completion_headers: list[dict[str, str]] = []
            self.completions: list[dict] = []
            self.chat_script: list[Scripted] = []
            self.chat_default: Scripted = answer(
                "done", usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
            )
            self.completion_script: list[Scripted] = []
            self.completion_default: Scripted = Reply(200, json={"status": "ok"})

    def start(self) -> LoopbackTrainer:
        self.server = ThreadedServer(self.app, lifespan="off").start()
        self.url = self.server.url
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    # -- queries ---------------------------------------------------------------------------------

    def chats_for(self, rollout_id: str) -> list[dict]:
        with self._cond:
            return [b for b in self.chat_requests if b.get("rollout_id") == rollout_id]

    def completions_for(self, rollout_id: str) -> list[dict]:
        with self._cond:
            return [b for b in self.completions if b.get("rollout_id") == rollout_id]

    def attempts_for(self, rollout_id: str) -> list[dict]:
        with self._cond:
            return [b for b in self.completion_attempts if b.get("rollout_id") == rollout_id]

    def wait_for_completion(self, rollout_id: str, timeout: float = 10.0) -> dict:
        """The first acknowledged completion of ``rollout_id`` (blocking, for sync tests)."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: any(b.get("rollout_id") == rollout_id for b in self.completions), timeout
            )
            if not ok:
                raise AssertionError(
                    f"no completion for {rollout_id!r} within {timeout}s; attempts: "
                    f"{[b.get('rollout_id') for b in self.completion_attempts]}; chats: "
                    f"{len(self.chat_requests)}"
                )
            return next(b for b in self.completions if b.get("rollout_id") == rollout_id)

    async def await_completion(self, rollout_id: str, timeout: float = 10.0) -> dict:
        """``wait_for_completion`` for async tests (does not block the test's event loop)."""
        return await asyncio.to_thread(self.wait_for_completion, rollout_id, timeout)

    # -- the app ---------------------------------------------------------------------------------

    @staticmethod
    def _resolve(item: Scripted, body: Any) -> Reply:
        if callable(item) and not isinstance(item, Reply):
            item = item(body)
        if isinstance(item, Reply):
            return item
        return Reply(200, json=item)

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Response:
            raw = await request.body()
            body = json.loads(raw)
            with self._cond:
                self.chat_requests.append(body)
                self.chat_raw.append(raw)
                self.chat_headers.append(dict(request.headers))
                item = self.chat_script.pop(0) if self.chat_script else self.chat_default
                self._cond.notify_all()
            reply = self._resolve(item, body)
            if reply.delay:
                await asyncio.sleep(reply.delay)
            return reply.response()

        @app.post("/v1/rollout/completed")
        async def completed(request: Request) -> Response:
            body = json.loads(await request.body())
            with self._cond:
                self.completion_attempts.append(body)
                self.completion_headers.append(dict(request.headers))
                item = (
                    self.completion_script.pop(0)
                    if self.completion_script
                    else self.completion_default
                )
            reply = self._resolve(item, body)
            if reply.delay:
                await asyncio.sleep(reply.delay)
            with self._cond:
                if 200 <= reply.status < 300:
                    self.completions.append(body)
                self._cond.notify_all()
            return reply.response()

        return app


# ---- a fake LLM client, as 0.2 users write one ---------------------------------------------


class FakeLLM:
    """An object with async ``chat_completions`` and ``get_metrics`` (the 0.2 unit-test way).

    ``replies`` are ``CompletionsResult`` objects (or messages, wrapped into one) handed out in
    order; ``calls`` keeps ``(messages, kwargs)`` of every call.
    """

    def __init__(self, replies: list[Any] | None = None, metrics: Any = None) -> None:
        from server_core import RolloutMetrics

        self.replies = list(replies or [])
        self.calls: list[tuple[list[dict], dict]] = []
        self.metrics = metrics if metrics is not None else RolloutMetrics()

    async def chat_completions(self, messages: list[dict], **kwargs: Any) -> Any:
        from server_core import CompletionsResult

        self.calls.append((list(messages), dict(kwargs)))
        reply = self.replies.pop(0)
        if isinstance(reply, dict):
            reply = CompletionsResult(
                message=reply,
                token_ids=[],
                logprobs=[],
                usage={"prompt_tokens": 1, "completion_tokens": 1},
                finish_reason="tool_calls" if reply.get("tool_calls") else "stop",
            )
        return reply

    def get_metrics(self) -> Any:
        return self.metrics


def make_request(rollout_id: str | None = None, **fields: Any) -> Any:
    """A valid ``server_core.RolloutRequest`` (``fields`` override)."""
    from server_core import RolloutRequest

    data: dict[str, Any] = {
        "rollout_id": rollout_id or new_id("req"),
        "server_url": "http://trainer.invalid",
        "messages": [{"role": "user", "content": "hello"}],
        "completion_params": {},
    }
    data.update(fields)
    return RolloutRequest(**data)


def init_body(server_url: str, rollout_id: str | None = None, **fields: Any) -> dict:
    """An init body aimed at ``server_url`` (``fields`` override or add keys)."""
    body: dict[str, Any] = {
        "rollout_id": rollout_id or new_id("init"),
        "server_url": server_url,
        "messages": [{"role": "user", "content": "What is 2 + 2?"}],
        "completion_params": {},
    }
    body.update(fields)
    return body


def walk_nulls(value: Any, path: str = "$") -> list[str]:
    """Paths of every null value inside a JSON-like structure."""
    found: list[str] = []
    if value is None:
        found.append(path)
    elif isinstance(value, dict):
        for k, v in value.items():
            found.extend(walk_nulls(v, f"{path}.{k}"))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found.extend(walk_nulls(v, f"{path}[{i}]"))
    return found


def settle(seconds: float = 0.15) -> None:
    """Give background work a moment (only to check that nothing *more* happens)."""
    time.sleep(seconds)
