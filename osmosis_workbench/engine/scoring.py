"""Scoring a finished trajectory with a user's reward function (``--reward``, ``rescore``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from osmosis_workbench.engine.outcome import RolloutOutcome


async def rescore_outcome(
    outcome: RolloutOutcome,
    reward_fn: Callable[..., Any],
    ground_truth: Any,
    metadata: dict[str, Any],
) -> RolloutOutcome:
    """``outcome`` with the reward ``reward_fn`` gives its trajectory.

    A reward function that raises fails this rollout (ERROR, category ``reward_error``, its
    message kept), never the batch.
    """
    from server_core.rewards import score

    try:
        reward = await score(reward_fn, outcome.final_messages, ground_truth, metadata)
    except Exception as exc:  # the user's function may raise anything
        return outcome.with_reward_error(f"reward function failed: {exc}")
    return outcome.with_reward(reward)
