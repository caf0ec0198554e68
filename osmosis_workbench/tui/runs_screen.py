"""The Runs screen: the runs kept in ``.osmosis/runs``, one run's rollouts, two runs compared.

Every batch of ``osmosis test`` and of the dataset screen is a run directory. The list shows
them newest first; ``a`` and ``b`` pick the two to compare (``c``), enter opens one run's
rollouts. The comparison (``engine.compare.compare_runs``, in a thread) lists the rollouts
that changed, regressions first, under the pass rate, mean reward and pass@k of both runs with
the paired difference and its 95 % bootstrap interval. Enter on a changed rollout shows both
trajectories side by side, their cursors moving together, the first message that differs
marked (``engine.compare.first_difference``); ``o``/``O`` open A's or B's in the debugger,
where search, copy and export work on it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import ContentSwitcher, Static

from osmosis_workbench.tui.commands import ScreenCommands
from osmosis_workbench.tui.messages import TrajectoryRequested
from osmosis_workbench.tui.screen_base import WorkbenchScreen
from osmosis_workbench.tui.widgets.dataset_table import Column, RowTable
from osmosis_workbench.tui.widgets.message_format import format_reward
from osmosis_workbench.tui.widgets.message_list import MessageList
from osmosis_workbench.tui.widgets.side_by_side import SideBySide

if TYPE_CHECKING:
    from osmosis_workbench.engine.compare import RowComparison, RunComparison
    from osmosis_workbench.engine.journal import JournalEntry
    from osmosis_workbench.engine.runs import RunInfo

_RUN_COLUMNS = [
    Column("pick", "", 3),
    Column("name", "run", 0, min_width=20),
    Column("started", "started", 19),
    Column("model", "model", 0, min_width=12),
]
_CHANGE_COLUMNS = [
    Column("row", "row", 5, "right"),
    Column("attempt", "try", 3, "right"),
    Column("change", "change", 10),
    Column("a", "A", 12),
    Column("b", "B", 12),
    Column("delta", "Δ reward", 8, "right"),
    Column("diff", "differs from", 0, min_width=10),
]
_ROLLOUT_COLUMNS = [
    Column("row", "row", 5, "right"),
    Column("attempt", "try", 3, "right"),
    Column("verdict", "verdict", 7),
    Column("reward", "reward", 7, "right"),
    Column("tokens", "tokens", 7, "right"),
    Column("error", "error · fork", 0),
]
_CHANGE_STYLES = {
    "regressed": "bold red",
    "worse": "red",
    "improved": "bold green",
    "better": "green",
    "trajectory": "yellow",
}
_VERDICT_STYLES = {"pass": "green", "fail": "red", "error": "bold red"}


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _side(entry: JournalEntry | None) -> Text:
    """One run's side of a changed rollout: its verdict and reward."""
    if entry is None:
        return Text("—", style="dim")
    verdict = entry.verdict.value
    return Text(
        f"{verdict} {format_reward(entry.outcome.reward)}", style=_VERDICT_STYLES.get(verdict, "")
    )


class RunsCommands(ScreenCommands):
    """The runs screen's palette: its keys (the app adds open run and compare runs)."""


