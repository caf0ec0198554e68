"""The sample calculator agent, run end to end through create_app and a fake trainer."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from sample_project import server as sample_server
from sample_project.rewards import compute_reward, last_number
from sample_project.tools import CALCULATOR_TOOLS, TOOL_FUNCTIONS

DATASET = Path(sample_server.__file__).with_name("test_data.jsonl")


def _request(question: str, ground_truth: str) -> dict:
    return {
        "messages": [
            {"role": "system", "content": "You are a calculator assistant."},
            {"role": "user", "content": question},
        ],
        "metadata": {"ground_truth": ground_truth},
        "completion_params": {"temperature": 0.0},
    }


async def test_calculator_rollout_end_to_end(serve, trainer):
    def model(body):
        last = body["messages"][-1]
        if last["role"] == "user":
            return trainer.answer(
                None,
                tool_calls=[trainer.tool_call("add", {"a": 17, "b": 25}, "call_add")],
                finish_reason="tool_calls",
            )
        assert last == {"role": "tool", "tool_call_id": "call_add", "name": "add", "content": "42"}
        return trainer.answer("17 + 25 = 42")

    trainer.chat_default = model
    server = serve(sample_server.agent_loop)
    response = await server.init("calc-1", **_request("What is 17 + 25?", "42"))
    assert response.status_code == 202
    tools = response.json()["tools"]
    assert [t["function"]["name"] for t in tools] == ["add", "subtract", "multiply", "divide"]
    assert tools == CALCULATOR_TOOLS

    completion = await trainer.wait_for_completion("calc-1")
    assert completion["status"] == "COMPLETED"
    assert completion["reward"] == 1.0
    assert completion["finish_reason"] == "stop"
    final = completion["final_messages"]
    assert [m["role"] for m in final] == ["system", "user", "assistant", "tool", "assistant"]
    tool_messages = [m for m in final if m["role"] == "tool"]
    assert tool_messages == [
        {"role": "tool", "tool_call_id": "call_add", "name": "add", "content": "42"}
    ]
    metrics = completion["metrics"]
    assert (metrics["num_llm_calls"], metrics["num_tool_calls"]) == (2, 1)
    # The calculator sends its temperature on every turn.
    assert all(body["temperature"] == 0.0 for body in trainer.chat_requests)


async def test_calculator_wrong_answer_scores_zero(serve, trainer):
    trainer.script_chat(trainer.answer("I think it is 41."))
    server = serve(sample_server.agent_loop)
    await server.init("calc-wrong", **_request("What is 17 + 25?", "42"))
    completion = await trainer.wait_for_completion("calc-wrong")
    assert completion["status"] == "COMPLETED"
    assert completion["reward"] == 0.0


async def test_calculator_reports_a_tool_error_to_the_model(serve, trainer):
    def model(body):
        last = body["messages"][-1]
        if last["role"] == "user":
            return trainer.answer(
                None, tool_calls=[trainer.tool_call("divide", {"a": 1, "b": 0}, "div")]
            )
        assert last["name"] == "divide"
        assert last["content"].startswith("Error: ZeroDivisionError")
        return trainer.answer("Division by zero is undefined.")

    trainer.chat_default = model
    server = serve(sample_server.agent_loop)
    await server.init("calc-div0", **_request("What is 1 / 0?", "0"))
    completion = await trainer.wait_for_completion("calc-div0")
    assert completion["status"] == "COMPLETED"
    assert completion["reward"] == 0.0


async def test_calculator_stops_at_max_turns(serve, trainer):
    trainer.chat_default = lambda body: trainer.answer(
        None, tool_calls=[trainer.tool_call("add", {"a": 1, "b": 1})]
    )
    server = serve(sample_server.agent_loop)
    await server.init("calc-loop", max_turns=3, **_request("loop", "2"))
    completion = await trainer.wait_for_completion("calc-loop")
    assert completion["finish_reason"] == "max_turns"
    assert len(trainer.chats_for("calc-loop")) == 3


async def test_every_dataset_row_scores_one_with_its_answer(serve, trainer):
    rows = [json.loads(line) for line in DATASET.read_text().splitlines() if line.strip()]
    assert rows
    by_question = {row["user_prompt"]: row["ground_truth"] for row in rows}

    def model(body):
        question = body["messages"][-1]["content"]
        return trainer.answer(f"The final answer is {by_question[question]}.")

    trainer.chat_default = model
    server = serve(sample_server.agent_loop)
    for index, row in enumerate(rows):
        request = _request(row["user_prompt"], row["ground_truth"])
        request["messages"][0]["content"] = row["system_prompt"]
        assert (await server.init(f"row-{index}", **request)).status_code == 202
    for index in range(len(rows)):
        completion = await trainer.wait_for_completion(f"row-{index}")
        assert completion["reward"] == 1.0, completion


async def test_the_modules_app_serves_health():
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sample_server.app), base_url="http://server"
    ) as client:
        body = (await client.get("/health")).json()
    assert body["status"] == "healthy" and body["agent_loop"] == "calculator"


@pytest.mark.parametrize(
    ("text", "truth", "reward"),
    [
        ("The answer is 42", "42", 1.0),
        ("1,234 total", "1234", 1.0),
        ("-3.5", "-3.5", 1.0),
        ("no number", "1", 0.0),
        ("42", "forty-two", 0.0),
    ],
)
def test_reward(text, truth, reward):
    assert compute_reward(text, truth) == reward


def test_tools_compute():
    assert TOOL_FUNCTIONS["add"](2, 3) == 5
    assert TOOL_FUNCTIONS["divide"](7, 2) == 3.5
    assert last_number("a 1 b 2.5") == 2.5
    names = {t["function"]["name"] for t in CALCULATOR_TOOLS}
    assert names == set(TOOL_FUNCTIONS)
    for tool in CALCULATOR_TOOLS:
        assert re.fullmatch(r"[a-z]+", tool["function"]["name"])
