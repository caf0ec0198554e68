"""A batch's numbers: pass rate, reward mean, pass@k, latency, cost, from its journal entries."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from osmosis_workbench.engine.journal import JournalEntry


@dataclass
class BatchSummary:
    """Counts and statistics of a batch (including earlier entries of a resumed run)."""

    total: int = 0
    passed: int = 0
    failed: int = 0
    bad_rows: int = 0
    duration_s: float = 0.0
    total_tokens: int = 0
    cost_usd: float | None = None
    reward_mean: float | None = None
    pass_at_k: float | None = None
    pass_at_1: float | None = None
    k: int = 1
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    stopped_early: str | None = None
    protocol_violations: int = 0

    @property
    def all_passed(self) -> bool:
        """Exit 0 condition: every rollout passed, no bad rows, not stopped early."""
        return (
            self.failed == 0
            and self.bad_rows == 0
            and self.stopped_early is None
            and self.total > 0
        )


def summarize(
    entries: Iterable[JournalEntry],
    *,
    bad_rows: int,
    duration_s: float,
    k: int,
    stopped_early: str | None = None,
) -> BatchSummary:
    """Statistics over journal entries (one per (row, attempt))."""
    entries = list(entries)
    s = BatchSummary(bad_rows=bad_rows, duration_s=duration_s, k=k, stopped_early=stopped_early)
    s.total = len(entries)
    s.passed = sum(1 for e in entries if e.passed)
    s.failed = s.total - s.passed
    s.total_tokens = sum(e.outcome.tokens for e in entries)
    costs = [e.outcome.cost_usd for e in entries if e.outcome.cost_usd is not None]
    s.cost_usd = sum(costs) if costs else None
    rewards = [e.outcome.reward for e in entries if e.outcome.reward is not None]
    s.reward_mean = statistics.fmean(rewards) if rewards else None
    s.protocol_violations = sum(len(e.outcome.violations) for e in entries)
    latencies = sorted(e.outcome.duration_ms for e in entries)
    if latencies:
        s.latency_p50_ms = _percentile(latencies, 50)
        s.latency_p95_ms = _percentile(latencies, 95)
    by_row: dict[int, list[bool]] = {}
    for e in entries:
        by_row.setdefault(e.row, []).append(e.passed)
    if by_row:
        s.pass_at_k = sum(any(v) for v in by_row.values()) / len(by_row)
        s.pass_at_1 = statistics.fmean(sum(v) / len(v) for v in by_row.values())
    return s


def _percentile(sorted_values: list[float], pct: float) -> float:
    index = max(0, math.ceil(pct / 100 * len(sorted_values)) - 1)
    return sorted_values[index]
