"""The workbench app shell: start-up, modes, help, failures, the API other screens use, the CLI.

Everything is real but the model: the sample calculator agent runs in the embedded server,
rollouts go through the local trainer, and the model is the sample cassette or a
``ScriptedBackend``. Tests press keys, then wait for the workers and a frame; none sleeps.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from textual.app import App
from textual.notifications import Notify
from textual.widgets import Static
from tui_driver import plain, settle

from osmosis_workbench.cli import build_parser, main
from osmosis_workbench.commands.workbench_cmd import build_workbench_parser, workbench_config
from osmosis_workbench.engine.config import ConfigError, EngineConfig
from osmosis_workbench.engine.outcome import RolloutOutcome
from osmosis_workbench.tui.app import CRASH_LOG, WorkbenchApp, make_app
from osmosis_workbench.tui.debugger import DebuggerScreen
from osmosis_workbench.tui.help import HelpScreen
from osmosis_workbench.tui.launch import run_app, run_workbench
from osmosis_workbench.tui.widgets import CrashDialog

ROOT = Path(__file__).resolve().parents[2]
DATASET = str(ROOT / "sample_project" / "test_data.jsonl")
CASSETTE = f"replay:{ROOT / 'sample_project' / 'cassette.jsonl'}"
AGENT = "sample_project.server:agent_loop"


def config(**fields: Any) -> EngineConfig:
    """The sample project, replayed from its cassette (override any field)."""
    values: dict[str, Any] = {
        "module": AGENT,
        "dataset": DATASET,
        "model": CASSETTE,
        "search_path": str(ROOT),
    }
    values.update(fields)
    return EngineConfig(**values)


def static_text(app: WorkbenchApp, selector: str) -> str:
    return plain(app.debugger.query_one(selector, Static).content)


def notifications(seen: list[Any], severity: str | None = None) -> list[Any]:
    found = {id(m): m.notification for m in seen if isinstance(m, Notify)}
    return [n for n in found.values() if severity is None or n.severity == severity]


# ---- start-up ---------------------------------------------------------------------------------


async def test_first_screen_shows_loading_then_the_rows_to_pick() -> None:
    app = make_app(config())
    async with app.run_test(size=(100, 30)) as pilot:
        assert isinstance(app.screen, DebuggerScreen)
        assert app.debugger.state == "loading"
        assert "Loading sample_project.server:agent_loop" in static_text(app, "#loading-text")
        await settle(app, pilot)
        assert app.workspace is not None and app.workspace.agent_name == "calculator"
        assert app.debugger.state == "idle"
        assert app.debugger.current_view == "picker-view"
        assert app.debugger.row_picker.option_count == 12
        assert app.sub_title == "calculator · replay:cassette.jsonl"  # the file, not its path
        # Narrow terminals stack the message list above the detail; wide ones side by side.
        assert app.debugger.has_class("-narrow")
        await pilot.resize_terminal(200, 60)
        assert not app.debugger.has_class("-narrow")


async def test_the_new_user_path_row_0_tools_continue_quit() -> None:
    """The README's command: --row 0 pauses at the first tool call; t, c, ctrl+q."""
    app = make_app(config(), row=0, watch_agent=False)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(app, pilot)
        debugger = app.debugger
        assert debugger.state == "paused"
        assert debugger.paused.turn == 1
        assert debugger.paused.message["tool_calls"][0]["function"]["name"] == "add"
        assert "1. add" in static_text(app, "#response-text")
        await pilot.press("t")
        await settle(app, pilot)
        tools = static_text(app, "#tools-text")
        assert "4 tools" in tools
        assert all(name in tools for name in ("add", "subtract", "multiply", "divide"))
        await pilot.press("c")
        await settle(app, pilot)
        assert debugger.state == "finished"
        assert (debugger.outcome.status, debugger.outcome.reward) == ("COMPLETED", 1.0)
        assert "Reward         1.0" in static_text(app, "#result-text")
        workspace = app.workspace
        await pilot.press("ctrl+q")
    assert app.return_code == 0
    assert app.workspace is None and workspace.engine is None  # closed on the way out


