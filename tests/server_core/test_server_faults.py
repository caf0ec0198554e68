"""The server-side faults outside testing found (issue 11), each checked against real behaviour.

Hostile bodies (size limit, odd ``server_url``/``api_key``, ids with newlines), a trainer that
hangs or restarts, user tools that fill the default thread pool, and counting delivery attempts
at shutdown.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import types
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from server_core import RolloutHooks, TrainerClient, TrainerClientConfig, create_app
from server_core.rollouts import ServerLimits
from server_core.serve import EmbeddedServer
from server_core.trace import TraceWriter

# ---- init bodies ------------------------------------------------------------------------------


async def test_an_init_body_past_the_limit_is_413_and_health_keeps_answering(
    serve, make_agent, make_body
):
    server = serve(make_agent(), max_body_bytes=64 * 1024)
    huge = make_body(messages=[{"role": "user", "content": "x" * (256 * 1024)}])
    response = await server.http.post("/v1/rollout/init", json=huge)
    assert response.status_code == 413
    detail = response.json()["detail"]
    assert "65536 bytes" in detail and "max-body-bytes" in detail
    assert (await server.http.get("/health")).status_code == 200
    assert server.manager.records == {}  # nothing was started
    # Just under the limit is accepted.
    small = make_body(messages=[{"role": "user", "content": "x" * (32 * 1024)}])
    assert (await server.http.post("/v1/rollout/init", json=small)).status_code == 202


async def test_a_streamed_body_without_a_length_is_cut_off_at_the_limit(serve, make_agent):
    server = serve(make_agent(), max_body_bytes=64 * 1024)
    sent: list[int] = []

    async def chunks():
        for _ in range(1000):  # 64 MB if it were all read
            sent.append(1)
            yield b"x" * (64 * 1024)

    response = await server.http.post(
        "/v1/rollout/init", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert len(sent) < 1000  # the server stopped reading, it did not buffer 64 MB first


@pytest.mark.parametrize(
    ("server_url", "fragment"),
    [
        ("http://trainer.test/?next=http://evil.test", "query or fragment"),
        ("http://trainer.test/#frag", "query or fragment"),
        ("http://trainer.test?", "query or fragment"),
        ("http://user:pw@trainer.test", "credentials"),
        ("http://evil.test\\@trainer.test", "backslashes"),
        ("http://trainer.test /x", "whitespace"),
        ("http://tr%61iner.test", "not a plain host name"),
        ("http://trainer.test:99999", "invalid port"),
        ("ftp://trainer.test", "http or https"),
    ],
)
async def test_a_server_url_callbacks_could_misread_is_refused_at_init(
    serve, make_agent, server_url, fragment
):
    server = serve(make_agent())
    response = await server.init(server_url=server_url)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "server_url"]
    assert fragment in error["msg"]
    assert server.manager.records == {}


@pytest.mark.parametrize("key", ["abc\ndef", "abc\rdef", "tab\there", "nul\x00", "del\x7f"])
async def test_an_api_key_with_control_characters_is_refused_at_init(serve, make_agent, key):
    server = serve(make_agent())
    response = await server.init(api_key=key)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "api_key"]
    assert "control characters" in error["msg"]
    assert key not in response.text


@pytest.mark.parametrize("rollout_id", ["new\nline", "tab\tid", "ends/with/cancel\n"])
async def test_ids_with_newlines_work_on_status_and_cancel(serve, make_agent, trainer, rollout_id):
    release = asyncio.Event()

    async def run(ctx):
        await release.wait()
        return ctx.complete(list(ctx.request.messages))

    server = serve(make_agent(run=run))
    await server.start(rollout_id)
    path = f"/v1/rollout/{quote(rollout_id, safe='')}"  # as a client sends it: %0A
    status = await server.http.get(path)
    assert status.status_code == 200 and status.json()["rollout_id"] == rollout_id
    cancel = await server.http.post(f"{path}/cancel")
    assert cancel.status_code == 202
    completion = await trainer.wait_for_completion(rollout_id)
    assert completion["extra_fields"]["error_category"] == "cancelled"


async def test_the_trace_writes_a_big_init_body_once(serve, make_agent, trainer, tmp_path):
    """A 2 MB first message used to be written three times (request, chat body, completion)."""
    big = "y" * (2 * 1024 * 1024)
    hooks = RolloutHooks()
    trace = TraceWriter(tmp_path)
    hooks.add_observer(trace)
    server = serve(make_agent(), hooks=hooks, max_body_bytes=8 * 1024 * 1024)
    rollout_id = await server.start(messages=[{"role": "user", "content": big}])
    await trainer.wait_for_completion(rollout_id)
    await server.manager.wait(rollout_id)
    await trace.aclose()
    (path,) = trace.run_dir.iterdir()
    assert path.stat().st_size < 1.2 * len(big)
    assert path.read_text(encoding="utf-8").count(big) == 1


# ---- a trainer that hangs, restarts or cannot be reached --------------------------------------


def _hanging(trainer_class: type) -> Any:
    """A fake trainer whose ``/v1/rollout/completed`` never answers (until ``.release``)."""
    stuck = trainer_class()
    stuck.release = asyncio.Event()

    async def hang(body: dict) -> Any:
        await stuck.release.wait()
        return stuck.Reply(200, json={"ok": True})

    stuck.completion_default = hang
    return stuck


async def _loopback(app: Any) -> EmbeddedServer:
    server = EmbeddedServer(app, host="127.0.0.1", port=0)
    await server.start()
    return server


async def test_a_hanging_trainer_does_not_hold_another_trainers_completions(
    make_agent, make_body, trainer
):
    stuck, healthy = _hanging(type(trainer)), trainer
    stuck_server, healthy_server = await _loopback(stuck.app), await _loopback(healthy.app)
    # The real network client (aiohttp): completions are pooled per trainer host.
    app = create_app(make_agent(), max_queued=1000)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://server")
    try:
        for n in range(40):  # far more than a completion pool holds
            body = make_body(f"stuck-{n}", server_url=stuck_server.url)
            assert (await http.post("/v1/rollout/init", json=body)).status_code == 202
        await stuck.wait_until(lambda: len(stuck.completion_attempts) >= 8, timeout=10)
        for n in range(10):
            body = make_body(f"healthy-{n}", server_url=healthy_server.url)
            assert (await http.post("/v1/rollout/init", json=body)).status_code == 202
        await healthy.wait_until(lambda: len(healthy.completions) == 10, timeout=10)
        assert stuck.completions == []  # the other trainer is still stuck meanwhile
    finally:
        stuck.release.set()
        await app.state.rollouts.shutdown()
        await http.aclose()
        await stuck_server.stop()
        await healthy_server.stop()


async def test_a_stuck_delivery_is_bounded(make_agent, make_body, trainer):
    stuck = _hanging(type(trainer))
    stuck_server = await _loopback(stuck.app)
    config = TrainerClientConfig(
        completion_timeout_s=0.2, completion_retry_budget_s=0.5, backoff_base_s=0.01
    )
    app = create_app(make_agent(), client=TrainerClient(config))
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://server")
    try:
        body = make_body("bounded", server_url=stuck_server.url)
        assert (await http.post("/v1/rollout/init", json=body)).status_code == 202
        await asyncio.wait_for(app.state.rollouts.wait("bounded"), 10)
        record = app.state.rollouts.records["bounded"]
        assert record.delivery == "failed"
        assert "timed out after 0.2s" in record.delivery_error
    finally:
        stuck.release.set()
        await app.state.rollouts.shutdown()
        await http.aclose()
        await stuck_server.stop()


async def test_a_trainer_that_restarts_for_longer_than_0_2s_retries_loses_nothing(
    serve, make_agent, trainer
):
    """0.2 gave up after 3 retries (about 7 s); the budget is now a time (default 120 s)."""
    down_until = time.monotonic() + 1.0

    def restarting(body: dict) -> Any:
        if time.monotonic() < down_until:
            return trainer.Reply(503, text="restarting")
        return trainer.answer("back")

    trainer.chat_default = restarting
    config = TrainerClientConfig(chat_retry_budget_s=30, backoff_base_s=0.01, backoff_cap_s=0.05)
    server = serve(make_agent(), client_config=config)
    rollout_id = await server.start()
    completion = await trainer.wait_for_completion(rollout_id, timeout=10)
    assert completion["status"] == "COMPLETED"
    assert len(trainer.chats_for(rollout_id)) > 4  # more attempts than 0.2's count allowed


async def test_the_retry_budget_is_respected(serve, make_agent, trainer):
    trainer.chat_default = trainer.Reply(503, text="down")
    config = TrainerClientConfig(chat_retry_budget_s=0.3, backoff_base_s=0.01, backoff_cap_s=0.05)
    server = serve(make_agent(), client_config=config)
    started = time.monotonic()
    rollout_id = await server.start()
    completion = await trainer.wait_for_completion(rollout_id, timeout=10)
    assert completion["status"] == "ERROR"
    assert "gave up after" in completion["error_message"]
    assert time.monotonic() - started < 5


async def test_shutdown_counts_the_attempts_a_delivery_really_made(
    serve, make_agent, trainer, caplog
):
    trainer.completion_default = trainer.Reply(503, text="busy")
    config = TrainerClientConfig(completion_retry_budget_s=60, backoff_base_s=0.01)
    limits = ServerLimits(drain_timeout_s=0.0, final_delivery_timeout_s=0.0)
    server = serve(make_agent(), client_config=config, limits=limits)
    rollout_id = await server.start()
    await trainer.wait_until(lambda: len(trainer.attempts_for(rollout_id)) >= 3)
    with caplog.at_level(logging.ERROR, logger="server_core.rollouts"):
        await server.manager.shutdown()
    made = len(trainer.attempts_for(rollout_id))
    record = server.manager.records[rollout_id]
    assert record.delivery == "failed"
    assert "cancelled at shutdown" in record.delivery_error
    assert "HTTP 503" in record.delivery_error  # the last real error, kept
    (line,) = [r.getMessage() for r in caplog.records if "not delivered" in r.getMessage()]
    assert f"after {made} attempts" in line and "after 0 attempts" not in line


# ---- the SDK's own work never waits behind user code -----------------------------------------


async def test_large_bodies_are_not_encoded_behind_users_sync_tools(serve, make_agent, trainer):
    """Sync tools fill the default thread pool; the SDK's encoding has its own thread."""
    blocked = threading.Event()
    history = [{"role": "user", "content": f"message {n}"} for n in range(500)]

    async def run(ctx):
        result = await ctx.chat(history)  # > 400 messages: encoded off the event loop
        return ctx.complete([*history, result.message])

    loop = asyncio.get_running_loop()
    workers = loop._default_executor._max_workers if loop._default_executor else 32  # type: ignore[attr-defined]
    sleepers = [asyncio.to_thread(blocked.wait, 30) for _ in range(workers + 4)]
    waiting = asyncio.gather(*sleepers)
    try:
        await asyncio.sleep(0.05)  # let the sleepers take every default worker
        server = serve(make_agent(run=run))
        rollout_id = await server.start()
        completion = await trainer.wait_for_completion(rollout_id, timeout=10)
        assert completion["status"] == "COMPLETED"
        assert len(json.loads(json.dumps(completion))["final_messages"]) == 501
        assert not blocked.is_set()  # it finished while every default worker was still busy
    finally:
        blocked.set()
        await waiting


