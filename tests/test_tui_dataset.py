"""The Dataset screen: rows and bad rows, batch runs and their keys, summary, opening rows.

Everything is real except the model: a ``ScriptedBackend`` answers like a calculator (with the
``add`` tool) so the sample agent's reward passes or fails by the ground truth. The screen runs
inside a small stand-in app that records ``open_debugger``/``show_outcome`` calls; the last
tests run it inside the real ``make_app`` app.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from screen_harness import OwnWorkspaceHarness, ScreenRun, run_screen
from textual.message import Message
from textual.pilot import Pilot
from textual.widgets import ProgressBar, Static
from textual.worker import Worker, WorkerState

from osmosis_workbench.engine.config import EngineConfig
from osmosis_workbench.engine.models import ModelError, ScriptedBackend
from osmosis_workbench.engine.workspace import Workspace
from osmosis_workbench.tui.dataset_screen import ConcurrencyPrompt, DatasetScreen
from osmosis_workbench.tui.widgets.histogram import RewardHistogram, reward_bins

ROOT = Path(__file__).resolve().parents[1]
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


class Run(ScreenRun):
    """The dataset screen's run: its table's cells."""

    @property
    def screen(self) -> DatasetScreen:
        screen = self.app.screen
        assert isinstance(screen, DatasetScreen)
        return screen

    def status(self, index: int) -> str:
        return self.screen.table.cell_text(str(index), "status")


@asynccontextmanager
async def running(
    workspace: Workspace | None, size: tuple[int, int] = (100, 30), **screen_kwargs: Any
) -> AsyncIterator[Run]:
    async with run_screen(Run, workspace, DatasetScreen(**screen_kwargs), size) as run:
        await run.app.workers.wait_for_complete()
        await run.pilot.pause()
        yield run


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return write_rows(tmp_path / "rows.jsonl", ROWS)


@pytest.fixture
async def open_workspace(dataset: Path) -> AsyncIterator[Callable[..., Any]]:
    """``await open_workspace(model=calculator, **config)``: an opened Workspace."""
    opened: list[Workspace] = []

    async def _open(model: Any = calculator, **config: Any) -> Workspace:
        config.setdefault("dataset", str(dataset))
        ws = Workspace(
            EngineConfig(module=AGENT, search_path=str(ROOT), **config),
            backend=ScriptedBackend(model, keep_calls=False),
        )
        await ws.open()
        opened.append(ws)
        return ws

    yield _open
    for ws in opened:
        await ws.aclose()


# ---- rows ---------------------------------------------------------------------------------------


async def test_rows_and_bad_rows_are_listed_with_the_error(open_workspace):
    ws = await open_workspace()
    async with running(ws) as run:
        table = run.screen.table
        # The screen read the dataset itself (nobody had): good and bad rows, in file order.
        assert table.keys == ["0", "1", "2", "3", "4", "5"]
        assert run.status(2) == "bad" and run.status(0) == ""
        assert table.cell_text("2", "prompt").startswith("row 2 (line 3): not valid JSON")
        assert table.cell_text("4", "prompt") == "[b]4+4"  # text, never parsed as markup
        info = str(run.screen.query_one("#dataset-info", Static).render())
        assert "5 rows · 1 bad" in info and "concurrency 8" in info
        assert any("1 bad row" in n.message for n in run.notes())
        await run.press("down", "down")
        detail = str(run.screen.query_one("#dataset-detail", Static).render())
        assert "row 2 (line 3) is a bad row" in detail


async def test_run_all_fills_rows_counts_summary_and_histogram_then_rows_open(open_workspace):
    ws = await open_workspace()
    async with running(ws) as run:
        # Before any run: o has nothing to show, d steps the row in the debugger; x says so.
        await run.press("o", "x")
        assert run.app.calls == [] and any("has not run yet" in n.message for n in run.notes())
        assert any(n.message == "no batch is running" for n in run.notes())
        await run.press("d")
        assert run.app.calls == [("open_debugger", 0, True)]

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

        # o (and enter) open a finished row's trajectory; the title says how it went.
        await run.press("o")
        kind, outcome, title = run.app.calls[-1]
        assert kind == "show_outcome" and outcome.ok and outcome.reward == 1.0
        assert title.startswith("row 0 · attempt 1 · pass")
        await run.press("down", "enter")
        kind, outcome, title = run.app.calls[-1]
        assert outcome.ok and outcome.reward == 0.0 and "fail" in title
        # The bad row opens nothing and says why.
        calls = len(run.app.calls)
        await run.press("down", "o", "d")
        assert len(run.app.calls) == calls
        bad = [n.title for n in run.notes() if n.severity == "error"]
        assert bad[-2:] == ["Row 2 is a bad row", "Row 2 is a bad row"]
        # The error row says what went wrong, on the row itself.
        await run.press("down")
        detail = str(run.screen.query_one("#dataset-detail", Static).render())
        assert "error (llm_error)" in detail and "fell over" in detail


async def test_space_marks_rows_and_s_runs_only_those(open_workspace):
    ws = await open_workspace()
    async with running(ws) as run:
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


async def test_f_reruns_only_the_rows_that_did_not_pass(open_workspace):
    fixed = {"boom": False}

    def model(body: dict[str, Any]) -> Any:
        if fixed["boom"] and body["messages"][-1].get("content") == "boom":
            return {"content": "The answer is 1."}
        return calculator(body)

    ws = await open_workspace(model)
    async with running(ws) as run:
        await run.press("r")
        first = {i: rs[0].outcome.rollout_id for i, rs in run.screen.results.items()}
        fixed["boom"] = True
        await run.press("f")
        again = {i: rs[0].outcome.rollout_id for i, rs in run.screen.results.items()}
        assert {i for i in first if first[i] != again[i]} == {1, 3}
        assert run.status(3) == "pass" and run.status(1) == "fail"
        assert run.screen.summary is not None and run.screen.summary.passed == 4  # merged


async def test_x_stops_the_batch_and_unstarted_rows_are_skipped(open_workspace):
    started, release = asyncio.Event(), asyncio.Event()

    async def held(body: dict[str, Any]) -> Any:
        started.set()
        await release.wait()
        return calculator(body)

    ws = await open_workspace(held)
    async with running(ws) as run:
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


async def test_concurrency_keys_and_prompt_set_the_batch_width(open_workspace):
    flight = {"now": 0, "peak": 0}

    async def overlapping(body: dict[str, Any]) -> Any:
        flight["now"] += 1
        flight["peak"] = max(flight["peak"], flight["now"])
        await asyncio.sleep(0.002)  # a model that takes a moment, so rollouts overlap
        flight["now"] -= 1
        return calculator(body)

    ws = await open_workspace(overlapping)
    async with running(ws) as run:
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
        await run.press("c", "2", "enter")
        assert run.screen.concurrency == 2
        assert "concurrency 2" in str(run.screen.query_one("#dataset-info", Static).render())
        await run.press("r")
        assert flight["peak"] == 2


async def test_attempts_give_pass_at_k(open_workspace):
    tries: dict[str, int] = {}

    def flaky(body: dict[str, Any]) -> Any:
        first = body["messages"][1]["content"]
        if first == "1+2" and body["messages"][-1]["role"] == "user":
            tries[first] = tries.get(first, 0) + 1
            if tries[first] == 1:  # the first attempt of row 0 answers wrong
                return {"content": "The answer is 0."}
        return calculator(body)

    ws = await open_workspace(flaky)
    async with running(ws, concurrency=1) as run:
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


async def test_a_missing_dataset_is_reported_and_l_reads_it_again(open_workspace, tmp_path):
    missing = tmp_path / "later.jsonl"
    ws = await open_workspace(dataset=str(missing))
    async with running(ws) as run:
        assert run.screen.table.row_count == 0
        assert any(n.title == "Dataset not loaded" and "later.jsonl" in n.message
                   for n in run.notes())  # fmt: skip
        write_rows(missing, ROWS[:2])
        await run.press("l")
        assert run.screen.table.keys == ["0", "1"]


async def test_the_screen_waits_for_the_workspace_to_open(open_workspace):
    ws = await open_workspace()
    ws.rows, ws.bad_rows = [], []
    async with running(None) as run:
        assert "opening the workspace" in str(run.screen.query_one("#dataset-info").render())
        await run.press("r")
        assert any("still opening" in n.message for n in run.notes())
        run.app.workspace = ws
        run.app.workspace_ready_signal.publish(ws)
        await run.press()
        assert run.screen.table.row_count == 6


def test_reward_bins_group_distinct_values_or_equal_ranges():
    assert [(b.label, b.count) for b in reward_bins([1, 0, 1, None, 1.0])] == [("0", 1), ("1", 3)]
    bins = reward_bins([i / 100 for i in range(101)], bins=4)
    assert [b.count for b in bins] == [25, 25, 25, 26]  # the maximum falls in the last bin
    assert bins[0].label == "0.00–0.25" and reward_bins([]) == []


# ---- the real app --------------------------------------------------------------------------------


async def test_the_dataset_mode_of_the_real_app_runs_a_batch_and_opens_a_row(dataset):
    from osmosis_workbench.tui.app import make_app

    app = make_app(
        EngineConfig(module=AGENT, dataset=str(dataset), search_path=str(ROOT)),
        backend=ScriptedBackend(calculator, keep_calls=False),
    )
    seen: list[Message] = []
    async with app.run_test(size=(100, 30), message_hook=seen.append) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press("2")
        await app.workers.wait_for_complete()
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, DatasetScreen) and screen.table.row_count == 6
        await pilot.press("r")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert screen.summary is not None and screen.summary.passed == 3
        await pilot.press("o")
        await pilot.pause()
        assert app.current_mode == "debug"  # the trajectory opens in the debugger's view
        assert not [m for m in seen if isinstance(m, Worker.StateChanged)
                    and m.state is WorkerState.ERROR]  # fmt: skip


# ---- layout snapshots -------------------------------------------------------------------------


class SnapshotHarness(OwnWorkspaceHarness):
    """The screen with the calculator agent, for the layout snapshot."""

    def __init__(self) -> None:
        config = EngineConfig(module=AGENT, dataset="sample_project/test_data.jsonl",
                                 search_path=str(ROOT))  # fmt: skip
        super().__init__(Workspace(config, backend=ScriptedBackend(calculator)), DatasetScreen())


async def _settle(pilot: Pilot) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


@pytest.mark.parametrize("size", [(100, 30), (200, 60)])
def test_dataset_layout_snapshot(snap_compare, monkeypatch, size):
    monkeypatch.chdir(ROOT)  # the dataset path shown is relative
    assert snap_compare(SnapshotHarness(), terminal_size=size, run_before=_settle)
