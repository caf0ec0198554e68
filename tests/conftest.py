"""Shared fixtures: a scriptable fake trainer, a fast trainer client, and rollout servers.

Everything runs in process on the test's event loop: the rollout server is called through
``httpx.ASGITransport`` and its two callbacks reach ``FakeTrainer.app`` through a transport
mounted on ``http://trainer.test``. Nothing listens on a socket.

- ``trainer``: records every chat request and completion (attempts and acknowledged ones) and
  answers from a per-test script: bodies, status codes, delays, malformed bodies.
- ``fast_client_config``: millisecond backoff, so retry tests take milliseconds.
- ``serve(agent, **create_app_kwargs)``: a ``RolloutServer`` (app + HTTP client + helpers)
  whose rollouts are cleaned up after the test.
- ``make_agent(run=..., tools=...)``: a ``ScriptedAgent`` that counts its runs.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response
from trainer_replies import Reply, Scripted, tool_call

from server_core import (
    RolloutAgentLoop,
    RolloutContext,
    RolloutRequest,
    RolloutResult,
    TrainerClient,
    TrainerClientConfig,
    create_app,
)

TRAINER_URL = "http://trainer.test"
#: A trainer that cannot be reached (as any URL but TRAINER_URL): every request fails to connect.
UNREACHABLE_URL = "http://unreachable.test"

_ids = itertools.count(1)


# ---- the fake trainer -------------------------------------------------------------------------


def answer(
    content: str | None = "done",
    *,
    tool_calls: list[dict] | None = None,
    finish_reason: str = "stop",
    usage: dict | None = None,
    token_ids: list[int] | None = None,
    logprobs: list[float] | None = None,
) -> dict:
    """An OpenAI chat-completion body with one choice."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    body: dict[str, Any] = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": usage or {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }
    if token_ids is not None:
        body["token_ids"] = token_ids
    if logprobs is not None:
        body["logprobs"] = logprobs
    return body


