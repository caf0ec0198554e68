"""``osmosis export RUN --format atif|openai-jsonl|parquet``: a run's rollouts for other tools.

The conversions and the streaming writer are ``engine.export``; this module resolves the run,
names the default output and prints what was written.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from osmosis_workbench.commands.output import ExitCode, print_json, report_error
from osmosis_workbench.engine.runs import DEFAULT_RUNS_DIR

_FORMATS = ("atif", "openai-jsonl", "parquet")


def add_export_parser(subparsers: Any) -> None:
    """Add ``osmosis export`` to the CLI."""
    p = subparsers.add_parser(
        "export",
        help="export a run's rollouts: ATIF trajectories, OpenAI chat JSONL, Parquet",
        description="Write a run's rollouts as ATIF trajectories (one per line), OpenAI chat "
        "fine-tuning JSONL with tools (the rollouts that passed, unless --min-reward), or a "
        "Parquet table of the rollouts. Streams: any run size in bounded memory.",
    )
    p.add_argument("run", metavar="RUN", help="the run: its directory, last, last~1, ...")
    p.add_argument("--format", required=True, choices=_FORMATS, dest="format")
    p.add_argument(
        "-o",
        "--output",
        default=None,
        help="the file to write ('-': stdout, JSONL formats) (default: RUN_NAME.atif.jsonl, "
        "RUN_NAME.openai.jsonl or RUN_NAME.parquet here)",
    )
    p.add_argument(
        "--min-reward",
        type=float,
        default=None,
        help="only the rollouts that completed with at least this reward",
    )
    p.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR, help="where run names are looked up")
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    p.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    """Export the run and say what was written."""
    from osmosis_workbench.engine.export import ExportFormat, export_run
    from osmosis_workbench.engine.runs import resolve_run_dir
    from osmosis_workbench.extras import MissingExtraError

    fmt = ExportFormat(args.format)
    try:
        run_dir = resolve_run_dir(args.run, args.runs_dir)
    except FileNotFoundError as exc:
        return report_error(str(exc), as_json=args.json)
    output = args.output or f"{run_dir.name}{fmt.suffix}"
    if output == "-" and args.json:
        return report_error("--json prints on stdout: give -o PATH with it", as_json=True)
    try:
        result = asyncio.run(
            asyncio.to_thread(export_run, run_dir, fmt, output, min_reward=args.min_reward)
        )
    except (ValueError, MissingExtraError, OSError) as exc:
        return report_error(f"cannot export {run_dir} to {output}: {exc}", as_json=args.json)
    if args.json:
        print_json({**result.to_json(), "run_dir": str(run_dir), "exit_code": 0})
        return ExitCode.OK
    left_out = []
    if result.filtered:
        why = f"reward below {args.min_reward:g}" if args.min_reward is not None else "not passed"
        left_out.append(f"{result.filtered} {why}")
    if result.empty:
        left_out.append(f"{result.empty} without messages")
    note = f" ({'; '.join(left_out)} left out)" if left_out else ""
    # On stderr when the export itself went to stdout.
    stream = sys.stderr if output == "-" else sys.stdout
    print(f"Wrote {result.written} rollouts of {run_dir} to {output}{note}", file=stream)
    return ExitCode.OK
