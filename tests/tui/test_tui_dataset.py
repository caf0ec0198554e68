"""The Dataset screen: rows and bad rows, batch runs and their keys, summary, opening rows.

Everything is real except the model: the workbench app built by ``make_app`` serves the sample
agent, and a ``ScriptedBackend`` answers like a calculator (with the ``add`` tool) so the
agent's reward passes or fails by the ground truth. What the screen asks of the app (step a
row, show a trajectory) is seen in the messages it posts, and in the debugger it opens.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import textwrap
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import ProgressBar, Static
from tui_driver import Driver, driving

from osmosis_workbench.engine.config import EngineConfig
from osmosis_workbench.engine.models import ModelError, ScriptedBackend
from osmosis_workbench.tui.app import WorkbenchApp, make_app
from osmosis_workbench.tui.dataset_screen import ConcurrencyPrompt, DatasetScreen
from osmosis_workbench.tui.messages import RowStepRequested, TrajectoryRequested
from osmosis_workbench.tui.widgets.histogram import RewardHistogram, reward_bins

ROOT = Path(__file__).resolve().parents[2]
AGENT = "sample_project.server:agent_loop"

ROWS: list[Any] = [
    {"system_prompt": "calc", "user_prompt": "1+2", "ground_truth": 3},  # 0 passes
    {"system_prompt": "calc", "user_prompt": "2+2", "ground_truth": 5},  # 1 fails (reward 0)
    "{broken json",  # 2 is a bad row
    {"system_prompt": "calc", "user_prompt": "boom", "ground_truth": 1},  # 3 errors (model)
    {"system_prompt": "calc", "user_prompt": "[b]4+4", "ground_truth": 8},  # 4 markup-like
    {"system_prompt": "calc", "user_prompt": "10+5", "ground_truth": 15},  # 5 passes
]


def calculator(body: dict[str, Any]) -> Any:
    """A model that adds the prompt's two numbers with the add tool, then states the sum."""
    last = body["messages"][-1]
    if last["role"] == "tool":
        return {"content": f"The answer is {last['content']}."}
    if "boom" in last["content"]:
        return ModelError("server_error", "the scripted model fell over")
    a, b = (int(n) for n in re.findall(r"\d+", last["content"])[:2])
    return {"tool_calls": [{"name": "add", "arguments": {"a": a, "b": b}}]}


