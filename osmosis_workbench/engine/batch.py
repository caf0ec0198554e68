"""Batch runs: every selected dataset row (times ``n`` attempts) through the rollout protocol.

Rows stream from the dataset into a bounded queue; ``concurrency`` workers each run one rollout
at a time on one of the targets (the embedded server, or several remote URLs, round robin, with
429/503 and Retry-After honoured). Each finished rollout is scored, becomes a ``JournalEntry``,
is written to the journal and reported to the caller's ``on_result``. A systemic model error
(bad key, unknown model) stops the batch early instead of failing every row, and so does a run
whose spend reaches ``config.max_cost_usd`` (the rollouts in flight finish; the rows not yet
started are left for a resume).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import re
import time
import uuid
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from osmosis_workbench.engine.config import EngineConfig
from osmosis_workbench.engine.datasets import DatasetRow, RowError, aiter_dataset
from osmosis_workbench.engine.journal import JournalEntry, JournalWriter
from osmosis_workbench.engine.outcome import RolloutOutcome
from osmosis_workbench.engine.scoring import rescore_outcome
from osmosis_workbench.engine.server_watch import ServerWatch
from osmosis_workbench.engine.trainer import LocalTrainer, ServerTarget

#: How long a busy target (429/503) may keep one rollout waiting before it fails.
_BUSY_WAIT_LIMIT_S = 300.0

_request_counter = itertools.count()


def run_tag_for(dataset: str | None) -> str:
    """The readable start of a run's rollout ids (and trace file names): the dataset's name.

    ``data/test_data.jsonl`` gives ``test_data``; characters a file name or a log line would
    trip on become ``_``; at most 24 characters.
    """
    stem = Path(dataset).stem if dataset else ""
    return re.sub(r"[^A-Za-z0-9_.]+", "_", stem)[:24].strip("._") or "rollout"


def build_request(row: DatasetRow, attempt: int, config: EngineConfig, run_tag: str) -> dict:
    """The RolloutRequest fields (without server_url/api_key) for one row attempt.

    The rollout id is unique per try (``run_tag`` is random per runner, plus a counter): a
    rerun must not hit a server's idempotency record of an earlier try.
    """
    params: dict[str, Any] = {}
    if config.temperature is not None:
        params["temperature"] = config.temperature
    if config.max_tokens is not None:
        params["max_tokens"] = config.max_tokens
    request: dict[str, Any] = {
        "rollout_id": f"{run_tag}-r{row.index}-a{attempt}-{next(_request_counter)}",
        "messages": row.messages(),
        "completion_params": params,
        "metadata": {**row.metadata, "ground_truth": row.ground_truth, "row_index": row.index},
    }
    if config.max_turns is not None:
        request["max_turns"] = config.max_turns
    return request


class BatchRunner:
    """Runs a dataset through a local trainer against one or more rollout servers."""

    def __init__(
        self,
        trainer: LocalTrainer,
        targets: list[ServerTarget],
        config: EngineConfig,
        *,
        reward_fn: Callable[..., Any] | None = None,
        only: Collection[tuple[int, int]] | None = None,
        skip: Collection[tuple[int, int]] = (),
        journal: JournalWriter | None = None,
        on_result: Callable[[JournalEntry], None] | None = None,
        on_bad_row: Callable[[RowError], None] | None = None,
        run_tag: str | None = None,
        keep_results: bool = True,
        spent_usd: float = 0.0,
    ) -> None:
        if not targets:
            raise ValueError("a batch needs at least one rollout server")
        if not config.dataset:
            raise ValueError("a batch needs a dataset")
        self.trainer = trainer
        self.targets = targets
        self.config = config
        #: Scores completed trajectories instead of the agent's own reward.
        self.reward_fn = reward_fn
        #: (row, attempt) pairs to run; ``None``: every selected row times ``attempts``.
        self.only = frozenset(only) if only is not None else None
        #: (row, attempt) pairs already finished (resume): skipped.
        self.skip = frozenset(skip)
        self.journal = journal
        self.on_result = on_result
        self.on_bad_row = on_bad_row
        # ``test_data-3fa2c1``: the dataset, then a nonce per runner (ids never repeat across
        # runs, which a server's idempotency records would otherwise answer).
        tag = run_tag or run_tag_for(config.dataset)
        self.run_tag = f"{tag}-{uuid.uuid4().hex[:6]}"
        #: Finished results, in finishing order (empty with ``keep_results=False``: a
        #: million-row run keeps its trajectories in the journal, not in memory).
        self.results: list[JournalEntry] = []
        self.keep_results = keep_results
        self.bad_rows: list[RowError] = []
        self.stopped_early: str | None = None
        #: Which servers still answer; when none does, the batch stops.
        self.servers = ServerWatch(trainer, targets, on_all_down=self.stop)
        #: Rollouts that did not run to a journaled end (their server went away).
        self.not_run = 0
        #: What the run's rollouts cost so far (``spent_usd``: its earlier part, on a resume).
        self.spent_usd = spent_usd
        #: Whether it stopped because the spend reached ``max_cost_usd`` (or could not be
        #: counted).
        self.over_budget = False
        self._stop = asyncio.Event()

    def stop(self, reason: str = "stopped by user") -> None:
        """Stop taking new rows; rollouts in flight finish."""
        self.stopped_early = self.stopped_early or reason
        self._stop.set()

    async def run(self) -> list[JournalEntry]:
        """Run every selected row attempt; returns the results of this run."""
        config = self.config
        assert config.dataset is not None
        jobs: asyncio.Queue = asyncio.Queue(maxsize=max(2, config.concurrency * 2))
        workers = [asyncio.create_task(self._worker(jobs)) for _ in range(config.concurrency)]
        watch = asyncio.create_task(self.servers.watch(self._stop))
        interrupted = False
        try:
            # aclosing: a stopped batch closes the dataset file at once, not at GC.
            dataset = aiter_dataset(config.dataset, config.selection)
            async with contextlib.aclosing(dataset) as rows:
                async for item in rows:
                    if self._stop.is_set():
                        break
                    if isinstance(item, RowError):
                        self.bad_rows.append(item)
                        if self.on_bad_row:
                            self.on_bad_row(item)
                        continue
                    for attempt in range(config.attempts):
                        key = (item.index, attempt)
                        if key in self.skip or (self.only is not None and key not in self.only):
                            continue
                        await jobs.put((item, attempt))
                        if self._stop.is_set():
                            break
        except asyncio.CancelledError:
            interrupted = True
            raise
        finally:
            if interrupted:
                # Ctrl+C, or the app closing: stop now. The rollouts in flight are let go,
                # not journaled (a resume runs them again), and cancelled on their servers;
                # queued ones never start.
                self.stop("interrupted")
                await self.servers.let_go_in_flight("the batch was interrupted")
            for _ in workers:
                await jobs.put(None)  # (stopped workers drain the queue without running)
            await asyncio.gather(*workers)
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
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
            if result is None:  # its server went away: left for a resume, not journaled
                self.not_run += 1
                continue
            if self.keep_results:
                self.results.append(result)
            if self.journal is not None:
                self.journal.write(result)
            if self.on_result:
                self.on_result(result)
            error = result.outcome.model_error
            if error is not None and error.systemic:
                self.stop(f"stopped early: {error}")
            self._count_spend(result)

    def _count_spend(self, result: JournalEntry) -> None:
        """Add a rollout's cost to the run's spend; stop at ``max_cost_usd``."""
        cost, cap = result.outcome.cost_usd, self.config.max_cost_usd
        self.spent_usd += cost or 0.0
        if cap is None:
            return
        if cost is None and result.outcome.tokens:
            self.over_budget = True
            self.stop(
                f"stopped early: the cost of {self.config.model} is unknown, so --max-cost "
                "cannot be kept (its price is not in litellm's price map)"
            )
        elif self.spent_usd >= cap:
            self.over_budget = True
            self.stop(
                f"stopped early: the run's spend ${self.spent_usd:.4f} reached --max-cost ${cap:g}"
            )

    async def _run_one(self, row: DatasetRow, attempt: int) -> JournalEntry | None:
        request = build_request(row, attempt, self.config, self.run_tag)
        outcome = await self._run_on_some_target(request, row)
        if outcome is None:
            return None
        if self.reward_fn is not None and outcome.ok:
            outcome = await rescore_outcome(
                outcome, self.reward_fn, row.ground_truth, request["metadata"]
            )
        return JournalEntry(
            row=row.index,
            attempt=attempt,
            verdict=outcome.verdict(self.config.pass_threshold),
            outcome=outcome,
            ground_truth=row.ground_truth,
            request=request,
        )

    async def _run_on_some_target(self, request: dict, row: DatasetRow) -> RolloutOutcome | None:
        """Run on the next server that answers; ``None`` when none does any more.

        Busy servers (429/503) are retried after their delay; a refused connection is
        retried on the next server until the watch declares its server down.
        """
        deadline = time.monotonic() + _BUSY_WAIT_LIMIT_S
        for tries in itertools.count():
            target = self.servers.next_target()
            if target is None:
                return None
            rollout_id = request["rollout_id"] + (f"-t{tries}" if tries else "")
            run = self.trainer.open_run(
                {**request, "rollout_id": rollout_id},
                label=f"row {row.index}",
                trainer_url=target.trainer_url,
            )
            with self.servers.running(target, run):
                outcome = await self.trainer.drive(run, target, self.config.rollout_timeout_s)
            if run.abandoned:
                return None  # its server died, or the batch was interrupted: no end to journal
            refused = outcome.init_error
            if refused is None:
                self.servers.answered(target)
                return outcome
            if refused.unreachable:
                self.servers.connection_failed(target, refused.cause)
            else:
                self.servers.answered(target)
                if not refused.busy:
                    return outcome
            if self._stop.is_set() or self.servers.all_down:
                return None  # never started: a resume runs it
            if time.monotonic() > deadline:
                return outcome
            # Spread retries: with several servers the next one is tried almost at once.
            delay = (
                refused.retry_after
                if refused.retry_after is not None
                else min(8.0, 0.1 * 2 ** min(tries, 7))
            )
            # The wait ends early when the batch stops.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._stop.wait(), delay * random.uniform(0.5, 1.0) / len(self.targets)
                )
        raise AssertionError("unreachable")
