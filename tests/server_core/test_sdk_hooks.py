"""server_core.hooks: observers see a rollout's events in order; the gate; failing observers."""

from __future__ import annotations

import asyncio
import copy
import dataclasses

import pytest

from server_core import RolloutCancelled, RolloutHooks, execute_tool_calls
from server_core.hooks import EVENT_KINDS, HookEvent


def _add(a, b):
    return a + b


async def _tool_agent(ctx):
    """Chat, run the tool calls (counted through ctx), log an event, chat again, complete."""
    messages = list(ctx.request.messages)
    result = await ctx.chat(messages)
    messages.append(result.message)
    messages.extend(await execute_tool_calls(result.tool_calls, {"add": _add}, ctx=ctx))
    ctx.log_event("tools_done", count=len(result.tool_calls))
    result = await ctx.chat(messages)
    messages.append(result.message)
    return ctx.complete(messages, reward=1.0)


EXPECTED_KINDS = [
    "rollout_started",
    "llm_request",
    "llm_response",
    "tool_call",
    "log_event",
    "llm_request",
    "llm_response",
    "rollout_finished",
]


def _script_tool_then_answer(trainer, rollout_count: int = 1) -> None:
    def reply(body):
        if len(body["messages"]) == 1:
            return trainer.answer(None, tool_calls=[trainer.tool_call("add", {"a": 2, "b": 3})])
        return trainer.answer("5")

    trainer.chat_default = reply


@pytest.mark.parametrize("observer_kind", ["sync", "async"])
async def test_observers_see_the_six_event_kinds_in_order(
    serve, make_agent, trainer, observer_kind
):
    _script_tool_then_answer(trainer)
    events: list[HookEvent] = []

    def sync_observer(event: HookEvent) -> None:
        events.append(event)

    async def async_observer(event: HookEvent) -> None:
        await asyncio.sleep(0)  # an observer that yields must not reorder events
        events.append(event)

    hooks = RolloutHooks()
    hooks.add_observer(sync_observer if observer_kind == "sync" else async_observer)
    server = serve(make_agent(run=_tool_agent, tools=[]), hooks=hooks)
    rollout_id = await server.start(api_key="secret-token")
    await trainer.wait_for_completion(rollout_id)
    await server.wait_settled(rollout_id)
    await _wait_for_kind(events, "rollout_finished")
    assert [e.kind for e in events] == EXPECTED_KINDS
    assert set(EXPECTED_KINDS) == set(EVENT_KINDS)
    assert all(e.rollout_id == rollout_id for e in events)
    assert all(e.time > 0 for e in events)
    assert [e.time for e in events] == sorted(e.time for e in events)

    started, request, response, tool, log, request2, _response2, finished = events
    assert started.data["request"]["rollout_id"] == rollout_id
    assert "api_key" not in started.data["request"]  # secrets never reach observers
    assert started.data["tools"] == []
    assert request.data["turn"] == 1 and request2.data["turn"] == 2
    assert request.data["body"]["messages"] == [{"role": "user", "content": "What is 2 + 2?"}]
    assert response.data["message"]["tool_calls"][0]["function"]["name"] == "add"
    assert response.data["latency_ms"] > 0
    assert tool.data["name"] == "add"
    assert tool.data["arguments"] == {"a": 2, "b": 3}
    assert tool.data["result"] == 5
    assert log.data == {"event": "tools_done", "count": 1}
    assert finished.data["completion"]["status"] == "COMPLETED"
    assert finished.data["delivery"] == "delivered"


async def _wait_for_kind(events: list[HookEvent], kind: str, timeout: float = 5.0) -> None:
    async def _wait():
        while not any(e.kind == kind for e in events):
            await asyncio.sleep(0.002)

    await asyncio.wait_for(_wait(), timeout)


async def test_llm_request_body_stays_as_sent(serve, make_agent, trainer):
    _script_tool_then_answer(trainer)
    bodies: list[dict] = []

    def observer(event: HookEvent) -> None:
        if event.kind == "llm_request":
            bodies.append(event.data["body"])  # kept by reference, as a trace writer does

    hooks = RolloutHooks()
    hooks.add_observer(observer)
    server = serve(make_agent(run=_tool_agent), hooks=hooks)
    rollout_id = await server.start()
    await trainer.wait_for_completion(rollout_id)
    assert [len(b["messages"]) for b in bodies] == [1, 3]
    assert bodies == [copy.deepcopy(b) for b in trainer.chat_requests]


async def test_events_of_concurrent_rollouts_are_each_in_order(serve, make_agent, trainer):
    _script_tool_then_answer(trainer)
    events: list[HookEvent] = []
    hooks = RolloutHooks()
    hooks.add_observer(events.append)
    server = serve(make_agent(run=_tool_agent), hooks=hooks)
    ids = [await server.start() for _ in range(8)]
    for rollout_id in ids:
        await server.wait_settled(rollout_id)

    async def all_finished():
        while sum(e.kind == "rollout_finished" for e in events) < len(ids):
            await asyncio.sleep(0.002)

    await asyncio.wait_for(all_finished(), 5)
    for rollout_id in ids:
        assert [e.kind for e in events if e.rollout_id == rollout_id] == EXPECTED_KINDS


async def test_error_rollouts_also_end_with_rollout_finished(serve, make_agent, trainer):
    events: list[HookEvent] = []
    hooks = RolloutHooks()
    hooks.add_observer(events.append)

    async def run(ctx):
        ctx.log_event("about_to_fail")
        raise ValueError("boom")

    server = serve(make_agent(run=run), hooks=hooks)
    rollout_id = await server.start()
    await server.wait_settled(rollout_id)
    await _wait_for_kind(events, "rollout_finished")
    assert [e.kind for e in events] == ["rollout_started", "log_event", "rollout_finished"]
    finished = events[-1].data
    assert finished["completion"]["status"] == "ERROR"
    assert finished["completion"]["extra_fields"]["error_category"] == "agent_error"