async def test_quitting_while_paused_aborts_the_rollout_and_closes_quickly() -> None:
    app = make_app(config(), row=1)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        session = app.debugger.session
        assert app.debugger.state == "paused"
        await pilot.press("ctrl+q")
    assert session.finished and session.outcome.error.startswith("aborted by user")


async def test_a_row_that_does_not_exist_is_reported_and_the_rows_are_offered() -> None:
    seen: list[Any] = []
    app = make_app(config(), row=99)
    async with app.run_test(size=(100, 30), message_hook=seen.append) as pilot:
        await settle(app, pilot)
        assert app.debugger.state == "idle"
        assert app.debugger.current_view == "picker-view"
        [error] = notifications(seen, "error")
        assert "row 99 is not in the dataset" in error.message


async def test_a_wrong_module_explains_itself_and_r_retries_after_the_fix() -> None:
    seen: list[Any] = []
    app = make_app(config(module="sample_project.missing:agent_loop"))
    async with app.run_test(size=(100, 30), message_hook=seen.append) as pilot:
        await settle(app, pilot)
        assert app.debugger.state == "failed"
        assert 'Could not import module "sample_project.missing"' in static_text(
            app, "#failure-text"
        )
        assert "Traceback" not in static_text(app, "#failure-text")
        assert notifications(seen, "error")[0].title == "Could not open the workspace"
        assert app.workspace is None
        app.config = dataclasses.replace(app.config, module=AGENT)  # the user fixes the cause
        await pilot.press("r")
        await settle(app, pilot)
        assert app.debugger.state == "idle" and app.workspace is not None


async def test_a_bad_dataset_does_not_stop_the_workbench(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"user_prompt": "hi", "ground_truth": "1"}\nnot json at all\n')
    app = make_app(config(dataset=str(broken)))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        assert app.workspace is not None and app.debugger.state == "idle"
        # The good row can be stepped, the bad one is listed with its error, disabled.
        picker = app.debugger.row_picker
        assert picker.option_count == 2
        assert picker.get_option("bad-1").disabled


# ---- modes, help, layout ----------------------------------------------------------------------


async def test_1_2_3_switch_between_debugger_dataset_and_server() -> None:
    app = make_app(config())
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        await pilot.press("2")
        await pilot.pause()
        assert app.current_mode == "dataset"
        assert type(app.screen).__name__ == "DatasetScreen"
        await pilot.press("3")
        await pilot.pause()
        assert app.current_mode == "server"
        assert type(app.screen).__name__ == "ServerScreen"
        await pilot.press("1")
        await pilot.pause()
        assert app.current_mode == "debug" and app.screen is app.debugger


