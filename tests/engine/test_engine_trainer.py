"""The local trainer and the step gate: rollouts over the real protocol, paused and steered."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from osmosis_workbench.engine.embedded import EmbeddedRolloutServer
from osmosis_workbench.engine.models import ModelError, ScriptedBackend
from osmosis_workbench.engine.session import StepSession
from osmosis_workbench.engine.trainer import LocalTrainer
from sample_project.server import agent_loop as calculator
from server_core import RolloutAgentLoop, RolloutContext

QUESTION = [{"role": "user", "content": "What is 2 + 3?"}]


def add_then_answer(answer: str = "The answer is 5.") -> list[Any]:
    return [{"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}, {"content": answer}]


def request(**fields: Any) -> dict[str, Any]:
    body = {"messages": QUESTION, "completion_params": {}, "metadata": {"ground_truth": "5"}}
    body.update(fields)
    return body


@asynccontextmanager
async def started_session(backend: Any) -> AsyncIterator[StepSession]:
    """A step session of the calculator over the embedded server, started (not yet waited)."""
    trainer = LocalTrainer(backend)
    async with EmbeddedRolloutServer(calculator, trainer) as server:
        session = StepSession(trainer, server.target, request(), timeout_s=10)
        await session.start()
        yield session


async def run_with(backend: Any, agent: Any = calculator):
    trainer = LocalTrainer(backend)
    async with EmbeddedRolloutServer(agent, trainer) as server:
        outcome = await trainer.drive(trainer.open_run(request()), server.target, timeout_s=10)
    return outcome, trainer


async def test_rollout_goes_over_the_protocol_and_the_trainer_sees_everything():
    backend = ScriptedBackend(add_then_answer())
    outcome, _ = await run_with(backend)
    assert outcome.status == "COMPLETED"
    assert outcome.reward == 1.0
    assert outcome.llm_calls == 2
    assert [m["role"] for m in outcome.final_messages] == ["user", "assistant", "tool", "assistant"]
    # The second chat request carried the whole history, tool result included, and the
    # init response's tools were applied to every generation.
    second = backend.calls[1]
    assert second["messages"][-1] == {
        "role": "tool",
        "tool_call_id": second["messages"][1]["tool_calls"][0]["id"],
        "name": "add",
        "content": "5",
    }
    assert [t["function"]["name"] for t in second["tools"]] == [
        "add",
        "subtract",
        "multiply",
        "divide",
    ]
    assert outcome.violations == []
    assert outcome.metrics["num_tool_calls"] == 1


async def test_model_error_ends_the_rollout_with_its_message():
    backend = ScriptedBackend(
        [
            ModelError(
                "authentication", "authentication failed for x: check OPENAI_API_KEY", systemic=True
            )
        ]
    )
    outcome, _ = await run_with(backend)
    assert outcome.status == "ERROR"
    assert outcome.error_category == "llm_error"
    assert "check OPENAI_API_KEY" in outcome.error
    assert outcome.model_error is not None and outcome.model_error.systemic


async def test_step_session_pauses_before_the_agent_sees_each_answer():
    backend = ScriptedBackend(add_then_answer())
    async with started_session(backend) as session:
        paused = await session.wait()
        assert paused is not None and paused.turn == 1
        assert paused.message["tool_calls"][0]["function"]["name"] == "add"
        # Held: the agent has not run the tool yet, so the history ends with the answer.
        assert [m["role"] for m in session.messages] == ["user", "assistant"]
        assert [t["function"]["name"] for t in session.tools][:1] == ["add"]
        assert session.next()
        paused = await session.wait()
        assert paused is not None and paused.turn == 2
        assert [m["role"] for m in session.messages] == ["user", "assistant", "tool", "assistant"]
        session.next()
        assert await session.wait() is None
        outcome = await session.finish()
    assert outcome.status == "COMPLETED" and outcome.reward == 1.0


async def test_continue_runs_to_the_end_without_pausing_again():
    backend = ScriptedBackend(add_then_answer())
    async with started_session(backend) as session:
        await session.wait()
        assert session.continue_()
        assert await session.wait() is None
        outcome = await session.finish()
    assert outcome.status == "COMPLETED" and outcome.llm_calls == 2


async def test_an_edited_answer_replaces_the_models():
    backend = ScriptedBackend(add_then_answer("The answer is 5."))
    async with started_session(backend) as session:
        await session.wait()
        edited = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "edited-1",
                    "type": "function",
                    "function": {"name": "multiply", "arguments": json.dumps({"a": 2, "b": 3})},
                }
            ],
        }
        session.next(edited)
        await session.wait()
        session.continue_()
        outcome = await session.finish()
    tool_message = outcome.final_messages[2]
    assert tool_message["name"] == "multiply" and tool_message["content"] == "6"
    # The model's answer said 5, the ground truth is 5, but the edited trajectory reached 6
    # by multiplying; the final text is still the model's second answer.
    assert outcome.final_messages[1]["tool_calls"][0]["id"] == "edited-1"


async def test_abort_ends_the_rollout_as_error_aborted_by_user():
    backend = ScriptedBackend(add_then_answer())
    trainer = LocalTrainer(backend)
    async with EmbeddedRolloutServer(calculator, trainer) as server:
        session = StepSession(trainer, server.target, request(), timeout_s=10)
        await session.start()
        await session.wait()
        assert session.abort()
        outcome = await session.finish()
        assert server.app.state.rollouts.health()["active_rollouts"] == 0
    assert outcome.status == "ERROR"
    assert outcome.error == "aborted by user"
    assert outcome.error_category == "cancelled"
    # The partial trajectory the agent reached is kept.
    assert outcome.final_messages[0] == QUESTION[0]


class ChattyAgent(RolloutAgentLoop):
    """Breaks the protocol's append-only rule: its second call drops the history."""

    name = "chatty"

    def get_tools(self, request):
        return []

    async def run(self, ctx: RolloutContext):
        first = await ctx.chat(list(ctx.request.messages))
        await ctx.chat([{"role": "user", "content": "start over"}])
        return ctx.complete([*list(ctx.request.messages), first.message])


