"""The {{name}} agent: answers letter-counting questions with two tools.

Serve it to a trainer with `osmosis serve -m server:agent_loop` (add `--local` while
developing); `osmosis test` and `osmosis-workbench` run it in-process.
"""

from __future__ import annotations

from rewards import compute_reward
from tools import TOOL_FUNCTIONS, TOOLS

from server_core import (
    RolloutAgentLoop,
    RolloutContext,
    RolloutRequest,
    RolloutResult,
    create_app,
    execute_tool_calls,
)


class LettersAgent(RolloutAgentLoop):
    """Calls the model, runs the tools it asks for, and repeats until it answers in text."""

    name = "{{name}}"

    def get_tools(self, request: RolloutRequest) -> list[dict]:
        return TOOLS

    async def run(self, ctx: RolloutContext) -> RolloutResult:
        messages = list(ctx.request.messages)
        answer = ""
        for _ in range(ctx.request.max_turns):
            result = await ctx.chat(messages)  # the trainer's policy model
            messages.append(result.message)
            if not result.has_tool_calls:
                answer = result.content or ""
                break
            messages += await execute_tool_calls(result.tool_calls, TOOL_FUNCTIONS, ctx=ctx)
        reward = compute_reward(answer, ctx.request.metadata.get("ground_truth"))
        return ctx.complete(messages, reward=reward)


agent_loop = LettersAgent()
app = create_app(agent_loop)