def write_rows(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


class Run(Driver):
    """The dataset screen's run: its table's cells."""

    @property
    def screen(self) -> DatasetScreen:
        screen = self.app.screen
        assert isinstance(screen, DatasetScreen), screen
        return screen

    def status(self, index: int) -> str:
        return self.screen.table.cell_text(str(index), "status")


def dataset_app(model: Any = calculator, **config: Any) -> WorkbenchApp:
    """The workbench on the sample agent; ``config`` overrides (the dataset, concurrency...)."""
    config.setdefault("module", AGENT)
    config.setdefault("search_path", str(ROOT))
    return make_app(
        EngineConfig(**config), backend=ScriptedBackend(model, keep_calls=False), watch_agent=False
    )


@asynccontextmanager
async def running(app: WorkbenchApp, size: tuple[int, int] = (100, 30)) -> AsyncIterator[Run]:
    """The app, once open, on its dataset screen (key 2)."""
    async with driving(app, size, driver_type=Run) as run:
        await run.press("2")
        yield run


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return write_rows(tmp_path / "rows.jsonl", ROWS)


@pytest.fixture
def app_for(dataset: Path) -> Any:
    """``app_for(model=calculator, **config)``: the app over the six rows above."""

    def _app(model: Any = calculator, **config: Any) -> WorkbenchApp:
        config.setdefault("dataset", str(dataset))
        return dataset_app(model, **config)

    return _app


# ---- rows ---------------------------------------------------------------------------------------


async def test_rows_and_bad_rows_are_listed_with_the_error(app_for):
    async with running(app_for()) as run:
        table = run.screen.table
        # Good and bad rows, in file order.
        assert table.keys == ["0", "1", "2", "3", "4", "5"]
        assert run.status(2) == "bad" and run.status(0) == ""
        assert table.cell_text("2", "prompt").startswith("row 2 (line 3): not valid JSON")
        assert table.cell_text("4", "prompt") == "[b]4+4"  # text, never parsed as markup
        info = str(run.screen.query_one("#dataset-info", Static).render())
        assert "5 rows · 1 bad" in info and "concurrency 8" in info
        await run.press("l")  # read again: the bad rows are counted in a note too
        assert any("1 bad row" in n.message for n in run.notes())
        await run.press("down", "down")
        detail = str(run.screen.query_one("#dataset-detail", Static).render())
        assert "row 2 (line 3) is a bad row" in detail


async def test_run_all_fills_rows_counts_summary_and_histogram_then_rows_open(app_for):
    async with running(app_for()) as run:
        # Before any run: o has nothing to show, d steps the row in the debugger; x says so.
        await run.press("o", "x")
        assert run.messages(TrajectoryRequested) == []
        assert any("has not run yet" in n.message for n in run.notes())
        assert any(n.message == "no batch is running" for n in run.notes())
        await run.press("d")
        assert [m.row_index for m in run.messages(RowStepRequested)] == [0]
        assert run.app.current_mode == "debug" and run.app.debugger.follower.row_index == 0
        await run.press("2")

        await run.press("r")
        assert [run.status(i) for i in (0, 1, 2, 3, 4, 5)] == [
            "pass", "fail", "bad", "error", "pass", "pass"
        ]  # fmt: skip
        table = run.screen.table
        assert table.cell_text("0", "reward") == "1.00" and table.cell_text("1", "reward") == "0.00"
        assert table.cell_text("3", "reward") == "—" and int(table.cell_text("0", "tokens")) > 0
        bar = run.screen.query_one("#dataset-progress", ProgressBar)
        assert (bar.progress, bar.total) == (5, 5)
        counts = str(run.screen.query_one("#dataset-counts", Static).render())
        assert counts.startswith("5/5 · passed 3 · failed 1 · errors 1")
        summary = run.screen.summary
        assert summary is not None and summary.total == 5 and summary.passed == 3
        assert summary.bad_rows == 1 and summary.reward_mean == pytest.approx(0.75)
        text = str(run.screen.query_one("#dataset-summary-text", Static).render())
        assert "pass rate 60.0%" in text and "reward mean 0.750" in text
        histogram = run.screen.query_one(RewardHistogram)
        assert [(b.label, b.count) for b in histogram.bins] == [("0", 1), ("1", 3)]
        assert any(n.title == "Batch done" and "3/5 passed" in n.message for n in run.notes())

        # o (and enter) open a finished row's trajectory in the debugger; the title says how
        # it went.
        await run.press("o")
        shown = run.messages(TrajectoryRequested)[-1]
        assert shown.outcome.ok and shown.outcome.reward == 1.0
        assert shown.title.startswith("row 0 · attempt 1 · pass")
        assert run.app.current_mode == "debug" and run.app.debugger.outcome is shown.outcome
        await run.press("2", "down", "enter")
        shown = run.messages(TrajectoryRequested)[-1]
        assert shown.outcome.ok and shown.outcome.reward == 0.0 and "fail" in shown.title
        # The bad row opens nothing and says why.
        await run.press("2")
        asked = len(run.messages(TrajectoryRequested)) + len(run.messages(RowStepRequested))
        await run.press("down", "o", "d")
        assert asked == len(run.messages(TrajectoryRequested)) + len(run.messages(RowStepRequested))
        bad = [n.title for n in run.notes() if n.severity == "error"]
        assert bad[-2:] == ["Row 2 is a bad row", "Row 2 is a bad row"]
        # The error row says what went wrong, on the row itself.
        await run.press("down")
        detail = str(run.screen.query_one("#dataset-detail", Static).render())
        assert "error (llm_error)" in detail and "fell over" in detail


async def test_space_marks_rows_and_s_runs_only_those(app_for):
    async with running(app_for()) as run:
        await run.press("space", "down", "down", "down", "space")  # marks 0, then 4
        assert run.screen.marked == {0, 4}
        assert run.screen.table.cell_text("0", "index").startswith("●")
        await run.press("s")
        assert set(run.screen.results) == {0, 4}
        assert run.status(0) == run.status(4) == "pass" and run.status(1) == ""
        # Without marks, s runs the highlighted row (space moved the cursor to row 5).
        await run.press("up", "space", "home", "space")  # unmark 4, then 0: cursor on 1
        assert run.screen.marked == set() and run.screen.cursor_index() == 1
        await run.press("s")
        assert len(run.screen.results[1]) == 1 and run.status(1) == "fail"


async def test_f_reruns_only_the_rows_that_did_not_pass(app_for):
    fixed = {"boom": False}

    def model(body: dict[str, Any]) -> Any:
        if fixed["boom"] and body["messages"][-1].get("content") == "boom":
            return {"content": "The answer is 1."}
        return calculator(body)

    async with running(app_for(model)) as run:
        await run.press("r")
        first = {i: rs[0].outcome.rollout_id for i, rs in run.screen.results.items()}
        fixed["boom"] = True
        await run.press("f")
        again = {i: rs[0].outcome.rollout_id for i, rs in run.screen.results.items()}
        assert {i for i in first if first[i] != again[i]} == {1, 3}
        assert run.status(3) == "pass" and run.status(1) == "fail"
        assert run.screen.summary is not None and run.screen.summary.passed == 4  # merged


async def test_x_stops_the_batch_and_unstarted_rows_are_skipped(app_for):
    started, release = asyncio.Event(), asyncio.Event()

    async def held(body: dict[str, Any]) -> Any:
        started.set()
        await release.wait()
        return calculator(body)

    async with running(app_for(held)) as run:
        await run.press("minus", "minus", "minus")  # 8 -> 4 -> 2 -> 1
        assert run.screen.concurrency == 1
        await run.pilot.press("r")
        await asyncio.wait_for(started.wait(), 5)
        await run.until(lambda: run.status(0) == "running")
        assert run.status(5) == "queued"
        await run.pilot.press("r")  # refused while a batch runs, and said why
        assert any("a batch is running" in n.message for n in run.notes())
        await run.pilot.press("x")
        assert run.screen.progress.stopping
        release.set()
        await run.press()
        assert run.status(0) == "pass" and run.status(5) == "skipped"
        assert run.screen.summary is not None
        assert run.screen.summary.stopped_early == "stopped by user"
        assert any(n.title == "Batch stopped" for n in run.notes())


async def test_concurrency_keys_and_prompt_set_the_batch_width(app_for):
    flight = {"now": 0, "peak": 0}

    async def overlapping(body: dict[str, Any]) -> Any:
        flight["now"] += 1
        flight["peak"] = max(flight["peak"], flight["now"])
        await asyncio.sleep(0.002)  # a model that takes a moment, so rollouts overlap
        flight["now"] -= 1
        return calculator(body)

    async with running(app_for(overlapping)) as run:
        await run.press("plus")
        assert run.screen.concurrency == 16
        await run.press("minus", "minus")
        assert run.screen.concurrency == 4
        await run.press("c")
        assert isinstance(run.app.screen, ConcurrencyPrompt)
        await run.press("0", "enter")  # out of range: said so, the dialog stays
        assert isinstance(run.app.screen, ConcurrencyPrompt)
        assert any(n.severity == "error" and "1 to 4096" in n.message for n in run.notes())
        await run.press("escape")
        assert run.screen.concurrency == 4
        # + doubles and - halves, as the help says, from any number: 3, 6, 3.
        await run.press("c", "3", "enter", "plus")
        assert run.screen.concurrency == 6
        await run.press("minus")
        assert run.screen.concurrency == 3
        await run.press("c", "2", "enter")
        assert run.screen.concurrency == 2
        assert "concurrency 2" in str(run.screen.query_one("#dataset-info", Static).render())
        await run.press("r")
        assert flight["peak"] == 2


async def test_attempts_give_pass_at_k(app_for):
    tries: dict[str, int] = {}

    def flaky(body: dict[str, Any]) -> Any:
        first = body["messages"][1]["content"]
        if first == "1+2" and body["messages"][-1]["role"] == "user":
            tries[first] = tries.get(first, 0) + 1
            if tries[first] == 1:  # the first attempt of row 0 answers wrong
                return {"content": "The answer is 0."}
        return calculator(body)

    async with running(app_for(flaky, concurrency=1)) as run:
        await run.press("a")
        assert run.screen.attempts == 2
        await run.press("r")
        assert run.status(0) == "1/2 pass" and run.status(4) == "2/2 pass"
        summary = run.screen.summary
        assert summary is not None and summary.k == 2
        assert summary.pass_at_k == pytest.approx(0.6) and summary.pass_at_1 == pytest.approx(0.5)
        assert "pass@2 0.600" in str(run.screen.query_one("#dataset-summary-text").render())
        await run.press("a", "a", "a")
        assert run.screen.attempts == 1  # 2 -> 4 -> 8 -> 1


async def test_a_missing_dataset_is_reported_and_l_reads_it_again(tmp_path):
    missing = tmp_path / "later.jsonl"
    async with running(dataset_app(dataset=str(missing))) as run:
        assert run.screen.table.row_count == 0
        assert any(n.title == "Dataset" and "later.jsonl" in n.message
                   for n in run.notes("error"))  # fmt: skip
        detail = str(run.screen.query_one("#dataset-detail", Static).render())
        assert "later.jsonl" in detail and "l reads it again" in detail
        write_rows(missing, ROWS[:2])
        await run.press("l")
        assert run.screen.table.keys == ["0", "1"]


#: Opened by the test below: the agent module it writes waits for it while it is imported.
AGENT_IMPORT_GATE = threading.Event()

GATED_AGENT = """
import sys

# The workbench imports this module on a thread: the import waits until the test opens the gate.
assert sys.modules["test_tui_dataset"].AGENT_IMPORT_GATE.wait(10)
from sample_project.server import agent_loop
"""


async def test_the_screen_waits_for_the_workspace_to_open(dataset, tmp_path, monkeypatch):
    (tmp_path / "gated_agent.py").write_text(textwrap.dedent(GATED_AGENT))
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.delitem(sys.modules, "gated_agent", raising=False)
    app = dataset_app(module="gated_agent:agent_loop", search_path=str(tmp_path),
                      dataset=str(dataset))  # fmt: skip
    seen: list[Any] = []
    async with app.run_test(size=(100, 30), message_hook=seen.append) as pilot:
        run = Run(app, pilot, seen)
        await pilot.press("2")
        assert "opening the workspace" in str(run.screen.query_one("#dataset-info").render())
        await pilot.press("r")
        assert app.workspace is None and "still opening" in run.notes()[-1].message
        AGENT_IMPORT_GATE.set()
        await run.settle()
        assert run.screen.table.row_count == 6


def test_reward_bins_group_distinct_values_or_equal_ranges():
    assert [(b.label, b.count) for b in reward_bins([1, 0, 1, None, 1.0])] == [("0", 1), ("1", 3)]
    bins = reward_bins([i / 100 for i in range(101)], bins=4)
    assert [b.count for b in bins] == [25, 25, 25, 26]  # the maximum falls in the last bin
    assert bins[0].label == "0.00–0.25" and reward_bins([]) == []


# ---- layout snapshots -------------------------------------------------------------------------


def _on_dataset_screen(pilot: Pilot) -> Any:
    async def run_before(pilot: Pilot) -> None:
        run = Run(pilot.app, pilot, [])  # type: ignore[arg-type]
        await run.settle()
        await run.press("2")

    return run_before(pilot)


@pytest.mark.parametrize("size", [(80, 24), (100, 30), (200, 60)])
def test_dataset_layout_snapshot(snap_compare, monkeypatch, size):
    monkeypatch.chdir(ROOT)  # the dataset path shown is relative
    app = dataset_app(dataset="sample_project/test_data.jsonl")
    assert snap_compare(app, terminal_size=size, run_before=_on_dataset_screen)
