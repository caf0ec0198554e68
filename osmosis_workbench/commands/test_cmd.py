"""``osmosis test`` (batch runs over a dataset) and ``osmosis rescore`` (new rewards, no model).

Heavy imports (the engine, server_core, fastapi) happen inside the run functions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_RUNS_DIR = ".osmosis/runs"
#: After a batch on remote servers: how long late callbacks may still arrive and be reported.
_LATE_CALLBACK_GRACE_S = 0.5
CASSETTE_NAME = "cassette.jsonl"


def add_model_options(p: argparse.ArgumentParser) -> None:
    """The model options shared by ``osmosis test`` and ``osmosis-workbench``."""
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        default=None,
        help="'openai/NAME' (or a bare NAME), any litellm 'provider/name', "
        "'replay:FILE' (a recorded cassette), 'script:FILE' (answers per row and turn) or "
        "'human' (you answer; workbench only) (default: the cassette.jsonl next to the "
        "dataset or the agent module)",
    )
    g.add_argument(
        "--base-url",
        default=None,
        help="an OpenAI-compatible server (vLLM, SGLang, Ollama...), e.g. http://localhost:8000/v1",
    )
    g.add_argument(
        "--model-api-key",
        default=None,
        help="model provider key (default: the provider's environment variable)",
    )
    g.add_argument(
        "--record",
        metavar="FILE",
        default=None,
        help="write every model exchange to this cassette, for later replay",
    )


def _add_server_options(p: argparse.ArgumentParser, *, module_required: bool = False) -> None:
    g = p.add_argument_group("rollout server (one of -m or --url)")
    g.add_argument(
        "-m",
        "--module",
        metavar="MODULE:ATTR",
        default=None,
        required=module_required,
        help="serve this agent loop in-process",
    )
    g.add_argument(
        "--url",
        action="append",
        default=[],
        help="a remote rollout server (repeat to spread rows over several)",
    )
    g.add_argument(
        "--api-key",
        default=None,
        help="with --url: the rollout servers' key; otherwise: the model's key",
    )
    g.add_argument("--server-api-key", default=None, help="the rollout servers' key")
    g.add_argument(
        "--trainer-host",
        default="127.0.0.1",
        help="with --url: address the local trainer listens on (servers call it)",
    )
    g.add_argument(
        "--trainer-port",
        type=int,
        default=0,
        help="with --url: port of the local trainer (default: a free one)",
    )


def add_test_parser(subparsers: Any) -> None:
    """Add ``osmosis test`` to the CLI."""
    p = subparsers.add_parser(
        "test",
        help="run a dataset through an agent (batch, or --interactive to step)",
        description="Run every dataset row through the rollout protocol against the agent "
        "(in-process with -m, or remote servers with --url), score and summarise.",
    )
    _add_server_options(p)
    p.add_argument(
        "-d",
        "--dataset",
        default=None,
        help=".jsonl, .json, .parquet or .csv with system_prompt, user_prompt, ground_truth",
    )
    add_model_options(p)
    g = p.add_argument_group("rows")
    g.add_argument("--limit", type=int, default=None, help="run at most this many rows")
    g.add_argument("--offset", type=int, default=0, help="skip this many rows first")
    g.add_argument("--rows", default=None, help="only these rows, e.g. 3,7,10-20 (0-based)")
    g = p.add_argument_group("run")
    g.add_argument("--concurrency", type=int, default=8, help="rollouts at once (default 8)")
    g.add_argument(
        "--n", type=int, default=1, dest="attempts", help="attempts per row, for pass@k (default 1)"
    )
    g.add_argument("--rollout-timeout", type=float, default=600.0, metavar="SECONDS")
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
        default=1.0,
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
    p.set_defaults(handler=run_rescore)


# ---- helpers shared with the workbench command ----------------------------------------------


class UsageError(Exception):
    """A bad combination of options; the message names the fix."""


def default_model(dataset: str | None, module: str | None) -> str | None:
    """The default model: a ``cassette.jsonl`` next to the dataset or the agent's module."""
    candidates: list[Path] = []
    if dataset:
        candidates.append(Path(dataset).resolve().parent / CASSETTE_NAME)
    if module:
        parts = module.partition(":")[0].split(".")
        candidates.append(Path.cwd().joinpath(*parts[:-1]) / CASSETTE_NAME)
    for path in candidates:
        if path.is_file():
            try:
                return f"replay:{path.relative_to(Path.cwd())}"
            except ValueError:
                return f"replay:{path}"
    return None


