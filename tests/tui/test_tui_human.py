"""``--model human`` in the workbench: the developer writes each answer in the app.

Through the real app (``make_app``, as the CLI builds it), the real protocol and the sample
calculator agent: the answer composer offers the init answer's tools, checks each call against
its JSON Schema and keeps the call waiting until it passes; with ``--record`` the session
becomes a cassette that ``osmosis test --model replay:`` passes with.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Static
from tui_driver import driving, plain

from osmosis_workbench.cli import main
from osmosis_workbench.engine.config import EngineConfig
from osmosis_workbench.tui.app import WorkbenchApp, make_app

ROOT = Path(__file__).resolve().parents[2]
AGENT = "sample_project.server:agent_loop"
DATASET = str(ROOT / "sample_project" / "test_data.jsonl")


def text_of(node: Any, selector: str) -> str:
    return plain(node.query_one(selector, Static).content)


def human_app(record: Path | None = None) -> WorkbenchApp:
    config = EngineConfig(module=AGENT, dataset=DATASET, model="human", search_path=str(ROOT),
                          record=str(record) if record else None)  # fmt: skip
    return make_app(config, row=0, watch_agent=False)


async def answer_row_0_by_hand(record: Path) -> None:
    """Row 0 ("What is 17 + 25?"): add(17, 25), after a mistake, then the final answer."""
    async with driving(human_app(record), (120, 40)) as run:
        debugger = run.app.debugger
        composer = debugger.composer
        assert debugger.state == "answering" and debugger.current_view == "answer-view"
        assert debugger.answer_request.turn == 0 and composer.content_box.has_focus
        assert "What is 17 + 25?" in text_of(composer, "#answer-context")
        assert composer.tool_list.option_count == 4  # the init answer's tools, by name
        # Nothing written: not sent, and said why.
        await run.press("ctrl+s")
        assert debugger.state == "answering" and not debugger.answer_request.done
        assert "write an answer" in text_of(composer, "#answer-problems")
        # tab to the tools, enter on "add": a call whose arguments start from its schema.
        await run.press("tab", "enter")
        [call] = composer.calls
        assert call.tool_name == "add" and call.editor.text == '{"a": 0, "b": 0}'
        assert call.editor.has_focus
        call.editor.load_text('{"a": "17", "b": 25}')  # a string where the schema wants a number
        await run.press("ctrl+s")
        problems = text_of(composer, "#answer-problems")
        assert "Not sent" in problems
        assert "tool call 1 (add): a: '17' is not of type 'number'" in problems
        assert debugger.state == "answering" and not debugger.answer_request.done
        call.editor.load_text('{"a": 17, "b": 25}')
        await run.press("ctrl+s")
        # The agent ran add and asks again: a fresh composer for LLM call 2.
        assert debugger.state == "answering" and debugger.answer_request.turn == 1
        assert composer.calls == [] and composer.content_box.text == ""
        assert debugger.answer_request.messages[-1] == {
            **debugger.answer_request.messages[-1],
            "role": "tool",
            "content": "42",
        }
        await run.press("4", "2", "ctrl+s")
        outcome = debugger.outcome
        assert debugger.state == "finished" and outcome.ok and outcome.reward == 1.0
        assert outcome.final_messages[-1]["content"] == "42"
        # The time spent writing is the developer's: left out of the rollout's duration.
        assert 0 < outcome.paused_ms <= outcome.duration_ms
        assert outcome.working_ms == outcome.duration_ms - outcome.paused_ms


def test_answers_written_in_the_app_record_a_cassette_that_osmosis_test_replays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cassette = tmp_path / "by-hand.jsonl"
    asyncio.run(answer_row_0_by_hand(cassette))
    monkeypatch.chdir(ROOT)  # where the agent module is imported from
    argv = ["test", "-m", AGENT, "-d", DATASET, "--rows", "0"]
    code = main([*argv, "--model", f"replay:{cassette}", "--runs-dir", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert code == 0 and "Passed: 1" in out, out


async def test_ctrl_r_removes_a_call_and_q_aborts_the_waiting_call() -> None:
    async with driving(human_app(), (120, 40)) as run:
        debugger = run.app.debugger
        composer = debugger.composer
        await run.press("tab", "enter", "ctrl+t", "down", "enter")  # add, then subtract
        assert [c.tool_name for c in composer.calls] == ["add", "subtract"]
        composer.calls[0].editor.focus()
        await run.press("ctrl+r")
        [left] = composer.calls
        assert left.tool_name == "subtract" and left.number == 1  # numbered as the engine counts
        await run.press("escape", "q")  # done typing: the debugger's keys work again
        outcome = debugger.outcome
        assert debugger.state == "finished" and outcome.status == "ERROR"
        assert outcome.error == "aborted by user" and outcome.reward is None


async def test_the_dataset_screen_sends_a_human_to_the_debugger_instead_of_a_batch() -> None:
    async with driving(human_app(), (120, 40)) as run:
        await run.press("escape", "2", "r")
        [warning] = [n for n in run.notes("warning") if n.title == "Batch not started"]
        assert "one rollout at a time" in warning.message and "d steps" in warning.message
