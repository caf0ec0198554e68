"""The calculator agent: a rollout server the workbench and its tests run end to end.

Run it from this folder with `osmosis serve -m server:agent_loop --local`, or from the
repository root as `sample_project.server:agent_loop`.
"""

from __future__ import annotations

from server_core import (
    RolloutAgentLoop,
    RolloutContext,
    RolloutRequest,
    RolloutResult,
    create_app,
    execute_tool_calls,
)
from server_core.tools import tool_call_name

try:  # run from inside sample_project/ (server:agent_loop) or from the root (sample_project.server)
    from rewards import compute_reward
    from tools import CALCULATOR_TOOLS, TOOL_FUNCTIONS
except ImportError:
    from sample_project.rewards import compute_reward
    from sample_project.tools import CALCULATOR_TOOLS, TOOL_FUNCTIONS


class CalculatorAgent(RolloutAgentLoop):
    """Answers arithmetic questions with add, subtract, multiply and divide tools."""

    name = "calculator"

    def get_tools(self, request: RolloutRequest) -> list[dict]:
        return CALCULATOR_TOOLS

    async def run(self, ctx: RolloutContext) -> RolloutResult:
        messages = list(ctx.request.messages)
        finish_reason = "max_turns"
        answer = ""
        for _turn in range(ctx.request.max_turns):
            result = await ctx.chat(messages)
            messages.append(result.message)
            if not result.has_tool_calls:
                finish_reason, answer = result.finish_reason, result.content or ""
                break
            ctx.log_event("tool_calls", names=[tool_call_name(c) for c in result.tool_calls])
            # Arithmetic is instant: run the tools inline rather than on a thread.
            messages.extend(
                await execute_tool_calls(
                    result.tool_calls, TOOL_FUNCTIONS, ctx=ctx, sync_in_thread=False
                )
            )
        ground_truth = ctx.request.metadata.get("ground_truth")
        reward = None
        if ground_truth is not None:
            reward = compute_reward(answer, ground_truth)
        return ctx.complete(messages, finish_reason=finish_reason, reward=reward)


agent_loop = CalculatorAgent()
app = create_app(agent_loop)
