"""Comparing two runs: which rollouts changed, and whether the difference is more than noise.

Rollouts are matched by dataset row and attempt. Each matched pair is classed (``Change``):
regressed or improved (passed in one run only), worse or better (the same pass, another
verdict or reward), a trajectory that changed while its score did not, or the same. Pass rate,
mean reward and pass@k are computed over the matched rollouts of both runs, with the paired
difference and a bootstrap confidence interval over dataset rows (rows, not rollouts, are the
independent unit when a row has several attempts). The bootstrap is seeded: the same two runs
always give the same interval.

Both journals are read in (row, attempt) order, one entry at a time (``journal.iter_latest``),
so comparing two 100,000-rollout runs keeps only the changed rows and a few numbers per row.
``first_difference`` finds where two trajectories part (the workbench's side-by-side view), and
``compare_rollouts`` puts two rollouts side by side (a fork and its parent) with the same
classes as a run comparison.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from osmosis_workbench.engine.journal import JournalEntry, iter_latest
from osmosis_workbench.engine.outcome import Verdict
from osmosis_workbench.engine.runs import RunInfo

#: Bootstrap resamples of the paired differences (fewer for very large runs: see ``_resamples``).
DEFAULT_RESAMPLES = 2000
#: Random draws one bootstrap may make (~0.1 µs each): bounds its time on a huge run.
_DRAW_BUDGET = 2_000_000
#: The smallest number of resamples a large run still gets.
_MIN_RESAMPLES = 200


class Change(StrEnum):
    """How a rollout of run B differs from the same row and attempt in run A."""

    REGRESSED = "regressed"  # passed in A, not in B
    IMPROVED = "improved"  # passed in B, not in A
    WORSE = "worse"  # the same pass, a lower reward or an error instead of a failure
    BETTER = "better"  # the same pass, a higher reward or a failure instead of an error
    TRAJECTORY = "trajectory"  # the same verdict and reward, other messages
    ONLY_A = "only_in_a"
    ONLY_B = "only_in_b"
    SAME = "same"


#: Listing order: what needs attention first.
_ORDER = {change: rank for rank, change in enumerate(Change)}
_VERDICT_RANK = {Verdict.ERROR: 0, Verdict.FAIL: 1, Verdict.PASS: 2}


# ---- trajectories ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageDifference:
    """Where two trajectories part: the first message that differs, and in what."""

    #: The message's position, the same in both trajectories.
    index: int
    #: The message in A and in B (``None``: that trajectory ended before it).
    a: dict[str, Any] | None
    b: dict[str, Any] | None
    #: What differs: "role", "content", "tool_calls", "name", or "missing" (one side ended).
    fields: tuple[str, ...]


def first_difference(
    a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]]
) -> MessageDifference | None:
    """The first message where trajectories ``a`` and ``b`` differ (``None``: they do not).

    Tool-call ids are ignored (each run names its calls anew), and so are an empty and a
    missing content; tool-call arguments are compared as values, not as JSON text.
    """
    for index in range(max(len(a), len(b))):
        left = a[index] if index < len(a) else None
        right = b[index] if index < len(b) else None
        if left is None or right is None:
            return MessageDifference(index, left, right, ("missing",))
        fields = tuple(
            name for name, value in _comparable(left).items() if _comparable(right)[name] != value
        )
        if fields:
            return MessageDifference(index, left, right, fields)
    return None


def _comparable(message: dict[str, Any]) -> dict[str, Any]:
    """What of a message counts when two runs are compared."""
    calls = []
    for call in message.get("tool_calls") or ():
        function = (call.get("function") if isinstance(call, dict) else None) or {}
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            with contextlib.suppress(ValueError):  # not JSON: compared as the text it is
                arguments = json.loads(arguments)
        calls.append((function.get("name"), arguments))
    return {
        "role": message.get("role"),
        "content": message.get("content") or None,
        "tool_calls": calls,
        "name": message.get("name"),
    }


# ---- rows --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowComparison:
    """One (row, attempt) of the two runs: each side's entry (without messages) and the change."""

    row: int
    attempt: int
    change: Change
    a: JournalEntry | None
    b: JournalEntry | None
    #: The position of the first message that differs (``None``: the same, or one side absent).
    first_difference: int | None = None

    @property
    def reward_delta(self) -> float | None:
        """B's reward minus A's, when both have one."""
        return _reward_delta(self.a, self.b)

    def to_json(self) -> dict[str, Any]:
        """Its ``--json`` form."""
        return {
            "row": self.row,
            "attempt": self.attempt,
            "change": self.change.value,
            "a": _side_json(self.a),
            "b": _side_json(self.b),
            "reward_delta": self.reward_delta,
            "first_difference": self.first_difference,
        }


