"""What a run will cost before it runs: tokens, dollars and time, projected from pilot rows.

A few rows run first through the real protocol (``osmosis test --estimate``, or the dataset
screen before ``r``); ``project_run`` scales what they used to the whole run. The range runs
from "every rollout like the cheapest pilot" to "every rollout like the dearest", around the
pilots' mean: with three pilots, a spread worth knowing rather than a precise figure. Time
assumes ``concurrency`` rollouts overlap fully (a rate-limited provider makes it longer).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from osmosis_workbench.engine.config import EngineConfig
from osmosis_workbench.engine.journal import JournalEntry

#: Pilot rows ``--estimate`` runs unless told otherwise.
DEFAULT_PILOTS = 3


@dataclass(frozen=True)
class Range:
    """A projected total: its low and high ends and the expected value between them."""

    low: float
    expected: float
    high: float

    @classmethod
    def scaled(cls, per_rollout: Sequence[float], count: float) -> Range:
        """``count`` times the smallest, the mean and the largest of ``per_rollout``."""
        mean = math.fsum(per_rollout) / len(per_rollout)
        return cls(min(per_rollout) * count, mean * count, max(per_rollout) * count)

    def to_json(self) -> dict[str, float]:
        """Its JSON form."""
        return {"low": self.low, "expected": self.expected, "high": self.high}


@dataclass(frozen=True)
class RunEstimate:
    """A whole run projected from its pilot rollouts."""

    model: str | None
    #: The pilot rollouts measured, and the rollouts the whole run makes (pilots included).
    pilots: int
    rollouts: int
    concurrency: int
    tokens: Range
    #: ``None`` when the model's price is unknown (no entry in litellm's price map).
    cost_usd: Range | None
    duration_s: Range
    #: What the pilots themselves cost (``None``: unknown).
    pilot_cost_usd: float | None

    def to_json(self) -> dict[str, Any]:
        """The ``--estimate --json`` form."""
        return {
            "model": self.model,
            "pilots": self.pilots,
            "rollouts": self.rollouts,
            "concurrency": self.concurrency,
            "tokens": self.tokens.to_json(),
            "cost_usd": self.cost_usd.to_json() if self.cost_usd else None,
            "duration_s": self.duration_s.to_json(),
            "pilot_cost_usd": self.pilot_cost_usd,
        }

    def lines(self) -> list[str]:
        """The estimate as the CLI prints it (and the dataset screen can show)."""
        t, d = self.tokens, self.duration_s
        lines = [
            f"Estimate for {self.rollouts} rollouts of {self.model or 'the model'}, "
            f"from {self.pilots} pilot{'s' if self.pilots != 1 else ''}:",
            f"  Tokens: {t.expected:,.0f} ({t.low:,.0f} - {t.high:,.0f})",
        ]
        if self.cost_usd is None:
            lines.append("  Cost: unknown (no price for this model in litellm's price map)")
        else:
            c = self.cost_usd
            lines.append(f"  Cost: ${c.expected:,.4f} (${c.low:,.4f} - ${c.high:,.4f})")
        lines.append(
            f"  Time: {format_seconds(d.expected)} ({format_seconds(d.low)} - "
            f"{format_seconds(d.high)}) at --concurrency {self.concurrency}"
        )
        return lines


def format_seconds(seconds: float) -> str:
    """``0.4s``, ``45s``, ``12m 5s``, ``3h 20m``."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60}s"
    return f"{whole // 3600}h {whole % 3600 // 60}m"


def project_run(
    pilots: Sequence[JournalEntry], *, rollouts: int, concurrency: int, model: str | None
) -> RunEstimate | None:
    """The whole run (``rollouts`` rollouts) projected from ``pilots`` (``None``: no pilot).

    A pilot's cost counts only when known; one pilot with tokens but no cost makes the cost
    unknown, since the rest would be as unknown.
    """
    if not pilots:
        return None
    tokens = [float(e.outcome.tokens) for e in pilots]
    seconds = [e.outcome.duration_ms / 1000 for e in pilots]
    costs = [e.outcome.cost_usd for e in pilots]
    known = [c for c in costs if c is not None]
    priced = all(c is not None or e.outcome.tokens == 0 for c, e in zip(costs, pilots, strict=True))
    cost = Range.scaled([c or 0.0 for c in costs], rollouts) if priced and known else None
    return RunEstimate(
        model=model,
        pilots=len(pilots),
        rollouts=rollouts,
        concurrency=concurrency,
        tokens=Range.scaled(tokens, rollouts),
        cost_usd=cost,
        # Rollouts overlap ``concurrency`` at a time, each as long as a pilot took.
        duration_s=Range.scaled(seconds, math.ceil(rollouts / max(1, concurrency))),
        pilot_cost_usd=math.fsum(known) if known and priced else None,
    )


def pilot_config(config: EngineConfig, pilots: int = DEFAULT_PILOTS) -> EngineConfig:
    """The config that runs a run's pilots: its first ``pilots`` rows, one attempt each."""
    selection = config.selection
    limit = pilots if selection.limit is None else min(pilots, selection.limit)
    return dataclasses.replace(
        config,
        selection=dataclasses.replace(selection, limit=limit),
        attempts=1,
        concurrency=max(1, min(config.concurrency, pilots)),
    )