async def test_help_lists_every_key_of_the_debugger_and_closes() -> None:
    app = make_app(config(), row=0, watch_agent=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = plain(app.screen.query_one("#help-text", Static).content, width=96)
        for key, words in [
            ("n", "Release the paused answer"),
            ("c", "run to the end"),
            ("e", "Edit the paused answer"),
            ("m", "message history"),
            ("t", "JSON Schemas"),
            ("q", "aborted by user"),
            ("r", "Run the same row again"),
            ("?", "This help"),
            ("^q", "leave the workbench"),
        ]:
            assert any(
                line.strip().startswith(key) and words in line for line in text.splitlines()
            ), (key, words)
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.debugger
        assert app.debugger.state == "paused"  # help changed nothing


# ---- the API the dataset and server screens use -----------------------------------------------


async def test_open_debugger_switches_mode_and_steps_the_row() -> None:
    app = make_app(config())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press("2")
        await pilot.pause()
        app.open_debugger(2)
        await settle(app, pilot)
        assert app.current_mode == "debug"
        assert app.debugger.state == "paused"
        assert app.debugger.paused.message["tool_calls"][0]["function"]["name"] == "multiply"


async def test_open_session_follows_a_session_started_elsewhere() -> None:
    app = make_app(config())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        session = app.workspace.step(4)
        await session.start()
        app.open_session(session, label="row 4 from elsewhere")
        await settle(app, pilot)
        assert app.debugger.state == "paused"
        assert "row 4 from elsewhere" in plain(app.debugger.query_one("#status", Static).content)
        await pilot.press("c")
        await settle(app, pilot)
        assert session.outcome.status == "COMPLETED"


async def test_leaving_a_session_from_elsewhere_lets_it_run_on_instead_of_aborting() -> None:
    """A live trainer's rollout must not die because the user opened another one."""
    app = make_app(config())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        session = app.workspace.step(4)
        app.open_session(session)
        await settle(app, pilot)
        assert session.paused is not None
        app.open_debugger(0)
        await settle(app, pilot)
        await session.finish()
        assert session.outcome.status == "COMPLETED" and session.outcome.reward == 1.0
        assert app.debugger.follower.row_index == 0 and app.debugger.state == "paused"


async def test_show_outcome_shows_a_finished_trajectory_read_only() -> None:
    messages = [
        {"role": "user", "content": "What is 1 + 1?"},
        {"role": "assistant", "content": "It is 3."},
    ]
    outcome = RolloutOutcome(
        rollout_id="r1",
        status="ERROR",
        final_messages=messages,
        finish_reason="stop",
        error="reward function failed",
        error_category="reward_error",
        traceback='Traceback (most recent call last):\n  File "rewards.py", line 3\n'
        "ZeroDivisionError: division by zero\n",
        reward=None,
        metrics={"llm_latency_ms": 12.5},
        duration_ms=40.0,
        tokens=30,
        cost_usd=None,
        llm_calls=1,
        tools=[],
        violations=["init answered 200"],
    )
    app = make_app(config())
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        app.show_outcome(outcome, "batch row 7, attempt 2")
        await settle(app, pilot)
        debugger = app.debugger
        assert debugger.state == "viewing"
        assert debugger.current_view == "messages-view"
        assert debugger.message_list.count == 2
        for action in ("next", "continue", "edit", "abort", "rerun"):
            assert not debugger.check_action(action, ())
        await pilot.press("escape")
        await pilot.pause()
        result = static_text(app, "#result-text")
        assert "batch row 7, attempt 2" in result
        assert "reward function failed  (reward_error)" in result
        assert "ZeroDivisionError: division by zero" in result
        assert "init answered 200" in result


async def test_a_crashing_session_shows_its_traceback_and_the_app_stays() -> None:
    class BrokenSession:
        label = "broken"
        finished = False
        paused = None
        outcome = None
        exchanges = ()

        async def start(self) -> None:
            pass

        async def wait(self) -> None:
            raise RuntimeError("the session broke")

    app = make_app(config())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        app.open_session(BrokenSession())
        await settle(app, pilot, failures=True)
        assert isinstance(app.screen, CrashDialog)
        assert "RuntimeError: the session broke" in app.screen.traceback_text
        await pilot.press("escape")
        await settle(app, pilot)
        assert app.screen is app.debugger and app.is_running
        assert app.debugger.state == "idle"
    assert "RuntimeError: the session broke" in CRASH_LOG.read_text()


def test_the_app_module_does_not_import_the_engine_or_litellm() -> None:
    """The first screen must not wait for fastapi, pydantic or litellm (~1.5 s and ~10 s)."""
    code = (
        "import sys\n"
        "from osmosis_workbench.commands.workbench_cmd import build_workbench_parser\n"
        "from osmosis_workbench.tui.app import make_app\n"
        "from osmosis_workbench.engine.config import EngineConfig\n"
        "make_app(EngineConfig(module='x:y'))\n"
        "heavy = [m for m in ('fastapi', 'pydantic', 'litellm', 'osmosis_workbench.engine.trainer')"
        " if m in sys.modules]\n"
        "print(heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "[]"


# ---- the command line -------------------------------------------------------------------------


def test_workbench_config_from_the_workbench_command(tmp_path: Path) -> None:
    args = build_workbench_parser().parse_args(
        ["-m", AGENT, "-d", DATASET, "--row", "3", "--api-key", "sk-1", "--rollout-timeout", "30"]
    )
    config, row = workbench_config(args)
    assert row == 3
    assert config.module == AGENT and config.dataset == DATASET
    assert config.model == f"replay:{ROOT / 'sample_project' / 'cassette.jsonl'}"
    assert config.model_api_key == "sk-1" and config.server_api_key is None
    assert config.rollout_timeout_s == 30.0


def test_workbench_config_from_osmosis_test_interactive() -> None:
    args = build_parser().parse_args(
        [
            "test",
            "--url",
            "http://server:9000",
            "--api-key",
            "srv",
            "-d",
            DATASET,
            "--model",
            "openai/gpt-4o-mini",
            "--interactive",
            "--row",
            "0",
        ]
    )
    config, row = workbench_config(args)
    assert (row, config.url, config.module) == (0, "http://server:9000", None)
    assert config.server_api_key == "srv" and config.model_api_key is None
    assert config.model == "openai/gpt-4o-mini"


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        ([], "give the agent with -m MODULE:ATTR"),
        (["-m", AGENT, "--url", "http://x"], "exclude each other"),
        (["-m", AGENT, "-d", "missing.jsonl"], "dataset 'missing.jsonl' not found"),
        (["-m", AGENT, "--row", "1"], "--row needs a dataset"),
        (["-m", AGENT, "-d", DATASET, "--row", "-1"], "numbered from 0"),
        (["-m", "nowhere:agent"], "no model"),
        (["-m", AGENT, "-d", DATASET, "--rollout-timeout", "0"], "more than 0"),
    ],
)
def test_usage_errors_are_one_clear_line_and_exit_2(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = build_workbench_parser().parse_args(argv)
    with pytest.raises(ConfigError, match=complaint):
        workbench_config(args)
    assert run_workbench(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("osmosis-workbench: error: ")


def test_osmosis_test_interactive_with_two_urls_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["test", "--url", "http://a", "--url", "http://b", "-d", DATASET, "--interactive"]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        "osmosis test: error: the workbench runs against one server: give a single --url\n"
    )


def test_an_app_that_crashes_leaves_one_line_and_a_crash_log(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Crashing(App[None]):
        def on_mount(self) -> None:
            raise ValueError("boom in on_mount")

    assert run_app(Crashing(), headless=True) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and str(CRASH_LOG) in captured.err
    assert "boom in on_mount" in CRASH_LOG.read_text()


def test_a_clean_exit_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    class Quits(App[None]):
        def on_mount(self) -> None:
            self.exit()

    assert run_app(Quits(), headless=True) == 0
    assert capsys.readouterr() == ("", "")
    assert not CRASH_LOG.exists()


@pytest.mark.parametrize(("given", "expected"), [(None, "120"), ("30", "30")])
def test_the_app_draws_up_to_120_frames_a_second_unless_told_otherwise(
    given: str | None, expected: str
) -> None:
    # At Textual's 60 a held key got 20 frames a second (see osmosis_workbench/tui/__init__.py);
    # a user's TEXTUAL_FPS wins.
    env = {k: v for k, v in os.environ.items() if k != "TEXTUAL_FPS"}
    if given is not None:
        env["TEXTUAL_FPS"] = given
    code = "import osmosis_workbench.tui.app, textual.constants as c; print(c.MAX_FPS)"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


# ---- small terminals ---------------------------------------------------------------------------


def screen_lines(app: WorkbenchApp) -> list[str]:
    """The terminal's lines as a person reads them."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


@pytest.mark.parametrize("size", [(80, 24), (100, 30), (200, 60)])
async def test_every_screen_shows_its_keys_and_help_on_its_last_line(size) -> None:
    app = make_app(config(), row=0, watch_agent=False)
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        for mode, first_key in (("1", "n Next"), ("2", "r Run all"), ("3", "s Start")):
            await pilot.press(mode)
            await settle(app, pilot)
            last = screen_lines(app)[-1].rstrip()
            assert last.endswith("? Help") and first_key in last, (mode, last)
            assert len(last) <= size[0]
