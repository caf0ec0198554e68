"""The Dataset screen: every row of the dataset in a table, batch runs over them, their summary.

The table shows each row's prompt, ground truth and last result; bad rows sit among the others
with their error. ``r``/``s``/``f`` run all rows, the marked ones, or the failed ones through
``Workspace.batch`` in an exclusive async worker. Results arrive on the event loop through the
runner's ``on_result`` callback, which only appends to a list: a 5 Hz ticker applies them to the
table (a line-API ``RowTable`` that redraws only changed, visible rows), the counters and the
progress bar, so a thousand zero-latency rollouts cost five small repaints a second, never one
per result, and never a layout pass. When the batch ends the summary under the table (pass
rate, reward mean, pass@k, latency) and its reward histogram are filled in.

Each batch is journaled in a run directory under ``.osmosis/runs``, as ``osmosis test``
does, so the runs screen (``C``, or ``4``) can compare it with another. With a live model,
``r`` first runs a few pilot rows and shows what the whole run would cost
(``engine.estimate``) before it runs the rest. ``/`` filters the rows by text, status and
reward.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.markup import escape
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Input, Label, ProgressBar, Static

from osmosis_workbench.tui.commands import PaletteCommand, ScreenCommands
from osmosis_workbench.tui.gc_control import freeze_long_lived_objects
from osmosis_workbench.tui.messages import RowStepRequested, RunsRequested, TrajectoryRequested
from osmosis_workbench.tui.screen_base import WorkbenchScreen
from osmosis_workbench.tui.text_search import compile_query
from osmosis_workbench.tui.widgets.dataset_table import Column, RowTable
from osmosis_workbench.tui.widgets.histogram import RewardHistogram
from osmosis_workbench.tui.widgets.key_bar import KeyBar
from osmosis_workbench.tui.widgets.search_bar import SearchBar

if TYPE_CHECKING:
    from osmosis_workbench.engine.batch import BatchRunner
    from osmosis_workbench.engine.config import EngineConfig
    from osmosis_workbench.engine.datasets import DatasetRow, RowError
    from osmosis_workbench.engine.estimate import RunEstimate
    from osmosis_workbench.engine.journal import JournalEntry
    from osmosis_workbench.engine.summary import BatchSummary
    from osmosis_workbench.engine.workspace import Workspace

#: Columns of the table (the prompt takes the width the others leave).
_COLUMNS = [
    Column("index", "#", 6, "right"),
    Column("prompt", "prompt", 0, min_width=16),
    Column("truth", "truth", 12),
    Column("status", "status", 10),
    Column("reward", "reward", 7, "right"),
    Column("duration", "time", 8, "right"),
    Column("tokens", "tokens", 7, "right"),
]

_STATUS_STYLES = {
    "pass": "bold green",
    "fail": "bold red",
    "error": "bold red",
    "bad": "bold magenta",
    "running": "yellow",
    "queued": "dim",
    "skipped": "dim",
}

#: Batches of this many rollouts or more freeze the objects alive at their start (see _begin).
_FREEZE_GC_FROM = 200

#: The most concurrent rollouts the screen sets (``c`` and ``+``).
_MAX_CONCURRENCY = 4096
#: Attempts per row that ``a`` cycles through (pass@k needs k > 1).
_ATTEMPT_STEPS = (1, 2, 4, 8)


#: Pilot rows a live model runs before ``r`` runs the rest (as ``osmosis test --estimate``).
PILOT_ROWS = 3

_STATUS_TERM = re.compile(r"(?:^|\s)status:(\S+)", re.IGNORECASE)
_REWARD_TERM = re.compile(
    r"(?:^|\s)reward\s*(<=|>=|!=|==|<|>|=)\s*(-?\d+(?:\.\d*)?)", re.IGNORECASE
)
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "=": lambda a, b: a == b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


@dataclass(frozen=True)
class RowFilter:
    """What ``/`` keeps: rows whose text matches, whose status is one of ``statuses``
    (``status:fail,error``), whose mean reward passes ``reward`` (``reward<1``)."""

    pattern: re.Pattern[str] | None = None
    statuses: tuple[str, ...] = ()
    reward: tuple[str, float] | None = None

    @classmethod
    def parse(cls, text: str, *, regex: bool = False) -> RowFilter:
        """The filter ``text`` describes; ``ValueError`` says what is wrong with it."""
        statuses: list[str] = []
        for found in _STATUS_TERM.finditer(text):
            statuses += [s for s in found[1].lower().split(",") if s]
        text = _STATUS_TERM.sub(" ", text)
        reward = None
        term = _REWARD_TERM.search(text)
        if term:
            reward = (term[1], float(term[2]))
            text = _REWARD_TERM.sub(" ", text)
        return cls(compile_query(text.strip(), regex=regex), tuple(statuses), reward)

    @property
    def empty(self) -> bool:
        """Whether it keeps every row."""
        return self.pattern is None and not self.statuses and self.reward is None


def _one_line(value: Any) -> str:
    return " ".join(str(value).split())


def _seconds(ms: float) -> str:
    return f"{ms / 1000:.2f}s" if ms < 100_000 else f"{ms / 1000:.0f}s"


@dataclass
class BatchProgress:
    """Counts of the batch that is running (or ran last)."""

    total: int = 0
    done: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    started: float = 0.0
    finished: float | None = None
    stopping: bool = False

    @property
    def elapsed_s(self) -> float:
        """Seconds since the batch started (until it finished)."""
        return (self.finished or time.perf_counter()) - self.started

    def describe(self, running: int) -> str:
        """The counters line under the progress bar."""
        rate = self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0
        state = "stopping" if self.stopping and self.finished is None else ""
        parts = [
            f"{self.done}/{self.total}",
            f"[green]passed {self.passed}[/]",
            f"[red]failed {self.failed}[/]",
            f"[red]errors {self.errors}[/]",
            f"running {running}",
            f"{self.elapsed_s:.1f}s",
            f"{rate:.0f}/s",
        ]
        return " · ".join(parts) + (f" · [yellow]{state}[/]" if state else "")


class ConcurrencyPrompt(ModalScreen[int | None]):
    """Asks for a number of concurrent rollouts (enter to set, escape to cancel)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, current: int) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="concurrency-dialog"):
            yield Label(f"Concurrent rollouts (1-{_MAX_CONCURRENCY}):")
            yield Input(str(self.current), type="integer", id="concurrency-input")
            yield Label("[dim]enter: set · escape: cancel[/]")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        try:
            value = int(event.value)
        except ValueError:
            value = 0
        if not 1 <= value <= _MAX_CONCURRENCY:
            self.notify(f"give a whole number from 1 to {_MAX_CONCURRENCY}", severity="error")
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        """Close without changing anything."""
        self.dismiss(None)


