"""``osmosis validate``: load an agent loop and report everything wrong with it.

The checks live in ``server_core.validate``; this module only parses arguments and prints.
server_core (fastapi, pydantic: ~2 s of imports here) is imported inside ``run_validate`` so
that ``osmosis --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from osmosis_workbench.commands.output import ExitCode


def add_validate_parser(subparsers: Any) -> None:
    """Add ``osmosis validate`` to the CLI."""
    p = subparsers.add_parser(
        "validate",
        help="check an agent loop and its tools",
        description=(
            "Load an agent loop and check its name, run(), get_tools() and that its tools "
            "reach the trainer unchanged. Exits 1 when there is any problem, 2 when MODULE:ATTR "
            "cannot be loaded."
        ),
    )
    p.add_argument(
        "-m",
        "--module",
        required=True,
        metavar="MODULE:ATTR",
        help="the agent loop, e.g. server:agent_loop (looked up from the current folder)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=run_validate)


def run_validate(args: argparse.Namespace) -> int:
    """Validate ``args.module`` and print the report; 0 when valid, 1 when not, 2 when the
    reference cannot be loaded (an input error, as for every command)."""
    from server_core.validate import validate_reference

    report = validate_reference(args.module)
    if any(problem.code == "LOAD_FAILED" for problem in report.errors):
        code = ExitCode.USAGE
    else:
        code = ExitCode.OK if report.ok else ExitCode.FAILED
    out = sys.stdout
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, ensure_ascii=False), file=out)
        return code

    ok_mark, fail_mark = _marks(out)
    lines: list[str] = []
    if report.ok:
        lines.append(f"{ok_mark} Agent loop validated successfully")
        lines.append(f"  Name: {report.agent_name}")
        tools = f"  Tools: {len(report.tool_names)}"
        if report.tool_names:
            tools += f" ({', '.join(report.tool_names)})"
        lines.append(tools)
    else:
        lines.append(f"{fail_mark} Agent loop validation failed")
        lines.extend(f"  - {_shown(problem)}" for problem in report.errors)
    lines.extend(f"  ! {_shown(warning)}" for warning in report.warnings)
    _write(out, lines)
    return code


def _shown(error: Any) -> str:
    """``field: message [CODE]``: what and where first, the code to search for last."""
    where = f"{error.field}: " if error.field else ""
    return f"{where}{error.message} [{error.code}]"


def _encoding(stream: TextIO) -> str:
    """The stream's encoding, or ascii when it has none Python knows."""
    import codecs

    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        codecs.lookup(encoding)
    except LookupError:
        return "ascii"
    return encoding


def _can_encode(stream: TextIO, text: str) -> bool:
    try:
        text.encode(_encoding(stream))
    except UnicodeEncodeError:
        return False
    return True


def _marks(stream: TextIO) -> tuple[str, str]:
    """✓ and ✗, or OK and FAIL on a console that cannot show them (a cp1252 Windows one)."""
    return ("✓", "✗") if _can_encode(stream, "✓✗") else ("OK", "FAIL")


def _write(stream: TextIO, lines: list[str]) -> None:
    # Problems quote user input (names, schemas) that the console may not be able to show:
    # replace what it cannot encode rather than crash while reporting.
    encoding = _encoding(stream)
    for line in lines:
        if not _can_encode(stream, line):
            line = line.encode(encoding, "replace").decode(encoding)
        print(line, file=stream)
