"""Batch runs: every selected dataset row (times ``n`` attempts) through the rollout protocol.

Rows stream from the dataset into a bounded queue; ``concurrency`` workers each run one rollout
at a time on one of the targets (the embedded server, or several remote URLs, round robin, with
429/503 and Retry-After honoured). Each finished rollout is scored, written to the journal and
reported to the caller's ``on_result``. A systemic model error (bad key, unknown model) stops
the batch early instead of failing every row.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import random
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from osmosis_workbench.engine.datasets import DatasetRow, RowError, RowSelection, aiter_dataset
from osmosis_workbench.engine.journal import JournalWriter
from osmosis_workbench.engine.trainer import (
    LocalTrainer,
    RolloutOutcome,
    ServerTarget,
)

#: How long a busy target (429/503) may keep one rollout waiting before it fails.
_BUSY_WAIT_LIMIT_S = 300.0


@dataclass
class BatchOptions:
    """What a batch runs and how."""

    dataset: Path
    selection: RowSelection = field(default_factory=RowSelection)
    concurrency: int = 8
    attempts: int = 1
    rollout_timeout_s: float = 600.0
    max_turns: int | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    reward_fn: Callable[..., Any] | None = None
    pass_threshold: float = 1.0
    #: (row, attempt) pairs to run; ``None``: every selected row times ``attempts``.
    only: set[tuple[int, int]] | None = None
    #: (row, attempt) pairs already finished (resume): skipped.
    skip: set[tuple[int, int]] = field(default_factory=set)


@dataclass
class BatchResult:
    """One finished rollout of a batch, as journaled."""

    row: int
    attempt: int
    passed: bool
    outcome: RolloutOutcome
    ground_truth: Any
    request: dict[str, Any]

    def journal_entry(self) -> dict[str, Any]:
        """The journal line of this result."""
        o = self.outcome
        return {
            "row": self.row,
            "attempt": self.attempt,
            "rollout_id": o.rollout_id,
            "status": o.status,
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
            "calls": o.calls,
            "metrics": o.metrics,
            "violations": o.violations,
            "request": {k: v for k, v in self.request.items() if k != "api_key"},
            "final_messages": o.final_messages,
            "ts": time.time(),
        }


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


#: The journal fields ``summarize`` reads; a run keeps only these per rollout in memory.
SUMMARY_FIELDS = (
    "row",
    "attempt",
    "passed",
    "reward",
    "tokens",
    "cost_usd",
    "duration_ms",
    "violations",
)


def slim_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """The part of a journal entry a summary needs (trajectories can be large)."""
    return {key: entry.get(key) for key in SUMMARY_FIELDS}


def summarize(
    entries: list[dict[str, Any]],
    *,
    bad_rows: int,
    duration_s: float,
    k: int,
    stopped_early: str | None = None,
) -> BatchSummary:
    """Statistics over journal entries (one per (row, attempt))."""
    s = BatchSummary(bad_rows=bad_rows, duration_s=duration_s, k=k, stopped_early=stopped_early)
    s.total = len(entries)
    s.passed = sum(1 for e in entries if e.get("passed"))
    s.failed = s.total - s.passed
    s.total_tokens = sum(int(e.get("tokens") or 0) for e in entries)
    costs = [e["cost_usd"] for e in entries if e.get("cost_usd") is not None]
    s.cost_usd = sum(costs) if costs else None
    rewards = [e["reward"] for e in entries if isinstance(e.get("reward"), int | float)]
    s.reward_mean = statistics.fmean(rewards) if rewards else None
    s.protocol_violations = sum(len(e.get("violations") or ()) for e in entries)
    latencies = sorted(float(e.get("duration_ms") or 0) for e in entries)
    if latencies:
        s.latency_p50_ms = _percentile(latencies, 50)
        s.latency_p95_ms = _percentile(latencies, 95)
    by_row: dict[int, list[bool]] = {}
    for e in entries:
        by_row.setdefault(int(e["row"]), []).append(bool(e.get("passed")))
    if by_row:
        s.pass_at_k = sum(any(v) for v in by_row.values()) / len(by_row)
        s.pass_at_1 = statistics.fmean(sum(v) / len(v) for v in by_row.values())
    return s


def _percentile(sorted_values: list[float], pct: float) -> float:
    index = max(0, math.ceil(pct / 100 * len(sorted_values)) - 1)
    return sorted_values[index]


_request_counter = itertools.count()


def build_request(row: DatasetRow, attempt: int, options: BatchOptions, run_tag: str) -> dict:
    """The RolloutRequest fields (without server_url/api_key) for one row attempt.

    The rollout id is unique per try (``run_tag`` is random per runner, plus a counter): a
    rerun must not hit a server's idempotency record of an earlier try.
    """
    params: dict[str, Any] = {}
    if options.temperature is not None:
        params["temperature"] = options.temperature
    if options.max_tokens is not None:
        params["max_tokens"] = options.max_tokens
    request: dict[str, Any] = {
        "rollout_id": f"{run_tag}-r{row.index}-a{attempt}-{next(_request_counter)}",
        "messages": row.messages(),
        "completion_params": params,
        "metadata": {**row.metadata, "ground_truth": row.ground_truth, "row_index": row.index},
    }
    if options.max_turns is not None:
        request["max_turns"] = options.max_turns
    return request


class BatchRunner:
    """Runs a dataset through a local trainer against one or more rollout servers."""

    def __init__(
        self,
        trainer: LocalTrainer,
        targets: list[ServerTarget],
        options: BatchOptions,
        *,
        journal: JournalWriter | None = None,
        on_result: Callable[[BatchResult], None] | None = None,
        on_bad_row: Callable[[RowError], None] | None = None,
        run_tag: str | None = None,
        keep_results: bool = True,
    ) -> None:
        if not targets:
            raise ValueError("a batch needs at least one rollout server")
        self.trainer = trainer
        self.targets = targets
        self.options = options
        self.journal = journal
        self.on_result = on_result
        self.on_bad_row = on_bad_row
        self.run_tag = f"{run_tag}-{uuid.uuid4().hex[:6]}" if run_tag else uuid.uuid4().hex[:8]
        #: Finished results, in finishing order (empty with ``keep_results=False``: a
        #: million-row run keeps its trajectories in the journal, not in memory).
        self.results: list[BatchResult] = []
        self.keep_results = keep_results
        self.bad_rows: list[RowError] = []
        self.stopped_early: str | None = None
        self._target_cycle = itertools.cycle(targets)
        self._stop = asyncio.Event()

    def stop(self, reason: str = "stopped by user") -> None:
        """Stop taking new rows; rollouts in flight finish."""
        self.stopped_early = self.stopped_early or reason
        self._stop.set()

    async def run(self) -> list[BatchResult]:
        """Run every selected row attempt; returns the results of this run."""
        opts = self.options
        jobs: asyncio.Queue = asyncio.Queue(maxsize=max(2, opts.concurrency * 2))
        workers = [asyncio.create_task(self._worker(jobs)) for _ in range(opts.concurrency)]
        try:
            # aclosing: a stopped batch closes the dataset file at once, not at GC.
            async with contextlib.aclosing(aiter_dataset(opts.dataset, opts.selection)) as rows:
                async for item in rows:
                    if self._stop.is_set():
                        break
                    if isinstance(item, RowError):
                        self.bad_rows.append(item)
                        if self.on_bad_row:
                            self.on_bad_row(item)
                        continue
                    for attempt in range(opts.attempts):
                        key = (item.index, attempt)
                        if key in opts.skip or (opts.only is not None and key not in opts.only):
                            continue
                        await jobs.put((item, attempt))
                        if self._stop.is_set():
                            break
        finally:
            for _ in workers:
                await jobs.put(None)
            await asyncio.gather(*workers)
        return self.results

    async def _worker(self, jobs: asyncio.Queue) -> None:
        while True:
            job = await jobs.get()
            if job is None:
                return
            if self._stop.is_set():
                continue  # drain the queue without running
            row, attempt = job
            result = await self._run_one(row, attempt)
            if self.keep_results:
                self.results.append(result)
            if self.journal is not None:
                self.journal.write(result.journal_entry())
            if self.on_result:
                self.on_result(result)
            error = result.outcome.model_error
            if error is not None and error.systemic:
                self.stop(f"stopped early: {error}")

    async def _run_one(self, row: DatasetRow, attempt: int) -> BatchResult:
        opts = self.options
        request = build_request(row, attempt, opts, self.run_tag)
        outcome = await self._run_on_some_target(request, row)
        reward = outcome.reward
        if opts.reward_fn is not None and outcome.ok:
            from server_core.rewards import score

            try:
                reward = await score(
                    opts.reward_fn, outcome.final_messages, row.ground_truth, request["metadata"]
                )
            except Exception as exc:  # a broken reward function fails the row, not the batch
                outcome.status, outcome.error = "ERROR", f"reward function failed: {exc}"
                outcome.error_category = "reward_error"
                reward = None
            outcome.reward = reward
        passed = outcome.ok and (reward is None or reward >= opts.pass_threshold)
        return BatchResult(row.index, attempt, passed, outcome, row.ground_truth, request)

    async def _run_on_some_target(self, request: dict, row: DatasetRow) -> RolloutOutcome:
        """Run on the next target; busy targets (429/503) are retried after their delay."""
        deadline = time.monotonic() + _BUSY_WAIT_LIMIT_S
        for tries in itertools.count():
            target = next(self._target_cycle)
            rollout_id = request["rollout_id"] + (f"-t{tries}" if tries else "")
            outcome = await self.trainer.run_rollout(
                {**request, "rollout_id": rollout_id},
                target,
                timeout_s=self.options.rollout_timeout_s,
                label=f"row {row.index}",
            )
            refused = outcome.init_error
            if refused is None or not refused.busy or self._stop.is_set():
                return outcome
            if time.monotonic() > deadline:
                return outcome
            # Spread retries: with several servers the next one is tried almost at once.
            delay = (
                refused.retry_after
                if refused.retry_after is not None
                else min(8.0, 0.1 * 2 ** min(tries, 7))
            )
            await asyncio.sleep(delay * random.uniform(0.5, 1.0) / len(self.targets))
        raise AssertionError("unreachable")
