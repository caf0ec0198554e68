"""``osmosis rescore``: new rewards for a finished run's trajectories, without calling a model.

Heavy imports (the engine, server_core) happen inside the run function.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from osmosis_workbench.commands.output import ExitCode, print_json, report_error
from osmosis_workbench.commands.report import (
    result_line,
    results_document,
    summary_lines,
    write_results,
)
from osmosis_workbench.engine.config import ConfigError, EngineConfig
from osmosis_workbench.engine.runs import DEFAULT_RUNS_DIR


def add_rescore_parser(subparsers: Any) -> None:
    """Add ``osmosis rescore`` to the CLI."""
    p = subparsers.add_parser(
        "rescore",
        help="recompute the rewards of a finished run, without calling a model",
    )
    p.add_argument("run", help="the run directory (or 'last')")
    p.add_argument("--reward", metavar="MODULE:FN", required=True)
    p.add_argument("--pass-threshold", type=float, default=1.0)
    p.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR)
    p.add_argument("-o", "--output", default=None, help="also write the results to this JSON")
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document (summary and every rollout, no messages)",
    )
    p.set_defaults(handler=run_rescore)


def run_rescore(args: argparse.Namespace) -> int:
    """Recompute rewards of a run's journal with another reward function."""
    return asyncio.run(_rescore(args))


async def _rescore(args: argparse.Namespace) -> int:
    from osmosis_workbench.engine.journal import JournalWriter, read_journal
    from osmosis_workbench.engine.runs import resolve_run_dir
    from osmosis_workbench.engine.scoring import rescore_outcome
    from osmosis_workbench.engine.summary import summarize

    try:
        run_dir = resolve_run_dir(args.run, args.runs_dir)
        reward_fn = EngineConfig(reward=args.reward).load_reward_fn()
    except (FileNotFoundError, ConfigError) as exc:
        return report_error(str(exc), as_json=args.json)
    assert reward_fn is not None
    entries = await asyncio.to_thread(read_journal, run_dir)
    if not entries:
        return report_error(f"{run_dir} has no journal entries to rescore", as_json=args.json)
    started = time.perf_counter()
    k = max(attempt for _, attempt in entries) + 1
    rescored = {}
    for key in sorted(entries):
        entry = entries[key]
        if entry.outcome.rollout_completed:
            metadata = entry.request.get("metadata") or {}
            outcome = await rescore_outcome(entry.outcome, reward_fn, entry.ground_truth, metadata)
            entry = entry.rescored(outcome, args.pass_threshold)
        rescored[key] = entry
        if not args.json:
            # The line `osmosis test` prints: a failed reward function shows its reason.
            print(result_line(entry, "", k))
    out_path = run_dir / f"rescored-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
    writer = JournalWriter(out_path)
    for entry in rescored.values():
        writer.write(entry)
    await asyncio.to_thread(writer.close)
    summary = summarize(
        rescored.values(), bad_rows=0, duration_s=time.perf_counter() - started, k=k
    )
    if args.output:
        await asyncio.to_thread(write_results, args.output, summary, rescored.values())
    code = ExitCode.OK if summary.all_passed else ExitCode.FAILED
    if args.json:
        document = results_document(summary, rescored.values(), trajectories=False)
        print_json(
            {
                "run_dir": str(run_dir),
                "rescored_journal": str(out_path),
                **document,
                "exit_code": int(code),
            }
        )
        return code
    print("\n".join(summary_lines(summary)))
    print(f"Rescored journal: {out_path}")
    return code