def _side_json(entry: JournalEntry | None) -> dict[str, Any] | None:
    if entry is None:
        return None
    data = entry.to_json()
    keys = ("rollout_id", "verdict", "status", "reward", "error_category", "error")
    return {key: data[key] for key in keys}


def classify(a: JournalEntry, b: JournalEntry, trajectory_differs: bool) -> Change:
    """How B's rollout differs from A's for the same row and attempt."""
    if a.passed != b.passed:
        return Change.IMPROVED if b.passed else Change.REGRESSED
    rank_a, rank_b = _VERDICT_RANK[a.verdict], _VERDICT_RANK[b.verdict]
    if rank_a != rank_b:
        return Change.BETTER if rank_b > rank_a else Change.WORSE
    # No reward at all counts as the lowest.
    ra = -math.inf if a.outcome.reward is None else a.outcome.reward
    rb = -math.inf if b.outcome.reward is None else b.outcome.reward
    if ra != rb:
        return Change.BETTER if rb > ra else Change.WORSE
    return Change.TRAJECTORY if trajectory_differs else Change.SAME


@dataclass(frozen=True)
class RolloutComparison:
    """Two rollouts side by side (a fork and its parent): where they part, and how B changed."""

    a: JournalEntry
    b: JournalEntry
    change: Change
    #: The first message that differs (``None``: the same trajectory).
    difference: MessageDifference | None

    def to_json(self) -> dict[str, Any]:
        """Its ``--json`` form (the two sides without their messages)."""
        difference = self.difference
        return {
            "change": self.change.value,
            "a": _side_json(self.a),
            "b": _side_json(self.b),
            "reward_delta": _reward_delta(self.a, self.b),
            "first_difference": (
                None
                if difference is None
                else {
                    "index": difference.index,
                    "fields": list(difference.fields),
                    "a": difference.a,
                    "b": difference.b,
                }
            ),
        }


def compare_rollouts(a: JournalEntry, b: JournalEntry) -> RolloutComparison:
    """Rollout B against rollout A: their first difference and the change, as runs are compared."""
    difference = first_difference(a.outcome.final_messages, b.outcome.final_messages)
    return RolloutComparison(a, b, classify(a, b, difference is not None), difference)


def _reward_delta(a: JournalEntry | None, b: JournalEntry | None) -> float | None:
    """B's reward minus A's, when both have one."""
    if a is None or b is None:
        return None
    ra, rb = a.outcome.reward, b.outcome.reward
    return None if ra is None or rb is None else rb - ra


# ---- statistics --------------------------------------------------------------------------------


@dataclass(slots=True)
class _RowTally:
    """One dataset row's matched attempts: passes in each run, and the rewards both have."""

    attempts: int = 0
    passes_a: int = 0
    passes_b: int = 0
    #: Attempts with a reward in both runs, and those rewards' sums.
    rewarded: int = 0
    reward_a: float = 0.0
    reward_b: float = 0.0


@dataclass(frozen=True)
class MetricComparison:
    """One statistic in both runs, their paired difference and its confidence interval."""

    name: str
    a: float | None
    b: float | None
    #: B minus A, averaged over the rows both runs have a value for.
    delta: float | None
    #: The 95 % bootstrap interval of ``delta``.
    ci_low: float | None
    ci_high: float | None
    #: How many dataset rows the statistic covers.
    rows: int

    def to_json(self) -> dict[str, Any]:
        """Its ``--json`` form."""
        return {
            "a": self.a,
            "b": self.b,
            "delta": self.delta,
            "ci95": [self.ci_low, self.ci_high] if self.delta is not None else None,
            "rows": self.rows,
        }


