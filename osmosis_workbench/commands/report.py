"""What ``osmosis test`` and ``osmosis rescore`` print and write: result lines, the summary,
the progress bar, the ``-o`` results file. Pure formatting: no engine imports at module level.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

    from osmosis_workbench.engine.datasets import RowError
    from osmosis_workbench.engine.journal import JournalEntry
    from osmosis_workbench.engine.summary import BatchSummary


def format_ms(ms: float | None) -> str:
    """``248ms`` below ten seconds, ``12.3s`` above."""
    if ms is None:
        return "-"
    return f"{ms:.0f}ms" if ms < 10_000 else f"{ms / 1000:.1f}s"


def result_line(entry: JournalEntry, counter: str, attempts: int) -> str:
    """``[3/10] Row 2: OK (248ms, 30 tokens)`` and its failure forms (``counter``: ``[3/10]``)."""
    o = entry.outcome
    where = f"Row {entry.row}" + (f" #{entry.attempt + 1}" if attempts > 1 else "")
    prefix = f"{counter} {where}" if counter else where
    stats = f"({format_ms(o.duration_ms)}, {o.tokens} tokens)"
    if entry.passed:
        reward = f" reward {o.reward:g}" if o.reward is not None else ""
        line = f"{prefix}: OK{reward} {stats}"
    elif o.ok:
        line = f"{prefix}: FAILED reward {o.reward:g} {stats}"
    else:
        category = f"{o.error_category}: " if o.error_category else ""
        line = f"{prefix}: ERROR {category}{(o.error or '').splitlines()[0][:300]} {stats}"
    if o.violations:
        line += f"\n      protocol violations: {'; '.join(o.violations)}"
    return line


def summary_lines(s: BatchSummary) -> list[str]:
    """The ``Summary:`` block."""
    lines = [
        "Summary:",
        f"  Total: {s.total}",
        f"  Passed: {s.passed}",
        f"  Failed: {s.failed}",
    ]
    if s.bad_rows:
        lines.append(f"  Bad rows: {s.bad_rows} (skipped; listed above)")
    lines += [f"  Duration: {s.duration_s:.2f}s", f"  Total tokens: {s.total_tokens}"]
    if s.reward_mean is not None:
        lines.append(f"  Reward mean: {s.reward_mean:.3f}")
    if s.pass_at_k is not None:
        if s.k > 1:
            lines.append(f"  pass@1: {s.pass_at_1:.3f}  pass@{s.k}: {s.pass_at_k:.3f}")
        else:
            lines.append(f"  pass@1: {s.pass_at_k:.3f}")
    if s.latency_p50_ms is not None:
        lines.append(
            f"  Latency p50/p95: {format_ms(s.latency_p50_ms)} / {format_ms(s.latency_p95_ms)}"
        )
    if s.cost_usd is not None:
        lines.append(f"  Cost: ${s.cost_usd:.4f}")
    if s.protocol_violations:
        lines.append(f"  Protocol violations: {s.protocol_violations}")
    if s.stopped_early:
        lines.append(f"  {s.stopped_early}")
    return lines


class Progress:
    """A one-line progress bar under the result lines, only on a terminal."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled and bool(total) and sys.stdout.isatty()
        self.done = 0
        self.failed = 0
        self.started = time.perf_counter()

    def clear(self) -> None:
        """Erase the bar (before a result line is printed)."""
        if self.enabled:
            sys.stdout.write("\r\033[K")

    def draw(self) -> None:
        """Draw the bar again."""
        if not self.enabled or not self.total:
            return
        width = 30
        filled = int(width * self.done / self.total)
        rate = self.done / max(1e-9, time.perf_counter() - self.started)
        sys.stdout.write(
            f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
            f"failed {self.failed}  {rate:.1f}/s"
        )
        sys.stdout.flush()


#: Journal fields a results document leaves out unless it carries the trajectories.
_TRAJECTORY_FIELDS = ("final_messages", "request", "tools", "calls")


def results_document(
    summary: BatchSummary,
    entries: Iterable[JournalEntry],
    bad_rows: Iterable[RowError] = (),
    *,
    trajectories: bool = True,
) -> dict[str, Any]:
    """The summary, every entry in (row, attempt) order and the bad rows, as one document.

    ``trajectories=False`` (what ``--json`` prints) leaves out each entry's messages, request,
    tools and per-call numbers.
    """
    results = []
    for entry in sorted(entries, key=lambda e: e.key):
        data = entry.to_json()
        if not trajectories:
            for name in _TRAJECTORY_FIELDS:
                data.pop(name, None)
        results.append(data)
    return {
        "summary": asdict(summary),
        "results": results,
        "bad_rows": [{"row": e.index, "line": e.line, "error": e.message} for e in bad_rows],
    }


def write_results(
    path: str,
    summary: BatchSummary,
    entries: Iterable[JournalEntry],
    bad_rows: Iterable[RowError] = (),
) -> None:
    """The ``-o`` file: ``results_document`` with the trajectories."""
    body = results_document(summary, entries, bad_rows)
    Path(path).write_text(json.dumps(body, indent=2, default=str), encoding="utf-8")
