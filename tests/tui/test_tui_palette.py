"""The command palette (ctrl+p), themes and key overrides: what a user finds there, and runs.

Each screen's keys are palette commands with their key beside them; the workbench adds step
row N, show row N, switch the model, open and compare runs, and the theme commands. The theme
a user picks is written to the settings file (``$XDG_CONFIG_HOME``, a scratch folder here)
and the next app opens with it; ``[keymap]`` there moves keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sample_runs import FAILS_ROW_3, run_sample
from textual.command import CommandPalette
from tui_driver import driving

from osmosis_workbench.engine.config import EngineConfig
from osmosis_workbench.engine.models import ScriptedBackend
from osmosis_workbench.engine.runs import list_run_dirs
from osmosis_workbench.tui.app import WorkbenchApp, make_app
from osmosis_workbench.tui.help import HelpScreen
from osmosis_workbench.tui.settings import load_settings, settings_path

ROOT = Path(__file__).resolve().parents[2]
DATASET = str(ROOT / "sample_project" / "test_data.jsonl")
CASSETTE = f"replay:{ROOT / 'sample_project' / 'cassette.jsonl'}"


def calculator_model(body: dict[str, Any]) -> dict[str, Any]:
    """Calls add(17, 25) first; once a tool answered, states its result."""
    last = body["messages"][-1]
    if last["role"] == "tool":
        return {"content": f"The answer is {last['content']}."}
    return {"tool_calls": [{"name": "add", "arguments": {"a": 17, "b": 25}}]}


def sample_app(row: int | None = 0, **fields: Any) -> WorkbenchApp:
    """The sample agent and dataset, row ``row`` stepped; the sample's cassette unless a
    ``model`` is given (with ``backend``, a scripted model instead)."""
    backend = fields.pop("backend", None)
    values: dict[str, Any] = {
        "module": "sample_project.server:agent_loop",
        "dataset": DATASET,
        "model": CASSETTE,
        "search_path": str(ROOT),
    }
    values.update(fields)
    return make_app(EngineConfig(**values), row=row, backend=backend, watch_agent=False)


# ---- every key, as a command ------------------------------------------------------------------


async def test_the_debuggers_keys_are_commands_and_run_from_the_palette():
    async with driving(sample_app(backend=ScriptedBackend(calculator_model))) as run:
        listed = await run.palette_commands()
        # The keys that work while paused, each with its key; then the app's and Textual's.
        for name in ("Next", "Continue", "Edit", "Abort", "Messages", "Tools", "Copy"):
            assert name in listed, listed
        assert "Search" not in listed  # it searches the history: with the history shown
        assert {"Theme", "Toggle dark/light theme", "Help", "Quit", "Dataset screen"} <= set(listed)
        assert "Focus Next" not in listed  # Textual's own focus keys are not commands
        debugger = run.app.debugger
        await run.palette("release", pick="Next")  # found by its help text
        assert debugger.paused is not None and debugger.paused.turn == 2
        await run.palette("messages")
        assert debugger.current_view == "messages-view"
        assert "Search" in await run.palette_commands()
        await run.palette("tools", pick="Tools")
        assert debugger.current_view == "tools-view"
        await run.palette("continue")
        assert debugger.state == "finished" and debugger.outcome is not None
        await run.palette("markdown")
        assert debugger.markdown
        await run.palette("help")
        assert isinstance(run.app.screen, HelpScreen)


async def test_each_screens_keys_are_in_its_palette():
    expected = {
        "2": {"Run all", "Run marked", "Rerun failed", "Open", "Step", "Filter", "Compare runs"},
        "3": {"Start", "Reload", "Copy URL", "Clear log"},
        "4": {"Pick A", "Pick B", "Reload"},
    }
    async with driving(sample_app(row=None), size=(100, 30)) as run:
        for key, names in expected.items():
            await run.press(key)
            listed = set(await run.palette_commands())
            assert names <= listed, (key, names - listed)
            assert "Next" not in listed  # the debugger's keys stay on the debugger


async def test_dataset_keys_and_filters_run_from_the_palette():
    async with driving(sample_app(row=None), size=(100, 30)) as run:
        await run.press("2")
        await run.palette("run all")
        screen = run.app.screen
        assert len(screen.results) == 12  # type: ignore[attr-defined]
        await run.palette("filter", pick="Filter: rows that passed")
        assert screen.table.row_count == 12  # type: ignore[attr-defined]
        await run.palette("filter", pick="Filter: rows that did not pass")
        assert screen.table.row_count == 0  # type: ignore[attr-defined]
        await run.palette("clear the filter")
        assert screen.table.row_count == 12  # type: ignore[attr-defined]


# ---- what no key does --------------------------------------------------------------------------


async def test_row_n_is_stepped_or_shown_from_the_palette():
    async with driving(sample_app(row=None), size=(100, 30)) as run:
        await run.palette("row 5", pick="Step row 5")
        debugger = run.app.debugger
        assert run.app.current_mode == "debug" and debugger.follower.row_index == 5
        await run.palette("7", pick="Show row 7 in the dataset")
        assert run.app.current_mode == "dataset"
        assert run.app.screen.table.cursor_key == "7"  # type: ignore[attr-defined]


async def test_the_model_is_switched_from_the_palette_and_a_bad_one_falls_back():
    async with driving(sample_app(row=None), size=(100, 30)) as run:
        listed = await run.palette_commands("model")
        assert "Model: human" in listed
        await run.palette("model", pick="Model: human")
        assert run.app.workspace is not None and run.app.workspace.model_name == "human"
        await run.palette("model replay:nowhere.jsonl")
        # It cannot open: the reason is said, and the workspace is back on the last model.
        assert any("nowhere.jsonl" in n.message for n in run.notes("error"))
        assert run.app.config.model == "human" and run.app.workspace is not None


@pytest.fixture
def two_runs(tmp_path: Path) -> list[Path]:
    """Two runs of the sample in ./.osmosis/runs; the second's reward fails row 3."""
    runs = tmp_path / ".osmosis" / "runs"
    run_sample(runs)
    run_sample(runs, "--reward", FAILS_ROW_3)
    return list_run_dirs(runs)