def _resamples(rows: int, wanted: int) -> int:
    """Resamples for ``rows`` values: ``wanted``, fewer when that would exceed the draw budget."""
    return max(_MIN_RESAMPLES, min(wanted, _DRAW_BUDGET // max(1, rows)))


def paired_bootstrap(
    differences: Sequence[float], *, seed: int, resamples: int
) -> tuple[float, float]:
    """The 95 % percentile interval of the mean of ``differences`` (one per row), seeded."""
    n = len(differences)
    if n == 1 or min(differences) == max(differences):
        return differences[0], differences[0]
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(differences, k=n)) / n for _ in range(resamples))
    return means[int(0.025 * resamples)], means[math.ceil(0.975 * resamples) - 1]


def _metric(
    name: str, pairs: list[tuple[float, float]], *, seed: int, resamples: int
) -> MetricComparison:
    """A statistic from one (A, B) value per row."""
    if not pairs:
        return MetricComparison(name, None, None, None, None, None, 0)
    n = len(pairs)
    a = sum(p[0] for p in pairs) / n
    b = sum(p[1] for p in pairs) / n
    differences = [pb - pa for pa, pb in pairs]
    low, high = paired_bootstrap(differences, seed=seed, resamples=resamples)
    return MetricComparison(name, a, b, sum(differences) / n, low, high, n)


# ---- the comparison ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSide:
    """One of the two runs: what it ran, and how many rollouts its journal holds."""

    info: RunInfo
    #: Every rollout in its journal (matched or not).
    rollouts: int

    def to_json(self) -> dict[str, Any]:
        """Its ``--json`` form."""
        return {
            "run_dir": str(self.info.run_dir),
            "model": self.info.model,
            "rollouts": self.rollouts,
        }


@dataclass
class RunComparison:
    """Two runs compared: the changed rollouts (all with ``keep_same``), counts and statistics."""

    a: RunSide
    b: RunSide
    #: Rollouts in listing order: regressions first, then improvements, ...
    rows: list[RowComparison]
    counts: dict[Change, int]
    metrics: dict[str, MetricComparison]
    #: The attempts per row the pass@k statistic covers.
    k: int
    seed: int
    resamples: int
    warnings: list[str] = field(default_factory=list)

    @property
    def matched(self) -> int:
        """Rollouts present in both runs."""
        return sum(n for c, n in self.counts.items() if c not in (Change.ONLY_A, Change.ONLY_B))

    @property
    def regressions(self) -> list[RowComparison]:
        """The rollouts that passed in A and not in B."""
        return [r for r in self.rows if r.change is Change.REGRESSED]

    def errored_only_in(self, side: str) -> list[RowComparison]:
        """The matched rollouts that ended in ERROR in run ``side`` ("a" or "b") only."""
        found = []
        for r in self.rows:
            if r.a is None or r.b is None:
                continue
            mine, other = (r.a, r.b) if side == "a" else (r.b, r.a)
            if mine.verdict is Verdict.ERROR and other.verdict is not Verdict.ERROR:
                found.append(r)
        return found

    def to_json(self) -> dict[str, Any]:
        """The ``osmosis compare --json`` document."""
        return {
            "a": self.a.to_json(),
            "b": self.b.to_json(),
            "matched": self.matched,
            "counts": {change.value: self.counts.get(change, 0) for change in Change},
            "k": self.k,
            "metrics": {name: m.to_json() for name, m in self.metrics.items()},
            "bootstrap": {"resamples": self.resamples, "seed": self.seed, "unit": "row"},
            "rows": [r.to_json() for r in self.rows],
            "errored_only_in_a": [[r.row, r.attempt] for r in self.errored_only_in("a")],
            "errored_only_in_b": [[r.row, r.attempt] for r in self.errored_only_in("b")],
            "warnings": self.warnings,
        }


