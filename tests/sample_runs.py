"""Runs of the sample agent, for the tests of what reads runs (compare, export, analysis, cost,
``--json``): the arguments that run it offline, and a reward function that fails row 3."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from osmosis_workbench.cli import main
from sample_project.rewards import compute_reward

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DATA = str(ROOT / "sample_project" / "test_data.jsonl")
SAMPLE_AGENT = "sample_project.server:agent_loop"
#: ``osmosis test`` arguments that run the sample's twelve rows (its cassette by default).
SAMPLE = ["-m", SAMPLE_AGENT, "-d", SAMPLE_DATA]
#: ``--reward`` for ``fails_row_3`` (this folder is on the tests' import path).
FAILS_ROW_3 = "sample_runs:fails_row_3"


def fails_row_3(solution_str: str, ground_truth: Any, extra_info: dict | None = None) -> float:
    """The sample's reward, except that row 3 always fails."""
    if (extra_info or {}).get("row_index") == 3:
        return 0.0
    return compute_reward(solution_str, ground_truth)


def run_sample(runs: Path, *extra: str) -> int:
    """``osmosis test`` of the sample into the runs folder ``runs``, quietly; its exit code."""
    return main(["test", *SAMPLE, "--runs-dir", str(runs), "-q", *extra])
