"""Reward of the calculator: 1.0 when the final answer's last number equals the ground truth."""

from __future__ import annotations

import re

from server_core import reward_fn

_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")


def last_number(text: str) -> float | None:
    """The last number written in ``text`` (commas as thousands separators allowed)."""
    found = _NUMBER.findall(text or "")
    return float(found[-1].replace(",", "")) if found else None


@reward_fn
def compute_reward(solution_str: str, ground_truth: str, extra_info: dict | None = None) -> float:
    """1.0 if the answer's last number matches ``ground_truth`` (to 1e-6), else 0.0."""
    answer = last_number(solution_str)
    try:
        expected = float(str(ground_truth).replace(",", ""))
    except ValueError:
        return 0.0
    return 1.0 if answer is not None and abs(answer - expected) <= 1e-6 else 0.0