class RunsScreen(WorkbenchScreen):
    """Kept runs: pick two and compare them, open one's rollouts, read two trajectories."""

    TITLE = "Runs"
    COMMANDS: ClassVar[set] = {RunsCommands}
    AUTO_FOCUS = "#runs-table"

    BINDINGS: ClassVar = [
        Binding("a", "pick('a')", "Pick A", tooltip="Compare from this run (the before)",
                id="runs.pick_a"),
        Binding("b", "pick('b')", "Pick B", tooltip="Compare to this run (the after)",
                id="runs.pick_b"),
        Binding("c", "compare", "Compare", tooltip="Compare run B with run A",
                id="runs.compare"),
        Binding("o", "open('a')", "Open A", tooltip="A's trajectory in the debugger (search, "
                "copy, export there)", id="runs.open_a"),
        Binding("O", "open('b')", "Open B", tooltip="B's trajectory in the debugger",
                id="runs.open_b"),
        Binding("d", "first_difference", "First diff",
                tooltip="Both cursors to the first message that differs", id="runs.first_diff"),
        Binding("tab", "other_side", "Other side", show=False,
                tooltip="Move between A's and B's trajectory", id="runs.other_side"),
        Binding("l", "reload", "Reload", show=False, tooltip="List the runs again",
                id="runs.reload"),
        Binding("escape", "back", "Back", tooltip="Back to the comparison, or to the list",
                id="runs.back"),
    ]  # fmt: skip

    def __init__(self, runs_dir: str | Path | None = None) -> None:
        super().__init__()
        from osmosis_workbench.engine.runs import DEFAULT_RUNS_DIR

        #: Where the runs are (``osmosis test --runs-dir``'s default).
        self.runs_dir = Path(runs_dir or DEFAULT_RUNS_DIR)
        self.runs: list[RunInfo] = []
        self.picked: dict[str, Path] = {}
        self.comparison: RunComparison | None = None
        #: The run whose rollouts the run view lists, and them (without their messages).
        self.open_run: Path | None = None
        self.rollouts: dict[str, JournalEntry] = {}
        #: The two entries the side-by-side view shows, and where they first differ.
        self.pair: tuple[JournalEntry | None, JournalEntry | None] = (None, None)
        self.difference: int | None = None
        #: The runs the two sides come from, and the view the pair was opened from (a
        #: comparison of two runs, or one run's fork beside its parent).
        self.pair_runs: tuple[RunInfo | None, RunInfo | None] = (None, None)
        self.pair_from = "compare-view"
        self._changes: dict[str, RowComparison] = {}
        #: Runs asked for before the screen was mounted (the palette opens it so).
        self._chosen: tuple[Path | None, Path] | None = None

    # ---- layout -------------------------------------------------------------------------------

    def compose_body(self) -> ComposeResult:
        yield Static(id="runs-info")
        with ContentSwitcher(id="runs-views", initial="runs-view"):
            with Vertical(id="runs-view"):
                yield RowTable(
                    _RUN_COLUMNS,
                    self._run_cells,
                    empty_text="No runs yet: r on the dataset screen (2) or osmosis test makes one",
                    id="runs-table",
                )
            with Vertical(id="compare-view"):
                yield Static(id="compare-summary")
                yield RowTable(
                    _CHANGE_COLUMNS,
                    self._change_cells,
                    empty_text="No rollout changed between the two runs.",
                    id="changes-table",
                )
            with Vertical(id="run-view"):
                yield RowTable(
                    _ROLLOUT_COLUMNS,
                    self._rollout_cells,
                    empty_text="This run has no journaled rollout.",
                    id="rollouts-table",
                )
            yield SideBySide(id="pair-view")

    @property
    def views(self) -> ContentSwitcher:
        """Switches between the runs, a comparison, one run and two trajectories."""
        return self.query_one("#runs-views", ContentSwitcher)

    @property
    def runs_table(self) -> RowTable:
        """The kept runs, newest first."""
        return self.query_one("#runs-table", RowTable)

    @property
    def changes_table(self) -> RowTable:
        """The rollouts that changed between the two runs, regressions first."""
        return self.query_one("#changes-table", RowTable)

    @property
    def rollouts_table(self) -> RowTable:
        """One run's rollouts."""
        return self.query_one("#rollouts-table", RowTable)

    @property
    def side_by_side(self) -> SideBySide:
        """The two trajectories of a changed rollout."""
        return self.query_one("#pair-view", SideBySide)

    def pair_list(self, side: str) -> MessageList:
        """Side ``a`` or ``b``'s messages in the side-by-side view."""
        return self.side_by_side.list(side)

    @property
    def current_view(self) -> str | None:
        """The id of the view on screen."""
        return self.views.current

    def on_mount(self) -> None:
        self.query_one("#runs-view").border_title = "Runs"
        self.load_runs()
        if self._chosen is not None:
            self._choose(*self._chosen)

    def on_screen_resume(self) -> None:
        """A batch may have finished since: list the runs again (the picks stay)."""
        if self.current_view == "runs-view":
            self.load_runs()
        elif self.current_view == "run-view" and self.open_run is not None:
            self.open_rollouts(self.open_run)  # a fork may have joined it since

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Show the keys of the view on screen only."""
        view = self.current_view
        if action == "pick" or action == "reload":
            return view == "runs-view"
        if action == "compare":
            return view == "runs-view" and len(self.picked) == 2
        if action == "open":
            side = parameters[0] if parameters else "a"
            if view == "pair-view":
                return self.pair[0 if side == "a" else 1] is not None
            return view == "run-view" and side == "a"
        if action in ("first_difference", "other_side"):
            return view == "pair-view"
        if action == "back":
            return view != "runs-view"
        return True

    def _show(self, view: str, focus: str) -> None:
        self.views.current = view
        self.query_one(focus).focus()
        self.refresh_bindings()
        self._show_info()

    # ---- the runs -----------------------------------------------------------------------------

    @work(exclusive=True, group="runs-list", exit_on_error=False, description="list the runs")
    async def load_runs(self) -> None:
        """Read the runs directory (off the loop) and list its runs, newest first."""
        from osmosis_workbench.engine.runs import RunInfo, list_run_dirs

        def read() -> list[RunInfo]:
            return [RunInfo.read(path) for path in reversed(list_run_dirs(self.runs_dir))]

        self.runs = await asyncio.to_thread(read)
        table = self.runs_table
        current = table.cursor_key
        table.clear()
        table.add_rows([str(info.run_dir) for info in self.runs])
        if current is not None and current in table:
            table.move_cursor(current)
        self._show_info()

    def _run_cells(self, key: str) -> list[Text]:
        info = next((r for r in self.runs if str(r.run_dir) == key), None)
        picks = "".join(
            side.upper() for side, path in sorted(self.picked.items()) if str(path) == key
        )
        if info is None:
            return [Text(picks), Text(key), Text(""), Text("")]
        return [
            Text(picks, style="bold cyan"),
            Text(info.name),
            Text((info.started or "").replace("T", " ")),
            Text(info.model or "—"),
        ]

    def _show_info(self) -> None:
        info = Text(no_wrap=True, overflow="ellipsis")
        view = self.current_view
        if view == "runs-view":
            info.append(f"{len(self.runs)} runs in {self.runs_dir}", style="bold")
            for side in ("a", "b"):
                path = self.picked.get(side)
                info.append(f" · {side.upper()}: ")
                info.append(path.name if path else "a/b picks", style="cyan" if path else "dim")
        elif view == "run-view" and self.open_run is not None:
            info.append(f"run {self.open_run.name}", style="bold")
            info.append(f" · {len(self.rollouts)} rollouts · enter: its trajectory")
        elif view == "pair-view" and self.pair_from == "run-view":
            fork = self.pair[1]
            if fork is not None and fork.fork is not None:
                info.append(f"row {fork.row}: its fork at LLM call {fork.fork.forked_at}", "bold")
                info.append(" beside its parent (A)")
            info.append(
                " · the trajectories are the same"
                if self.difference is None
                else f" · they part at message {self.difference}",
                style="yellow",
            )
        elif self.comparison is not None:
            c = self.comparison
            info.append(f"A {c.a.info.name}", style="bold")
            info.append(" → ")
            info.append(f"B {c.b.info.name}", style="bold")
            if view == "compare-view":
                info.append(" · enter: the two trajectories", style="dim")
            shown = self.pair[0] or self.pair[1]
            if view == "pair-view" and shown is not None:
                info.append(f" · row {shown.row} attempt {shown.attempt + 1}")
                info.append(
                    " · the trajectories are the same"
                    if self.difference is None
                    else f" · they part at message {self.difference}",
                    style="yellow",
                )
        self.query_one("#runs-info", Static).update(info)

    def choose_runs(self, run_a: Path | None, run_b: Path) -> None:
        """Compare ``run_b`` with ``run_a``, or open ``run_b`` alone (the palette's commands)."""
        if not self.is_mounted:
            self._chosen = (run_a, run_b)
        else:
            self._choose(run_a, run_b)

    def _choose(self, run_a: Path | None, run_b: Path) -> None:
        self._chosen = None
        if run_a is None:
            self.open_rollouts(run_b)
        else:
            self.picked = {"a": run_a, "b": run_b}
            self.runs_table.touch_all()
            self.compare(run_a, run_b)

    def action_pick(self, side: str) -> None:
        """Make the highlighted run side ``side`` of the comparison."""
        key = self.runs_table.cursor_key
        if key is None:
            return
        first_pair = len(self.picked) == 1 and side not in self.picked
        self.picked[side] = Path(key)
        self.runs_table.touch_all()
        self.refresh_bindings()
        self._show_info()
        if first_pair:
            self.notify("c compares B with A", timeout=3)

    def action_compare(self) -> None:
        """Compare run B with run A."""
        if len(self.picked) == 2:
            self.compare(self.picked["a"], self.picked["b"])

    def action_reload(self) -> None:
        """List the runs again."""
        self.load_runs()

    @on(RowTable.RowSelected, "#runs-table")
    def _run_selected(self, event: RowTable.RowSelected) -> None:
        self.open_rollouts(Path(event.key))

    # ---- one run ------------------------------------------------------------------------------

    @work(exclusive=True, group="runs", exit_on_error=False, description="read the run")
    async def open_rollouts(self, run_dir: Path) -> None:
        """List the rollouts of ``run_dir`` (their messages are read when one is opened)."""
        from osmosis_workbench.engine.journal import iter_latest, read_forks

        def read() -> dict[str, JournalEntry]:
            found = {f"{e.row}/{e.attempt}": e.without_trajectory() for e in iter_latest(run_dir)}
            # Forks (F in the debugger, osmosis fork) after the run's own rollouts.
            for number, fork in enumerate(read_forks(run_dir)):
                found[f"fork/{number}"] = fork.without_trajectory()
            return found

        try:
            self.rollouts = await asyncio.to_thread(read)
        except OSError as exc:
            self.notify(f"Could not read {run_dir}: {exc}", severity="error")
            return
        table = self.rollouts_table
        # The same run again (back from the debugger): the cursor stays on its rollout.
        current = table.cursor_key if self.open_run == run_dir else None
        self.open_run = run_dir
        table.clear()
        table.add_rows(list(self.rollouts))
        if current is not None and current in table:
            table.move_cursor(current)
        self._show("run-view", "#rollouts-table")

    def _rollout_cells(self, key: str) -> list[Text]:
        entry = self.rollouts[key]
        outcome = entry.outcome
        verdict = entry.verdict.value
        return [
            Text(str(entry.row)),
            Text(str(entry.attempt + 1)),
            Text(verdict, style=_VERDICT_STYLES.get(verdict, "")),
            Text(format_reward(outcome.reward)),
            Text(str(outcome.tokens)),
            Text.assemble(
                (f"fork at call {entry.fork.forked_at} of {entry.fork.parent} ", "cyan")
                if entry.fork is not None
                else "",
                (" ".join((outcome.error or "").split()), "red"),
            ),
        ]

    @on(RowTable.RowSelected, "#rollouts-table")
    def _rollout_selected(self, event: RowTable.RowSelected) -> None:
        if self.open_run is None:
            return
        if event.key.startswith("fork/"):
            self.open_fork(self.open_run, int(event.key.removeprefix("fork/")))
            return
        entry = self.rollouts[event.key]
        self._open_in_debugger(self.open_run, entry.row, entry.attempt)

    @work(exclusive=True, group="runs", exit_on_error=False, description="read the fork")
    async def open_fork(self, run_dir: Path, number: int) -> None:
        """Fork ``number`` of the run (its forks.jsonl) beside its parent."""
        from osmosis_workbench.engine.journal import read_entry, read_forks
        from osmosis_workbench.engine.runs import RunInfo

        def read() -> tuple[JournalEntry | None, JournalEntry, RunInfo]:
            forks = read_forks(run_dir)
            fork = forks[number]
            assert fork.fork is not None
            parent_id = fork.fork.parent
            # The parent: the run's rollout of that row, or an earlier fork of it.
            parent = read_entry(run_dir, fork.row, fork.attempt)
            if parent is None or parent.outcome.rollout_id != parent_id:
                parent = next((f for f in forks if f.outcome.rollout_id == parent_id), parent)
            return parent, fork, RunInfo.read(run_dir)

        try:
            parent, fork, run = await asyncio.to_thread(read)
        except (OSError, IndexError) as exc:
            self.notify(f"Could not read the fork in {run_dir}: {exc}", severity="error")
            return
        self.show_pair(
            parent,
            fork,
            titles=(
                f"A: the parent · {'not found' if parent is None else _side(parent).plain}",
                f"B: the fork · {_side(fork).plain}",
            ),
            runs=(run, run),
            came_from="run-view",
        )

    # ---- two runs -----------------------------------------------------------------------------

    @work(exclusive=True, group="runs", exit_on_error=False, description="compare the runs")
    async def compare(self, run_a: Path, run_b: Path) -> None:
        """Compare ``run_b`` with ``run_a`` (off the loop) and show what changed."""
        from osmosis_workbench.engine.compare import compare_runs

        try:
            comparison = await asyncio.to_thread(compare_runs, run_a, run_b)
        except OSError as exc:
            self.notify(f"Could not compare the runs: {exc}", severity="error")
            return
        self.comparison = comparison
        self._changes = {f"{r.row}/{r.attempt}": r for r in comparison.rows}
        self.query_one("#compare-summary", Static).update(self._summary(comparison))
        table = self.changes_table
        table.clear()
        table.add_rows(list(self._changes))
        self._show("compare-view", "#changes-table")

    @staticmethod
    def _summary(c: RunComparison) -> Text:
        """The metrics of both runs, the paired difference and its interval, the counts."""
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"{c.matched} rollouts in both", style="bold")
        counts = [f"{n} {change.value.replace('_', ' ')}" for change, n in c.counts.items() if n]
        text.append(" · " + " · ".join(counts) + "\n")
        text.append(f"{'':<12}{'A':>8}{'B':>8}{'B − A':>9}   95% interval\n", style="dim")
        for metric in c.metrics.values():
            delta = metric.delta
            style = "" if not delta else ("green" if delta > 0 else "red")
            text.append(f"{metric.name:<12}{_number(metric.a):>8}{_number(metric.b):>8}")
            text.append(f"{'—' if delta is None else f'{delta:+.3f}':>9}", style=style)
            if delta is not None:
                text.append(f"   [{metric.ci_low:+.3f}, {metric.ci_high:+.3f}]", style="dim")
            text.append("\n")
        for warning in c.warnings:
            text.append(f"⚠ {warning}\n", style="yellow")
        text.rstrip()
        return text

    def _change_cells(self, key: str) -> list[Text]:
        change = self._changes[key]
        delta = change.reward_delta
        return [
            Text(str(change.row)),
            Text(str(change.attempt + 1)),
            Text(
                change.change.value.replace("_", " "), style=_CHANGE_STYLES.get(change.change, "")
            ),
            _side(change.a),
            _side(change.b),
            Text("" if delta is None else f"{delta:+.3g}"),
            Text("" if change.first_difference is None else f"message {change.first_difference}"),
        ]

    @on(RowTable.RowSelected, "#changes-table")
    def _change_selected(self, event: RowTable.RowSelected) -> None:
        change = self._changes[event.key]
        self.open_pair(change.row, change.attempt)

    @work(exclusive=True, group="runs", exit_on_error=False, description="read the rollouts")
    async def open_pair(self, row: int, attempt: int) -> None:
        """Both runs' trajectories of (``row``, ``attempt``) side by side."""
        from osmosis_workbench.engine.journal import read_entry

        comparison = self.comparison
        if comparison is None:
            return
        run_a, run_b = comparison.a.info.run_dir, comparison.b.info.run_dir
        assert run_a is not None and run_b is not None
        a, b = await asyncio.gather(
            asyncio.to_thread(read_entry, run_a, row, attempt),
            asyncio.to_thread(read_entry, run_b, row, attempt),
        )
        self.show_pair(
            a,
            b,
            titles=(
                f"A: {'not in this run' if a is None else _side(a).plain}",
                f"B: {'not in this run' if b is None else _side(b).plain}",
            ),
            runs=(comparison.a.info, comparison.b.info),
            came_from="compare-view",
        )

    def show_pair(
        self,
        a: JournalEntry | None,
        b: JournalEntry | None,
        *,
        titles: tuple[str, str],
        runs: tuple[RunInfo | None, RunInfo | None],
        came_from: str,
    ) -> None:
        """Two rollouts side by side, on the first message that differs."""
        self.pair, self.pair_runs, self.pair_from = (a, b), runs, came_from
        found = self.side_by_side.set_pair(
            a.outcome.final_messages if a is not None else [],
            b.outcome.final_messages if b is not None else [],
            titles=titles,
        )
        self.difference = found.index if found is not None else None
        self._show("pair-view", "#pair-list-a")
        self.action_first_difference()

    def action_first_difference(self) -> None:
        """Both cursors to the first message that differs (or the first message)."""
        self.side_by_side.to_first_difference()

    def action_other_side(self) -> None:
        """Move between A's and B's trajectory."""
        self.side_by_side.other_side()

    def action_open(self, side: str) -> None:
        """The trajectory in the debugger: A's or B's, or the run view's highlighted one."""
        if self.current_view == "run-view" and self.open_run is not None:
            key = self.rollouts_table.cursor_key
            if key is not None and key.startswith("fork/"):
                self._open_fork_in_debugger(self.open_run, int(key.removeprefix("fork/")))
            elif key is not None:
                listed = self.rollouts[key]
                self._open_in_debugger(self.open_run, listed.row, listed.attempt)
            return
        entry = self.pair[0 if side == "a" else 1]
        run = self.pair_runs[0 if side == "a" else 1]
        if entry is not None and run is not None:
            self._post_trajectory(entry, run, side.upper())

    @work(group="runs-open", exit_on_error=False, description="read the rollout")
    async def _open_in_debugger(self, run_dir: Path, row: int, attempt: int) -> None:
        from osmosis_workbench.engine.journal import read_entry
        from osmosis_workbench.engine.runs import RunInfo

        entry = await asyncio.to_thread(read_entry, run_dir, row, attempt)
        if entry is None:
            self.notify(f"row {row} is no longer in {run_dir}", severity="warning")
            return
        self._post_trajectory(entry, await asyncio.to_thread(RunInfo.read, run_dir), "")

    @work(group="runs-open", exit_on_error=False, description="read the fork")
    async def _open_fork_in_debugger(self, run_dir: Path, number: int) -> None:
        from osmosis_workbench.engine.journal import read_forks
        from osmosis_workbench.engine.runs import RunInfo

        forks = await asyncio.to_thread(read_forks, run_dir)
        if number >= len(forks):
            self.notify(f"that fork is no longer in {run_dir}", severity="warning")
            return
        self._post_trajectory(forks[number], await asyncio.to_thread(RunInfo.read, run_dir), "")

    def _post_trajectory(self, entry: JournalEntry, run: RunInfo, side: str) -> None:
        label = f"{side} " if side else ""
        fork = f" · fork at call {entry.fork.forked_at}" if entry.fork is not None else ""
        title = (
            f"{label}{run.name} · row {entry.row} · attempt {entry.attempt + 1}{fork} · "
            f"{entry.verdict.value} · reward {format_reward(entry.outcome.reward)}"
        )
        self.post_message(TrajectoryRequested(entry.outcome, title, entry=entry, run=run))

    def action_back(self) -> None:
        """From the trajectories to the comparison; from a comparison or a run to the list."""
        view = self.current_view
        if view == "pair-view" and self.pair_from == "run-view" and self.open_run is not None:
            self._show("run-view", "#rollouts-table")
        elif view == "pair-view" and self.comparison is not None:
            self._show("compare-view", "#changes-table")
        else:
            self._show("runs-view", "#runs-table")
            self.load_runs()
