"""Run directories: where ``osmosis test`` keeps each run's ``run.json`` and journal.

A run directory ``<runs dir>/<timestamp>-<dataset name>`` holds ``run.json`` (what was run,
with which options) and the journal (``journal.JOURNAL_FILE``). ``--resume RUN`` and
``--retry-failed RUN`` name one by its path, its name under the runs directory, or ``last``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from osmosis_workbench.engine.journal import JOURNAL_FILE

RUN_FILE = "run.json"
#: Where run directories go unless ``--runs-dir`` says otherwise.
DEFAULT_RUNS_DIR = ".osmosis/runs"


def new_run_dir(root: str | Path, name: str) -> Path:
    """A fresh run directory ``root/<timestamp>-<name>``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{stamp}-{name}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def resolve_run_dir(ref: str | Path, root: str | Path) -> Path:
    """A run directory given as a path, or as a name under ``root`` ("last" = newest)."""
    path = Path(ref)
    if path.is_dir():
        return path
    root = Path(root)
    if str(ref) == "last":
        runs = sorted(
            p for p in root.glob("*") if (p / JOURNAL_FILE).exists() or (p / RUN_FILE).exists()
        )
        if runs:
            return runs[-1]
        raise FileNotFoundError(
            f"no earlier run in {root}: osmosis test keeps each run's directory there, so run it "
            "once first (without --resume or --retry-failed), or pass --runs-dir where your "
            "runs are"
        )
    if (root / path).is_dir():
        return root / path
    raise FileNotFoundError(
        f"no run directory {str(ref)!r} (looked in . and {root}); pass the path printed as "
        "'Run directory:' by osmosis test, or 'last'"
    )


def write_run_file(run_dir: Path, info: dict[str, Any]) -> None:
    """Write ``run.json`` describing the run."""
    (run_dir / RUN_FILE).write_text(json.dumps(info, indent=2, default=str), encoding="utf-8")


def read_run_file(run_dir: Path) -> dict[str, Any]:
    """Read ``run.json`` (empty when missing)."""
    path = Path(run_dir) / RUN_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