async def test_raising_observers_do_not_break_the_rollout(serve, make_agent, trainer):
    _script_tool_then_answer(trainer)
    seen: list[str] = []
    hooks = RolloutHooks()

    def bad_sync(event):
        raise RuntimeError("observer bug")

    async def bad_async(event):
        raise KeyError("async observer bug")

    hooks.add_observer(bad_sync)
    hooks.add_observer(bad_async)
    hooks.add_observer(lambda event: seen.append(event.kind))
    server = serve(make_agent(run=_tool_agent), hooks=hooks)
    rollout_id = await server.start()
    completion = await trainer.wait_for_completion(rollout_id)
    assert completion["status"] == "COMPLETED"
    assert completion["reward"] == 1.0
    await server.wait_settled(rollout_id)

    async def done():
        while "rollout_finished" not in seen:
            await asyncio.sleep(0.002)

    await asyncio.wait_for(done(), 5)
    assert seen == EXPECTED_KINDS  # later observers still get every event


async def test_observer_can_unsubscribe(serve, make_agent, trainer):
    seen: list[str] = []
    hooks = RolloutHooks()
    assert not hooks.active
    remove = hooks.add_observer(lambda event: seen.append(event.kind))
    assert hooks.active
    remove()
    assert not hooks.active
    hooks.remove_observer(print)  # not subscribed: no error
    server = serve(make_agent(), hooks=hooks)
    rollout_id = await server.start()
    await server.wait_settled(rollout_id)
    assert seen == []


async def test_create_app_exposes_its_hooks(serve, make_agent):
    server = serve(make_agent())
    assert isinstance(server.app.state.hooks, RolloutHooks)


# ---- the gate ---------------------------------------------------------------------------------


async def test_gate_can_replace_the_response_the_agent_gets(serve, make_agent, trainer):
    responses: list[dict] = []
    gated: list[tuple[str, dict]] = []

    async def gate(rollout_id, body, result):
        gated.append((rollout_id, body))
        return dataclasses.replace(
            result, message={"role": "assistant", "content": "edited by the user"}
        )

    hooks = RolloutHooks()
    hooks.add_observer(
        lambda e: responses.append(e.data["message"]) if e.kind == "llm_response" else None
    )
    hooks.set_gate(gate)
    assert hooks.gate is gate
    trainer.script_chat(trainer.answer("from the model"))
    server = serve(make_agent(), hooks=hooks)
    rollout_id = await server.start()
    completion = await trainer.wait_for_completion(rollout_id)
    assert completion["final_messages"][-1]["content"] == "edited by the user"
    assert responses == [{"role": "assistant", "content": "from the model"}]
    assert gated[0][0] == rollout_id and gated[0][1]["rollout_id"] == rollout_id


async def test_gate_returning_none_keeps_the_response(serve, make_agent, trainer):
    hooks = RolloutHooks()

    async def gate(rollout_id, body, result):
        return None

    hooks.set_gate(gate)
    trainer.script_chat(trainer.answer("unchanged"))
    server = serve(make_agent(), hooks=hooks)
    rollout_id = await server.start()
    completion = await trainer.wait_for_completion(rollout_id)
    assert completion["final_messages"][-1]["content"] == "unchanged"


async def test_gate_can_hold_a_rollout_until_released(serve, make_agent, trainer):
    release = asyncio.Event()
    arrived = asyncio.Event()

    async def gate(rollout_id, body, result):
        arrived.set()
        await release.wait()

    hooks = RolloutHooks()
    hooks.set_gate(gate)
    server = serve(make_agent(), hooks=hooks)
    rollout_id = await server.start()
    await asyncio.wait_for(arrived.wait(), 5)
    assert (await server.status(rollout_id)).json()["status"] == "running"
    assert trainer.completions_for(rollout_id) == []
    release.set()
    assert (await trainer.wait_for_completion(rollout_id))["status"] == "COMPLETED"


async def test_gate_raising_rollout_cancelled_ends_as_cancelled(serve, make_agent, trainer):
    async def gate(rollout_id, body, result):
        raise RolloutCancelled("aborted by the user at the gate")

    hooks = RolloutHooks()
    hooks.set_gate(gate)
    trainer.script_chat(trainer.answer("never seen"))
    server = serve(make_agent(), hooks=hooks)
    rollout_id = await server.start()
    completion = await trainer.wait_for_completion(rollout_id)
    assert completion["status"] == "ERROR"
    assert completion["extra_fields"]["error_category"] == "cancelled"
    assert completion["error_message"] == "aborted by the user at the gate"
    assert "RolloutCancelled" in completion["extra_fields"]["traceback"]
    assert completion["final_messages"] == [{"role": "user", "content": "What is 2 + 2?"}]
    settled = await server.wait_settled(rollout_id)
    assert settled["status"] == "cancelled"


async def test_gate_runs_without_observers(serve, make_agent, trainer):
    calls = []

    async def gate(rollout_id, body, result):
        calls.append(rollout_id)

    hooks = RolloutHooks()
    hooks.set_gate(gate)
    assert not hooks.active
    server = serve(make_agent(), hooks=hooks)
    rollout_id = await server.start()
    await trainer.wait_for_completion(rollout_id)
    assert calls == [rollout_id]
    hooks.set_gate(None)
    assert hooks.gate is None
