"""Example RolloutServer with string tools, written for the osmosis-ai 0.2 rollout SDK.

Ported to server_core by changing the import lines only
(``from osmosis_ai.rollout import ...`` -> ``from server_core import ...``).

Run it from this folder with ``uvicorn server:app`` or ``osmosis serve -m server:agent_loop``,
or from the repository root as ``tests.server_core.compat.agent02.server:agent_loop``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Dict, List  # noqa: UP035

from server_core import (
    RolloutAgentLoop,
    RolloutContext,
    RolloutRequest,
    RolloutResult,
    create_app,
)

try:  # imported as a package module (tests.server_core.compat.agent02.server)
    from .rewards import compute_reward
    from .tools import STRING_TOOL_SCHEMAS, timed_execute
except ImportError:  # run from this folder, as the 0.2 template is (server:app)
    from rewards import compute_reward
    from tools import STRING_TOOL_SCHEMAS, timed_execute

logger = logging.getLogger(__name__)


def get_last_assistant_content(messages: List[Dict[str, Any]]) -> str | None:  # noqa: UP006
    """Get the content of the last assistant message."""
    for message in reversed(messages):
        if message.get("role") == "assistant":
            return message.get("content", "")
    return None


def compute_reward_from_messages(
    messages: list[dict[str, Any]],
    ground_truth: str | None,
) -> float | None:
    """Reward from the final answer, or None without a ground truth."""
    if not ground_truth:
        return None
    solution_str = get_last_assistant_content(messages)
    if not solution_str:
        return 0.0
    try:
        return compute_reward(solution_str, str(ground_truth))
    except Exception as e:
        logger.warning(f"Reward computation failed: {e}")
        return None


class StringToolsAgentLoop(RolloutAgentLoop):
    """Answers string questions with reverse_text, count_chars and change_case tools."""

    name = "string_tools"

    def get_tools(self, request: RolloutRequest):
        return STRING_TOOL_SCHEMAS

    async def run(self, ctx: RolloutContext) -> RolloutResult:
        messages = list(ctx.request.messages)
        finish_reason = "stop"
        total_completion_tokens = 0

        for _turn in range(ctx.request.max_turns):
            ctx.log_event(
                "pre_llm",
                turn=_turn,
                num_messages=len(messages),
                roles=[m.get("role", "?") for m in messages],
            )

            result = await ctx.chat(messages, **ctx.request.completion_params)
            messages.append(result.message)

            ctx.log_event(
                "llm_response",
                turn=_turn,
                has_tool_calls=result.has_tool_calls,
                tool_calls_count=len(result.tool_calls) if result.tool_calls else 0,
                finish_reason=result.finish_reason,
                content_preview=str(result.message.get("content", ""))[:100],
            )

            usage = result.usage or {}
            with contextlib.suppress(Exception):
                total_completion_tokens += int(usage.get("completion_tokens") or 0)

            if total_completion_tokens >= ctx.request.max_tokens_total:
                finish_reason = "max_tokens"
                break

            if not result.has_tool_calls:
                finish_reason = result.finish_reason or "stop"
                break

            tool_calls = result.tool_calls
            tool_results, latency_ms = await timed_execute(tool_calls)
            per_call_latency = latency_ms / max(1, len(tool_calls))
            for _ in tool_calls:
                ctx.record_tool_call(latency_ms=per_call_latency)
            messages.extend(tool_results)

            ctx.log_event(
                "tool_results",
                turn=_turn,
                num_tool_results=len(tool_results),
                contents=[tr.get("content") for tr in tool_results],
            )
        else:
            finish_reason = "max_turns"

        ground_truth = ctx.request.metadata.get("ground_truth")
        reward = compute_reward_from_messages(messages, ground_truth)

        ctx.log_event(
            "rollout_complete",
            finish_reason=finish_reason,
            reward=reward,
            ground_truth=ground_truth,
            final_messages_count=len(messages),
        )
        return ctx.complete(messages, finish_reason=finish_reason, reward=reward)


# Agent loop instance for CLI usage (osmosis serve -m server:agent_loop)
agent_loop = StringToolsAgentLoop()

# The FastAPI application, built at import time as in the 0.2 template.
debug_dir = os.getenv("ROLLOUT_DEBUG_DIR")
app = create_app(agent_loop, debug_dir=debug_dir)


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(
        "server:app",
        host=os.getenv("ROLLOUT_SERVER_HOST", "0.0.0.0"),
        port=int(os.getenv("ROLLOUT_SERVER_PORT", "9000")),
        log_level="info",
    )
