"""A run's journal: one JSON line per finished rollout, written as it ends.

``JournalEntry`` is one finished rollout of a batch (its row, attempt, verdict and outcome) and
owns its JSON form; the runner writes it, ``--resume``, ``--retry-failed``, ``rescore``, the
summary and the screens read it back. Because each line is flushed when its rollout finishes,
an interrupted run can be continued; later lines for the same (row, attempt) supersede earlier
ones.

Forks of a run's rollouts (``engine.fork``) are entries too, with a ``ForkOrigin`` naming their
parent. They go to the run's fork journal (``FORKS_FILE``) beside the journal, never into it:
everything that reads a run (resume, rescore, compare, export, the summary) reads the journal
and takes the latest line per (row, attempt), so a fork there would replace its parent.
"""

from __future__ import annotations

import dataclasses
import json
import queue
import re
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from osmosis_workbench.engine.outcome import (
    LLMCallStats,
    OutcomeStatus,
    RolloutOutcome,
    Verdict,
)

JOURNAL_FILE = "journal.jsonl"
#: The run's forks: entries with a parent, all kept (several forks of one rollout may exist).
FORKS_FILE = "forks.jsonl"

#: How a line ``JournalEntry.to_json`` wrote begins: its key, readable without parsing the line.
_KEY_PREFIX = re.compile(rb'\{"row": (-?\d+), "attempt": (-?\d+)[,}]')

_STOP = object()


@dataclass(frozen=True)
class ForkOrigin:
    """Where a fork comes from: its parent rollout, and the LLM call it was forked at."""

    #: The parent's rollout id.
    parent: str
    #: The LLM call (1-based) from which the fork's answers are its own; earlier ones were
    #: replayed from the parent.
    forked_at: int
    #: Where the fork's history left its parent's before the fork point (a non-deterministic
    #: agent or tool), one line each; empty when the prefix was the parent's exactly.
    divergences: tuple[str, ...] = ()

    def to_json(self, row: int, attempt: int) -> dict[str, Any]:
        """The entry's fork fields (the parent's row and attempt are the entry's own)."""
        body: dict[str, Any] = {
            "parent": {"rollout_id": self.parent, "row": row, "attempt": attempt},
            "forked_at": self.forked_at,
        }
        if self.divergences:
            body["prefix_divergences"] = list(self.divergences)
        return body

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ForkOrigin | None:
        """The fork fields of an entry's JSON (``None``: not a fork)."""
        parent = data.get("parent")
        if not isinstance(parent, dict):
            return None
        return cls(
            parent=str(parent.get("rollout_id") or ""),
            forked_at=int(data.get("forked_at") or 0),
            divergences=tuple(data.get("prefix_divergences") or ()),
        )