class _HeldRequests:
    """Stands in for an aiohttp session's ``request``: counts, per origin, the requests aiohttp
    would have built and be holding at once; the server answers when ``release`` is set."""

    def __init__(self) -> None:
        self.held: dict[str, int] = {}
        self.most: dict[str, int] = {}
        self.release = asyncio.Event()

    def __call__(self, method: str, url: str, **kwargs: Any) -> Any:
        host = url.split("/v1/")[0]
        requests = self

        class Response:
            def __init__(self) -> None:
                self.status, self.headers = 200, {}

            async def read(self) -> bytes:
                return b"{}"

        class Sent:
            async def __aenter__(self) -> Response:
                requests.held[host] = requests.held.get(host, 0) + 1
                requests.most[host] = max(requests.most.get(host, 0), requests.held[host])
                try:
                    await requests.release.wait()
                finally:
                    requests.held[host] -= 1
                return Response()

            async def __aexit__(self, *exc: object) -> None:
                pass

        return Sent()


async def test_completions_wait_for_a_send_slot_of_their_trainer_before_a_request_is_built():
    """1,000 rollouts ending at once used to build 1,000 requests inside aiohttp, all live
    while they waited for one of its 12 connections (young-GC pauses of 35-70 ms on the
    loop). Now each origin has as many send slots as connections; the rest wait holding
    their body, and one trainer's queue never takes another's slots."""
    from server_core.http_client import AiohttpClient

    client = TrainerClient(TrainerClientConfig(max_connections=64))  # 8 per trainer host
    poster = client._poster("http://a:1", completion=True)
    assert isinstance(poster, AiohttpClient)
    requests = _HeldRequests()
    session = poster._session
    poster._session = types.SimpleNamespace(request=requests, timeout=session.timeout)
    body = {"rollout_id": "r", "status": "COMPLETED", "final_messages": []}
    try:
        sends = [
            asyncio.create_task(client.complete(url, dict(body), api_key=None))
            for url in ["http://a:1"] * 100 + ["http://b:1"] * 5
        ]
        for _ in range(20):
            await asyncio.sleep(0)
        assert requests.held == {"http://a:1": 8, "http://b:1": 5}  # b is not behind a's queue
        requests.release.set()
        deliveries = await asyncio.gather(*sends)
        assert all(d.delivered for d in deliveries)
        assert requests.most == {"http://a:1": 8, "http://b:1": 5}
    finally:
        await session.close()
