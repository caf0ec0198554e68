"""What every command's output shares: the exit codes, JSON documents, error lines.

CI jobs and coding agents read the exit code first and ``--json`` second, so both are kept
stable; the README's table lists the codes.
"""

from __future__ import annotations

import json
import sys
from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    """The exit codes of every ``osmosis`` command."""

    #: Done, and the answer is yes: every rollout passed, no regression, a valid agent.
    OK = 0
    #: Done, and the answer is no: a rollout failed, a regression, an invalid agent, no login.
    FAILED = 1
    #: Nothing (or not everything) ran because of the input: a bad option, a missing file or
    #: run, a dataset that cannot be read, a model that refuses the key.
    USAGE = 2
    #: A run stopped before every row ran (--max-cost, its servers went away, the model
    #: failed for good); what ran is journaled and ``--resume`` runs the rest.
    INCOMPLETE = 3
    #: Ctrl+C.
    INTERRUPTED = 130


def print_json(document: Any) -> None:
    """Print one JSON document on stdout (what ``--json`` prints, and nothing else)."""
    print(json.dumps(document, indent=2, ensure_ascii=False, default=str))


def report_error(message: str, *, as_json: bool = False, code: int = ExitCode.USAGE) -> int:
    """Say what went wrong (a JSON ``{"error", "exit_code"}`` with ``--json``); the exit code."""
    if as_json:
        print_json({"error": message, "exit_code": int(code)})
    else:
        print(f"Error: {message}", file=sys.stderr)
    return int(code)