async def test_runs_are_opened_and_compared_from_the_palette(two_runs: list[Path]):
    first, second = two_runs
    async with driving(sample_app(row=None), size=(100, 30)) as run:
        await run.palette("compare", pick=f"Compare runs: {first.name} → {second.name}")
        screen = run.app.screen
        assert run.app.current_mode == "runs" and screen.current_view == "compare-view"  # type: ignore[attr-defined]
        regression = screen.comparison.rows[0]  # type: ignore[attr-defined]
        assert (regression.row, regression.change.value) == (3, "regressed")
        await run.palette("open run", pick=f"Open run: {first.name}")
        assert screen.current_view == "run-view"  # type: ignore[attr-defined]
        assert screen.rollouts_table.row_count == 12  # type: ignore[attr-defined]


# ---- themes and keys ---------------------------------------------------------------------------


async def test_a_theme_picked_in_the_palette_is_remembered_by_the_next_run():
    async with driving(sample_app(row=None)) as run:
        assert run.app.theme == "textual-dark"
        await run.palette("theme", pick="Theme")
        assert isinstance(run.app.screen, CommandPalette)  # Textual's theme list
        await run.palette("nord", pick="nord")
        assert run.app.theme == "nord"
        await run.settle()  # the file is written by a thread worker
    assert load_settings(settings_path()).theme == "nord"
    async with driving(sample_app(row=None)) as run:
        assert run.app.theme == "nord"
        await run.palette("toggle dark")
        assert run.app.theme == "textual-light"  # nord has no light twin: Textual's
        await run.palette("toggle dark")
        assert run.app.theme == "textual-dark"
        await run.settle()
    assert load_settings(settings_path()).theme == "textual-dark"
    settings_path().write_text('theme = "ansi-dark"\n')  # follows the terminal's colours
    async with driving(sample_app(row=None)) as run:
        assert run.app.theme == "ansi-dark" and run.app.current_theme.ansi


async def test_keymap_overrides_move_keys_and_the_help_shows_them():
    path = settings_path()
    path.parent.mkdir(parents=True)
    path.write_text('[keymap]\n"debugger.messages" = "M"\n"app.help" = "f1"\n')
    async with driving(sample_app(backend=ScriptedBackend(calculator_model))) as run:
        debugger = run.app.debugger
        await run.press("m")  # moved away: nothing
        assert debugger.current_view == "response-view"
        await run.press("M")
        assert debugger.current_view == "messages-view"
        sections = dict(run.app.help_sections())
        assert ("M", "The full message history; again to go back [debugger.messages]") in (
            sections["Step debugger"]
        )
        await run.press("f1")
        assert isinstance(run.app.screen, HelpScreen)


async def test_a_bad_theme_in_the_settings_is_named_and_the_default_used():
    path = settings_path()
    path.parent.mkdir(parents=True)
    path.write_text('theme = "no-such-theme"\n')
    async with driving(sample_app(row=None)) as run:
        assert run.app.theme == "textual-dark"
        (note,) = run.notes("warning")
        assert "no-such-theme" in note.message and str(path) in note.message
