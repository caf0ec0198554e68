"""The ``osmosis`` and ``osmosis-workbench`` commands.

Only argparse is imported at start-up; each command imports what it needs when it runs, so
``osmosis --help`` answers at once (litellm alone costs ~10 s of CPU here).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from osmosis_workbench import __version__


def build_parser() -> argparse.ArgumentParser:
    """The ``osmosis`` parser with every subcommand."""
    from osmosis_workbench.commands.compare_cmd import add_compare_parser
    from osmosis_workbench.commands.export_cmd import add_export_parser
    from osmosis_workbench.commands.fork_cmd import add_fork_parser
    from osmosis_workbench.commands.init_cmd import add_init_parser
    from osmosis_workbench.commands.platform_cmds import (
        add_login_parser,
        add_logout_parser,
        add_whoami_parser,
    )
    from osmosis_workbench.commands.rescore_cmd import add_rescore_parser
    from osmosis_workbench.commands.serve_cmd import add_serve_parser
    from osmosis_workbench.commands.test_cmd import add_test_parser
    from osmosis_workbench.commands.validate_cmd import add_validate_parser

    parser = argparse.ArgumentParser(
        prog="osmosis",
        description="Write, test and serve remote rollout servers for LLM RL training.",
    )
    parser.add_argument("--version", action="version", version=f"osmosis {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_init_parser(subparsers)
    add_serve_parser(subparsers)
    add_validate_parser(subparsers)
    add_test_parser(subparsers)
    add_rescore_parser(subparsers)
    add_compare_parser(subparsers)
    add_fork_parser(subparsers)
    add_export_parser(subparsers)
    add_login_parser(subparsers)
    add_whoami_parser(subparsers)
    add_logout_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``osmosis``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        if args.command == "test" and args.interactive:
            return open_workbench(args)
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130


def workbench_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``osmosis-workbench``: the Textual app."""
    from osmosis_workbench.commands.workbench_cmd import build_workbench_parser

    return open_workbench(build_workbench_parser().parse_args(argv))


def open_workbench(args: argparse.Namespace) -> int:
    """Open the Textual app with parsed arguments (``osmosis-workbench``, ``osmosis test
    --interactive``); without the ``[workbench]`` extra, say what to install."""
    from osmosis_workbench.extras import MissingExtraError, require

    try:
        require("textual", "osmosis-workbench (the terminal app)")
    except MissingExtraError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    from osmosis_workbench.tui.launch import run_workbench

    return int(run_workbench(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
