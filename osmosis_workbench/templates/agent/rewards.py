"""The reward: 1.0 when the final answer's last number is the ground truth, else 0.0."""

from __future__ import annotations

import re

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def last_number(text: str) -> float | None:
    """The last number written in ``text``, if any."""
    found = _NUMBER.findall(text or "")
    return float(found[-1]) if found else None


def compute_reward(answer: str, ground_truth: object) -> float:
    """1.0 if ``answer`` ends on the number ``ground_truth``, else 0.0."""
    got = last_number(answer)
    try:
        expected = float(str(ground_truth))
    except ValueError:
        return 0.0
    return 1.0 if got is not None and got == expected else 0.0
