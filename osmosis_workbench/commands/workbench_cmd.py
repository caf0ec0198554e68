"""``osmosis-workbench`` (and ``osmosis test --interactive``): open the Textual workbench.

Only argparse-level work (and the import-light ``EngineConfig``) happens here until the app
runs: Textual is imported inside ``run_workbench``, and the engine only after the app's first
screen is on the terminal.
"""

from __future__ import annotations

import argparse
import io
import sys
import traceback
from typing import Any

from osmosis_workbench import __version__
from osmosis_workbench.commands.options import add_engine_options, resolve_config
from osmosis_workbench.engine.config import ConfigError, EngineConfig

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
    add_engine_options(p)
    p.add_argument(
        "--row", type=int, default=None, help="open this row (0-based) in the step debugger at once"
    )
    return p


def workbench_config(args: argparse.Namespace) -> tuple[EngineConfig, int | None]:
    """The workbench's config and the row to open, from either command's arguments.

    Works for ``osmosis-workbench`` and ``osmosis test --interactive``. Raises
    ``ConfigError`` with the fix.
    """
    # `osmosis test` may spread a batch over several servers; the workbench steps on one.
    if len(args.url) > 1:
        raise ConfigError("the workbench runs against one server: give a single --url")
    row = args.row
    if row is not None:
        if not args.dataset:
            raise ConfigError("--row needs a dataset: add -d FILE")
        if row < 0:
            raise ConfigError(f"--row {row}: rows are numbered from 0")
    return resolve_config(args), row


def run_workbench(args: argparse.Namespace) -> int:
    """Open the workbench with these arguments; 2 on a usage error, 0 after a clean exit."""
    try:
        config, row = workbench_config(args)
    except ConfigError as exc:
        # The same function serves `osmosis test --interactive`: name the command typed.
        command = "osmosis test" if getattr(args, "command", None) == "test" else PROG
        print(f"{command}: error: {exc}", file=sys.stderr)
        return 2
    from osmosis_workbench.tui.app import make_app

    return run_app(make_app(config, row=row))


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
