"""The runs screen from the dataset screen: two runs compared, a changed row side by side.

Run A is a real ``osmosis test`` run of the sample (its cassette). Run B is A's directory with
row 3's last answer and reward changed in its journal, as a run whose model answered row 3
differently would have it. Each test runs in its own folder (conftest), so ``.osmosis/runs``
there holds only these two runs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sample_runs import run_sample
from tui_driver import driving

from osmosis_workbench.engine.config import EngineConfig
from osmosis_workbench.engine.journal import JOURNAL_FILE
from osmosis_workbench.engine.runs import list_run_dirs
from osmosis_workbench.tui.app import make_app
from osmosis_workbench.tui.runs_screen import RunsScreen

ROOT = Path(__file__).resolve().parents[2]
WRONG = "7 times 8 is 56, minus 6 gives 51."


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, Path]:
    """Run A of the sample, and run B: A with row 3's final answer wrong and its reward 0."""
    runs = tmp_path / ".osmosis" / "runs"
    assert run_sample(runs) == 0
    (run_a,) = list_run_dirs(runs)
    run_b = run_a.with_name(f"{run_a.name}-b")  # sorts after A: the newer run
    shutil.copytree(run_a, run_b)
    lines = []
    for line in (run_b / JOURNAL_FILE).read_text().splitlines():
        entry = json.loads(line)
        if entry["row"] == 3:
            entry["final_messages"][-1]["content"] = WRONG
            entry.update(reward=0.0, passed=False, verdict="fail")
        lines.append(json.dumps(entry))
    (run_b / JOURNAL_FILE).write_text("\n".join(lines) + "\n")
    return run_a, run_b


async def test_C_on_the_dataset_screen_compares_two_runs_and_opens_a_regression_side_by_side(
    two_runs: tuple[Path, Path],
):
    run_a, run_b = two_runs
    config = EngineConfig(
        module="sample_project.server:agent_loop",
        dataset=str(ROOT / "sample_project" / "test_data.jsonl"),
        search_path=str(ROOT),
    )
    async with driving(make_app(config, watch_agent=False), size=(100, 30)) as run:
        await run.press("2", "C")  # the dataset screen, then its runs: newest first
        screen = run.app.screen
        assert isinstance(screen, RunsScreen)
        assert [Path(key).name for key in screen.runs_table.keys] == [run_b.name, run_a.name]
        await run.press("b", "down", "a", "c")  # B: the newer, A: the older; compare
        assert screen.current_view == "compare-view"
        comparison = screen.comparison
        assert comparison is not None
        (changed,) = comparison.rows  # only row 3 changed, and it regressed by 1.0
        assert (changed.row, changed.change.value) == (3, "regressed")
        await run.press("enter")  # both trajectories, on the first message that differs
        assert screen.current_view == "pair-view"
        a_messages = json.loads((run_a / JOURNAL_FILE).read_text().splitlines()[3])
        last = len(a_messages["final_messages"]) - 1
        assert screen.difference == last
        sides = screen.side_by_side
        assert sides.list("a").cursor == sides.list("b").cursor == last
        assert sides.list("b").messages[last]["content"] == WRONG
        # The same run against itself: nothing changed.
        await run.press("escape", "escape")
        assert screen.current_view == "runs-view"
        await run.press("b", "c")  # the cursor is still on A: B is A too
        assert screen.comparison is not None and not screen.comparison.rows
