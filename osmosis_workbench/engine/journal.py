"""Run directories and their journals: one JSON line per finished rollout, written as it ends.

A run directory holds ``run.json`` (what was run, with which options) and ``journal.jsonl``.
Because each line is flushed when its rollout finishes, an interrupted run can be resumed
(``--resume RUN``) or its failures rerun (``--retry-failed RUN``); later lines for the same
(row, attempt) supersede earlier ones.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from pathlib import Path
from typing import IO, Any

JOURNAL_FILE = "journal.jsonl"
RUN_FILE = "run.json"

_STOP = object()


class JournalWriter:
    """Appends JSON lines to a file from a background thread (the event loop never waits)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="journal-writer", daemon=True)
        self._thread.start()

    def write(self, entry: dict[str, Any]) -> None:
        """Queue one entry; it reaches the disk (flushed) shortly after."""
        self._queue.put(entry)

    def _loop(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle: IO[str] = open(self.path, "a", encoding="utf-8")
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    break
                if isinstance(item, threading.Event):
                    item.set()
                    continue
                handle.write(json.dumps(item, default=str, ensure_ascii=False) + "\n")
                if self._queue.empty():  # flush per burst: a killed run loses nothing finished
                    handle.flush()
        finally:
            handle.close()

    def close(self) -> None:
        """Write everything queued and stop (blocking; call from a thread in async code)."""
        self._queue.put(_STOP)
        self._thread.join()


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
    elif (root / path).is_dir():
        return root / path
    raise FileNotFoundError(
        f"no run directory {str(ref)!r} (looked in . and {root}); pass the path printed as "
        "'Run directory:' by osmosis test, or 'last'"
    )


def read_journal(run_dir: str | Path) -> dict[tuple[int, int], dict[str, Any]]:
    """The latest entry of each (row, attempt) in a run's journal.

    A torn last line (the process was killed mid-write) is ignored.
    """
    entries: dict[tuple[int, int], dict[str, Any]] = {}
    path = Path(run_dir) / JOURNAL_FILE
    if not path.exists():
        return entries
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and "row" in entry and "attempt" in entry:
                entries[(int(entry["row"]), int(entry["attempt"]))] = entry
    return entries


def write_run_file(run_dir: Path, info: dict[str, Any]) -> None:
    """Write ``run.json`` describing the run."""
    (run_dir / RUN_FILE).write_text(json.dumps(info, indent=2, default=str), encoding="utf-8")


def read_run_file(run_dir: Path) -> dict[str, Any]:
    """Read ``run.json`` (empty when missing)."""
    path = Path(run_dir) / RUN_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
