"""``osmosis test``: run a dataset through an agent over the rollout protocol, score, summarise.

The arguments become one ``EngineConfig`` (``options.resolve_config``); ``wiring.open_engine``
builds the model, the local trainer and the servers from it; a ``BatchRunner`` runs the rows
and journals each rollout in the run directory. Heavy imports (the engine, server_core,
fastapi) happen inside the run functions.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from osmosis_workbench.commands.options import add_engine_options, resolve_config
from osmosis_workbench.commands.report import Progress, result_line, summary_lines, write_results
from osmosis_workbench.engine.config import ConfigError, EngineConfig
from osmosis_workbench.engine.runs import DEFAULT_RUNS_DIR

#: After a batch on remote servers: how long late callbacks may still arrive and be reported.
_LATE_CALLBACK_GRACE_S = 0.5


def add_test_parser(subparsers: Any) -> None:
    """Add ``osmosis test`` to the CLI."""
    p = subparsers.add_parser(
        "test",
        help="run a dataset through an agent (batch, or --interactive to step)",
        description="Run every dataset row through the rollout protocol against the agent "
        "(in-process with -m, or remote servers with --url), score and summarise.",
    )
    add_engine_options(p)
    g = p.add_argument_group("rows")
    g.add_argument("--limit", type=int, default=None, help="run at most this many rows")
    g.add_argument("--offset", type=int, default=None, help="skip this many rows first")
    g.add_argument("--rows", default=None, help="only these rows, e.g. 3,7,10-20 (0-based)")
    g = p.add_argument_group("run")
    g.add_argument("--concurrency", type=int, default=8, help="rollouts at once (default 8)")
    g.add_argument(
        "--n",
        type=int,
        default=None,
        dest="attempts",
        help="attempts per row, for pass@k (default 1)",
    )
    g.add_argument("--max-turns", type=int, default=None)
    g.add_argument("--temperature", type=float, default=None)
    g.add_argument("--max-tokens", type=int, default=None)
    g.add_argument(
        "--reward",
        metavar="MODULE:FN",
        default=None,
        help="score final trajectories with this function instead of the agent's reward",
    )
    g.add_argument(
        "--pass-threshold",
        type=float,
        default=None,
        help="a row passes when its reward reaches this (default 1.0)",
    )
    g = p.add_argument_group("output")
    g.add_argument("-o", "--output", default=None, help="write all results to this JSON file")
    g.add_argument(
        "--runs-dir",
        default=DEFAULT_RUNS_DIR,
        help=f"where run directories go (default {DEFAULT_RUNS_DIR})",
    )
    g.add_argument(
        "--resume",
        metavar="RUN",
        default=None,
        help="continue an interrupted run (its directory, or 'last')",
    )
    g.add_argument(
        "--retry-failed",
        metavar="RUN",
        default=None,
        help="rerun only the failed rollouts of a run (its directory, or 'last')",
    )
    g.add_argument(
        "--fresh",
        action="store_true",
        help="with --resume/--retry-failed: start a new run (with the earlier run's options "
        "where not given) instead of continuing that one",
    )
    g.add_argument("-q", "--quiet", action="store_true", help="only the summary")
    g = p.add_argument_group("interactive")
    g.add_argument(
        "--interactive",
        action="store_true",
        help="open the workbench to step through rollouts (n/c/m/t/q)",
    )
    g.add_argument(
        "--row",
        type=int,
        default=None,
        help="with --interactive: open this row in the step debugger",
    )
    p.set_defaults(handler=run_test)


@dataclass
class _RunState:
    """What an interrupted run says on the way out: where it is and how far it got."""

    run_dir: Path | None = None
    journaled: int = 0
    planned: int | None = None


def run_test(args: argparse.Namespace) -> int:
    """Run a batch (or open the workbench with --interactive)."""
    if args.interactive:
        from osmosis_workbench.commands.workbench_cmd import run_workbench

        return run_workbench(args)
    from osmosis_workbench.engine.datasets import DatasetError
    from server_core import ImportFromStringError

    state = _RunState()
    try:
        return asyncio.run(_run_batch(args, state))
    except (ConfigError, DatasetError, ImportFromStringError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if state.run_dir is None:
            raise  # nothing ran yet: the plain "Interrupted."
        of = f" of {state.planned}" if state.planned is not None else ""
        print(
            f"Interrupted: {state.journaled}{of} rollouts are in its journal.\n"
            f"Run directory: {state.run_dir}\n"
            f"Resume with: {resume_command(args, state.run_dir)}",
            file=sys.stderr,
        )
        return 130


def resume_command(args: argparse.Namespace, run_dir: Path) -> str:
    """The ``osmosis test`` command that continues ``run_dir`` as this one would have run.

    run.json holds what defines the run; the options it does not keep are repeated (keys are
    not printed: the command asks for them again).
    """
    argv = ["osmosis", "test", "--resume", str(run_dir)]
    for option, value, default in (
        ("--concurrency", args.concurrency, 8),
        ("--rollout-timeout", args.rollout_timeout, None),
        ("--base-url", args.base_url, None),
        ("--record", args.record, None),
        ("--trainer-host", args.trainer_host, "127.0.0.1"),
        ("--trainer-port", args.trainer_port, 0),
        ("--output", args.output, None),
    ):
        if value != default:
            argv += [option, str(value)]
    if args.quiet:
        argv.append("--quiet")
    for option in ("--api-key", "--server-api-key", "--model-api-key"):
        if getattr(args, option[2:].replace("-", "_")):
            argv += [option, "KEY"]
    return shlex.join(argv).replace("'KEY'", "KEY")


#: The options a run records in run.json that a resume or retry takes when not given again.
_RECORDED = (
    "module",
    "dataset",
    "model",
    "limit",
    "offset",
    "rows",
    "attempts",
    "max_turns",
    "temperature",
    "max_tokens",
    "reward",
    "pass_threshold",
)


def _earlier_run(args: argparse.Namespace) -> tuple[Path | None, dict[str, Any]]:
    """For --resume/--retry-failed: the earlier run's directory and ``run.json``.

    What the user did not say again comes from the earlier run.
    """
    from osmosis_workbench.engine.runs import read_run_file, resolve_run_dir

    ref = args.resume or args.retry_failed
    if not ref:
        return None, {}
    if args.resume and args.retry_failed:
        raise ConfigError("use --resume or --retry-failed, not both")
    try:
        run_dir = resolve_run_dir(ref, args.runs_dir)
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    info = read_run_file(run_dir)
    for name in _RECORDED:
        if getattr(args, name, None) is None and info.get(name) is not None:
            setattr(args, name, info[name])
    if not args.url and info.get("url"):
        args.url = info["url"]
    dataset = info.get("dataset")
    if args.dataset == dataset and dataset and not Path(dataset).is_file():
        raise ConfigError(
            f"the dataset of run {run_dir} ({dataset}) is not there any more: "
            "give it again with -d FILE"
        )
    return run_dir, info


async def _pinned_run(
    args: argparse.Namespace, config: EngineConfig, earlier_dir: Path | None, info: dict[str, Any]
) -> tuple[Path | None, dict[str, Any]]:
    """The run directory to continue, checked against what defines it (``None``: a new run).

    A run continued with another dataset, other rows, another agent, model or number of
    attempts would mix two runs in one journal: refused, each difference named.
    """
    from osmosis_workbench.engine.runs import RunDefinition, dataset_digest

    assert config.dataset is not None
    definition = RunDefinition.of(config, await asyncio.to_thread(dataset_digest, config.dataset))
    if earlier_dir is None or args.fresh:
        return None, definition.to_json()
    pinned = info.get("definition")
    # (A run.json written before runs were pinned cannot be checked.)
    differences = RunDefinition.from_json(pinned).differences(definition) if pinned else []
    if differences:
        listed = "\n  ".join(differences)
        raise ConfigError(
            f"run {earlier_dir} was made with other options; continuing it would mix two runs "
            f"in its journal. What differs:\n  {listed}\n"
            "Give the run's own options again, or add --fresh to start a new run with these."
        )
    return earlier_dir, definition.to_json()


def _config(args: argparse.Namespace) -> EngineConfig:
    """The run's config from the arguments (rows, run options and all)."""
    from osmosis_workbench.engine.datasets import RowSelection, parse_row_spec

    try:
        selection = RowSelection(
            offset=args.offset or 0,
            limit=args.limit,
            rows=frozenset(parse_row_spec(args.rows)) if args.rows else None,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return resolve_config(
        args,
        need_dataset=True,
        selection=selection,
        concurrency=args.concurrency,
        attempts=1 if args.attempts is None else args.attempts,
        max_turns=args.max_turns,
        temperature=args.temperature,
        max_tokens=args.max_tokens,
        reward=args.reward,
        pass_threshold=1.0 if args.pass_threshold is None else args.pass_threshold,
    )


def _run_info(
    args: argparse.Namespace, config: EngineConfig, definition: dict[str, Any]
) -> dict[str, Any]:
    """What ``run.json`` records of a run: its options, and what defines it."""
    assert config.dataset is not None
    return {
        "definition": definition,
        "module": config.module,
        "url": list(config.urls),
        "dataset": str(Path(config.dataset).resolve()),
        "model": config.model,
        "limit": args.limit,
        "offset": args.offset,
        "rows": args.rows,
        "attempts": config.attempts,
        "max_turns": config.max_turns,
        "temperature": config.temperature,
        "max_tokens": config.max_tokens,
        "reward": config.reward,
        "pass_threshold": config.pass_threshold,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


async def _run_batch(args: argparse.Namespace, state: _RunState) -> int:
    from osmosis_workbench.engine.batch import BatchRunner, run_tag_for
    from osmosis_workbench.engine.datasets import RowError, count_rows
    from osmosis_workbench.engine.journal import (
        JOURNAL_FILE,
        JournalEntry,
        JournalWriter,
        read_journal,
    )
    from osmosis_workbench.engine.runs import new_run_dir, write_run_file
    from osmosis_workbench.engine.summary import summarize
    from osmosis_workbench.engine.wiring import open_engine
    from server_core.serve import raise_open_files_limit

    earlier_dir, info = _earlier_run(args)
    config = _config(args)
    assert config.dataset is not None
    if config.model == "human":
        raise ConfigError(
            "--model human needs the workbench to answer in: add --interactive, or run "
            "osmosis-workbench"
        )
    reward_fn = config.load_reward_fn()
    earlier_dir, definition = await _pinned_run(args, config, earlier_dir, info)

    skip: set[tuple[int, int]] = set()
    only: set[tuple[int, int]] | None = None
    earlier: dict[tuple[int, int], JournalEntry] = {}
    if earlier_dir is not None:
        earlier = await asyncio.to_thread(read_journal, earlier_dir)
        if args.resume:
            skip = set(earlier)
        else:
            only = {key for key, entry in earlier.items() if not entry.passed}
            if not only:
                print(f"No failed rollouts in {earlier_dir}; nothing to retry.")
                return 0
    total_rows = await asyncio.to_thread(count_rows, config.dataset)
    # (An unreadable file is not counted: the runner says what is wrong with it.)
    empty = total_rows is not None and config.selection.why_empty(total_rows, config.dataset)
    if empty:
        raise ConfigError(f"nothing to run: {empty}")
    if earlier_dir is not None:
        run_dir = earlier_dir
    else:
        run_dir = await asyncio.to_thread(new_run_dir, args.runs_dir, Path(config.dataset).stem)
        await asyncio.to_thread(write_run_file, run_dir, _run_info(args, config, definition))
    state.run_dir = run_dir

    out = (lambda *_: None) if args.quiet else print
    # The counter's total: the rollouts that will run (bad rows are taken off as they are met).
    total = None
    if total_rows is not None:
        total = config.selection.selected_count(total_rows) * config.attempts
        if only is not None:
            total = len(only)
        elif skip:
            total = max(0, total - len(skip))

    progress = Progress(total, not args.quiet)
    counter = 0
    # Whole entries only when they are written out (-o); the summary needs a few fields.
    keep = (lambda entry: entry) if args.output else JournalEntry.without_trajectory
    entries = {key: keep(entry) for key, entry in earlier.items()}
    state.journaled = len(entries)
    if total_rows is not None:
        state.planned = config.selection.selected_count(total_rows) * config.attempts

    def on_result(entry: JournalEntry) -> None:
        nonlocal counter
        counter += 1
        entries[entry.key] = keep(entry)
        state.journaled = len(entries)
        progress.done = counter
        progress.failed += 0 if entry.passed else 1
        progress.clear()
        out(
            result_line(entry, f"[{counter}/{total}]" if total else f"[{counter}]", config.attempts)
        )
        if not entry.outcome.ok and entry.outcome.traceback and not args.quiet:
            last = entry.outcome.traceback.strip().splitlines()[-1]
            out(f"      {last}")
        progress.draw()

    def on_bad_row(error: RowError) -> None:
        nonlocal total
        if total is not None and only is None:  # (a retry's total counts journaled rows only)
            total = progress.total = max(0, total - config.attempts)
        progress.clear()
        print(f"Skipped bad {error.message}", file=sys.stderr)
        progress.draw()

    raise_open_files_limit()  # --concurrency 1000 against remote servers holds 1000 sockets
    journal = await asyncio.to_thread(JournalWriter, run_dir / JOURNAL_FILE)
    if journal.torn_bytes:
        print(
            f"Note: the journal's last line was torn (the run was stopped mid-write): "
            f"{journal.torn_bytes} bytes cut off; that rollout runs again.",
            file=sys.stderr,
        )
    started = time.perf_counter()
    try:
        notice = lambda text: print(text, file=sys.stderr)  # noqa: E731
        async with open_engine(config, on_notice=notice) as engine:
            problem = await engine.preflight()
            if problem:
                # Final (a key, the model name): one line with the fix, no row run.
                print(f"Error: {problem}", file=sys.stderr)
                return 2
            out(f"Model: {config.model}")
            runner = BatchRunner(
                engine.trainer,
                engine.targets,
                config,
                reward_fn=reward_fn,
                only=only,
                skip=skip,
                journal=journal,
                on_result=on_result,
                on_bad_row=on_bad_row,
                run_tag=run_tag_for(config.dataset),
                keep_results=False,
            )
            await runner.run()
            if engine.remote:
                # Remote servers: give late callbacks (a second completion, a chat after
                # the end) a moment to arrive, so the conformance check reports them.
                await asyncio.sleep(_LATE_CALLBACK_GRACE_S)
            late_violations = list(engine.trainer.late_violations)
    finally:
        await asyncio.to_thread(journal.close)
        progress.clear()

    summary = summarize(
        entries.values(),
        bad_rows=len(runner.bad_rows),
        duration_s=time.perf_counter() - started,
        k=config.attempts,
        stopped_early=runner.stopped_early,
    )
    for rollout_id, message in late_violations:
        print(f"Protocol violation after rollout {rollout_id!r} ended: {message}")
    summary.protocol_violations += len(late_violations)
    print("\n".join(summary_lines(summary)))
    print(f"Run directory: {run_dir}")
    if runner.stopped_early:
        # The rows it never got to (and rollouts its servers dropped) are not journaled.
        print(f"Resume with: {resume_command(args, run_dir)}")
    if args.output:
        await asyncio.to_thread(
            write_results, args.output, summary, entries.values(), runner.bad_rows
        )
        print(f"Results: {args.output}")
    return 0 if summary.all_passed else 1