def _merged(
    a: Iterator[JournalEntry], b: Iterator[JournalEntry]
) -> Iterator[tuple[JournalEntry | None, JournalEntry | None]]:
    """Two (row, attempt)-ordered entry streams joined on their key."""
    left, right = next(a, None), next(b, None)
    while left is not None or right is not None:
        if right is None or (left is not None and left.key < right.key):
            yield left, None
            left = next(a, None)
        elif left is None or right.key < left.key:
            yield None, right
            right = next(b, None)
        else:
            yield left, right
            left, right = next(a, None), next(b, None)


def compare_runs(
    run_a: str | Path,
    run_b: str | Path,
    *,
    seed: int = 0,
    resamples: int = DEFAULT_RESAMPLES,
    keep_same: bool = False,
) -> RunComparison:
    """Compare run B against run A (their directories); blocking, so call it from a thread.

    ``keep_same``: list the unchanged rollouts too (they are always counted).
    """
    run_a, run_b = Path(run_a), Path(run_b)
    rows: list[RowComparison] = []
    counts = dict.fromkeys(Change, 0)
    tallies: dict[int, _RowTally] = {}
    seen = {"a": 0, "b": 0}
    for a, b in _merged(iter_latest(run_a), iter_latest(run_b)):
        seen["a"] += a is not None
        seen["b"] += b is not None
        if a is None or b is None:
            only = b if a is None else a
            assert only is not None
            change = Change.ONLY_B if a is None else Change.ONLY_A
            counts[change] += 1
            rows.append(RowComparison(only.row, only.attempt, change, _slim(a), _slim(b)))
            continue
        pair = compare_rollouts(a, b)
        change, differs = pair.change, pair.difference
        counts[change] += 1
        tally = tallies.setdefault(a.row, _RowTally())
        tally.attempts += 1
        tally.passes_a += a.passed
        tally.passes_b += b.passed
        if a.outcome.reward is not None and b.outcome.reward is not None:
            tally.rewarded += 1
            tally.reward_a += a.outcome.reward
            tally.reward_b += b.outcome.reward
        if change is not Change.SAME or keep_same:
            rows.append(
                RowComparison(
                    a.row,
                    a.attempt,
                    change,
                    _slim(a),
                    _slim(b),
                    None if differs is None else differs.index,
                )
            )
    rows.sort(key=lambda r: (_ORDER[r.change], r.row, r.attempt))

    n_rows = len(tallies)
    draws = _resamples(n_rows, resamples)
    k = max((t.attempts for t in tallies.values()), default=1)
    pass_rate = [(t.passes_a / t.attempts, t.passes_b / t.attempts) for t in tallies.values()]
    pass_at_k = [(float(t.passes_a > 0), float(t.passes_b > 0)) for t in tallies.values()]
    rewards = [
        (t.reward_a / t.rewarded, t.reward_b / t.rewarded) for t in tallies.values() if t.rewarded
    ]
    metrics = {
        "pass_rate": _metric("pass rate", pass_rate, seed=seed, resamples=draws),
        "reward_mean": _metric("mean reward", rewards, seed=seed, resamples=draws),
        "pass_at_k": _metric(f"pass@{k}", pass_at_k, seed=seed, resamples=draws),
    }
    side_a = RunSide(RunInfo.read(run_a), seen["a"])
    side_b = RunSide(RunInfo.read(run_b), seen["b"])
    digests = {side_a.info.dataset_digest, side_b.info.dataset_digest}
    warnings = []
    if len(digests) == 2 and None not in digests:
        warnings.append(
            "the two runs read different dataset content: rows are matched by their position, "
            "which may not be the same question"
        )
    return RunComparison(
        side_a, side_b, rows, counts, metrics, k=k, seed=seed, resamples=draws, warnings=warnings
    )


def _slim(entry: JournalEntry | None) -> JournalEntry | None:
    return entry.without_trajectory() if entry is not None else None