class EstimateDialog(ModalScreen[bool]):
    """What the whole run would cost, from its pilot rows: run the rest (enter) or stop (esc)."""

    BINDINGS: ClassVar = [
        Binding("enter", "run", "Run the rest", id="estimate.run"),
        Binding("escape", "stop", "Stop here", id="estimate.stop"),
    ]

    def __init__(self, estimate: RunEstimate, rest: int) -> None:
        super().__init__()
        self.estimate = estimate
        self.rest = rest

    def compose(self) -> ComposeResult:
        with Vertical(id="estimate-dialog", classes="dialog"):
            yield Label("Before the whole run: its estimate", classes="dialog-title")
            yield Static(Text("\n".join(self.estimate.lines())), id="estimate-text")
            yield Static(
                f"enter: run the other {self.rest} rows · esc: stop after the pilots "
                "(r runs everything again later)",
                classes="dialog-help",
            )
        yield KeyBar()

    def action_run(self) -> None:
        """Run the rows the pilots left."""
        self.dismiss(True)

    def action_stop(self) -> None:
        """Keep the pilots' results; run nothing more."""
        self.dismiss(False)


class DatasetCommands(ScreenCommands):
    """The dataset screen's palette: its keys, and the filters people use most."""

    #: (name, filter): what each preset types into the filter bar.
    PRESETS: ClassVar = [
        ("Filter: rows that did not pass", "status:fail,error"),
        ("Filter: rows that errored", "status:error"),
        ("Filter: rows that passed", "status:pass"),
        ("Filter: rows with a reward below 1", "reward<1"),
        ("Filter: bad rows", "status:bad"),
    ]

    def screen_commands(self) -> list[PaletteCommand]:
        screen = self.screen
        if not isinstance(screen, DatasetScreen):
            return []
        found = [
            PaletteCommand(name, f"/ {query}", functools.partial(screen.set_filter, query))
            for name, query in self.PRESETS
        ]
        if not screen.row_filter.empty:
            found.append(PaletteCommand("Clear the filter", "Every row again", screen.clear_filter))
        return found


