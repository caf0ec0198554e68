"""The step debugger: every key, driven through the real protocol with a scripted model.

The sample calculator agent runs in the embedded server; its LLM calls reach the local
trainer, pause at the step gate, and are answered by a ``ScriptedBackend`` that plays a
calculator model: it calls ``add(17, 25)``, then states whatever the tool returned.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from textual.app import App
from textual.notifications import Notify
from textual.widgets import Static, TextArea
from tui_driver import plain, settle

from osmosis_workbench.engine.config import EngineConfig
from osmosis_workbench.engine.models import ModelError, ScriptedBackend
from osmosis_workbench.tui.app import WorkbenchApp, make_app
from osmosis_workbench.tui.widgets import EditResponseDialog, EditToolResultsDialog
from server_core import RolloutAgentLoop, RolloutContext, RolloutRequest, RolloutResult

ROOT = Path(__file__).resolve().parents[2]
DATASET = str(ROOT / "sample_project" / "test_data.jsonl")


class CrashingAgent(RolloutAgentLoop):
    """Asks the model once, then fails: its result carries a traceback."""

    name = "crasher"

    def get_tools(self, request: RolloutRequest) -> list[dict]:
        return []

    async def run(self, ctx: RolloutContext) -> RolloutResult:
        await ctx.chat(list(ctx.request.messages))
        raise ZeroDivisionError("the agent divided by zero")


crashing_agent = CrashingAgent()


class SlowToolAgent(RolloutAgentLoop):
    """Asks the model, runs a tool that takes 30 s, asks again, completes with reward 1.0."""

    name = "slowtool"

    def __init__(self) -> None:
        self.tool_started = False
        self.tool_cancelled = False

    def get_tools(self, request: RolloutRequest) -> list[dict]:
        return []

    async def run(self, ctx: RolloutContext) -> RolloutResult:
        messages = list(ctx.request.messages)
        messages.append((await ctx.chat(messages)).message)
        self.tool_started = True
        try:
            await asyncio.sleep(30)  # the tool: long enough that nobody waits for it
        except asyncio.CancelledError:
            self.tool_cancelled = True
            raise
        messages.append({"role": "user", "content": "the tool said 42"})
        messages.append((await ctx.chat(messages)).message)
        return ctx.complete(messages, reward=1.0)


slow_tool_agent = SlowToolAgent()


def calculator_model(body: dict[str, Any]) -> dict[str, Any]:
    """Calls add(17, 25) first; once a tool answered, states its result as the answer."""
    last = body["messages"][-1]
    if last["role"] == "tool":
        return {"content": f"The answer is {last['content']}."}
    return {"tool_calls": [{"name": "add", "arguments": {"a": 17, "b": 25}}]}


def debugger_app(backend: Any = None, *, row: int | None = 0, **fields: Any) -> WorkbenchApp:
    values: dict[str, Any] = {
        "module": "sample_project.server:agent_loop",
        "dataset": DATASET,
        "model": "scripted",
        "search_path": str(ROOT),
    }
    values.update(fields)
    return make_app(
        EngineConfig(**values), row=row, backend=backend or ScriptedBackend(calculator_model)
    )


async def press(app: App, pilot: Any, *keys: str) -> None:
    """Press keys, then let the rollout reach its next stop."""
    await pilot.press(*keys)
    await settle(app, pilot)


def text_of(app: WorkbenchApp, selector: str) -> str:
    return plain(app.debugger.query_one(selector, Static).content)


# ---- n, c, q, r -------------------------------------------------------------------------------


async def test_the_row_pauses_before_the_agent_sees_each_answer_and_n_releases_it() -> None:
    app = debugger_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        debugger = app.debugger
        assert debugger.state == "paused" and debugger.current_view == "response-view"
        # Its rollout id (and a server's trace file) names the dataset, a step and the row.
        assert re.fullmatch(
            r"test_data-step-[0-9a-f]{6}-r0-a0-\d+", debugger.session.request["rollout_id"]
        )
        # The agent has not run the tool: the history ends with the held answer.
        assert [m["role"] for m in debugger.session.messages] == ["system", "user", "assistant"]
        response = text_of(app, "#response-text")
        assert "Turn           1" in response
        assert "Finish reason  tool_calls" in response
        assert "1. add" in response and '{"a": 17, "b": 25}' in response
        assert "#1 user  What is 17 + 25?" in response  # what it answers
        assert "Latency" in response and "prompt +" in response
        # n: the agent gets the answer, runs the tool, and the next answer pauses.
        await press(app, pilot, "n")
        assert debugger.state == "paused" and debugger.paused.turn == 2
        tool_result = debugger.session.messages[3]
        assert (tool_result["role"], tool_result["content"]) == ("tool", "42")
        assert debugger.paused.message["content"] == "The answer is 42."
        assert "(none: the agent will treat this as its final answer)" in text_of(
            app, "#response-text"
        )
        await press(app, pilot, "n")
        assert debugger.state == "finished"
        assert (debugger.outcome.status, debugger.outcome.reward) == ("COMPLETED", 1.0)


async def test_c_runs_to_the_end_and_shows_the_result() -> None:
    app = debugger_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await press(app, pilot, "c")
        debugger = app.debugger
        assert debugger.state == "finished" and debugger.current_view == "result-view"
        outcome = debugger.outcome
        assert (outcome.status, outcome.reward, outcome.llm_calls) == ("COMPLETED", 1.0, 2)
        result = text_of(app, "#result-text")
        for line in (
            "Status         COMPLETED",
            "Reward         1.0",
            "Finish reason  stop",
            "LLM calls      2",
            f"Tokens         {outcome.tokens}",
        ):
            assert line in result
        assert "Duration" in result and "The answer is 42." in result
        for action in ("next", "continue", "edit", "abort"):
            assert not debugger.check_action(action, ())


async def test_q_aborts_the_rollout_as_error_and_the_app_stays() -> None:
    seen: list[Any] = []
    app = debugger_app()
    async with app.run_test(size=(100, 30), message_hook=seen.append) as pilot:
        await settle(app, pilot)
        await press(app, pilot, "q")
        debugger = app.debugger
        assert debugger.state == "finished"
        assert debugger.outcome.status == "ERROR"
        assert debugger.outcome.error == "aborted by user"
        assert "aborted by user" in text_of(app, "#result-text")
        assert app.is_running and app.screen is debugger
        assert any(isinstance(m, Notify) and m.notification.title == "Aborted" for m in seen)
        await press(app, pilot, "q")  # nothing left to abort: no change
        assert debugger.outcome.error == "aborted by user"


async def test_r_runs_the_row_again_and_ends_the_old_rollout() -> None:
    app = debugger_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        first = app.debugger.session
        await press(app, pilot, "r")
        second = app.debugger.session
        assert second is not first
        assert app.debugger.state == "paused" and app.debugger.paused.turn == 1
        assert first.finished and first.outcome.status == "ERROR"
        assert first.outcome.error.startswith("aborted by user")
        await press(app, pilot, "c")
        assert app.debugger.outcome.reward == 1.0
        await press(app, pilot, "r")  # after the end too
        assert app.debugger.state == "paused" and app.debugger.session is not second


# ---- e: editing the held answer ---------------------------------------------------------------


async def test_e_edits_the_tool_call_and_the_agent_runs_the_edited_one() -> None:
    seen: list[Any] = []
    app = debugger_app()
    async with app.run_test(size=(100, 30), message_hook=seen.append) as pilot:
        await settle(app, pilot)
        await press(app, pilot, "e")
        dialog = app.screen
        assert isinstance(dialog, EditResponseDialog)
        editor = dialog.query_one(TextArea)
        edited = json.loads(editor.text)
        assert edited["tool_calls"][0]["arguments"] == {"a": 17, "b": 25}
        edited["tool_calls"][0]["arguments"] = {"a": 1, "b": 2}
        editor.load_text(json.dumps(edited))
        await press(app, pilot, "ctrl+s")
        debugger = app.debugger
        assert app.screen is debugger
        # The agent ran add(1, 2); the model then answered with that result.
        assert debugger.session.messages[3]["content"] == "3"
        assert debugger.paused.turn == 2
        assert any(
            isinstance(m, Notify) and "Edited answer of turn 1" in m.notification.message
            for m in seen
        )
        await press(app, pilot, "c")
        assert debugger.outcome.reward == 0.0  # 3 is not 42


async def test_shift_e_edits_a_tool_result_and_the_model_answers_again() -> None:
    app = debugger_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        debugger = app.debugger
        # Turn 1 replies to the user: there is no tool result to edit yet.
        assert debugger.check_action("edit_tool_results", ()) is False
        await press(app, pilot, "n")
        assert debugger.paused.turn == 2
        assert debugger.paused.message["content"] == "The answer is 42."
        await press(app, pilot, "E")
        dialog = app.screen
        assert isinstance(dialog, EditToolResultsDialog)
        editor = dialog.query_one(TextArea)
        [result] = json.loads(editor.text)
        assert (result["tool"], result["content"]) == ("add", "42")
        result["content"] = "41"
        editor.load_text(json.dumps([result]))
        await press(app, pilot, "ctrl+s")
        assert app.screen is debugger
        # Asked again with the edited result: a new answer, still held at turn 2.
        assert debugger.state == "paused" and debugger.paused.turn == 2
        assert debugger.paused.message["content"] == "The answer is 41."
        await press(app, pilot, "c")
        outcome = debugger.outcome
        # The agent's history keeps what its tool returned; the model's answer used the edit.
        assert outcome.final_messages[3]["content"] == "42"
        assert outcome.final_messages[-1]["content"] == "The answer is 41."
        assert outcome.reward == 0.0


async def test_e_can_turn_a_tool_call_into_a_final_answer() -> None:
    app = debugger_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await press(app, pilot, "e")
        app.screen.query_one(TextArea).load_text('{"content": "It is 42."}')
        await press(app, pilot, "ctrl+s")
        outcome = app.debugger.outcome
        assert app.debugger.state == "finished"
        assert outcome.final_messages[-1]["content"] == "It is 42."
        assert (outcome.reward, outcome.finish_reason, outcome.llm_calls) == (1.0, "stop", 1)


async def test_invalid_json_keeps_the_dialog_open_and_esc_keeps_the_answer() -> None:
    app = debugger_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await press(app, pilot, "e")
        dialog = app.screen
        dialog.query_one(TextArea).load_text('{"content": ')
        await press(app, pilot, "ctrl+s")
        assert app.screen is dialog
        error = dialog.query_one("#edit-error", Static)
        assert error.has_class("-shown") and "not valid JSON" in str(error.content)
        await press(app, pilot, "escape")
        assert app.screen is app.debugger
        assert app.debugger.state == "paused"
        assert app.debugger.paused.message["tool_calls"][0]["function"]["name"] == "add"


# ---- m, t, p, escape --------------------------------------------------------------------------


async def test_m_shows_the_history_with_tool_results_labelled_and_each_message_whole() -> None:
    app = debugger_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        await press(app, pilot, "n", "m")
        debugger = app.debugger
        assert debugger.current_view == "messages-view"
        listing = debugger.message_list
        assert listing.has_focus and listing.count == 5
        assert listing.cursor == 4  # the held answer, marked pending
        assert "pending" in listing.render_line(4).text
        assert listing.tool_name(3) == "add" and "add" in listing.render_line(3).text
        await press(app, pilot, "up")
        assert "#3 tool result of add" in debugger.message_detail.plain_text
        await press(app, pilot, "enter")
        assert debugger.message_detail.has_focus
        await press(app, pilot, "escape")
        assert listing.has_focus
        await press(app, pilot, "n")  # keys still step while the history is shown
        assert debugger.state == "finished" and debugger.current_view == "messages-view"
        assert listing.count == 5 and "pending" not in listing.render_line(4).text
        await press(app, pilot, "m")
        assert debugger.current_view == "result-view"


async def test_t_lists_the_tools_with_their_schemas_and_t_again_goes_back() -> None:
    app = debugger_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        await press(app, pilot, "t")
        tools = text_of(app, "#tools-text")
        assert "4 tools (sent by the server in its init answer)" in tools
        assert '"required": ["a", "b"]' in tools and "Divide a by b" in tools
        await press(app, pilot, "t")
        assert app.debugger.current_view == "response-view"
        await press(app, pilot, "t", "escape")
        assert app.debugger.current_view == "response-view"


async def test_the_row_list_starts_a_row_and_p_brings_it_back() -> None:
    app = debugger_app(row=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        debugger = app.debugger
        assert debugger.current_view == "picker-view" and debugger.row_picker.has_focus
        assert not debugger.check_action("toggle_view", ("messages-view",))  # nothing yet
        await press(app, pilot, "down", "down", "enter")
        assert debugger.state == "paused" and debugger.follower.row_index == 2
        assert "Compute 7 times 8" in text_of(app, "#response-text")
        await press(app, pilot, "p")
        assert debugger.current_view == "picker-view"
        await press(app, pilot, "p")
        assert debugger.current_view == "response-view"


# ---- failures ---------------------------------------------------------------------------------


async def test_a_model_error_ends_the_rollout_with_its_message() -> None:
    backend = ScriptedBackend([ModelError("rate_limit", "the provider said 429: slow down")])
    app = debugger_app(backend)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        debugger = app.debugger
        assert debugger.state == "finished" and debugger.outcome.status == "ERROR"
        assert debugger.outcome.error_category == "llm_error"
        assert "the provider said 429: slow down" in text_of(app, "#result-text")


async def test_an_agent_crash_shows_its_traceback_in_the_result() -> None:
    app = debugger_app(
        ScriptedBackend(["hello"]),
        module=f"{__name__}:crashing_agent",
        search_path=str(Path(__file__).parent),
    )
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        await press(app, pilot, "n")
        result = text_of(app, "#result-text")
        assert app.debugger.outcome.status == "ERROR"
        assert "traceback" in result
        assert "ZeroDivisionError: the agent divided by zero" in result


async def test_while_the_model_answers_the_status_says_so_and_q_still_aborts() -> None:
    app = debugger_app(ScriptedBackend(calculator_model, latency_s=0.3))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        debugger = app.debugger
        await pilot.press("n")
        await pilot.pause()  # a frame, not the end of the model's answer
        assert debugger.state == "running"
        assert "waiting for the model (LLM call 2)" in text_of(app, "#status")
        assert not debugger.check_action("next", ()) and debugger.check_action("abort", ())
        await press(app, pilot, "q")  # the answer in flight is stopped at the gate
        assert debugger.state == "finished"
        assert (debugger.outcome.status, debugger.outcome.error) == ("ERROR", "aborted by user")
        assert debugger.outcome.llm_calls == 2


async def test_shift_e_with_a_replay_says_at_once_why_and_which_model_can() -> None:
    # The sample's cassette has answers for the recorded histories only: an edited tool
    # result would fail after the fact. Say so when E is pressed, and name the way out.
    seen: list[Any] = []
    app = make_app(
        EngineConfig(
            module="sample_project.server:agent_loop",
            dataset=DATASET,
            model=f"replay:{ROOT / 'sample_project' / 'cassette.jsonl'}",
            search_path=str(ROOT),
        ),
        row=0,
    )
    async with app.run_test(size=(100, 30), message_hook=seen.append) as pilot:
        await settle(app, pilot)
        await press(app, pilot, "n")
        debugger = app.debugger
        assert debugger.paused.turn == 2 and debugger.check_action("edit_tool_results", ())
        await press(app, pilot, "E")
        assert app.screen is debugger and debugger.state == "paused"  # no dialog, no failure
        [warning] = [m.notification for m in seen if isinstance(m, Notify)
                     and m.notification.severity == "warning"]  # fmt: skip
        assert "replay of" in warning.message and "--model human" in warning.message
        assert "--row 0" in warning.message
        await press(app, pilot, "c")
        assert debugger.outcome.ok and debugger.outcome.reward == 1.0


async def test_q_while_a_tool_runs_cancels_it_and_the_result_says_aborted() -> None:
    app = debugger_app(
        ScriptedBackend(["calling the tool", "The answer is 42."]),
        module=f"{__name__}:slow_tool_agent",
        search_path=str(Path(__file__).parent),
    )
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        debugger = app.debugger
        await pilot.press("n")
        async with asyncio.timeout(5):
            while not slow_tool_agent.tool_started:
                await pilot.pause(0.01)
            await pilot.press("q")  # the agent is in its tool, not at the gate
            await settle(app, pilot)  # not 30 s: the tool is cancelled
        assert slow_tool_agent.tool_cancelled
        outcome = debugger.outcome
        assert debugger.state == "finished"
        assert (outcome.status, outcome.error) == ("ERROR", "aborted by user")
        # Nothing of a completed rollout: no reward, no finish reason.
        assert outcome.reward is None and outcome.finish_reason is None
        result = text_of(app, "#result-text")
        assert "aborted by user" in result and "Reward         -" in result


async def test_time_spent_paused_is_left_out_of_the_durations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The user looks at each answer for a minute: a stand-in clock moves the trainer's time on
    # by 60 s at each pause, so nothing waits for real.
    from osmosis_workbench.engine import trainer

    real_clock, offset = trainer._clock, [0.0]
    monkeypatch.setattr(trainer, "_clock", lambda: real_clock() + offset[0])
    app = debugger_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        offset[0] += 60
        await press(app, pilot, "n")
        offset[0] += 60
        await press(app, pilot, "c")
        outcome = app.debugger.outcome
        assert outcome.paused_ms >= 120_000 and outcome.working_ms < 10_000
        result = text_of(app, "#result-text")
        [duration] = [line for line in result.splitlines() if line.startswith("Duration")]
        assert (
            "min" not in duration.split("(")[0] and "(not counting 2 min 0 s of yours" in duration
        )
        assert "metrics (your time left out)" in result


async def test_answers_show_as_written_and_f_renders_them_as_markdown() -> None:
    # "#### 42" is what a GSM8K-style reward reads: markdown would show a heading "42".
    app = debugger_app(ScriptedBackend(["Adding up.\n#### 42 and **bold**"]))
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        debugger = app.debugger
        assert "#### 42 and **bold**" in text_of(app, "#response-text")
        await press(app, pilot, "f")
        response = text_of(app, "#response-text")
        assert "####" not in response and "42 and bold" in response
        await press(app, pilot, "f", "c")
        assert "#### 42 and **bold**" in text_of(app, "#result-text")  # the final answer
        await press(app, pilot, "m")
        assert "#### 42 and **bold**" in debugger.message_detail.plain_text
        await press(app, pilot, "f")
        assert "####" not in debugger.message_detail.plain_text