class FakeTrainer:
    """The trainer side of the protocol, recording everything and answering from a script.

    ``chat_script`` / ``completion_script`` are consumed in order, one item per request; when
    empty, ``chat_default`` / ``completion_default`` answer (a plain "done" answer and a 200).
    """

    Reply = Reply
    url = TRAINER_URL
    unreachable_url = UNREACHABLE_URL
    answer = staticmethod(answer)
    tool_call = staticmethod(tool_call)

    def __init__(self) -> None:
        self.chat_requests: list[dict] = []
        self.chat_headers: list[dict[str, str]] = []
        self.completion_attempts: list[dict] = []
        self.completion_headers: list[dict[str, str]] = []
        #: Completions the trainer acknowledged with a 2xx.
        self.completions: list[dict] = []
        self.chat_script: list[Scripted] = []
        self.chat_default: Scripted = answer("done")
        self.completion_script: list[Scripted] = []
        self.completion_default: Scripted = Reply(200, json={"ok": True})
        self._changed = asyncio.Event()
        self.app = self._build_app()

    # -- scripting and waiting ----------------------------------------------------------------

    def script_chat(self, *items: Scripted) -> None:
        """Answer the next chat requests with ``items``, in order."""
        self.chat_script.extend(items)

    def script_completion(self, *items: Scripted) -> None:
        """Answer the next completion callbacks with ``items``, in order."""
        self.completion_script.extend(items)

    def chats_for(self, rollout_id: str) -> list[dict]:
        """Every chat request (attempts included) of one rollout."""
        return [b for b in self.chat_requests if b.get("rollout_id") == rollout_id]

    def completions_for(self, rollout_id: str) -> list[dict]:
        """The acknowledged completions of one rollout (the invariant wants exactly one)."""
        return [b for b in self.completions if b.get("rollout_id") == rollout_id]

    def attempts_for(self, rollout_id: str) -> list[dict]:
        """Every completion POST of one rollout, acknowledged or not."""
        return [b for b in self.completion_attempts if b.get("rollout_id") == rollout_id]

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` holds; it is re-checked whenever the trainer records."""

        async def _wait() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(_wait(), timeout)

    async def wait_for_completion(self, rollout_id: str, timeout: float = 5.0) -> dict:
        """The first acknowledged completion of ``rollout_id``, waiting for it if needed."""
        await self.wait_until(lambda: bool(self.completions_for(rollout_id)), timeout)
        return self.completions_for(rollout_id)[0]

    async def wait_for_chats(self, rollout_id: str, count: int = 1, timeout: float = 5.0):
        """Wait until ``rollout_id`` has made at least ``count`` chat requests."""
        await self.wait_until(lambda: len(self.chats_for(rollout_id)) >= count, timeout)

    def _notify(self) -> None:
        self._changed.set()

    # -- the ASGI app -------------------------------------------------------------------------

    @staticmethod
    async def _resolve(item: Scripted, body: Any) -> Reply:
        if callable(item) and not isinstance(item, Reply):
            item = item(body)
            if inspect.isawaitable(item):
                item = await item
        if isinstance(item, Reply):
            return item
        return Reply(200, json=item)

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Response:
            body = json.loads(await request.body())
            self.chat_requests.append(body)
            self.chat_headers.append(dict(request.headers))
            self._notify()
            item = self.chat_script.pop(0) if self.chat_script else self.chat_default
            reply = await self._resolve(item, body)
            if reply.delay:
                await asyncio.sleep(reply.delay)
            return reply.response()

        @app.post("/v1/rollout/completed")
        async def completed(request: Request) -> Response:
            body = json.loads(await request.body())
            self.completion_attempts.append(body)
            self.completion_headers.append(dict(request.headers))
            item = (
                self.completion_script.pop(0) if self.completion_script else self.completion_default
            )
            reply = await self._resolve(item, body)
            if reply.delay:
                await asyncio.sleep(reply.delay)
            if 200 <= reply.status < 300:
                self.completions.append(body)
            self._notify()
            return reply.response()

        return app


class TimeoutASGITransport(httpx.ASGITransport):
    """``ASGITransport`` that honours the client's read timeout, as a network transport does.

    Plain ``ASGITransport`` waits for the app however long it takes; here an app slower than
    the request's read timeout raises ``httpx.ReadTimeout``.
    """

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = (request.extensions.get("timeout") or {}).get("read")
        if timeout is None:
            return await super().handle_async_request(request)
        try:
            return await asyncio.wait_for(super().handle_async_request(request), timeout)
        except TimeoutError:
            raise httpx.ReadTimeout("scripted read timeout", request=request) from None


def _unreachable(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused (scripted)", request=request)


# ---- agents -----------------------------------------------------------------------------------


class ScriptedAgent(RolloutAgentLoop):
    """A test agent: ``run`` and ``tools`` come from the test; runs are counted.

    Without ``run`` it chats once and completes with the answer appended, reward 1.0.
    ``get_tools`` may be a function of the request (to raise, block or return bad tools).
    """

    name = "scriptedagent"

    def __init__(
        self,
        run: Callable[[RolloutContext], Any] | None = None,
        *,
        tools: list[dict] | None = None,
        get_tools: Callable[[RolloutRequest], Any] | None = None,
        name: str = "scripted",
    ) -> None:
        self.name = name
        self._run = run
        self._tools = tools if tools is not None else []
        self._get_tools = get_tools
        self.runs = 0
        self.run_ids: list[str] = []
        self.get_tools_calls = 0

    def get_tools(self, request: RolloutRequest) -> list[dict]:
        self.get_tools_calls += 1
        if self._get_tools is not None:
            return self._get_tools(request)
        return self._tools

    async def run(self, ctx: RolloutContext) -> RolloutResult:
        self.runs += 1
        self.run_ids.append(ctx.rollout_id)
        if self._run is not None:
            return await self._run(ctx)
        messages = list(ctx.request.messages)
        result = await ctx.chat(messages)
        return ctx.complete([*messages, result.message], reward=1.0)


# ---- the rollout server under test ------------------------------------------------------------


def rollout_body(rollout_id: str | None = None, **fields: Any) -> dict:
    """A valid init body for the fake trainer; ``fields`` override or add keys."""
    body: dict[str, Any] = {
        "rollout_id": rollout_id if rollout_id is not None else f"r-{next(_ids)}",
        "server_url": TRAINER_URL,
        "messages": [{"role": "user", "content": "What is 2 + 2?"}],
        "completion_params": {},
    }
    body.update(fields)
    return body


class RolloutServer:
    """A ``create_app`` app under test and an HTTP client that calls it in process."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://server"
        )

    @property
    def manager(self) -> Any:
        """The app's rollout manager (for waiting on in-flight work, not for assertions)."""
        return self.app.state.rollouts

    async def init(
        self, rollout_id: str | None = None, *, headers: dict | None = None, **fields: Any
    ) -> httpx.Response:
        """POST an init for a valid body (``fields`` override it)."""
        return await self.http.post(
            "/v1/rollout/init", json=rollout_body(rollout_id, **fields), headers=headers
        )

    async def start(self, rollout_id: str | None = None, **fields: Any) -> str:
        """Init a rollout that must be accepted; returns its id."""
        response = await self.init(rollout_id, **fields)
        assert response.status_code == 202, response.text
        return response.json()["rollout_id"]

    async def status(self, rollout_id: str, headers: dict | None = None) -> httpx.Response:
        return await self.http.get(f"/v1/rollout/{rollout_id}", headers=headers)

    async def cancel(self, rollout_id: str, headers: dict | None = None) -> httpx.Response:
        return await self.http.post(f"/v1/rollout/{rollout_id}/cancel", headers=headers)

    async def wait_settled(self, rollout_id: str, timeout: float = 5.0) -> dict:
        """Wait until the rollout's completion delivery is no longer pending; its status."""

        async def _wait() -> dict:
            while True:
                body = (await self.status(rollout_id)).json()
                if body.get("completion_delivery") in ("delivered", "failed"):
                    return body
                await asyncio.sleep(0.005)  # polling a condition, bounded by wait_for

        return await asyncio.wait_for(_wait(), timeout)

    async def aclose(self) -> None:
        """Stop whatever is still running (no completions) and close the clients."""
        tasks = [r.task for r in self.manager.records.values() if r.task and not r.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.http.aclose()
        await self.manager.client.aclose()


async def wait_for_condition(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``predicate`` on the event loop until it holds (bounded by ``timeout``)."""

    async def _wait() -> None:
        while not predicate():
            await asyncio.sleep(0.002)

    await asyncio.wait_for(_wait(), timeout)


# ---- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def trainer() -> FakeTrainer:
    """A fresh fake trainer for the test."""
    return FakeTrainer()


@pytest.fixture
def fast_client_config() -> TrainerClientConfig:
    """Real retry counts, millisecond backoff, short timeouts."""
    return TrainerClientConfig(
        timeout_s=1.0,
        connect_timeout_s=0.5,
        chat_retries=3,
        completion_retries=3,
        backoff_base_s=0.001,
        backoff_cap_s=0.004,
    )


@pytest.fixture
def make_client(trainer: FakeTrainer, fast_client_config: TrainerClientConfig):
    """``make_client(config=None)``: a TrainerClient routing the fake trainer in process."""

    def _make(config: TrainerClientConfig | None = None) -> TrainerClient:
        # Every other URL is unreachable. (Passing a transport also spares each client the
        # ~60 ms of building an SSL context it would never use.)
        return TrainerClient(
            config or fast_client_config,
            transport=httpx.MockTransport(_unreachable),
            mounts={TRAINER_URL: TimeoutASGITransport(app=trainer.app)},
        )

    return _make


@pytest.fixture
async def serve(make_client) -> AsyncIterator[Callable[..., RolloutServer]]:
    """``serve(agent, **create_app_kwargs)``: a RolloutServer wired to the fake trainer."""
    servers: list[RolloutServer] = []

    def _serve(agent: RolloutAgentLoop, **kwargs: Any) -> RolloutServer:
        if "client" not in kwargs:
            kwargs["client"] = make_client(kwargs.pop("client_config", None))
        server = RolloutServer(create_app(agent, **kwargs))
        servers.append(server)
        return server

    yield _serve
    for server in servers:
        await server.aclose()


@pytest.fixture
def make_agent() -> type[ScriptedAgent]:
    """The ScriptedAgent class: ``make_agent(run=async_fn, tools=[...])``."""
    return ScriptedAgent


@pytest.fixture
def make_body() -> Callable[..., dict]:
    """``make_body(rollout_id=None, **fields)``: a valid init body aimed at the fake trainer."""
    return rollout_body


@pytest.fixture
def wait_for() -> Callable[..., Any]:
    """``await wait_for(predicate, timeout=5)``: wait for an in-process condition."""
    return wait_for_condition
