"""Layout snapshots of the step debugger (pytest-textual-snapshot): a few, for layout only.

Behaviour is asserted in test_tui_debugger.py; these catch a pane that overflows, a border
that disappears or a key bar that no longer fits, at 80x24 (every screen) and larger. The
model is scripted, so ids and token counts are the same on every run. Update with
`pytest --snapshot-update`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from tui_driver import settle

from osmosis_workbench.engine.config import EngineConfig
from osmosis_workbench.engine.models import ScriptedBackend
from osmosis_workbench.tui.app import WorkbenchApp, make_app

ROOT = Path(__file__).resolve().parents[2]


def calculator_model(body: dict[str, Any]) -> dict[str, Any]:
    """Calls add(17, 25) first; once a tool answered, states its result."""
    last = body["messages"][-1]
    if last["role"] == "tool":
        return {"content": f"The answer is **{last['content']}**."}
    return {"tool_calls": [{"name": "add", "arguments": {"a": 17, "b": 25}}]}


def row_0_app() -> WorkbenchApp:
    config = EngineConfig(
        module="sample_project.server:agent_loop",
        model="scripted",
        dataset=str(ROOT / "sample_project" / "test_data.jsonl"),
        search_path=str(ROOT),
    )
    return make_app(config, row=0, backend=ScriptedBackend(calculator_model))


def row_2_app() -> WorkbenchApp:
    """Row 2 (three LLM calls) stepped, the model the script the sample's cassette came from."""
    from sample_project.record_cassette import scripted_calculator

    config = EngineConfig(
        module="sample_project.server:agent_loop",
        model="scripted",
        dataset=str(ROOT / "sample_project" / "test_data.jsonl"),
        search_path=str(ROOT),
    )
    return make_app(config, row=2, backend=ScriptedBackend(scripted_calculator), watch_agent=False)


def after(*keys: str):
    """A ``run_before`` that waits for the workspace and the rollout, then presses ``keys``."""

    async def run_before(pilot: Pilot) -> None:
        await settle(pilot.app, pilot)
        for key in keys:
            await pilot.press(key)
            await settle(pilot.app, pilot)

    return run_before


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
def test_paused_answer(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(row_0_app(), terminal_size=size, run_before=after())


@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
def test_message_history(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(row_0_app(), terminal_size=size, run_before=after("n", "m", "up"))


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
def test_help(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(row_0_app(), terminal_size=size, run_before=after("question_mark"))


def test_search_bar_at_80x24(snap_compare: Any) -> None:
    """The history searched: the bar, its count and the highlighted match."""
    keys = ("n", "m", "slash", *"answer")
    assert snap_compare(row_0_app(), terminal_size=(80, 24), run_before=after(*keys))


def test_runs_screen_at_80x24(snap_compare: Any) -> None:
    """No runs yet (each test has its own folder): the list says so and the keys fit."""
    assert snap_compare(row_0_app(), terminal_size=(80, 24), run_before=after("4"))


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_answer_composer(snap_compare: Any, size: tuple[int, int]) -> None:
    """--model human: the composer with a tool call added (tab to the tools, enter)."""
    config = EngineConfig(
        module="sample_project.server:agent_loop",
        model="human",
        dataset=str(ROOT / "sample_project" / "test_data.jsonl"),
        search_path=str(ROOT),
    )
    app = make_app(config, row=0, watch_agent=False)
    assert snap_compare(app, terminal_size=size, run_before=after("tab", "enter"))


def test_fork_beside_its_parent_at_80x24(snap_compare: Any) -> None:
    """Row 2 (three LLM calls) run to its end, forked at call 3 by the same script (F, enter),
    the fork run to its end (c), then both side by side (d)."""
    keys = after("c", "F", "enter", "c", "d")  # F proposes the last call, 3

    async def run_before(pilot: Pilot) -> None:
        await keys(pilot)
        pilot.app.clear_notifications()  # their timing is not layout
        await settle(pilot.app, pilot)

    assert snap_compare(row_2_app(), terminal_size=(80, 24), run_before=run_before)


def test_fork_dialog_at_80x24(snap_compare: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """F on a finished rollout: the call, the sources, the replay box and the model spec fit."""
    monkeypatch.chdir(ROOT)  # the sample's cassette is listed by its path from here
    assert snap_compare(row_2_app(), terminal_size=(80, 24), run_before=after("c", "F"))
