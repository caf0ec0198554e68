"""``osmosis-workbench`` (and ``osmosis test --interactive``): open the Textual workbench.

Only argparse-level work happens here until the app runs: Textual is imported inside
``run_workbench``, and the engine only after the app's first screen is on the terminal.
"""

from __future__ import annotations

import argparse
import io
import sys
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from osmosis_workbench import __version__
from osmosis_workbench.commands.test_cmd import (
    UsageError,
    add_model_options,
    default_model,
    keys,
)

#: The command's name, in its help and its error lines.
PROG = "osmosis-workbench"


def build_workbench_parser() -> argparse.ArgumentParser:
    """The ``osmosis-workbench`` parser."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Step through rollouts of your agent, run datasets and serve it, in one "
        "terminal app. Keys are shown at the bottom; press ? for help.",
    )
    p.add_argument("--version", action="version", version=f"osmosis-workbench {__version__}")
    g = p.add_argument_group("rollout server (one of -m or --url)")
    g.add_argument(
        "-m",
        "--module",
        metavar="MODULE:ATTR",
        default=None,
        help="the agent loop to serve in-process, e.g. server:agent_loop",
    )
    g.add_argument("--url", default=None, help="a remote rollout server to run against")
    g.add_argument(
        "--api-key",
        default=None,
        help="with --url: the rollout server's key; otherwise: the model's key",
    )
    g.add_argument("--server-api-key", default=None, help="the rollout server's key")
    g = p.add_argument_group("data")
    g.add_argument(
        "-d",
        "--dataset",
        default=None,
        help=".jsonl, .json, .parquet or .csv with system_prompt, user_prompt, ground_truth",
    )
    g.add_argument(
        "--row", type=int, default=None, help="open this row (0-based) in the step debugger at once"
    )
    add_model_options(p)
    g = p.add_argument_group("run")
    g.add_argument(
        "--rollout-timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="end a rollout that takes longer (default 600)",
    )
    return p


def workbench_options(args: argparse.Namespace) -> tuple[dict[str, Any], int | None]:
    """The ``WorkspaceConfig`` fields and the row to open, from either command's arguments.

    Works for ``osmosis-workbench`` and for the ``osmosis test`` namespace (whose ``--url``
    is a list). Raises ``UsageError`` with the fix.
    """

    def get(name: str, default: Any = None) -> Any:
        return getattr(args, name, default)

    url = get("url")
    # `osmosis test` collects --url in a list (a batch spreads over servers); we step on one.
    if isinstance(url, list):
        if len(url) > 1:
            raise UsageError("the workbench runs against one server: give a single --url")
        url = url[0] if url else None
    module = get("module")
    if not module and not url:
        raise UsageError(
            "give the agent with -m MODULE:ATTR (e.g. -m server:agent_loop), "
            "or a rollout server with --url URL"
        )
    if module and url:
        raise UsageError(
            "-m and --url exclude each other: run the agent in-process or "
            "against a remote server, not both"
        )
    dataset = get("dataset")
    if dataset and not Path(dataset).is_file():
        raise UsageError(f"dataset {dataset!r} not found (give an existing file with -d)")
    row = get("row")
    if row is not None:
        if not dataset:
            raise UsageError("--row needs a dataset: add -d FILE")
        if row < 0:
            raise UsageError(f"--row {row}: rows are numbered from 0")
    timeout = get("rollout_timeout")
    timeout = 600.0 if timeout is None else float(timeout)
    if timeout <= 0:
        raise UsageError("--rollout-timeout must be more than 0 seconds")
    # Offline by default: the cassette next to the dataset or the agent.
    model = get("model") or default_model(dataset, module)
    if model is None:
        raise UsageError(
            "no model: pass --model provider/name (e.g. openai/gpt-4o-mini, with its API key "
            "in the environment) or --model replay:FILE for a recorded cassette"
        )
    # --api-key means the server's key with --url, the model's otherwise (as for `osmosis test`).
    model_key, server_key = keys(
        SimpleNamespace(
            api_key=get("api_key"),
            url=url,
            model_api_key=get("model_api_key"),
            server_api_key=get("server_api_key"),
        )
    )
    fields: dict[str, Any] = {
        "module": module,
        "url": url,
        "server_api_key": server_key,
        "dataset": dataset,
        "model": model,
        "base_url": get("base_url"),
        "model_api_key": model_key,
        "record": get("record"),
        "rollout_timeout_s": timeout,
        "trainer_host": get("trainer_host", "127.0.0.1") or "127.0.0.1",
        "trainer_port": int(get("trainer_port", 0) or 0),
    }
    return fields, row


def run_workbench(args: argparse.Namespace) -> int:
    """Open the workbench with these arguments; 2 on a usage error, 0 after a clean exit."""
    try:
        fields, row = workbench_options(args)
    except UsageError as exc:
        # The same function serves `osmosis test --interactive`: name the command typed.
        command = "osmosis test" if getattr(args, "command", None) == "test" else PROG
        print(f"{command}: error: {exc}", file=sys.stderr)
        return 2
    from osmosis_workbench.tui.app import make_app

    return run_app(make_app(fields, row=row))


def run_app(app: Any, *, headless: bool = False) -> int:
    """Run a Textual app; an unexpected error becomes one line here and a crash log file.

    Textual prints the traceback of a fatal error to the terminal on exit: the app's error
    console is pointed at a buffer instead, which goes to the crash log.
    """
    from rich.console import Console

    from osmosis_workbench.tui.app import append_crash_log

    buffer = io.StringIO()
    app.error_console = Console(
        file=buffer, width=120, color_system=None, markup=False, highlight=False
    )
    try:
        app.run(headless=headless)
    except Exception:  # before the app's loop (no terminal, a driver error): same treatment
        buffer.write(traceback.format_exc())
    failed = bool(app.return_code) or bool(buffer.getvalue().strip())
    if not failed:
        return 0
    where = append_crash_log(buffer.getvalue())
    print(
        f"osmosis-workbench stopped on an unexpected error; the details are in {where}",
        file=sys.stderr,
    )
    return app.return_code or 1
