"""The SDK's own threads: its blocking work never queues behind the agent's.

The default thread pool belongs to the agent (``asyncio.to_thread`` for its sync tools); a
busy agent once held a 500-message rollout's encoding for 59 s there. The SDK's work goes to
these pools instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: Encoding large bodies, waiting on the trace writer.
SDK_THREADS = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="server-core")

#: Calls of the agent's sync ``get_tools`` (timed; moved inline when fast).
GET_TOOLS_THREADS = concurrent.futures.ThreadPoolExecutor(
    max_workers=4, thread_name_prefix="server-core-get-tools"
)


async def run_in(executor: concurrent.futures.Executor, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on one of ``executor``'s threads, awaited."""
    return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)
