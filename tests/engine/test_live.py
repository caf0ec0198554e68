"""Live rollouts of a served agent: the observer, the gate, and stepping one like a dataset row."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from osmosis_workbench.engine.live import LiveRollouts, LiveStepSession
from server_core import RolloutContext


async def two_turns(ctx: RolloutContext) -> Any:
    """An agent that asks the model twice and rewards the second answer's length."""
    messages = list(ctx.request.messages)
    for _ in range(2):
        result = await ctx.chat(messages)
        messages.append(result.message)
    return ctx.complete(messages, reward=float(len(messages[-1].get("content") or "")))


@pytest.fixture
def live_server(serve, make_agent, trainer):
    """``(server, live)``: a two-turn agent served with a LiveRollouts attached."""
    server = serve(make_agent(run=two_turns))
    live = LiveRollouts()
    detach = live.attach(server.app.state.hooks)
    yield server, live
    detach()


async def test_observer_keeps_state_turns_reward_and_request(live_server, trainer):
    server, live = live_server
    changes: list[str] = []
    live.on_change = lambda r: changes.append(r.state)
    trainer.script_chat(trainer.answer("one"), trainer.answer("three"))
    rid = await server.start("obs-1")
    completion = await trainer.wait_for_completion(rid)
    rollout = live.rollouts[rid]
    assert rollout.state == "completed" and rollout.done
    assert rollout.turns == 2 and rollout.reward == 5.0 == completion["reward"]
    assert rollout.request["messages"][0]["content"] == "What is 2 + 2?"
    assert rollout.completion is not None and rollout.completion.status == "COMPLETED"
    assert [m["content"] for m in rollout.messages[1:]] == ["one", "three"]
    assert changes[0] == "running" and changes[-1] == "completed"


async def test_step_session_pauses_each_answer_then_continues(live_server, trainer):
    server, live = live_server
    ui_seen: list[str] = []
    live.on_change = lambda r: ui_seen.append(r.state)
    trainer.script_chat(trainer.answer("first"), trainer.answer("second"))
    # Pause before the rollout exists is not possible; pause everything, then step one.
    live.pause_all = True
    rid = await server.start("step-1")
    session = LiveStepSession(live, rid)
    await session.start()
    live.pause_all = False
    paused = await session.wait()
    assert paused is not None and paused.turn == 1
    assert paused.message["content"] == "first" and paused.finish_reason == "stop"
    assert paused.request_messages[-1]["content"] == "What is 2 + 2?"
    assert session.paused is paused  # one object per held answer
    assert session.messages[-1]["content"] == "first" and not session.finished
    assert session.next() is True
    assert session.paused is None  # forgotten at once: a wait now waits for the next pause
    paused = await session.wait()
    assert paused is not None and paused.turn == 2 and paused.message["content"] == "second"
    assert session.continue_() is True
    assert await session.wait() is None
    outcome = await session.finish()
    assert outcome is not None and outcome.ok and outcome.reward == 6.0
    assert [m["content"] for m in outcome.final_messages[1:]] == ["first", "second"]
    assert outcome.llm_calls == 2
    # The UI's on_change kept receiving every change while the session listened too.
    assert "paused" in ui_seen and ui_seen[-1] == "completed"


async def test_next_with_an_edited_message_reaches_the_agent(live_server, trainer):
    server, live = live_server
    trainer.script_chat(trainer.answer("model-one"), trainer.answer("model-two"))
    live.pause_all = True
    rid = await server.start("edit-1")
    session = LiveStepSession(live, rid)
    await session.start()
    assert await session.wait() is not None
    assert session.next({"role": "assistant", "content": "edited"}) is True
    assert await session.wait() is not None
    edited = {"role": "assistant", "content": "also edited", "tool_calls": None}
    assert session.next(edited) is True
    live.pause_all = False
    completion = await trainer.wait_for_completion(rid)
    contents = [m["content"] for m in completion["final_messages"][1:]]
    assert contents == ["edited", "also edited"]
    # The second chat request carried the edited first answer in its history.
    assert trainer.chats_for(rid)[1]["messages"][-1]["content"] == "edited"


