"""``osmosis-workbench`` (and ``osmosis test --interactive``): its arguments and config.

Only argparse-level work (and the import-light ``EngineConfig``) happens here; the app itself
is opened by ``osmosis_workbench.tui.launch`` (commands never import the terminal UI).
"""

from __future__ import annotations

import argparse

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
