"""Reward functions for the example RolloutServer (a 0.2 template-style rewards.py).

Ported from osmosis-ai 0.2 by changing ``from osmosis_ai import osmosis_reward`` only.
"""

import logging
import re
from typing import Optional

from server_core import osmosis_reward

logger = logging.getLogger(__name__)


def extract_solution(solution_str: str) -> Optional[str]:  # noqa: UP045
    """Extract the answer after '#### ' in a string."""
    solution = re.search(r"####\s*(\S+)", solution_str)
    if not solution or solution is None:
        return None
    return solution.group(1).strip().rstrip(".")


@osmosis_reward
def compute_reward(solution_str: str, ground_truth: str, extra_info: dict = None) -> float:
    """1.0 if the extracted answer equals the ground truth (exactly, case-sensitively)."""
    extracted = extract_solution(solution_str)
    if extracted is None:
        logger.debug(f"Could not extract solution from: {solution_str[:100]}...")
        return 0.0
    return 1.0 if extracted == str(ground_truth).strip() else 0.0