@dataclass(frozen=True)
class JournalEntry:
    """One finished rollout of a batch: which row and attempt, its verdict, how it ended."""

    row: int
    attempt: int
    verdict: Verdict
    outcome: RolloutOutcome
    ground_truth: Any = None
    #: The init request as sent (the callback key removed).
    request: dict[str, Any] = field(default_factory=dict)
    #: When the entry was made (seconds since the epoch).
    ts: float = field(default_factory=time.time)
    #: A fork's parent and fork point (``None``: a rollout of the run itself). A fork keeps
    #: its parent's row and attempt.
    fork: ForkOrigin | None = None

    @property
    def key(self) -> tuple[int, int]:
        """(row, attempt): what a later entry for the same rollout supersedes."""
        return (self.row, self.attempt)

    @property
    def passed(self) -> bool:
        """Whether this rollout passed."""
        return self.verdict is Verdict.PASS

    def rescored(self, outcome: RolloutOutcome, pass_threshold: float) -> JournalEntry:
        """This entry with a new outcome (a new reward), judged against ``pass_threshold``."""
        return dataclasses.replace(
            self, outcome=outcome, verdict=outcome.verdict(pass_threshold), ts=time.time()
        )

    def without_trajectory(self) -> JournalEntry:
        """A copy without the bulky parts (messages, request): what a summary needs."""
        slim = dataclasses.replace(self.outcome, final_messages=[], tools=[], calls=[])
        return dataclasses.replace(self, outcome=slim, request={})

    def to_json(self) -> dict[str, Any]:
        """The journal line's JSON object."""
        o = self.outcome
        return {
            "row": self.row,
            "attempt": self.attempt,
            "rollout_id": o.rollout_id,
            "status": o.status.value,
            "verdict": self.verdict.value,
            "passed": self.passed,
            "reward": o.reward,
            "ground_truth": self.ground_truth,
            "finish_reason": o.finish_reason,
            "error": o.error,
            "error_category": o.error_category,
            "traceback": o.traceback,
            "duration_ms": round(o.duration_ms, 3),
            "tokens": o.tokens,
            "cost_usd": o.cost_usd,
            "llm_calls": o.llm_calls,
            "calls": [call.to_json() for call in o.calls],
            "metrics": o.metrics,
            "violations": o.violations,
            "request": {k: v for k, v in self.request.items() if k != "api_key"},
            "tools": o.tools,
            "final_messages": o.final_messages,
            "ts": self.ts,
            **(self.fork.to_json(self.row, self.attempt) if self.fork is not None else {}),
        }

    def to_line(self) -> str:
        """The journal line (JSON, no newline)."""
        return json.dumps(self.to_json(), default=str, ensure_ascii=False)

    @classmethod
    def from_json(cls, data: Any) -> JournalEntry:
        """Read a journal line's object back; ``ValueError`` when it is not an entry."""
        if not isinstance(data, dict) or "row" not in data or "attempt" not in data:
            raise ValueError("not a journal entry: it needs 'row' and 'attempt'")
        try:
            status = OutcomeStatus(data.get("status") or "ERROR")
            outcome = RolloutOutcome(
                rollout_id=str(data.get("rollout_id") or ""),
                status=status,
                final_messages=list(data.get("final_messages") or []),
                finish_reason=data.get("finish_reason"),
                error=data.get("error"),
                error_category=data.get("error_category"),
                traceback=data.get("traceback"),
                reward=data.get("reward"),
                metrics=dict(data.get("metrics") or {}),
                duration_ms=float(data.get("duration_ms") or 0.0),
                tokens=int(data.get("tokens") or 0),
                cost_usd=data.get("cost_usd"),
                llm_calls=int(data.get("llm_calls") or 0),
                violations=list(data.get("violations") or []),
                tools=list(data.get("tools") or []),
                calls=[LLMCallStats.from_json(c) for c in data.get("calls") or ()],
            )
            if "verdict" in data:
                verdict = Verdict(data["verdict"])
            else:  # journals written before verdicts were recorded
                verdict = (
                    Verdict.PASS
                    if data.get("passed")
                    else Verdict.FAIL
                    if status is OutcomeStatus.COMPLETED
                    else Verdict.ERROR
                )
            return cls(
                row=int(data["row"]),
                attempt=int(data["attempt"]),
                verdict=verdict,
                outcome=outcome,
                ground_truth=data.get("ground_truth"),
                request=dict(data.get("request") or {}),
                ts=float(data.get("ts") or 0.0),
                fork=ForkOrigin.from_json(data),
            )
        except (TypeError, AttributeError) as exc:
            raise ValueError(f"not a journal entry: {exc}") from exc


def repair_torn_tail(path: Path) -> int:
    """Make a journal end on a whole line before anything is appended; the bytes dropped.

    A run killed mid-write leaves a last line without its newline: appending to it would glue
    the next entry onto the fragment and lose both. A fragment that is a whole entry (only
    its newline missing) is kept and ended; anything else is cut off (its rollout is not in
    the journal, so a resume runs it again).
    """
    try:
        handle = open(path, "r+b")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        return 0
    with handle:
        size = handle.seek(0, 2)
        if size == 0:
            return 0
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return 0
        # Find the start of the last line, reading backwards in blocks.
        start, block = size, 1 << 16
        while start > 0:
            begin = max(0, start - block)
            handle.seek(begin)
            newline = handle.read(start - begin).rfind(b"\n")
            if newline >= 0:
                start = begin + newline + 1
                break
            start = begin
        handle.seek(start)
        try:
            JournalEntry.from_json(json.loads(handle.read()))
        except ValueError:
            handle.truncate(start)
            return size - start
        handle.seek(size)
        handle.write(b"\n")
        return 0


