"""``osmosis fork RUN --row N --at K``: a run's rollout run again from one of its LLM calls.

The fork itself is ``engine.fork``: the rollout's request goes to the run's agent again, the
calls before K are answered from the rollout's journal entry, call K on by ``--model`` (the
run's model by default) or ``--answer``. This module resolves the run, prints the fork's
result and where it parts from its parent, and picks the exit code (0 when the fork passed).
The fork lands in the run's ``forks.jsonl``; the run's own journal is not touched.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import TYPE_CHECKING, Any

from osmosis_workbench.commands.output import ExitCode, print_json, report_error
from osmosis_workbench.commands.report import result_line
from osmosis_workbench.engine.config import ConfigError, EngineConfig
from osmosis_workbench.engine.journal import FORKS_FILE
from osmosis_workbench.engine.runs import DEFAULT_RUNS_DIR

if TYPE_CHECKING:
    from osmosis_workbench.engine.compare import RolloutComparison
    from osmosis_workbench.engine.fork import ForkParent, ForkSession

#: How much of a differing message the text report quotes.
_QUOTED = 160


def add_fork_parser(subparsers: Any) -> None:
    """Add ``osmosis fork`` to the CLI."""
    p = subparsers.add_parser(
        "fork",
        help="run a rollout of a finished run again from one of its LLM calls",
        description="Send a journaled rollout's request to the agent again; its LLM calls "
        "before --at are answered with the rollout's own answers (its history up to there is "
        "fixed), and call --at on by --model (default: the run's) or --answer. Prints where "
        "the fork parts from the rollout and appends it to the run's forks.jsonl (the run's "
        "journal and summary stay as they are). Exits 0 when the fork passed, 1 when not.",
    )
    p.add_argument("run", metavar="RUN", help="the run directory (or 'last', 'last~1', ...)")
    p.add_argument("--row", type=int, required=True, help="the dataset row of the rollout")
    p.add_argument("--attempt", type=int, default=0, help="its attempt, with --n (default 0)")
    p.add_argument(
        "--at",
        type=int,
        required=True,
        metavar="K",
        help="the LLM call (1-based) the fork answers anew; calls before it are replayed",
    )
    p.add_argument(
        "--answer",
        metavar="TEXT|JSON",
        default=None,
        help="the answer to call K instead of the model's: text, or a message such as "
        '\'{"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}]}\'',
    )
    p.add_argument(
        "--on-divergence",
        choices=("stop", "continue"),
        default="stop",
        help="when the agent's history before K is not the rollout's (a non-deterministic "
        "agent or tool): stop the fork (default) or replay the rollout's answers anyway",
    )
    g = p.add_argument_group("what runs it (default: the run's agent and model)")
    g.add_argument("-m", "--module", metavar="MODULE:ATTR", default=None)
    g.add_argument("--url", default=None, help="a remote rollout server instead")
    g.add_argument("--api-key", default=None, help="with --url: the rollout server's key")
    g.add_argument("--model", default=None, help="the model from call K on (as osmosis test)")
    g.add_argument("--base-url", default=None, help="an OpenAI-compatible server for --model")
    g.add_argument("--model-api-key", default=None, help="the model provider's key")
    p.add_argument("--rollout-timeout", type=float, default=600.0, metavar="SECONDS")
    p.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR, help="where run names are looked up")
    p.add_argument("--json", action="store_true", help="print the fork as one JSON document")
    p.set_defaults(handler=run_fork)


def run_fork(args: argparse.Namespace) -> int:
    """Fork the rollout and report it."""
    from osmosis_workbench.engine.fork import ForkError
    from server_core import ImportFromStringError

    try:
        return asyncio.run(_fork(args))
    except (ConfigError, ForkError, ImportFromStringError) as exc:
        return report_error(str(exc), as_json=args.json)


def _answer(text: str | None) -> dict[str, Any] | str | None:
    """``--answer``: a JSON message when it looks like one, else the answer's text."""
    if text is None or not text.lstrip().startswith("{"):
        return text
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(
            f"--answer starts like a JSON message but is not valid JSON ({exc}): fix it, or "
            "give plain text"
        ) from None


