"""The loop watchdog: a blocked event loop is noticed, and the code and rollout holding it named.

Blocking the loop for a few hundred milliseconds is the behaviour under test, so these tests
do block it (with ``time.sleep``, as a careless agent would); the watchdog's threshold is set
low to keep them short.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tui_driver import driving

from osmosis_workbench.engine.config import EngineConfig
from osmosis_workbench.engine.models import ScriptedBackend
from osmosis_workbench.tui.app import make_app
from osmosis_workbench.tui.loop_watchdog import LoopBlock, LoopWatchdog
from server_core import RolloutAgentLoop, RolloutContext, RolloutRequest, RolloutResult

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve()


def slow_sync_tool(seconds: float) -> str:
    time.sleep(seconds)  # the blocking call a person would have to find
    return "42"


async def test_a_blocked_loop_is_reported_with_its_rollout_and_the_line() -> None:
    loop = asyncio.get_running_loop()
    during: list[LoopBlock] = []
    ended = asyncio.Event()
    after: list[LoopBlock] = []

    def blocked(block: LoopBlock) -> None:
        after.append(block)
        ended.set()

    watchdog = LoopWatchdog(loop, on_blocked=blocked, on_still_blocked=during.append,
                            threshold_s=0.2, interval_s=0.05)  # fmt: skip
    watchdog.start()
    try:

        async def rollout() -> None:
            slow_sync_tool(0.5)

        await loop.create_task(rollout(), name="rollout:row-7-abc")
        await asyncio.wait_for(ended.wait(), 5)
    finally:
        watchdog.stop()
    [block] = after
    assert block.rollout_id == "row-7-abc" and block.in_user_code
    assert block.where is not None and "test_loop_watchdog.py:" in block.where
    assert block.where.endswith("in slow_sync_tool")
    assert 0.3 < block.seconds < 5
    assert during and during[0].rollout_id == "row-7-abc"  # told while it lasted, too


async def test_a_loop_that_keeps_turning_is_not_reported() -> None:
    reported: list[LoopBlock] = []
    watchdog = LoopWatchdog(asyncio.get_running_loop(), on_blocked=reported.append,
                            threshold_s=0.2, interval_s=0.05)  # fmt: skip
    watchdog.start()
    try:
        for _ in range(10):
            await asyncio.sleep(0.03)  # short waits keep the loop turning (and time passing)
    finally:
        watchdog.stop()
    assert reported == []


class BlockingAgent(RolloutAgentLoop):
    """Calls its tool on the event loop, synchronously: the whole workbench waits."""

    name = "blocker"

    def get_tools(self, request: RolloutRequest) -> list[dict]:
        return []

    async def run(self, ctx: RolloutContext) -> RolloutResult:
        messages = list(ctx.request.messages)
        messages.append((await ctx.chat(messages)).message)
        # Twice the workbench's threshold (0.5 s): the watchdog samples every 0.1 s.
        messages.append({"role": "user", "content": slow_sync_tool(1.0)})
        return ctx.complete(messages, reward=1.0)


blocking_agent = BlockingAgent()


async def test_the_workbench_says_which_row_blocked_it_and_where() -> None:
    app = make_app(
        EngineConfig(
            module=f"{__name__}:blocking_agent",
            dataset=str(ROOT / "sample_project" / "test_data.jsonl"),
            model="scripted",
            search_path=str(HERE.parent),
        ),
        row=3,
        backend=ScriptedBackend(["ok"]),
        watch_agent=False,
    )
    title = "Agent code blocked the event loop"
    async with driving(app) as run:
        await run.press("c")
        assert app.debugger.outcome is not None and app.debugger.outcome.ok
        # The report follows the block at the loop's next heartbeat.
        await run.until(lambda: any(n.title == title for n in run.notes()))
        [note] = [n for n in run.notes("warning") if n.title == title]
        assert note.message.startswith("row 3 (rollout ")
        assert "test_loop_watchdog.py:" in note.message and "in slow_sync_tool" in note.message
        assert "asyncio.to_thread" in note.message


async def test_code_that_is_not_the_users_is_not_blamed_on_the_user() -> None:
    # The frames under the loop's dispatch (pytest's here; the console script in the
    # virtualenv's bin for the real app) hold no callback: they are not the culprit.
    reported: list[LoopBlock] = []
    ended = asyncio.Event()

    def blocked(block: LoopBlock) -> None:
        reported.append(block)
        ended.set()

    watchdog = LoopWatchdog(asyncio.get_running_loop(), on_blocked=blocked,
                            threshold_s=0.2, interval_s=0.05)  # fmt: skip
    watchdog.start()
    try:
        asyncio.get_running_loop().call_soon(time.sleep, 0.5)  # no Python frame of its own
        await asyncio.wait_for(ended.wait(), 5)
    finally:
        watchdog.stop()
    [block] = reported
    assert block.rollout_id is None and not block.in_user_code
    assert block.where is not None and "asyncio" in block.where