def keys(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """(model key, server key) from --api-key/--model-api-key/--server-api-key."""
    model_key = args.model_api_key
    server_key = args.server_api_key
    if args.api_key:
        if args.url:
            server_key = server_key or args.api_key
        else:
            model_key = model_key or args.api_key
    return model_key, server_key


def make_backend(args: argparse.Namespace, model: str) -> Any:
    """The model backend for ``model`` with the CLI's base URL, key and recording."""
    from osmosis_workbench.engine.models import create_backend

    model_key, _ = keys(args)
    return create_backend(
        model,
        base_url=args.base_url,
        api_key=model_key,
        record_to=args.record,
        on_notice=lambda notice: print(notice, file=sys.stderr),
    )


async def preflight(backend: Any, model: str) -> str | None:
    """One tiny call to a live model before a batch; a systemic error's message, else None."""
    from osmosis_workbench.engine.models import LiveBackend, ModelError

    # Straight to the live model: a recorder must not write the probe into the cassette.
    live = getattr(backend, "inner", backend)
    if not isinstance(live, LiveBackend):
        return None  # replay, script, human: nothing to reach
    try:
        await live.probe()
    except ModelError as exc:
        if exc.systemic:
            return str(exc)
    return None


def _fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "-"
    return f"{ms:.0f}ms" if ms < 10_000 else f"{ms / 1000:.1f}s"


def result_line(result: Any, index: int, total: int | None, attempts: int) -> str:
    """``[3/10] Row 2: OK (248ms, 30 tokens)`` and its failure forms."""
    o = result.outcome
    where = f"Row {result.row}" + (f" #{result.attempt + 1}" if attempts > 1 else "")
    counter = f"[{index}/{total}]" if total else f"[{index}]"
    stats = f"({_fmt_ms(o.duration_ms)}, {o.tokens} tokens)"
    if result.passed:
        reward = f" reward {o.reward:g}" if o.reward is not None else ""
        line = f"{counter} {where}: OK{reward} {stats}"
    elif o.ok:
        line = f"{counter} {where}: FAILED reward {o.reward:g} {stats}"
    else:
        category = f"{o.error_category}: " if o.error_category else ""
        line = f"{counter} {where}: ERROR {category}{(o.error or '').splitlines()[0][:300]} {stats}"
    if o.violations:
        line += f"\n      protocol violations: {'; '.join(o.violations)}"
    return line


def summary_lines(s: Any) -> list[str]:
    """The ``Summary:`` block."""
    lines = [
        "Summary:",
        f"  Total: {s.total}",
        f"  Passed: {s.passed}",
        f"  Failed: {s.failed}",
    ]
    if s.bad_rows:
        lines.append(f"  Bad rows: {s.bad_rows} (skipped; listed above)")
    lines += [f"  Duration: {s.duration_s:.2f}s", f"  Total tokens: {s.total_tokens}"]
    if s.reward_mean is not None:
        lines.append(f"  Reward mean: {s.reward_mean:.3f}")
    if s.pass_at_k is not None:
        if s.k > 1:
            lines.append(f"  pass@1: {s.pass_at_1:.3f}  pass@{s.k}: {s.pass_at_k:.3f}")
        else:
            lines.append(f"  pass@1: {s.pass_at_k:.3f}")
    if s.latency_p50_ms is not None:
        lines.append(
            f"  Latency p50/p95: {_fmt_ms(s.latency_p50_ms)} / {_fmt_ms(s.latency_p95_ms)}"
        )
    if s.cost_usd is not None:
        lines.append(f"  Cost: ${s.cost_usd:.4f}")
    if s.protocol_violations:
        lines.append(f"  Protocol violations: {s.protocol_violations}")
    if s.stopped_early:
        lines.append(f"  {s.stopped_early}")
    return lines


class _Progress:
    """A one-line progress bar under the result lines, only on a terminal."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled and bool(total) and sys.stdout.isatty()
        self.done = 0
        self.failed = 0
        self.started = time.perf_counter()

    def clear(self) -> None:
        if self.enabled:
            sys.stdout.write("\r\033[K")

    def draw(self) -> None:
        if not self.enabled or not self.total:
            return
        width = 30
        filled = int(width * self.done / self.total)
        rate = self.done / max(1e-9, time.perf_counter() - self.started)
        sys.stdout.write(
            f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
            f"failed {self.failed}  {rate:.1f}/s"
        )
        sys.stdout.flush()


# ---- osmosis test ---------------------------------------------------------------------------


def run_test(args: argparse.Namespace) -> int:
    """Run a batch (or open the workbench with --interactive)."""
    if args.interactive:
        from osmosis_workbench.commands.workbench_cmd import run_workbench

        return run_workbench(args)
    try:
        return asyncio.run(_run_batch(args))
    except UsageError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2


def _resolve_run_options(args: argparse.Namespace) -> tuple[Path | None, dict[str, Any]]:
    """For --resume/--retry-failed: the earlier run's directory and its recorded options."""
    from osmosis_workbench.engine.journal import read_run_file, resolve_run_dir

    ref = args.resume or args.retry_failed
    if not ref:
        return None, {}
    if args.resume and args.retry_failed:
        raise UsageError("use --resume or --retry-failed, not both")
    try:
        run_dir = resolve_run_dir(ref, args.runs_dir)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    info = read_run_file(run_dir)
    # What the user did not say again comes from the earlier run.
    for name in (
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
    ):
        if getattr(args, name, None) in (None, [], 0) and info.get(name) not in (None, []):
            setattr(args, name, info[name])
    if not args.url and info.get("url"):
        args.url = info["url"]
    return run_dir, info


async def _run_batch(args: argparse.Namespace) -> int:
    from osmosis_workbench.engine.batch import BatchOptions, BatchRunner, slim_entry, summarize
    from osmosis_workbench.engine.datasets import (
        DatasetError,
        RowSelection,
        count_rows,
        parse_row_spec,
    )
    from osmosis_workbench.engine.journal import (
        JOURNAL_FILE,
        JournalWriter,
        new_run_dir,
        read_journal,
        write_run_file,
    )
    from osmosis_workbench.engine.trainer import LocalTrainer
    from server_core.loader import ImportFromStringError, import_from_string

    earlier_dir, _ = _resolve_run_options(args)
    if not args.module and not args.url:
        raise UsageError("give the agent with -m MODULE:ATTR, or remote servers with --url URL")
    if args.module and args.url:
        raise UsageError("-m and --url exclude each other: test in-process or remote, not both")
    if not args.dataset:
        raise UsageError("give a dataset with -d FILE (.jsonl, .json, .parquet or .csv)")
    if not Path(args.dataset).is_file():
        raise UsageError(
            f"dataset {args.dataset!r} not found: give the path of a .jsonl, .json, .parquet "
            "or .csv file with system_prompt, user_prompt and ground_truth columns"
        )
    try:
        selection = RowSelection(
            offset=args.offset or 0,
            limit=args.limit,
            rows=frozenset(parse_row_spec(args.rows)) if args.rows else None,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.concurrency < 1 or args.attempts < 1:
        raise UsageError("--concurrency and --n must be at least 1")

    model = args.model or default_model(args.dataset, args.module)
    if model is None:
        raise UsageError(
            "no model: pass --model provider/name (e.g. openai/gpt-4o-mini, with its API key "
            "in the environment) or --model replay:FILE for a recorded cassette"
        )
    reward_fn = None
    if args.reward:
        try:
            reward_fn = import_from_string(args.reward)
        except ImportFromStringError as exc:
            raise UsageError(f"--reward: {exc}") from None

    skip: set[tuple[int, int]] = set()
    only: set[tuple[int, int]] | None = None
    earlier: dict[tuple[int, int], dict[str, Any]] = {}
    if earlier_dir is not None:
        earlier = await asyncio.to_thread(read_journal, earlier_dir)
        if args.resume:
            skip = set(earlier)
        else:
            only = {key for key, entry in earlier.items() if not entry.get("passed")}
            if not only:
                print(f"No failed rollouts in {earlier_dir}; nothing to retry.")
                return 0
    run_dir = earlier_dir or await asyncio.to_thread(
        new_run_dir, args.runs_dir, Path(args.dataset).stem
    )
    info = {
        "module": args.module,
        "url": args.url,
        "dataset": str(Path(args.dataset).resolve()),
        "model": model,
        "limit": args.limit,
        "offset": args.offset,
        "rows": args.rows,
        "attempts": args.attempts,
        "max_turns": args.max_turns,
        "temperature": args.temperature,
        "max_tokens": args.max_tokens,
        "reward": args.reward,
        "pass_threshold": args.pass_threshold,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if earlier_dir is None:
        await asyncio.to_thread(write_run_file, run_dir, info)

    if model == "human":
        raise UsageError(
            "--model human needs the workbench to answer in: add --interactive, or run "
            "osmosis-workbench"
        )
    try:
        backend = make_backend(args, model)
    except Exception as exc:
        raise UsageError(f"--model {model!r}: {exc}") from None
    out = (lambda *_: None) if args.quiet else print
    problem = await preflight(backend, model)
    if problem:
        # Final (a key, the model name): one line with the fix, no row run, no retries.
        print(f"Error: {problem}", file=sys.stderr)
        await backend.aclose()
        return 2
    out(f"Model: {model}")

    total_rows = await asyncio.to_thread(count_rows, args.dataset)
    total = None
    if total_rows is not None:
        total = selection.selected_count(total_rows) * args.attempts
        if only is not None:
            total = len(only)
        elif skip:
            total = max(0, total - len(skip))

    options = BatchOptions(
        dataset=Path(args.dataset),
        selection=selection,
        concurrency=args.concurrency,
        attempts=args.attempts,
        rollout_timeout_s=args.rollout_timeout,
        max_turns=args.max_turns,
        temperature=args.temperature,
        max_tokens=args.max_tokens,
        reward_fn=reward_fn,
        pass_threshold=args.pass_threshold,
        only=only,
        skip=skip,
    )
    progress = _Progress(total, not args.quiet)
    counter = 0
    # Whole entries only when they are written out (-o); the summary needs a few fields.
    keep = (lambda entry: entry) if args.output else slim_entry
    entries = {key: keep(entry) for key, entry in earlier.items()}

    def on_result(result: Any) -> None:
        nonlocal counter
        counter += 1
        entries[(result.row, result.attempt)] = keep(result.journal_entry())
        progress.done = counter
        progress.failed += 0 if result.passed else 1
        progress.clear()
        out(result_line(result, counter, total, args.attempts))
        if not result.outcome.ok and result.outcome.traceback and not args.quiet:
            last = result.outcome.traceback.strip().splitlines()[-1]
            out(f"      {last}")
        progress.draw()

    def on_bad_row(error: Any) -> None:
        progress.clear()
        print(f"Skipped bad {error.message}", file=sys.stderr)
        progress.draw()

    from server_core.serve import raise_open_files_limit

    raise_open_files_limit()  # --concurrency 1000 against remote servers holds 1000 sockets
    trainer = LocalTrainer(backend)
    journal = JournalWriter(run_dir / JOURNAL_FILE)
    started = time.perf_counter()
    runner: Any = None
    try:
        targets, embedded = await _targets(args, trainer)
        runner = BatchRunner(
            trainer,
            targets,
            options,
            journal=journal,
            on_result=on_result,
            on_bad_row=on_bad_row,
            run_tag=run_dir.name[-8:],
            keep_results=False,
        )
        try:
            await runner.run()
            if embedded is None:
                # Remote servers: give late callbacks (a second completion, a chat after
                # the end) a moment to arrive, so the conformance check reports them.
                await asyncio.sleep(_LATE_CALLBACK_GRACE_S)
        finally:
            if embedded is not None:
                await embedded.__aexit__(None, None, None)
    except DatasetError as exc:
        progress.clear()
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    except ImportFromStringError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    finally:
        await asyncio.to_thread(journal.close)
        await trainer.aclose()
        progress.clear()

    summary = summarize(
        list(entries.values()),
        bad_rows=len(runner.bad_rows),
        duration_s=time.perf_counter() - started,
        k=args.attempts,
        stopped_early=runner.stopped_early,
    )
    for rollout_id, message in trainer.late_violations:
        print(f"Protocol violation after rollout {rollout_id!r} ended: {message}")
    summary.protocol_violations += len(trainer.late_violations)
    print("\n".join(summary_lines(summary)))
    print(f"Run directory: {run_dir}")
    if args.output:
        await asyncio.to_thread(_write_results, args.output, summary, entries, runner.bad_rows)
        print(f"Results: {args.output}")
    return 0 if summary.all_passed else 1


async def _targets(args: argparse.Namespace, trainer: Any) -> tuple[list[Any], Any]:
    """The servers to run on: the embedded one (-m) or the remote URLs (--url)."""
    from osmosis_workbench.engine.trainer import ServerTarget
    from server_core.http_client import AiohttpClient

    if args.module:
        from osmosis_workbench.engine.embedded import EmbeddedRolloutServer
        from server_core.loader import load_agent_loop

        agent = load_agent_loop(args.module)
        embedded = EmbeddedRolloutServer(agent, trainer, rollout_timeout=args.rollout_timeout)
        await embedded.__aenter__()
        return [embedded.target], embedded
    _, server_key = keys(args)
    await trainer.listen(args.trainer_host, args.trainer_port)
    # The trainer closes it (aclose of the targets' shared client) at the end of the run.
    client = AiohttpClient(max(100, args.concurrency), read_timeout_s=60.0)
    trainer.closing.append(client)
    targets = [ServerTarget(url=u.rstrip("/"), api_key=server_key, client=client) for u in args.url]
    return targets, None


def _write_results(path: str, summary: Any, entries: dict, bad_rows: list) -> None:
    from dataclasses import asdict

    body = {
        "summary": asdict(summary),
        "results": [entries[k] for k in sorted(entries)],
        "bad_rows": [{"row": e.index, "line": e.line, "error": e.message} for e in bad_rows],
    }
    Path(path).write_text(json.dumps(body, indent=2, default=str), encoding="utf-8")


# ---- osmosis rescore ------------------------------------------------------------------------


def run_rescore(args: argparse.Namespace) -> int:
    """Recompute rewards of a run's journal with another reward function."""
    return asyncio.run(_rescore(args))


async def _rescore(args: argparse.Namespace) -> int:
    from osmosis_workbench.engine.batch import summarize
    from osmosis_workbench.engine.journal import JournalWriter, read_journal, resolve_run_dir
    from server_core.loader import ImportFromStringError, import_from_string
    from server_core.rewards import score

    try:
        run_dir = resolve_run_dir(args.run, args.runs_dir)
        reward_fn = import_from_string(args.reward)
    except (FileNotFoundError, ImportFromStringError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    entries = await asyncio.to_thread(read_journal, run_dir)
    if not entries:
        print(f"Error: {run_dir} has no journal entries to rescore", file=sys.stderr)
        return 2
    started = time.perf_counter()
    rescored: dict[tuple[int, int], dict[str, Any]] = {}
    for key in sorted(entries):
        entry = dict(entries[key])
        if entry.get("status") == "COMPLETED":
            metadata = (entry.get("request") or {}).get("metadata") or {}
            try:
                entry["reward"] = await score(
                    reward_fn,
                    entry.get("final_messages") or [],
                    entry.get("ground_truth"),
                    metadata,
                )
                entry["passed"] = entry["reward"] >= args.pass_threshold
            except Exception as exc:
                entry["reward"], entry["passed"] = None, False
                entry["error"] = f"reward function failed: {exc}"
        rescored[key] = entry
        print(
            f"Row {key[0]}"
            + (f" #{key[1] + 1}" if key[1] else "")
            + f": reward {entry.get('reward')} ({'pass' if entry.get('passed') else 'fail'})"
        )
    out_path = run_dir / f"rescored-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
    writer = JournalWriter(out_path)
    for entry in rescored.values():
        writer.write(entry)
    await asyncio.to_thread(writer.close)
    k = max(key[1] for key in rescored) + 1
    summary = summarize(
        list(rescored.values()), bad_rows=0, duration_s=time.perf_counter() - started, k=k
    )
    print("\n".join(summary_lines(summary)))
    print(f"Rescored journal: {out_path}")
    if args.output:
        await asyncio.to_thread(_write_results, args.output, summary, rescored, [])
    return 0 if summary.all_passed else 1