def _config(args: argparse.Namespace, parent: ForkParent) -> EngineConfig:
    """The engine the fork runs on: the run's agent and model unless the options say others."""
    run = parent.run
    assert run is not None
    module, urls = args.module, (args.url,) if args.url else ()
    if not module and not urls:
        agent = run.agent or ""
        is_url = agent.startswith(("http://", "https://"))
        module, urls = (None, (agent,)) if is_url else (agent or None, ())
    model = args.model or run.model
    if model == "human":
        raise ConfigError("--model human needs the workbench to answer in: fork there instead")
    return EngineConfig(
        module=module,
        urls=urls,
        server_api_key=args.api_key,
        model=model,
        base_url=args.base_url,
        model_api_key=args.model_api_key,
        rollout_timeout_s=args.rollout_timeout,
    )


async def _fork(args: argparse.Namespace) -> int:
    from osmosis_workbench.engine.fork import ForkParent, ForkSession, checked_answer, fork_options
    from osmosis_workbench.engine.runs import resolve_run_dir
    from osmosis_workbench.engine.wiring import open_engine

    try:
        run_dir = resolve_run_dir(args.run, args.runs_dir)
    except FileNotFoundError as exc:
        return report_error(str(exc), as_json=args.json)
    parent = await asyncio.to_thread(ForkParent.from_run, run_dir, args.row, args.attempt)
    parent.check(args.at)
    answer = checked_answer(_answer(args.answer))
    config = _config(args, parent)
    options = fork_options(parent.run)
    async with open_engine(config) as engine:
        problem = await engine.preflight()
        if problem:
            return report_error(problem, as_json=args.json)
        fork = ForkSession(
            engine.trainer,
            engine.targets[0],
            parent,
            args.at,
            model=engine.backend,
            answer=answer,
            on_divergence=args.on_divergence,
            stepping=False,
            timeout_s=config.rollout_timeout_s,
            **options,
        )
        await fork.start()
        await fork.finish()
    entry, comparison = fork.entry, fork.compare()
    assert entry is not None and comparison is not None
    code = ExitCode.OK if entry.passed else ExitCode.FAILED
    if args.json:
        print_json(
            {
                "run_dir": str(run_dir),
                "forks_journal": str(run_dir / FORKS_FILE),
                "model": config.model,
                "forked_at": args.at,
                "parent": parent.rollout_id,
                "prefix_divergences": fork.divergences,
                **comparison.to_json(),
                "exit_code": int(code),
            }
        )
    else:
        print("\n".join(fork_lines(fork, comparison, config.model)))
    return code


def fork_lines(fork: ForkSession, comparison: RolloutComparison, model: str | None) -> list[str]:
    """The text report of a finished fork: its result, its parent's, where they part."""
    source = f"answer given, then {model}" if fork.model.answer is not None else model
    lines = [
        f"Fork of row {fork.parent.row} ({fork.parent.rollout_id}) at LLM call {fork.at}, "
        f"{fork.at - 1} replayed; from there: {source}",
        "  parent: " + result_line(comparison.a, "", 1),
        "  fork:   " + result_line(comparison.b, "", 1),
        f"  change: {comparison.change.value}",
    ]
    lines += [f"  the history before the fork point differed: {d}" for d in fork.divergences]
    difference = comparison.difference
    if difference is None:
        lines.append("  the trajectories are the same")
    else:
        lines.append(
            f"  first difference: message {difference.index} ({', '.join(difference.fields)})"
        )
        lines.append(f"    parent: {_quoted(difference.a)}")
        lines.append(f"    fork:   {_quoted(difference.b)}")
    if fork.journal_dir is not None:
        lines.append(f"Journaled in {fork.journal_dir / FORKS_FILE}")
    return lines


def _quoted(message: dict[str, Any] | None) -> str:
    if message is None:
        return "(the trajectory ended before it)"
    shown = {k: v for k, v in message.items() if k in ("role", "content", "tool_calls")}
    text = json.dumps(shown, ensure_ascii=False)
    return text if len(text) <= _QUOTED else text[: _QUOTED - 1] + "…"
