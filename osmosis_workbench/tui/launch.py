"""Opening the workbench: the app from a command line, and a crash turned into one line.

``osmosis-workbench`` and ``osmosis test --interactive`` both end here (through
``osmosis_workbench.cli``); Textual is imported inside, and the engine only after the app's
first screen is on the terminal.
"""

from __future__ import annotations

import argparse
import io
import sys
import traceback
from typing import Any

from osmosis_workbench.commands.workbench_cmd import PROG, workbench_config
from osmosis_workbench.engine.config import ConfigError


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