async def test_protocol_violations_of_the_server_are_reported():
    backend = ScriptedBackend(["one", "two"])
    outcome, _ = await run_with(backend, agent=ChattyAgent())
    assert outcome.status == "COMPLETED"
    assert any("append-only" in v for v in outcome.violations)


async def test_second_completion_and_bad_auth_are_violations():
    trainer = LocalTrainer(ScriptedBackend(["x"]))
    run = trainer.open_run(request(rollout_id="r-dup"))
    import httpx

    transport = httpx.ASGITransport(app=trainer.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        body = {"rollout_id": "r-dup", "status": "COMPLETED", "final_messages": []}
        wrong = await client.post(
            "/v1/rollout/completed", json=body, headers={"authorization": "Bearer nope"}
        )
        assert wrong.status_code == 401
        auth = {"authorization": f"Bearer {trainer.callback_key}"}
        assert (
            await client.post("/v1/rollout/completed", json=body, headers=auth)
        ).status_code == 200
        assert (
            await client.post("/v1/rollout/completed", json=body, headers=auth)
        ).status_code == 200
        bad = await client.post(
            "/v1/rollout/completed", json={"rollout_id": "r-dup", "status": "DONE"}, headers=auth
        )
        assert bad.status_code == 422
    assert any("without the api_key" in v for v in run.violations)
    assert any("second completion" in v for v in run.violations)
    assert any("status" in v for v in run.violations)


@pytest.mark.parametrize("field", ["temperature", "max_tokens"])
async def test_completion_params_reach_the_model(field: str):
    backend = ScriptedBackend(["fine"])
    trainer = LocalTrainer(backend)

    class OneShot(RolloutAgentLoop):
        name = "one-shot"

        def get_tools(self, request):
            return []

        async def run(self, ctx):
            answer = await ctx.chat(list(ctx.request.messages))
            return ctx.complete([*list(ctx.request.messages), answer.message])

    async with EmbeddedRolloutServer(OneShot(), trainer) as server:
        body = request(completion_params={field: 7})
        outcome = await trainer.drive(trainer.open_run(body), server.target, timeout_s=10)
    assert outcome.ok
    assert backend.calls[0][field] == 7


async def test_an_edited_tool_result_makes_the_model_answer_again():
    def model(body: dict) -> dict:
        last = body["messages"][-1]
        if last["role"] == "tool":
            return {"content": f"The answer is {last['content']}."}
        return {"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}

    backend = ScriptedBackend(model)
    async with started_session(backend) as session:
        await session.wait()
        first = await session.wait()
        assert first.tool_results == []  # turn 1 replies to the user, not to tools
        session.next()
        paused = await session.wait()
        [result] = paused.tool_results
        assert result["name"] == "add" and result["content"] == "5"
        assert session.edit_tool_results({result["tool_call_id"]: "7"})
        again = await session.wait()
        assert again.turn == paused.turn == 2
        assert again.message["content"] == "The answer is 7."
        assert again.tool_results[0]["content"] == "7"
        session.continue_()
        outcome = await session.finish()
    # The model saw the edited result; the agent's history keeps what its tool returned.
    assert backend.calls[-1]["messages"][-1]["content"] == "7"
    assert outcome.final_messages[2]["content"] == "5"
    assert outcome.final_messages[-1]["content"] == "The answer is 7."
    assert outcome.reward == 0.0  # ground truth is 5