class DatasetScreen(WorkbenchScreen):
    """Dataset rows, batch runs and their summary (the app's "dataset" mode)."""

    TITLE = "Dataset"
    COMMANDS: ClassVar[set] = {DatasetCommands}
    #: How often the table and counters take in new results (each tick costs a repaint).
    PROGRESS_INTERVAL_S = 0.2

    BINDINGS = [
        Binding(
            "r",
            "run_all",
            "Run all",
            tooltip="Run every good row of the dataset",
            id="dataset.run_all",
        ),
        Binding(
            "s",
            "run_selected",
            "Run marked",
            tooltip="Run the marked rows (space marks), or the highlighted one",
            id="dataset.run_selected",
        ),
        Binding(
            "f",
            "rerun_failed",
            "Rerun failed",
            tooltip="Run again every row whose last run did not pass",
            id="dataset.rerun_failed",
        ),
        Binding(
            "x",
            "stop",
            "Stop",
            tooltip="Stop the batch: rollouts in flight finish",
            id="dataset.stop",
        ),
        Binding(
            "space",
            "toggle_mark",
            "Mark",
            show=False,
            tooltip="Mark or unmark the highlighted row (s runs the marked rows)",
            id="dataset.toggle_mark",
        ),
        Binding(
            "o",
            "open_row",
            "Open",
            tooltip="Show the highlighted row's trajectory (also enter)",
            id="dataset.open_row",
        ),
        Binding(
            "d",
            "debug_row",
            "Step",
            tooltip="Step the highlighted row in the debugger, one LLM call at a time",
            id="dataset.debug_row",
        ),
        Binding(
            "c",
            "set_concurrency",
            "Concurrency",
            show=False,
            tooltip="Set how many rollouts run at once",
            id="dataset.set_concurrency",
        ),
        Binding(
            "plus,equals_sign",
            "more_concurrency",
            "More",
            key_display="+",
            show=False,
            tooltip="Double the concurrent rollouts",
            id="dataset.more_concurrency",
        ),
        Binding(
            "minus",
            "less_concurrency",
            "Fewer",
            key_display="-",
            show=False,
            tooltip="Halve the concurrent rollouts",
            id="dataset.less_concurrency",
        ),
        Binding(
            "a",
            "cycle_attempts",
            "Attempts",
            show=False,
            tooltip="Attempts per row: 1, 2, 4, 8 (the k of pass@k)",
            id="dataset.cycle_attempts",
        ),
        Binding(
            "l",
            "reload_dataset",
            "Reload",
            show=False,
            tooltip="Read the dataset again",
            id="dataset.reload_dataset",
        ),
        Binding(
            "slash,ctrl+f",
            "filter",
            "Filter",
            key_display="/",
            tooltip="Filter the rows: text, status:fail,error, reward<1 (esc shows all again)",
            id="dataset.filter",
        ),
        Binding(
            "C",
            "compare_runs",
            "Compare runs",
            show=False,
            tooltip="The runs screen: each batch is a run; compare two of them",
            id="dataset.compare_runs",
        ),
    ]

    def __init__(self, *, concurrency: int = 8, attempts: int = 1) -> None:
        super().__init__()
        self.concurrency = concurrency
        self.attempts = attempts
        self.progress = BatchProgress()
        self.summary: BatchSummary | None = None
        #: Results of each row's latest run (one per attempt), by row index.
        self.results: dict[int, list[JournalEntry]] = {}
        self.bad: dict[int, RowError] = {}
        self.marked: set[int] = set()
        self._rows: dict[int, DatasetRow] = {}
        self._pending: list[JournalEntry] = []
        self._waiting: set[int] = set()  # rows of the running batch still short of attempts
        self._running_shown: set[int] = set()
        self._skipped: set[int] = set()
        self._runner: BatchRunner | None = None
        self._ticker: Timer | None = None
        #: The rows filter (``/``) and every row's key, shown or not.
        self.row_filter = RowFilter()
        self._all_keys: list[str] = []
        #: Where the running (or last) batch is journaled.
        self.run_dir: Path | None = None
        #: While a live model's pilot rows run: the rows left for after the estimate.
        self._after_pilots: list[int] | None = None
        #: A row to put the cursor on once the rows are listed (asked for before that).
        self._show_when_listed: int | None = None

    # ---- composition and typed access -------------------------------------------------------

    def compose_body(self) -> ComposeResult:
        yield Static(id="dataset-info")
        yield RowTable(
            _COLUMNS,
            self._row_cells,
            empty_text="No rows: start the workbench with --dataset FILE (l reads it again).",
            id="dataset-table",
        )
        yield SearchBar(steps=False, id="filter-bar")
        yield Static("no row selected", id="dataset-detail")
        with Horizontal(id="dataset-progress-row"):
            yield ProgressBar(total=1, show_eta=False, show_percentage=False, id="dataset-progress")
            yield Static("no batch yet: r runs every row", id="dataset-counts")
        with Horizontal(id="dataset-summary"):
            yield Static(
                "No batch yet: the pass rate, reward mean, pass@k and a reward histogram\n"
                "of the last batch appear here.",
                id="dataset-summary-text",
            )
            yield RewardHistogram(bins=4, id="dataset-histogram")

    @property
    def table(self) -> RowTable:
        """The rows table."""
        return self.query_one("#dataset-table", RowTable)

    @property
    def filter_bar(self) -> SearchBar:
        """The rows filter (``/``)."""
        return self.query_one("#filter-bar", SearchBar)

    @property
    def progress_bar(self) -> ProgressBar:
        """The batch's progress."""
        return self.query_one("#dataset-progress", ProgressBar)

    @property
    def counts_line(self) -> Static:
        """The batch's counters, beside the progress bar."""
        return self.query_one("#dataset-counts", Static)

    @property
    def summary_pane(self) -> Horizontal:
        """The last batch's summary and histogram (dimmed while a new batch runs)."""
        return self.query_one("#dataset-summary", Horizontal)

    @property
    def running(self) -> bool:
        """Whether a batch is running."""
        return self._runner is not None

    def on_mount(self) -> None:
        """Until the workspace is open, say so (then ``workspace_opened`` fills the table)."""
        if self.workspace is None:
            self._show_info()

    def workspace_opened(self, workspace: Workspace) -> None:
        """Show the rows of a (re)opened workspace, reading its dataset if nobody has."""
        problem = self.dataset_error
        # The app reads the dataset when it opens the workspace; read it here only if it did
        # not try (a failed read would only fail again: l retries once the file is fixed).
        if not problem and not (workspace.rows or workspace.bad_rows) and workspace.config.dataset:
            self.load_dataset()
            return
        self.results.clear()
        self.marked.clear()
        self._fill_table()
        self._show_info()

    def on_screen_resume(self) -> None:
        """The workspace may have opened (or reloaded) since: refresh the header line."""
        self._show_info()

    # ---- the dataset -------------------------------------------------------------------------

    @work(exclusive=True, exit_on_error=False, group="dataset-load")
    async def load_dataset(self) -> None:
        """Read the dataset (off the loop) and show its rows."""
        ws = self._ready_workspace("reading the dataset")
        if ws is None:
            return
        try:
            await ws.load_dataset()
        except Exception as exc:  # a missing or unreadable file: say so, keep the app
            self.dataset_error = f"Could not read the dataset {ws.config.dataset}: {exc}"
            self.notify(str(exc), title="Dataset not loaded", severity="error")
            self._show_detail()
            return
        self.dataset_error = None
        self.results.clear()
        self.marked.clear()
        self._fill_table()
        self._show_info()
        if ws.bad_rows:
            self.notify(
                f"{len(ws.bad_rows)} bad row(s): listed in the table with their error",
                title="Dataset",
                severity="warning",
            )

    def _fill_table(self) -> None:
        ws = self.workspace
        self._rows = {row.index: row for row in ws.rows} if ws else {}
        self.bad = {err.index: err for err in ws.bad_rows} if ws else {}
        self._all_keys = [str(index) for index in sorted({*self._rows, *self.bad})]
        self._apply_filter()
        self._show_detail()
        if self._show_when_listed is not None and self._all_keys:
            row, self._show_when_listed = self._show_when_listed, None
            self.show_row(row)

    def _row_cells(self, key: str) -> list[Text]:
        # The table asks for the cells of the rows it draws (visible ones only).
        return self._cells(int(key))

    def _cells(self, index: int) -> list[Text]:
        """The cells of one table row (Text, never markup: prompts may hold brackets)."""
        mark = "●" if index in self.marked else " "
        number = Text(f"{mark}{index:>5}", style="bold" if index in self.marked else "")
        status = self.row_status(index)
        status_cell = Text(status, style=_STATUS_STYLES.get(status.rpartition(" ")[2], ""))
        if index in self.bad:
            # The error takes the prompt's column: a bad row is visible, and says why, in place.
            error = _one_line(self.bad[index].message)
            return [
                number,
                Text(error, style="magenta"),
                Text(""),
                status_cell,
                Text(""),
                Text(""),
                Text(""),
            ]
        row = self._rows[index]
        cells = [number, Text(_one_line(row.user_prompt)), Text(_one_line(row.ground_truth))]
        results = self.results.get(index) or []
        if not results:
            return [*cells, status_cell, Text(""), Text(""), Text("")]
        rewards = [r.outcome.reward for r in results if r.outcome.reward is not None]
        reward = Text(f"{sum(rewards) / len(rewards):.2f}" if rewards else "—", justify="right")
        duration = sum(r.outcome.duration_ms for r in results) / len(results)
        tokens = sum(r.outcome.tokens for r in results)
        return [
            *cells,
            status_cell,
            reward,
            Text(_seconds(duration), justify="right"),
            Text(str(tokens), justify="right"),
        ]

    def row_status(self, index: int) -> str:
        """``pass``, ``fail``, ``error``, ``bad``, ``queued``, ``running``, ``k/n pass``, ``""``."""
        if index in self.bad:
            return "bad"
        results = self.results.get(index) or []
        if index in self._waiting:
            # With several attempts a row runs from its first result until its last.
            return "running" if results or index in self._running_shown else "queued"
        if index in self._skipped:
            return "skipped"
        if not results:
            return ""
        passed = sum(r.passed for r in results)
        if len(results) > 1:
            return f"{passed}/{len(results)} pass"
        if passed:
            return "pass"
        return results[0].verdict.value

    def _update_row(self, index: int) -> None:
        key = str(index)
        # A row missing from the table: the file changed under the batch.
        if key in self.table:
            self.table.touch(key)

    def _show_info(self) -> None:
        ws = self.workspace
        info_line = self.query_one("#dataset-info", Static)
        if ws is None:
            info_line.update(Text("opening the workspace…", style="italic"), layout=False)
            return
        dataset = ws.config.dataset or "(no dataset: pass --dataset FILE)"
        # Text, not markup: paths and model names may hold brackets.
        info = Text.assemble(
            (dataset, "bold"),
            f" · {len(ws.rows)} rows · ",
            (f"{len(ws.bad_rows)} bad", "magenta" if ws.bad_rows else ""),
            " · concurrency ",
            (str(self.concurrency), "bold"),
            " · attempts ",
            (str(self.attempts), "bold"),
            f" · agent {ws.agent_name} · model {ws.model_name}",
            no_wrap=True,
            overflow="ellipsis",
        )
        # Fixed-size lines: no layout pass (a layout repaints the whole screen, ~50 ms).
        info_line.update(info, layout=False)

    # ---- the highlighted row -----------------------------------------------------------------

    def cursor_index(self) -> int | None:
        """The dataset index of the row under the cursor."""
        key = self.table.cursor_key
        return int(key) if key is not None else None

    def _runnable_cursor_index(self) -> int | None:
        """The row under the cursor; ``None`` (with the reason shown) for a bad row."""
        index = self.cursor_index()
        if index is not None and index in self.bad:
            self.notify(
                self.bad[index].message, title=f"Row {index} is a bad row", severity="error"
            )
            return None
        return index

    @on(RowTable.RowHighlighted, "#dataset-table")
    def _row_highlighted(self) -> None:
        self._show_detail()

    @on(RowTable.RowSelected, "#dataset-table")
    def _row_selected(self) -> None:
        self.action_open_row()

    def _show_detail(self) -> None:
        index = self.cursor_index()
        detail = self.query_one("#dataset-detail", Static)
        if index is None:
            problem = self.dataset_error
            # The app could not read the file: say why here too.
            text = (
                Text(f"{problem}\nFix the file, then l reads it again.", style="red")
                if problem
                else Text("the dataset has no rows")
            )
            detail.update(text, layout=False)
            return
        detail.update(self.describe_row(index), layout=False)

    def describe_row(self, index: int) -> Text:
        """Two or three lines about one row: prompt, result, error."""
        if index in self.bad:
            err = self.bad[index]
            where = f" (line {err.line})" if err.line else ""
            return Text.assemble(
                (f"row {index}{where} is a bad row: ", "bold magenta"), err.message
            )
        row = self._rows.get(index)
        if row is None:
            return Text(f"row {index}")
        text = Text.assemble(
            (f"row {index} ", "bold"),
            _one_line(row.user_prompt),
            " → expected ",
            (_one_line(row.ground_truth), "bold"),
        )
        results = self.results.get(index) or []
        if results:
            last = results[-1].outcome
            reward = "—" if last.reward is None else f"{last.reward:.3g}"
            text.append(
                f"\n{self.row_status(index)} · reward {reward} · {last.llm_calls} LLM calls · "
                f"{_seconds(last.duration_ms)} · {last.tokens} tokens · "
                f"finish {last.finish_reason or '—'} · o: trajectory · d: step it"
            )
            failed = next((r.outcome for r in results if not r.outcome.ok), None)
            if failed is not None:
                category = f" ({failed.error_category})" if failed.error_category else ""
                text.append(f"\nerror{category}: {_one_line(failed.error)}", style="red")
        return text

    # ---- the filter (/) ----------------------------------------------------------------------

    def action_filter(self) -> None:
        """Open the filter bar: text, ``status:fail,error``, ``reward<1``."""
        self.filter_bar.open("rows", placeholder="text  status:fail,error  reward<1")

    def set_filter(self, query: str) -> None:
        """Filter the rows by ``query`` (the palette's presets), shown in the bar."""
        self.filter_bar.open("rows")
        self.filter_bar.input.value = query  # its Changed message filters

    def clear_filter(self) -> None:
        """Every row again."""
        self.filter_bar.input.value = ""
        self.filter_bar.close()

    @on(SearchBar.Changed, "#filter-bar")
    def _filter_changed(self, event: SearchBar.Changed) -> None:
        try:
            self.row_filter = RowFilter.parse(event.query, regex=event.regex)
        except ValueError as exc:
            self.filter_bar.show_count(str(exc), error=True)
            return
        self._apply_filter()

    @on(SearchBar.Step, "#filter-bar")
    def _filter_entered(self) -> None:
        self.table.focus()  # enter: done typing, on to the rows

    @on(SearchBar.Closed, "#filter-bar")
    def _filter_closed(self) -> None:
        self.row_filter = RowFilter()
        self._apply_filter()
        self.table.focus()

    def keeps(self, index: int) -> bool:
        """Whether the filter keeps row ``index``."""
        rule = self.row_filter
        if rule.statuses:
            status = self.row_status(index) or "new"
            if not any(wanted in status for wanted in rule.statuses):
                return False
        if rule.reward is not None:
            rewards = [
                r.outcome.reward
                for r in self.results.get(index) or ()
                if r.outcome.reward is not None
            ]
            op, value = rule.reward
            if not rewards or not _COMPARE[op](sum(rewards) / len(rewards), value):
                return False
        if rule.pattern is not None:
            if index in self.bad:
                text = self.bad[index].message
            else:
                row = self._rows[index]
                text = f"{row.user_prompt}\n{row.ground_truth}"
            if not rule.pattern.search(text):
                return False
        return True

    def _apply_filter(self) -> None:
        """Show the rows the filter keeps (the cursor stays on its row if it is kept)."""
        table = self.table
        current = table.cursor_key
        rule = self.row_filter
        keys = self._all_keys if rule.empty else [k for k in self._all_keys if self.keeps(int(k))]
        table.clear()
        table.add_rows(keys)
        if current is not None and current in table:
            table.move_cursor(current)
        if self.filter_bar.is_open:
            total = len(self._all_keys)
            self.filter_bar.show_count(
                f"{len(keys):,} of {total:,} rows" if not rule.empty else f"{total:,} rows"
            )

    def show_row(self, index: int) -> None:
        """Put the cursor on row ``index`` (the filter is cleared if it hides the row)."""
        key = str(index)
        if not self._all_keys:  # not listed yet (the screen is new, or reads the file)
            self._show_when_listed = index
            return
        if key not in self._all_keys:
            self.notify(f"there is no row {index} in the dataset", severity="warning")
            return
        if key not in self.table:
            self.clear_filter()
        self.table.move_cursor(key)
        self.table.focus()

    def action_compare_runs(self) -> None:
        """The runs screen: this batch's run against the one before."""
        self.post_message(RunsRequested())

    # ---- marking and settings ----------------------------------------------------------------

    def action_toggle_mark(self) -> None:
        """Mark or unmark the row under the cursor for ``s`` (run selected)."""
        index = self.cursor_index()
        if index is None:
            return
        self.marked.symmetric_difference_update({index})
        self._update_row(index)
        # Move on, as file managers do: holding space marks a run of rows.
        self.table.action_cursor_down()

    def action_more_concurrency(self) -> None:
        """Double the number of concurrent rollouts (for the next batch): 3 becomes 6."""
        self._set_concurrency(min(_MAX_CONCURRENCY, self.concurrency * 2))

    def action_less_concurrency(self) -> None:
        """Halve the number of concurrent rollouts (for the next batch): 6 becomes 3."""
        self._set_concurrency(max(1, self.concurrency // 2))

    def action_set_concurrency(self) -> None:
        """Ask for an exact number of concurrent rollouts."""
        self.app.push_screen(ConcurrencyPrompt(self.concurrency), self._concurrency_chosen)

    def _concurrency_chosen(self, value: int | None) -> None:
        if value is not None:
            self._set_concurrency(value)

    def _set_concurrency(self, value: int) -> None:
        self.concurrency = value
        self._show_info()
        note = " (applies to the next batch)" if self.running else ""
        self.notify(f"concurrency {value}{note}", timeout=2)

    def action_cycle_attempts(self) -> None:
        """Cycle the attempts per row (1, 2, 4, 8): k of pass@k."""
        steps = _ATTEMPT_STEPS
        self.attempts = (
            steps[(steps.index(self.attempts) + 1) % len(steps)] if (self.attempts in steps) else 1
        )
        self._show_info()
        self.notify(f"{self.attempts} attempt(s) per row: pass@{self.attempts}", timeout=2)

    def action_reload_dataset(self) -> None:
        """Read the dataset file again."""
        if self._refuse_while_running("reload the dataset"):
            return
        self.load_dataset()

    # ---- opening rows ------------------------------------------------------------------------

    def action_open_row(self) -> None:
        """Show the trajectory of the highlighted row's last run."""
        index = self._runnable_cursor_index()
        if index is None:
            return
        results = self.results.get(index)
        if not results:
            self.notify(f"row {index} has not run yet: s runs it, d steps it", timeout=3)
            return
        # The first failed attempt is the interesting one; else the last.
        shown = next((r for r in results if not r.passed), results[-1])
        reward = "—" if shown.outcome.reward is None else f"{shown.outcome.reward:.3g}"
        title = (
            f"row {index} · attempt {shown.attempt + 1} · {self.row_status(index)} · "
            f"reward {reward}"
        )
        self.post_message(TrajectoryRequested(shown.outcome, title))

    def action_debug_row(self) -> None:
        """Step the highlighted row in the debugger, one LLM call at a time."""
        index = self._runnable_cursor_index()
        if index is None:
            return
        self.post_message(RowStepRequested(index))

    # ---- batches -----------------------------------------------------------------------------

    def _refuse_while_running(self, what: str) -> bool:
        if self.running:
            self.notify(f"a batch is running: stop it (x) before you {what}", severity="warning")
            return True
        return False

    def action_run_all(self) -> None:
        """Run every good row; with a live model, a few pilot rows and the estimate first."""
        ws = self.workspace
        rows = sorted(self._rows)
        if ws is not None and ws.live_model and len(rows) > PILOT_ROWS and not self.running:
            pilots = rows[:PILOT_ROWS]
            if self.start_batch(pilots, defines=rows):
                self._after_pilots = rows[PILOT_ROWS:]
                self.notify(
                    f"The model is live: {len(pilots)} pilot rows run first, then the estimate "
                    f"of the whole run ({len(rows)} rows) before the rest.",
                    title="Estimate",
                )
            return
        self.start_batch(None)

    def action_run_selected(self) -> None:
        """Run the marked rows (or the highlighted one when none is marked)."""
        chosen = sorted(self.marked) if self.marked else [self.cursor_index()]
        # Bad rows cannot become requests: they are left out, not refused one by one.
        rows = [i for i in chosen if i is not None and i in self._rows]
        if not rows:
            self.notify(
                "nothing to run: mark rows with space (bad rows cannot run)", severity="warning"
            )
            return
        self.start_batch(rows)

    def action_rerun_failed(self) -> None:
        """Run again every row whose last run did not pass."""
        # "Did not pass" covers errors too, and any failed attempt when there were several.
        rows = sorted(i for i, rs in self.results.items() if rs and not all(r.passed for r in rs))
        if not rows:
            self.notify("no failed rows to rerun", timeout=3)
            return
        self.start_batch(rows)

    def action_stop(self) -> None:
        """Stop the batch: no new rows start; rollouts in flight finish."""
        if self._runner is None:
            self.notify("no batch is running", timeout=2)
            return
        self._runner.stop("stopped by user")
        self.progress.stopping = True
        self._flush()

    def start_batch(
        self,
        rows: list[int] | None,
        *,
        defines: list[int] | None = None,
        run_dir: Path | None = None,
    ) -> bool:
        """Start a batch over ``rows`` (``None``: every row); False when it cannot start.

        It is journaled in a new run directory (its ``run.json`` naming the rows ``defines``,
        by default ``rows``), or in ``run_dir`` (the rest of a run whose pilots ran).
        """
        if self._refuse_while_running("start another"):
            return False
        ws = self._ready_workspace("start the batch")
        if ws is None:
            return False
        if not ws.config.dataset:
            self.notify("no dataset: start the workbench with --dataset FILE", severity="error")
            return False
        if ws.human is not None:
            # Every row would wait for an answer nobody is shown: one row at a time instead.
            self.notify(
                "with --model human you answer one rollout at a time: d steps the highlighted "
                "row in the debugger (or record a cassette with --record, then run the batch "
                "with --model replay:FILE)",
                title="Batch not started",
                severity="warning",
                timeout=10,
            )
            return False
        # With rows=None the runner streams the whole file itself; the list here only sizes the
        # progress bar and marks the rows queued.
        selected = rows if rows is not None else sorted(self._rows)
        try:
            runner = ws.batch(
                rows,
                concurrency=self.concurrency,
                attempts=self.attempts,
                on_result=self._result_arrived,
                on_bad_row=self._bad_row_seen,
            )
        except Exception as exc:
            self.notify(str(exc), title="Batch not started", severity="error")
            return False
        self._begin(runner, selected)
        defining = runner.config
        if defines is not None:
            from osmosis_workbench.engine.datasets import RowSelection

            defining = dataclasses.replace(
                defining, selection=RowSelection(rows=frozenset(defines))
            )
        self.run_batch(runner, defining, run_dir)
        return True

    def _begin(self, runner: BatchRunner, rows: list[int]) -> None:
        self._runner = runner
        self._pending.clear()
        self._skipped.difference_update(rows)
        self._running_shown.clear()
        self._waiting = set(rows)
        # A rerun replaces a row's results; rows outside this batch keep theirs (and count in
        # the summary, which covers the latest result of every row).
        for index in rows:
            self.results[index] = []
        self.progress = BatchProgress(total=len(rows) * self.attempts, started=time.perf_counter())
        self.summary = None
        # The last summary stays, dimmed, until this batch's is ready.
        self.summary_pane.add_class("-stale")
        self.progress_bar.update(total=self.progress.total, progress=0)
        self.table.touch_all()  # every selected row is "queued" now
        self._ticker = self.set_interval(
            self.PROGRESS_INTERVAL_S, self._flush, name="dataset-progress"
        )
        if self.progress.total >= _FREEZE_GC_FROM:
            # The objects alive now (the app, the agent, the rows) live on: full collections
            # need not scan them again. Measured: gen-2 passes of 150-250 ms mid-batch without
            # this. (Left frozen: unfreezing brings the pause back at the batch's end.)
            freeze_long_lived_objects()

    @work(exclusive=True, exit_on_error=False, group="dataset-batch")
    async def run_batch(
        self, runner: BatchRunner, defining: EngineConfig | None = None, run_dir: Path | None = None
    ) -> None:
        """Journal ``runner``'s run (see ``start_batch``), run it to its end, show the summary."""
        from osmosis_workbench.engine.journal import JOURNAL_FILE, JournalWriter
        from osmosis_workbench.engine.runs import start_run

        journal = None
        try:
            if run_dir is None:
                run_dir = await asyncio.to_thread(start_run, defining or runner.config)
            journal = await asyncio.to_thread(JournalWriter, run_dir / JOURNAL_FILE)
            self.run_dir = run_dir
        except OSError as exc:  # a read-only folder: the batch still runs, unjournaled
            self.notify(
                f"Could not keep this run in .osmosis/runs ({exc}): it runs, but the runs "
                "screen cannot compare it",
                title="Run not journaled",
                severity="warning",
            )
        runner.journal = journal
        try:
            await runner.run()
        except asyncio.CancelledError:
            # The screen is going away (the app exits): start no more rows.
            runner.stop("cancelled")
            raise
        except Exception as exc:  # an unreadable file, a broken target: report, keep the app
            runner.stop(f"failed: {exc}")
            self.notify(f"{type(exc).__name__}: {exc}", title="Batch failed", severity="error")
        finally:
            if self._ticker is not None:
                self._ticker.stop()
                self._ticker = None
            self._runner = None
            self.progress.finished = time.perf_counter()
            if journal is not None:
                await asyncio.to_thread(journal.close)
        self._flush()
        self._finish(runner)

    def _result_arrived(self, result: JournalEntry) -> None:
        # Called on the loop for every rollout: only queue it, the ticker applies it.
        self._pending.append(result)

    def _bad_row_seen(self, error: RowError) -> None:
        # The runner reads the file again: a row edited into a bad one since is shown so.
        if error.index not in self.bad:
            self.bad[error.index] = error
            self._waiting.discard(error.index)

    def _running_rows(self) -> set[int]:
        """Rows with a rollout in flight now (the trainer labels runs "row N")."""
        trainer = self.workspace.trainer if self.workspace else None
        if trainer is None:
            return set()
        running = set()
        for run in list(trainer.runs.values()):
            label = run.label
            if label.startswith("row ") and label[4:].isdigit():
                running.add(int(label[4:]))
        return running & self._waiting

    def _flush(self) -> None:
        """Apply the results that arrived since the last tick to the table and counters."""
        pending, self._pending = self._pending, []
        changed: set[int] = set()
        progress = self.progress
        for result in pending:
            self.results.setdefault(result.row, []).append(result)
            # A row is done when all its attempts are in.
            if len(self.results[result.row]) >= self.attempts:
                self._waiting.discard(result.row)
            changed.add(result.row)
            progress.done += 1
            if result.passed:
                progress.passed += 1
            elif result.outcome.ok:
                progress.failed += 1
            else:
                progress.errors += 1
        running = self._running_rows() if self._runner is not None else set()
        changed |= running ^ self._running_shown
        self._running_shown = running
        for index in changed:
            self._update_row(index)
        if changed and self.cursor_index() in changed:
            self._show_detail()
        self.progress_bar.update(progress=progress.done)
        self.counts_line.update(progress.describe(len(running)), layout=False)

    def _finish(self, runner: BatchRunner) -> None:
        """Rows never started are shown as skipped; the summary and histogram appear."""
        never_ran, self._waiting = self._waiting, set()
        self._skipped |= never_ran
        self._running_shown = set()
        if never_ran:
            self.table.touch_all()
        self.summary = self.summarize(runner.stopped_early)
        self._show_summary(self.summary)
        progress = self.progress
        self.counts_line.update(progress.describe(0), layout=False)
        if not self.row_filter.empty:
            self._apply_filter()  # statuses and rewards changed under the filter
        if runner.stopped_early:
            self._after_pilots = None
            self.notify(runner.stopped_early, title="Batch stopped", severity="warning")
            return
        kept = f" · kept in {self.run_dir}" if self.run_dir is not None else ""
        self.notify(
            f"{progress.passed}/{progress.done} passed in {progress.elapsed_s:.1f}s{kept}",
            title="Batch done",
        )
        if self._after_pilots is not None:
            self._show_estimate(self._after_pilots)
            self._after_pilots = None

    def _show_estimate(self, rest: list[int]) -> None:
        """The pilots ran: what the whole run would cost; enter runs the other rows."""
        from osmosis_workbench.engine.estimate import project_run

        pilots = [
            entry for index in sorted(self.results) for entry in self.results[index]
            if index not in rest
        ]  # fmt: skip
        ws = self.workspace
        estimate = project_run(
            pilots,
            rollouts=(len(rest) + len({e.row for e in pilots})) * self.attempts,
            concurrency=self.concurrency,
            model=ws.model_name if ws is not None else None,
        )
        if estimate is None or not rest:
            return
        run_dir = self.run_dir

        def run_rest(go: bool | None) -> None:
            if go:
                self.start_batch(rest, run_dir=run_dir)
            else:
                self.notify("Stopped after the pilot rows: r runs every row.", timeout=4)

        self.app.push_screen(EstimateDialog(estimate, len(rest)), run_rest)

    def summarize(self, stopped_early: str | None = None) -> BatchSummary:
        """Statistics over every row's latest results (a rerun replaces a row's results)."""
        k = max((len(rs) for rs in self.results.values()), default=1)
        # Imported here: the app imports this screen on the UI path, the engine off it.
        from osmosis_workbench.engine.summary import summarize

        return summarize(
            (entry for entries in self.results.values() for entry in entries),
            bad_rows=len(self.bad),
            duration_s=self.progress.elapsed_s,
            k=k,
            stopped_early=stopped_early,
        )

    def _show_summary(self, s: BatchSummary) -> None:
        rate = s.passed / s.total if s.total else 0.0

        def number(value: float | None, fmt: str = ".3f") -> str:
            return "—" if value is None else format(value, fmt)

        pass_at_k = f" · pass@{s.k} [b]{number(s.pass_at_k)}[/]" if s.k > 1 else ""
        extra = [f"{s.total_tokens:,} tokens", f"{s.duration_s:.1f}s"]
        if s.protocol_violations:
            extra.append(f"[magenta]{s.protocol_violations} protocol violations[/]")
        if s.stopped_early:
            extra.append(f"[yellow]{escape(s.stopped_early)}[/]")
        lines = [
            f"pass rate [b]{rate:.1%}[/] · [green]{s.passed}[/]/{s.total} passed"
            f" · [magenta]{s.bad_rows}[/] bad row{'' if s.bad_rows == 1 else 's'}",
            f"reward mean [b]{number(s.reward_mean)}[/] · pass@1 {number(s.pass_at_1)}{pass_at_k}",
            f"latency p50 {number(s.latency_p50_ms and s.latency_p50_ms / 1000, '.2f')}s"
            f" · p95 {number(s.latency_p95_ms and s.latency_p95_ms / 1000, '.2f')}s",
            " · ".join(extra),
        ]
        self.query_one("#dataset-summary-text", Static).update("\n".join(lines), layout=False)
        rewards = [r.outcome.reward for rs in self.results.values() for r in rs]
        self.query_one("#dataset-histogram", RewardHistogram).set_rewards(
            [x for x in rewards if x is not None]
        )
        self.summary_pane.remove_class("-stale")