async def test_abort_while_held_ends_the_rollout_as_cancelled(live_server, trainer):
    server, live = live_server
    live.pause_all = True
    rid = await server.start("abort-1")
    session = LiveStepSession(live, rid)
    await session.start()
    assert await session.wait() is not None
    assert session.abort("enough") is True
    outcome = await session.finish()
    assert outcome is not None and not outcome.ok
    assert outcome.error_category == "cancelled" and "enough" in (outcome.error or "")
    assert live.rollouts[rid].state == "cancelled"
    completion = await trainer.wait_for_completion(rid)
    assert completion["status"] == "ERROR"


async def test_abort_before_the_answer_stops_at_the_next_gate(live_server, trainer, wait_for):
    server, live = live_server
    release_model = __import__("asyncio").Event()

    async def slow_answer(body: dict) -> dict:
        await release_model.wait()
        return trainer.answer("late")

    trainer.script_chat(slow_answer)
    rid = await server.start("abort-2")
    await wait_for(lambda: rid in live.rollouts)
    session = LiveStepSession(live, rid)
    await session.start()
    assert session.paused is None
    assert session.abort("stop it") is False  # not held yet: it ends at the next answer
    release_model.set()
    outcome = await session.finish()
    assert outcome is not None and outcome.error_category == "cancelled"
    assert trainer.chats_for(rid) and len(trainer.chats_for(rid)) == 1


async def test_wait_returns_none_for_a_rollout_that_ends_without_pausing(live_server, trainer):
    server, live = live_server
    rid = await server.start("free-1")
    session = LiveStepSession(live, rid)
    await trainer.wait_for_completion(rid)
    await session.start()  # too late to pause: it has finished
    assert session.finished and await session.wait() is None
    assert session.next() is False and session.continue_() is False
    outcome = session.outcome
    assert outcome is not None and outcome.ok and outcome.reward == 4.0
    assert not LiveStepSession(live, "not-started-yet").finished


async def test_continue_lets_a_rollout_run_on_while_every_rollout_pauses(live_server, trainer):
    # "Pause every rollout" (P) is on; c on one of them means "run to the end", not "next".
    server, live = live_server
    trainer.script_chat(trainer.answer("one"), trainer.answer("two"))
    live.pause_all = True
    rid = await server.start("continue-1")
    session = LiveStepSession(live, rid)
    await session.start()
    paused = await session.wait()
    assert paused is not None and paused.turn == 1
    assert session.continue_() is True
    assert await session.wait() is None  # it ended without pausing at its second answer
    outcome = await session.finish()
    assert outcome is not None and outcome.ok and outcome.llm_calls == 2
    assert live.pause_all  # the others still pause
    # p on it again asks for a pause again; P turned on again pauses every rollout again.
    live.pause(rid)
    assert rid not in live.let_run
    live.pause_all = False
    live.continue_(rid)
    live.pause_all = True
    assert rid not in live.let_run


async def test_abort_while_the_agent_works_cancels_it_on_the_server_at_once(
    serve, make_agent, trainer, wait_for
):
    never = asyncio.Event()  # the model never answers: only a cancel ends this rollout
    trainer.script_chat(lambda body: never.wait())
    server = serve(make_agent(run=two_turns))
    live = LiveRollouts()
    detach = live.attach(server.app.state.hooks, cancel=server.app.state.rollouts.cancel)
    try:
        rid = await server.start("abort-3")
        await wait_for(lambda: rid in live.rollouts and bool(trainer.chats_for(rid)))
        session = LiveStepSession(live, rid)
        await session.start()
        assert session.abort("stop now") is True
        outcome = await asyncio.wait_for(session.finish(), 5)
        assert outcome is not None and outcome.error_category == "cancelled"
        assert "stop now" in (outcome.error or "")
    finally:
        detach()
