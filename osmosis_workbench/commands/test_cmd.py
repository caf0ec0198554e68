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
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from osmosis_workbench.commands.options import add_engine_options, resolve_config
from osmosis_workbench.commands.output import ExitCode, print_json, report_error
from osmosis_workbench.commands.report import (
    Progress,
    result_line,
    results_document,
    summary_lines,
    write_results,
)
from osmosis_workbench.engine.config import ConfigError, EngineConfig
from osmosis_workbench.engine.runs import DEFAULT_RUNS_DIR

if TYPE_CHECKING:
    from collections.abc import Iterable

    from osmosis_workbench.engine.estimate import RunEstimate
    from osmosis_workbench.engine.journal import JournalEntry
    from osmosis_workbench.engine.wiring import Engine

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
    g.add_argument(
        "--estimate",
        nargs="?",
        type=int,
        const=3,
        default=None,
        metavar="PILOTS",
        help="run the first PILOTS rows (default 3) and project the whole run's tokens, cost "
        "and time; the pilots stay in the run, which --resume continues",
    )
    g.add_argument(
        "--max-cost",
        type=float,
        default=None,
        metavar="USD",
        help="stop taking rows once the run's spend reaches USD (rollouts in flight finish; "
        "--resume continues)",
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
    g.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document at the end (summary and every rollout, no messages)",
    )
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
    """Run a batch (``--interactive`` opens the workbench instead: see ``cli.main``)."""
    from osmosis_workbench.engine.datasets import DatasetError
    from server_core import ImportFromStringError

    state = _RunState()
    try:
        return asyncio.run(_run_batch(args, state))
    except (ConfigError, DatasetError, ImportFromStringError) as exc:
        return report_error(str(exc), as_json=args.json)
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
        return ExitCode.INTERRUPTED


