"""PROTOCOL.md sections 2, 5 and 6: status, cancel, deadlines, shutdown, health, and the invariant.

The invariant: every rollout that got a 202 yields exactly one delivered completion, or, when
the trainer cannot be reached after bounded retries, a ``completion_delivery: "failed"``
visible in its status.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from server_core import RolloutCancelled, ServerLimits

KEY = "osm_rollout_lifecycle"


def _blocked(release: asyncio.Event | None = None, *, chat_first: bool = True):
    """An agent run that (optionally) chats once, then waits for ``release`` (or forever)."""

    async def run(ctx):
        messages = list(ctx.request.messages)
        if chat_first:
            result = await ctx.chat(messages)
            messages.append(result.message)
        await (release.wait() if release is not None else asyncio.Event().wait())
        return ctx.complete(messages, reward=1.0)

    return run


# ---- status -----------------------------------------------------------------------------------


async def test_status_follows_a_rollout_from_queued_to_delivered(
    serve, make_agent, trainer, wait_for
):
    release = asyncio.Event()
    agent = make_agent(run=_blocked(release))
    server = serve(agent, max_concurrent=1)
    first = await server.start("s-1")
    second = await server.start("s-2")
    await trainer.wait_for_chats(first)
    running = (await server.status(first)).json()
    queued = (await server.status(second)).json()
    assert running["rollout_id"] == "s-1"
    assert running["status"] == "running" and running["completion_delivery"] == "pending"
    assert running["num_llm_calls"] == 1
    assert queued["status"] == "queued" and queued["completion_delivery"] == "pending"
    release.set()
    done = await server.wait_settled(first)
    assert done["status"] == "completed" and done["completion_delivery"] == "delivered"
    assert done["error_category"] is None
    assert done["started_at"] <= done["finished_at"]
    await server.wait_settled(second)


async def test_status_of_unknown_rollout_is_404(serve, make_agent):
    server = serve(make_agent())
    response = await server.status("nope")
    assert response.status_code == 404
    assert "nope" in response.json()["detail"]


@pytest.mark.parametrize("rollout_id", ["a/b", "x/cancel", "日本語", "sp ace"])
async def test_status_and_cancel_address_any_rollout_id(serve, make_agent, trainer, rollout_id):
    server = serve(make_agent(run=_blocked()))
    await server.start(rollout_id)
    status = await server.status(rollout_id)
    assert status.status_code == 200 and status.json()["rollout_id"] == rollout_id
    assert (await server.cancel(rollout_id)).status_code == 202
    completion = await trainer.wait_for_completion(rollout_id)
    assert completion["extra_fields"]["error_category"] == "cancelled"


# ---- cancel -----------------------------------------------------------------------------------


async def test_cancel_ends_a_running_rollout_with_one_cancelled_error(serve, make_agent, trainer):
    agent = make_agent(run=_blocked())
    server = serve(agent)
    rollout_id = await server.start()
    await trainer.wait_for_chats(rollout_id)
    response = await server.cancel(rollout_id)
    assert response.status_code == 202
    assert response.json()["rollout_id"] == rollout_id
    completion = await trainer.wait_for_completion(rollout_id)
    assert completion["status"] == "ERROR"
    assert completion["extra_fields"]["error_category"] == "cancelled"
    assert "CancelledError" in completion["extra_fields"]["traceback"]
    assert completion["error_message"] == "cancelled by request"
    # The partial trajectory: the history and the answer the agent had reached.
    assert [m["role"] for m in completion["final_messages"]] == ["user", "assistant"]
    settled = await server.wait_settled(rollout_id)
    assert settled["status"] == "cancelled" and settled["error_category"] == "cancelled"
    # Cancelling after the end says so and sends nothing more.
    again = await server.cancel(rollout_id)
    assert again.status_code == 200
    assert again.json()["status"] == "cancelled" and "already finished" in again.json()["detail"]
    await asyncio.sleep(0.01)
    assert len(trainer.attempts_for(rollout_id)) == 1


async def test_cancel_right_after_init_still_reports(serve, make_agent, trainer):
    agent = make_agent(run=_blocked(chat_first=False))
    server = serve(agent)
    rollout_id = await server.start()
    # No pause in between: the rollout's task may not have taken its first step yet.
    server.manager.cancel(rollout_id)
    completion = await trainer.wait_for_completion(rollout_id)
    assert completion["extra_fields"]["error_category"] == "cancelled"
    assert (await server.wait_settled(rollout_id))["status"] == "cancelled"
    assert (await server.http.get("/health")).json()["active_rollouts"] == 0


async def test_cancel_a_queued_rollout_never_runs_it(serve, make_agent, trainer):
    release = asyncio.Event()
    agent = make_agent(run=_blocked(release))
    server = serve(agent, max_concurrent=1)
    first = await server.start()
    queued = await server.start()
    await trainer.wait_for_chats(first)
    assert (await server.cancel(queued)).status_code == 202
    completion = await trainer.wait_for_completion(queued)
    assert completion["extra_fields"]["error_category"] == "cancelled"
    assert completion["final_messages"] == [{"role": "user", "content": "What is 2 + 2?"}]
    release.set()
    await trainer.wait_for_completion(first)
    assert agent.run_ids == [first]
    health = (await server.http.get("/health")).json()
    assert health["active_rollouts"] == 0 and health["completed_rollouts"] == 2


async def test_cancel_unknown_rollout_is_404(serve, make_agent):
    server = serve(make_agent())
    response = await server.cancel("ghost")
    assert response.status_code == 404


async def test_agent_raising_cancelled_error_itself_still_reports(serve, make_agent, trainer):
    async def run(ctx):
        raise asyncio.CancelledError  # e.g. it awaited a future someone else cancelled

    server = serve(make_agent(run=run))
    rollout_id = await server.start()
    completion = await trainer.wait_for_completion(rollout_id)
    assert completion["status"] == "ERROR"
    assert completion["extra_fields"]["error_category"] == "agent_error"


# ---- deadline ---------------------------------------------------------------------------------


async def test_deadline_reports_timeout_with_the_partial_trajectory(serve, make_agent, trainer):
    server = serve(make_agent(run=_blocked()), rollout_timeout=0.05)
    rollout_id = await server.start()
    completion = await trainer.wait_for_completion(rollout_id)
    assert completion["status"] == "ERROR"
    assert completion["extra_fields"]["error_category"] == "timeout"
    assert "TimeoutError" in completion["extra_fields"]["traceback"]
    assert "deadline" in completion["error_message"]
    assert [m["role"] for m in completion["final_messages"]] == ["user", "assistant"]
    settled = await server.wait_settled(rollout_id)
    assert (settled["status"], settled["error_category"]) == ("error", "timeout")


async def test_deadline_interrupts_a_slow_chat(serve, make_agent, trainer):
    trainer.chat_default = trainer.Reply(200, json=trainer.answer(), delay=0.5)
    server = serve(make_agent(), rollout_timeout=0.05)
    rollout_id = await server.start()
    completion = await trainer.wait_for_completion(rollout_id)
    assert completion["extra_fields"]["error_category"] == "timeout"
    assert completion["final_messages"] == [{"role": "user", "content": "What is 2 + 2?"}]


async def test_agents_own_timeout_error_is_an_agent_error(serve, make_agent, trainer):
    async def run(ctx):
        await asyncio.wait_for(asyncio.Event().wait(), 0.01)

    server = serve(make_agent(run=run), rollout_timeout=5)
    rollout_id = await server.start()
    completion = await trainer.wait_for_completion(rollout_id)
    assert completion["extra_fields"]["error_category"] == "agent_error"
    assert "TimeoutError" in completion["error_message"]


async def test_deadline_counts_from_the_start_not_from_the_queue(serve, make_agent, trainer):
    async def run(ctx):
        await asyncio.sleep(0.03)
        return ctx.complete([])

    server = serve(make_agent(run=run), max_concurrent=1, rollout_timeout=0.1)
    ids = [await server.start() for _ in range(6)]  # the last one waits ~0.15 s queued
    for rollout_id in ids:
        completion = await trainer.wait_for_completion(rollout_id)
        assert completion["status"] == "COMPLETED"


# ---- shutdown ---------------------------------------------------------------------------------


async def test_shutdown_drains_then_cancels_and_reports_every_rollout(
    serve, make_agent, trainer, wait_for
):
    agent = make_agent(run=_blocked())
    server = serve(agent, max_concurrent=2, drain_timeout=0.05)
    app = server.app
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    ids = [await server.start() for _ in range(3)]  # two running, one queued
    await wait_for(lambda: len(trainer.chat_requests) == 2)
    closing = asyncio.create_task(lifespan.__aexit__(None, None, None))
    await wait_for(lambda: server.manager.draining)
    refused = await server.init()
    assert refused.status_code == 503
    assert "shutting down" in refused.json()["detail"]
    health = (await server.http.get("/health")).json()
    assert health["status"] == "healthy" and health["draining"] is True
    await asyncio.wait_for(closing, 5)
    for rollout_id in ids:
        (completion,) = trainer.completions_for(rollout_id)
        assert completion["status"] == "ERROR"
        assert completion["extra_fields"]["error_category"] == "cancelled"
        assert "shutting down" in completion["error_message"]
    assert len(trainer.completion_attempts) == 3
    assert agent.runs == 2  # the queued one was reported without being started


async def test_shutdown_lets_quick_rollouts_finish(serve, make_agent, trainer, wait_for):
    async def run(ctx):
        await asyncio.sleep(0.03)
        return ctx.complete([], reward=1.0)

    server = serve(make_agent(run=run), drain_timeout=5)
    async with server.app.router.lifespan_context(server.app):
        ids = [await server.start() for _ in range(3)]
    for rollout_id in ids:
        (completion,) = trainer.completions_for(rollout_id)
        assert completion["status"] == "COMPLETED"


async def test_shutdown_gives_up_on_deliveries_past_the_final_timeout(
    serve, make_agent, trainer, wait_for
):
    limits = ServerLimits(drain_timeout_s=0.02, final_delivery_timeout_s=0.05)
    trainer.completion_default = trainer.Reply(200, delay=5.0)  # acknowledged too late
    server = serve(make_agent(run=_blocked()), limits=limits)
    lifespan = server.app.router.lifespan_context(server.app)
    await lifespan.__aenter__()
    rollout_id = await server.start()
    await trainer.wait_for_chats(rollout_id)
    started = time.perf_counter()
    await asyncio.wait_for(lifespan.__aexit__(None, None, None), 10)
    assert time.perf_counter() - started < 2.5  # gave up long before the 5 s answer
    status = (await server.status(rollout_id)).json()
    assert status["status"] == "cancelled"
    assert status["completion_delivery"] == "failed"
    assert "shutdown" in status["delivery_error"]


async def test_shutdown_with_nothing_in_flight_is_immediate(serve, make_agent):
    server = serve(make_agent())
    started = time.perf_counter()
    async with server.app.router.lifespan_context(server.app):
        pass
    assert time.perf_counter() - started < 1


async def test_repeat_init_while_draining_gets_its_202(serve, make_agent, trainer, wait_for):
    server = serve(make_agent(run=_blocked()), drain_timeout=0.2)
    lifespan = server.app.router.lifespan_context(server.app)
    await lifespan.__aenter__()
    first = await server.init("keep")
    await trainer.wait_for_chats("keep")
    closing = asyncio.create_task(lifespan.__aexit__(None, None, None))
    await wait_for(lambda: server.manager.draining)
    again = await server.init("keep")
    assert again.status_code == 202 and again.json() == first.json()
    await asyncio.wait_for(closing, 5)
    assert len(trainer.completions_for("keep")) == 1


# ---- health -----------------------------------------------------------------------------------


async def test_health_reports_name_and_counts(serve, make_agent, trainer):
    release = asyncio.Event()
    server = serve(make_agent(run=_blocked(release), name="calc-agent"))
    health = await server.http.get("/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "healthy"
    assert body["agent_loop"] == "calc-agent"
    assert (body["active_rollouts"], body["completed_rollouts"]) == (0, 0)
    ids = [await server.start() for _ in range(3)]
    assert (await server.http.get("/health")).json()["active_rollouts"] == 3
    release.set()
    for rollout_id in ids:
        await server.wait_settled(rollout_id)
    body = (await server.http.get("/health")).json()
    assert (body["active_rollouts"], body["completed_rollouts"]) == (0, 3)


async def test_health_needs_no_key_even_when_the_server_has_one(serve, make_agent):
    server = serve(make_agent(), api_key=KEY)
    assert (await server.http.get("/health")).status_code == 200


async def test_platform_health_without_a_server_key_is_404(serve, make_agent):
    server = serve(make_agent())
    response = await server.http.get("/platform/health", headers={"Authorization": "Bearer x"})
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": f"Bearer {KEY}"}, 200),
        ({"Authorization": f"bearer {KEY}"}, 200),
        ({"Authorization": KEY}, 200),
    ],
)
async def test_platform_health_checks_the_key(serve, make_agent, headers, status):
    server = serve(make_agent(name="plat"), api_key=KEY)
    response = await server.http.get("/platform/health", headers=headers)
    assert response.status_code == status
    if status == 200:
        assert response.json() == (await server.http.get("/health")).json()
        assert response.json()["agent_loop"] == "plat"
    else:
        assert response.json() == {"detail": "Invalid or missing API key"}


async def test_health_answers_while_get_tools_blocks(serve, make_agent):
    entered = threading.Event()
    leave = threading.Event()

    def slow_tools(request):
        entered.set()
        leave.wait(5)
        return []

    server = serve(make_agent(get_tools=slow_tools))
    init = asyncio.create_task(server.init())
    await asyncio.wait_for(asyncio.to_thread(entered.wait, 5), 5)
    health = await asyncio.wait_for(server.http.get("/health"), 1)
    assert health.status_code == 200
    assert not init.done()
    leave.set()
    assert (await init).status_code == 202


async def test_health_is_prompt_with_many_rollouts_in_flight(serve, make_agent):
    release = asyncio.Event()
    server = serve(make_agent(run=_blocked(release, chat_first=False)))
    for _ in range(200):
        await server.start()
    started = time.perf_counter()
    body = (await server.http.get("/health")).json()
    assert time.perf_counter() - started < 0.5
    assert body["active_rollouts"] == 200
    release.set()


# ---- the invariant ----------------------------------------------------------------------------


async def _raise(ctx):
    await ctx.chat(list(ctx.request.messages))
    raise RuntimeError("agent bug")


def _gate_cancels(server) -> None:
    async def gate(rollout_id, body, result):
        raise RolloutCancelled("stopped at the gate")

    server.app.state.hooks.set_gate(gate)


async def _cancel_all(server, trainer, ids) -> None:
    for rollout_id in ids:
        await trainer.wait_for_chats(rollout_id)
        assert (await server.cancel(rollout_id)).status_code == 202


async def _cancel_at_once(server, trainer, ids) -> None:
    for rollout_id in ids:  # no pause after init: the rollouts may not have started yet
        assert (await server.cancel(rollout_id)).status_code == 202


async def _raise_cancelled_error(ctx):
    raise asyncio.CancelledError


async def _unsendable(ctx):
    return ctx.complete([{"role": "assistant", "content": object()}])


async def _shutdown(server, trainer, ids) -> None:
    await trainer.wait_until(lambda: all(trainer.chats_for(i) for i in ids))
    await server.lifespan.__aexit__(None, None, None)


@dataclass
class Scenario:
    """One way a rollout can go; the invariant must hold in every one."""

    chat: list[Any] = field(default_factory=list)
    chat_default: Any = None
    completion: list[Any] = field(default_factory=list)
    completion_default: Any = None
    run: Callable | None = None
    server: dict[str, Any] = field(default_factory=dict)
    fast_timeout: bool = False
    unreachable: bool = False
    setup: Callable | None = None
    action: Callable[..., Awaitable[None]] | None = None
    lifespan: bool = False
    #: Expected per rollout: ("COMPLETED"|"ERROR", category or None, "delivered"|"failed").
    expect: tuple[str, str | None, str] = ("COMPLETED", None, "delivered")


SCENARIOS: dict[str, Scenario] = {
    "ok": Scenario(),
    "agent-raises": Scenario(run=_raise, expect=("ERROR", "agent_error", "delivered")),
    "chat-5xx-then-ok": Scenario(chat=[("reply", 500), ("reply", 503)]),
    "chat-5xx-forever": Scenario(
        chat_default=("reply", 500), expect=("ERROR", "llm_error", "delivered")
    ),
    "chat-timeouts": Scenario(
        chat_default=("slow", 0.3), fast_timeout=True, expect=("ERROR", "llm_error", "delivered")
    ),
    "chat-4xx": Scenario(chat_default=("reply", 400), expect=("ERROR", "llm_error", "delivered")),
    "chat-no-choices": Scenario(
        chat_default=("json", {"id": "x"}), expect=("ERROR", "protocol_error", "delivered")
    ),
    "chat-not-json": Scenario(
        chat_default=("text", "<html>"), expect=("ERROR", "protocol_error", "delivered")
    ),
    "completion-5xx-then-ok": Scenario(completion=[("reply", 500), ("reply", 502)]),
    "completion-timeout-then-ok": Scenario(completion=[("slow", 0.3)], fast_timeout=True),
    "completion-5xx-forever": Scenario(
        completion_default=("reply", 503), expect=("COMPLETED", None, "failed")
    ),
    "completion-4xx": Scenario(
        completion_default=("reply", 404), expect=("COMPLETED", None, "failed")
    ),
    "trainer-unreachable": Scenario(unreachable=True, expect=("ERROR", "llm_error", "failed")),
    "cancelled": Scenario(
        run=_blocked(), action=_cancel_all, expect=("ERROR", "cancelled", "delivered")
    ),
    "cancelled-at-once": Scenario(
        run=_blocked(), action=_cancel_at_once, expect=("ERROR", "cancelled", "delivered")
    ),
    "agent-raises-cancelled-error": Scenario(
        run=_raise_cancelled_error, expect=("ERROR", "agent_error", "delivered")
    ),
    "result-not-serialisable": Scenario(
        run=_unsendable, expect=("ERROR", "agent_error", "delivered")
    ),
    "deadline": Scenario(
        run=_blocked(), server={"rollout_timeout": 0.05}, expect=("ERROR", "timeout", "delivered")
    ),
    "shutdown": Scenario(
        run=_blocked(),
        server={"drain_timeout": 0.02},
        lifespan=True,
        action=_shutdown,
        expect=("ERROR", "cancelled", "delivered"),
    ),
    "gate-cancels": Scenario(setup=_gate_cancels, expect=("ERROR", "cancelled", "delivered")),
}


def _scripted(trainer, item):
    kind, value = item
    if kind == "reply":
        return trainer.Reply(value, json={"detail": "scripted"})
    if kind == "slow":
        return trainer.Reply(200, json=trainer.answer(), delay=value)
    if kind == "text":
        return trainer.Reply(200, text=value)
    return trainer.Reply(200, json=value)


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_every_accepted_rollout_gets_exactly_one_completion(
    name, serve, make_agent, trainer, fast_client_config
):
    scenario = SCENARIOS[name]
    trainer.script_chat(*(_scripted(trainer, i) for i in scenario.chat))
    if scenario.chat_default:
        trainer.chat_default = _scripted(trainer, scenario.chat_default)
    trainer.script_completion(*(_scripted(trainer, i) for i in scenario.completion))
    if scenario.completion_default:
        trainer.completion_default = _scripted(trainer, scenario.completion_default)
    config = replace(fast_client_config, timeout_s=0.05) if scenario.fast_timeout else None
    agent = make_agent(run=scenario.run)
    server = serve(agent, client_config=config, **scenario.server)
    if scenario.setup:
        scenario.setup(server)
    if scenario.lifespan:
        server.lifespan = server.app.router.lifespan_context(server.app)
        await server.lifespan.__aenter__()
    url = trainer.unreachable_url if scenario.unreachable else trainer.url
    ids = [await server.start(server_url=url) for _ in range(4)]
    if scenario.action:
        await scenario.action(server, trainer, ids)

    status, category, delivery = scenario.expect
    for rollout_id in ids:
        settled = await server.wait_settled(rollout_id)
        assert settled["completion_delivery"] == delivery, settled
        assert settled["error_category"] == category
    await asyncio.sleep(0.02)  # a duplicate delivery would show up in this window
    for rollout_id in ids:
        delivered = trainer.completions_for(rollout_id)
        if delivery == "delivered":
            assert len(delivered) == 1, f"{rollout_id}: {len(delivered)} completions"
            assert delivered[0]["status"] == status
            assert delivered[0].get("extra_fields", {}).get("error_category") == category
        else:
            assert delivered == []
    assert sum(len(trainer.completions_for(i)) for i in ids) == len(trainer.completions)
    assert agent.runs <= len(ids)
