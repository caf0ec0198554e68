"""``--model human``, engine side: a headless developer answers the sample agent's calls
through the real protocol; bad answers are refused; a recording replays with `osmosis test`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from osmosis_workbench.cli import main
from osmosis_workbench.engine.batch import BatchRunner
from osmosis_workbench.engine.config import EngineConfig
from osmosis_workbench.engine.datasets import RowSelection
from osmosis_workbench.engine.embedded import EmbeddedRolloutServer
from osmosis_workbench.engine.models import (
    AnswerRejected,
    AnswerRequest,
    HumanBackend,
    RecordingBackend,
    ScriptedHuman,
    create_backend,
    find_human,
)
from osmosis_workbench.engine.trainer import LocalTrainer
from sample_project.server import agent_loop

ROOT = Path(__file__).resolve().parents[2]
DATASET = ROOT / "sample_project" / "test_data.jsonl"

ADD = {"name": "add", "arguments": {"a": 17, "b": 25}}


async def run_row_0(backend, answers):
    """Row 0 ("What is 17 + 25?") through trainer, embedded server and agent, answered by a
    ScriptedHuman; returns the driver and the batch results."""
    human = find_human(backend)
    trainer = LocalTrainer(backend)
    try:
        async with (
            EmbeddedRolloutServer(agent_loop, trainer) as server,
            ScriptedHuman(human, answers) as driver,
        ):
            config = EngineConfig(dataset=str(DATASET), selection=RowSelection(rows=frozenset({0})))
            results = await asyncio.wait_for(
                BatchRunner(trainer, [server.target], config).run(), 20
            )
    finally:
        await backend.aclose()
    return driver, results


async def test_the_developer_answers_a_tool_call_then_the_final_answer():
    driver, [result] = await run_row_0(HumanBackend(), [{"tool_calls": [ADD]}, {"content": "42"}])
    assert result.passed and result.outcome.reward == 1.0
    first, second = driver.seen
    # What a screen shows: the row, the turn, the history, and the init answer's tools (the
    # sample agent does not pass tools to ctx.chat; the trainer offers the init's).
    assert (first.row, first.turn, second.turn) == (0, 0, 1)
    assert first.tool_names == ["add", "subtract", "multiply", "divide"]
    assert first.messages[-1] == {"role": "user", "content": "What is 17 + 25?"}
    assert second.messages[-1]["role"] == "tool" and second.messages[-1]["content"] == "42"
    assert driver.rejections == []


async def test_bad_tool_calls_are_refused_before_release_and_the_call_keeps_waiting():
    answers = [
        {"tool_calls": [{"name": "plus", "arguments": {"a": 1, "b": 2}}]},
        {"tool_calls": [{"name": "add", "arguments": {"a": "seventeen", "c": 1}}]},
        {"tool_calls": [{"name": "add", "arguments": "{not json"}]},
        {"content": "   "},
        {"tool_calls": [ADD]},
        {"content": "42"},
    ]
    driver, [result] = await run_row_0(HumanBackend(), answers)
    assert result.passed
    problems = [e.problems for e in driver.rejections]
    assert problems[0] == [
        "tool call 1: unknown tool 'plus' (offered: add, subtract, multiply, divide)"
    ]
    # Checked against the tool's JSON Schema: types, required, additionalProperties.
    assert "tool call 1 (add): a: 'seventeen' is not of type 'number'" in problems[1]
    assert any("'b' is a required property" in p for p in problems[1])
    assert any("Additional properties are not allowed ('c'" in p for p in problems[1])
    assert problems[2][0].startswith("tool call 1 (add): arguments are not valid JSON")
    assert problems[3] == ["write an answer: text, or one or more tool calls"]
    assert len(driver.seen) == 2  # refusals did not release anything to the agent


async def test_abort_ends_the_rollout_with_the_reason():
    def abort(request: AnswerRequest) -> dict:
        request.abort("not today")
        return {}

    _driver, [result] = await run_row_0(HumanBackend(), [abort])
    assert not result.passed and "human: not today" in (result.outcome.error or "")


async def test_a_request_answered_twice_is_refused():
    backend = HumanBackend()
    call = asyncio.create_task(backend.complete({"messages": [{"role": "user", "content": "hi"}]}))
    request = await backend.next_request()
    assert backend.pending == [request]
    request.answer("hello")
    reply = await call
    assert reply.completion["choices"][0]["message"]["content"] == "hello"
    with pytest.raises(AnswerRejected, match="already answered"):
        request.answer("again")
    assert backend.pending == []


async def test_closing_aborts_what_still_waits():
    backend = HumanBackend()
    seen: list[AnswerRequest] = []
    backend.on_request = seen.append
    call = asyncio.create_task(backend.complete({"messages": []}))
    await asyncio.sleep(0)
    await backend.aclose()
    with pytest.raises(Exception, match="closed before this call was answered"):
        await call
    assert len(seen) == 1


def test_a_recorded_human_session_replays_with_osmosis_test(tmp_path, capsys, monkeypatch):
    cassette = tmp_path / "cassette.jsonl"
    backend = create_backend("human", record_to=cassette)
    assert isinstance(backend, RecordingBackend) and find_human(backend) is not None
    _, [result] = asyncio.run(run_row_0(backend, [{"tool_calls": [ADD]}, {"content": "42"}]))
    assert result.passed
    monkeypatch.chdir(ROOT)
    argv = ["test", "-m", "sample_project.server:agent_loop", "-d", str(DATASET)]
    code = main(
        [*argv, "--model", f"replay:{cassette}", "--rows", "0", "--runs-dir", str(tmp_path)]
    )
    assert code == 0 and "Passed: 1" in capsys.readouterr().out


def test_osmosis_test_without_a_screen_refuses_human(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    argv = ["test", "-m", "sample_project.server:agent_loop", "-d", str(DATASET)]
    assert main([*argv, "--model", "human", "--runs-dir", str(tmp_path)]) == 2
    assert "--model human needs the workbench" in capsys.readouterr().err


async def test_a_call_given_up_by_the_agent_is_not_offered_again():
    # An agent whose chat times out drops its call; the UI must get the live one next.
    backend = HumanBackend()
    dropped = asyncio.create_task(
        backend.complete({"messages": [{"role": "user", "content": "1"}]})
    )
    await asyncio.sleep(0)
    dropped.cancel()
    await asyncio.gather(dropped, return_exceptions=True)
    live = asyncio.create_task(backend.complete({"messages": [{"role": "user", "content": "2"}]}))
    request = await asyncio.wait_for(backend.next_request(), 1)
    assert request.messages[-1]["content"] == "2" and backend.pending == [request]
    request.answer("ok")
    await live