class JournalWriter:
    """Appends entries to a journal from a background thread (the event loop never waits).

    Opening it repairs a torn last line first (``torn_bytes`` says how much was cut off):
    construct it off the event loop.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.torn_bytes = repair_torn_tail(self.path)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="journal-writer", daemon=True)
        self._thread.start()

    def write(self, entry: JournalEntry) -> None:
        """Queue one entry; it reaches the disk (flushed) shortly after."""
        self._queue.put(entry)

    def _loop(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle: IO[str] = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - the writer thread holds it until close()
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    break
                handle.write(item.to_line() + "\n")
                if self._queue.empty():  # flush per burst: a killed run loses nothing finished
                    handle.flush()
        finally:
            handle.close()

    def close(self) -> None:
        """Write everything queued and stop (blocking; call from a thread in async code)."""
        self._queue.put(_STOP)
        self._thread.join()


def append_entries(path: str | Path, entries: Iterable[JournalEntry]) -> None:
    """Append a few entries to a journal file at once (blocking: call it from a thread).

    For the odd entry (a fork); a batch streams its entries through ``JournalWriter``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    repair_torn_tail(path)
    with open(path, "a", encoding="utf-8") as handle:
        handle.writelines(entry.to_line() + "\n" for entry in entries)


def read_forks(run_dir: str | Path) -> list[JournalEntry]:
    """Every fork of a run's rollouts, oldest first (blocking)."""
    path = Path(run_dir) / FORKS_FILE
    return list(iter_journal(path)) if path.exists() else []


def iter_journal(path: str | Path) -> Iterator[JournalEntry]:
    """Every readable entry of a journal file, in order (unreadable lines are skipped)."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                yield JournalEntry.from_json(json.loads(line))
            except ValueError:
                continue


def read_journal(run_dir: str | Path) -> dict[tuple[int, int], JournalEntry]:
    """The latest entry of each (row, attempt) in a run's journal."""
    path = Path(run_dir) / JOURNAL_FILE
    if not path.exists():
        return {}
    return {entry.key: entry for entry in iter_journal(path)}


def index_journal(path: str | Path) -> dict[tuple[int, int], int]:
    """The byte offset of the latest line of each (row, attempt) in a journal file.

    Only each line's key is read (lines begin with it): a 100,000-rollout journal is indexed
    in well under a second and held as one offset per rollout, not as its trajectories.
    """
    offsets: dict[tuple[int, int], int] = {}
    offset = 0
    with open(path, "rb") as handle:
        for line in handle:
            match = _KEY_PREFIX.match(line)
            key: tuple[int, int] | None = None
            if match and line.endswith(b"\n"):
                key = (int(match[1]), int(match[2]))
            else:  # written by hand, or torn: only a whole entry counts
                try:
                    entry = JournalEntry.from_json(json.loads(line))
                    key = entry.key
                except ValueError:
                    pass
            if key is not None:
                offsets[key] = offset
            offset += len(line)
    return offsets


def iter_latest(run_dir: str | Path) -> Iterator[JournalEntry]:
    """The latest entry of each (row, attempt) of a run, in (row, attempt) order, one by one.

    What exports, comparisons and data frames read: memory stays bounded by the index, however
    many trajectories the journal holds.
    """
    path = Path(run_dir) / JOURNAL_FILE
    if not path.exists():
        return
    offsets = index_journal(path)
    with open(path, "rb") as handle:
        for key in sorted(offsets):
            entry = _entry_at(handle, offsets[key])
            if entry is not None:  # (an unreadable line: its rollout is not in the journal)
                yield entry


def read_entry(run_dir: str | Path, row: int, attempt: int = 0) -> JournalEntry | None:
    """The latest entry of one (row, attempt) of a run (``None``: not journaled); blocking.

    Only that line's trajectory is read, however large the journal.
    """
    path = Path(run_dir) / JOURNAL_FILE
    if not path.exists():
        return None
    offset = index_journal(path).get((row, attempt))
    if offset is None:
        return None
    with open(path, "rb") as handle:
        return _entry_at(handle, offset)


def _entry_at(handle: IO[bytes], offset: int) -> JournalEntry | None:
    """The entry on the line at ``offset`` of an open journal (``None``: unreadable)."""
    handle.seek(offset)
    try:
        return JournalEntry.from_json(json.loads(handle.readline()))
    except ValueError:
        return None
