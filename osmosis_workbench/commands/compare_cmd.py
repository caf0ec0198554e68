"""``osmosis compare RUN_A RUN_B``: what changed between two runs, and whether it is noise.

The comparison itself is ``engine.compare``; this module resolves the run names, prints and
picks the exit code (1 when any rollout that passed in A does not pass in B).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING, Any

from osmosis_workbench.commands.output import ExitCode, print_json, report_error
from osmosis_workbench.engine.runs import DEFAULT_RUNS_DIR

if TYPE_CHECKING:
    from osmosis_workbench.engine.compare import MetricComparison, RowComparison, RunComparison
    from osmosis_workbench.engine.journal import JournalEntry

#: How each kind of change is headed in the listing.
_HEADINGS = {
    "regressed": "Regressed: passed in A, not in B",
    "improved": "Improved: passed in B, not in A",
    "worse": "Worse: the same pass, a lower reward or an error",
    "better": "Better: the same pass, a higher reward or no error",
    "trajectory": "Trajectory changed, same score",
    "only_in_a": "Only in A",
    "only_in_b": "Only in B",
    "same": "Same",
}


def add_compare_parser(subparsers: Any) -> None:
    """Add ``osmosis compare`` to the CLI."""
    p = subparsers.add_parser(
        "compare",
        help="compare two runs: regressions, improvements, paired differences",
        description="Match the rollouts of two runs by dataset row and attempt; list what "
        "changed (regressions first) and the paired differences of pass rate, mean reward "
        "and pass@k with 95%% bootstrap intervals. Exits 1 when any rollout regressed.",
    )
    p.add_argument("run_a", metavar="RUN_A", help="the baseline run: a directory, last, last~1")
    p.add_argument("run_b", metavar="RUN_B", help="the run compared with it")
    p.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR, help="where run names are looked up")
    p.add_argument("--all", action="store_true", help="list unchanged rollouts too")
    p.add_argument("--seed", type=int, default=0, help="the bootstrap's seed (default 0)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.set_defaults(handler=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    """Compare the two runs and print the result."""
    from osmosis_workbench.engine.compare import compare_runs
    from osmosis_workbench.engine.runs import resolve_run_dir

    try:
        run_a = resolve_run_dir(args.run_a, args.runs_dir)
        run_b = resolve_run_dir(args.run_b, args.runs_dir)
    except FileNotFoundError as exc:
        return report_error(str(exc), as_json=args.json)
    comparison = asyncio.run(
        asyncio.to_thread(compare_runs, run_a, run_b, seed=args.seed, keep_same=args.all)
    )
    if comparison.matched == 0:
        return report_error(
            f"runs {run_a} and {run_b} have no rollout in common (no dataset row and attempt "
            "ran in both): compare two runs of the same dataset",
            as_json=args.json,
        )
    code = ExitCode.FAILED if comparison.regressions else ExitCode.OK
    if args.json:
        print_json({**comparison.to_json(), "exit_code": int(code)})
    else:
        print("\n".join(comparison_lines(comparison)))
    return code


def comparison_lines(c: RunComparison) -> list[str]:
    """The text report of a comparison."""
    lines = [
        f"{name}: {side.info.run_dir}  ({side.info.model or 'model unknown'}, "
        f"{side.rollouts} rollouts)"
        for name, side in (("A", c.a), ("B", c.b))
    ]
    lines += [f"Warning: {w}" for w in c.warnings]
    counted = ", ".join(
        f"{c.counts[change]} {change.value.replace('_', ' ')}"
        for change in c.counts
        if c.counts[change] or change.value in ("regressed", "improved", "same")
    )
    lines.append(f"{c.matched} rollouts in both runs: {counted}.")
    groups: dict[str, list[RowComparison]] = {}
    for row in c.rows:
        groups.setdefault(row.change.value, []).append(row)
    for change, rows in groups.items():
        lines += ["", f"{_HEADINGS[change]} ({len(rows)}):"]
        lines += [_row_line(row, c.k) for row in rows]
    for side in ("a", "b"):
        errored = c.errored_only_in(side)
        if errored:
            lines += ["", f"Errored in {side.upper()} only ({len(errored)}):"]
            for row in errored:
                entry = row.a if side == "a" else row.b
                assert entry is not None
                error = (entry.outcome.error or "").partition("\n")[0][:200]
                lines.append(
                    f"  {_where(row, c.k):<12} {entry.outcome.error_category or 'error'}: {error}"
                )
    lines += ["", f"  {'':<13}{'A':>8}{'B':>9}{'B - A':>10}   95% CI"]
    for metric in c.metrics.values():
        if metric.name.startswith("pass@") and c.k == 1:
            continue  # pass@1 is the pass rate
        lines.append(_metric_line(metric))
    paired = max(m.rows for m in c.metrics.values())
    lines.append(
        f"Paired over {paired} dataset rows (mean reward: rows with a reward in both); "
        f"bootstrap over rows, {c.resamples} resamples, seed {c.seed}."
    )
    return lines


def _where(row: RowComparison, k: int) -> str:
    return f"row {row.row}" + (f" #{row.attempt + 1}" if k > 1 or row.attempt else "")


def _side(entry: JournalEntry | None) -> str:
    if entry is None:
        return "-"
    if entry.verdict.value == "error":
        return f"ERROR {entry.outcome.error_category or ''}".rstrip()
    reward = entry.outcome.reward
    return f"{entry.verdict.value.upper()} {reward:g}" if reward is not None else "PASS"


def _row_line(row: RowComparison, k: int) -> str:
    line = f"  {_where(row, k):<12} {_side(row.a):<16} -> {_side(row.b):<16}"
    delta = row.reward_delta
    if delta:
        line += f" reward {delta:+g}"
    if row.first_difference is not None:
        line += f"  (messages differ from #{row.first_difference})"
    return line.rstrip()


def _metric_line(m: MetricComparison) -> str:
    def shown(value: float | None, signed: bool = False) -> str:
        if value is None:
            return "-"
        return f"{value:+.3f}" if signed else f"{value:.3f}"

    ci = f"[{shown(m.ci_low, True)}, {shown(m.ci_high, True)}]" if m.delta is not None else ""
    return f"  {m.name:<13}{shown(m.a):>8}{shown(m.b):>9}{shown(m.delta, True):>10}   {ci}".rstrip()