def resume_command(args: argparse.Namespace, run_dir: Path, *, raise_cap: bool = False) -> str:
    """The ``osmosis test`` command that continues ``run_dir`` as this one would have run.

    run.json holds what defines the run; the options it does not keep are repeated (keys are
    not printed: the command asks for them again). ``raise_cap``: the run stopped at its
    ``--max-cost``, so the command asks for a higher one (``--max-cost USD``).
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
        ("--max-cost", args.max_cost, None),
    ):
        if value != default:
            argv += [option, str(value)]
    for flag in ("quiet", "json"):
        if getattr(args, flag):
            argv.append(f"--{flag}")
    for option in ("--api-key", "--server-api-key", "--model-api-key"):
        if getattr(args, option[2:].replace("-", "_")):
            argv += [option, "KEY"]
    if raise_cap:
        argv[argv.index("--max-cost") + 1] = "USD"
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
        max_cost_usd=args.max_cost,
    )


def _run_info(
    args: argparse.Namespace, config: EngineConfig, definition: dict[str, Any]
) -> dict[str, Any]:
    """What ``run.json`` records of a run: its options, and what defines it."""
    from osmosis_workbench.engine.runs import run_record

    return run_record(config, definition, limit=args.limit, offset=args.offset, rows=args.rows)


async def _run_batch(args: argparse.Namespace, state: _RunState) -> int:
    from osmosis_workbench.engine.batch import BatchRunner, run_tag_for
    from osmosis_workbench.engine.datasets import RowError, count_rows
    from osmosis_workbench.engine.estimate import pilot_config
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
    if args.estimate is not None and earlier_dir is not None:
        raise ConfigError(
            "--estimate starts a new run: drop --resume/--retry-failed (or --estimate)"
        )
    if args.estimate is not None and args.estimate < 1:
        raise ConfigError("--estimate PILOTS needs at least 1 pilot row")
    config = _config(args)
    assert config.dataset is not None
    if config.model == "human":
        raise ConfigError(
            "--model human needs the workbench to answer in: add --interactive, or run "
            "osmosis-workbench"
        )
    reward_fn = config.load_reward_fn()
    earlier_dir, definition = await _pinned_run(args, config, earlier_dir, info)
    # What runs now: the pilots only with --estimate, else the whole selection.
    run_config = config if args.estimate is None else pilot_config(config, args.estimate)

    skip: set[tuple[int, int]] = set()
    only: set[tuple[int, int]] | None = None
    earlier: dict[tuple[int, int], JournalEntry] = {}
    spent_before = 0.0
    if earlier_dir is not None:
        earlier = await asyncio.to_thread(read_journal, earlier_dir)
        spent_before = sum(e.outcome.cost_usd or 0.0 for e in earlier.values())
        if config.max_cost_usd is not None and spent_before >= config.max_cost_usd:
            raise ConfigError(
                f"run {earlier_dir} has spent ${spent_before:.4f}, which reaches --max-cost "
                f"${config.max_cost_usd:g}: give a higher --max-cost to continue it"
            )
        if args.resume:
            skip = set(earlier)
        else:
            only = {key for key, entry in earlier.items() if not entry.passed}
            if not only:
                if args.json:
                    print_json({"run_dir": str(earlier_dir), "nothing_to_retry": True})
                else:
                    print(f"No failed rollouts in {earlier_dir}; nothing to retry.")
                return ExitCode.OK
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

    out = (lambda *_: None) if args.quiet or args.json else print
    # The counter's total: the rollouts that will run (bad rows are taken off as they are met).
    total = None
    if total_rows is not None:
        total = run_config.selection.selected_count(total_rows) * run_config.attempts
        if only is not None:
            total = len(only)
        elif skip:
            total = max(0, total - len(skip))

    progress = Progress(total, not (args.quiet or args.json))
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
        if not entry.outcome.ok and entry.outcome.traceback:
            last = entry.outcome.traceback.strip().splitlines()[-1]
            out(f"      {last}")
        progress.draw()

    def on_bad_row(error: RowError) -> None:
        nonlocal total
        if total is not None and only is None:  # (a retry's total counts journaled rows only)
            total = progress.total = max(0, total - run_config.attempts)
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
    #: The model or the servers could not be set up: no row ran, the new run is not kept.
    unused = False
    entered = False
    try:
        notice = lambda text: print(text, file=sys.stderr)  # noqa: E731
        async with open_engine(config, on_notice=notice) as engine:
            entered = True
            problem = await engine.preflight() or await _unpriced(engine, config)
            if problem:
                # Final (a key, the model name): one line with the fix, no row run.
                unused = True
                return report_error(problem, as_json=args.json)
            out(f"Model: {config.model}")
            runner = BatchRunner(
                engine.trainer,
                engine.targets,
                run_config,
                reward_fn=reward_fn,
                only=only,
                skip=skip,
                journal=journal,
                on_result=on_result,
                on_bad_row=on_bad_row,
                run_tag=run_tag_for(config.dataset),
                keep_results=False,
                spent_usd=spent_before,
            )
            await runner.run()
            if engine.remote:
                # Remote servers: give late callbacks (a second completion, a chat after
                # the end) a moment to arrive, so the conformance check reports them.
                await asyncio.sleep(_LATE_CALLBACK_GRACE_S)
            late_violations = list(engine.trainer.late_violations)
    except ConfigError:
        unused = not entered  # (a bad model or server, met while the engine opened)
        raise
    finally:
        await asyncio.to_thread(journal.close)
        progress.clear()
        if unused and earlier_dir is None:
            # Exit 2 runs nothing: leave no empty run for `--resume last` to find.
            await asyncio.to_thread(shutil.rmtree, run_dir, True)
            state.run_dir = None

    summary = summarize(
        entries.values(),
        bad_rows=len(runner.bad_rows),
        duration_s=time.perf_counter() - started,
        k=config.attempts,
        stopped_early=runner.stopped_early,
    )
    summary.protocol_violations += len(late_violations)
    if runner.stopped_early:
        code = ExitCode.INCOMPLETE
    else:
        code = ExitCode.OK if summary.all_passed else ExitCode.FAILED
    estimate = None
    if args.estimate is not None:
        estimate = _estimate(config, entries.values(), state.planned)
        code = ExitCode.OK if estimate is not None else ExitCode.FAILED
    if args.output:
        await asyncio.to_thread(
            write_results, args.output, summary, entries.values(), runner.bad_rows
        )
    resume = None
    if runner.stopped_early or estimate:
        resume = resume_command(args, run_dir, raise_cap=runner.over_budget)
    if args.json:
        document = results_document(summary, entries.values(), runner.bad_rows, trajectories=False)
        print_json(
            {
                "run_dir": str(run_dir),
                "model": config.model,
                **document,
                "late_protocol_violations": [
                    {"rollout_id": rollout_id, "message": message}
                    for rollout_id, message in late_violations
                ],
                "estimate": estimate.to_json() if estimate is not None else None,
                "resume_command": resume,
                "exit_code": int(code),
            }
        )
        return code
    for rollout_id, message in late_violations:
        print(f"Protocol violation after rollout {rollout_id!r} ended: {message}")
    print("\n".join(summary_lines(summary)))
    if args.estimate is not None:
        print("\n".join(estimate.lines()) if estimate else "No pilot row ran: nothing to project.")
    print(f"Run directory: {run_dir}")
    if resume:
        # The rows it never got to (and rollouts its servers dropped) are not journaled.
        print(f"{'Run the rest' if estimate else 'Resume'} with: {resume}")
    if args.output:
        print(f"Results: {args.output}")
    return code


async def _unpriced(engine: Engine, config: EngineConfig) -> str | None:
    """Why ``--max-cost`` cannot be kept with this model (``None``: it can, or no cap)."""
    from osmosis_workbench.engine.models import LiveBackend
    from osmosis_workbench.engine.pricing import price_of

    if config.max_cost_usd is None or not isinstance(engine.model_backend, LiveBackend):
        return None  # replayed and scripted answers cost nothing
    if await asyncio.to_thread(price_of, config.model) is not None:
        return None
    return (
        f"--max-cost: the price of {config.model} is unknown (it is not in litellm's price "
        "map), so its spend cannot be counted; drop --max-cost, or use a model the map prices"
    )


def _estimate(
    config: EngineConfig, entries: Iterable[JournalEntry], planned: int | None
) -> RunEstimate | None:
    """The whole run projected from the pilots that ran (``None``: none did)."""
    from osmosis_workbench.engine.estimate import project_run

    pilots = list(entries)
    return project_run(
        pilots,
        rollouts=planned if planned is not None else len(pilots),
        concurrency=config.concurrency,
        model=config.model,
    )
