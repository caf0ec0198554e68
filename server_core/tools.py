"""Tool helpers: parse a tool call's arguments, run a batch of calls, build tool messages."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from server_core.agent import RolloutContext


class ToolArgumentError(ValueError):
    """A tool call whose arguments are not a JSON object."""


def tool_call_name(tool_call: Mapping[str, Any]) -> str:
    """The function name of an OpenAI tool call (empty string when missing)."""
    function = tool_call.get("function") or {}
    return str(function.get("name") or tool_call.get("name") or "")


def parse_tool_arguments(tool_call: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of an OpenAI tool call as a dict (they arrive as a JSON string)."""
    function = tool_call.get("function") or {}
    raw = function.get("arguments", tool_call.get("arguments"))
    if raw is None or raw == "":
        return {}
    if isinstance(raw, dict):
        return dict(raw)
    try:
        parsed = json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise ToolArgumentError(
            f"arguments of tool call {tool_call_name(tool_call)!r} are not valid JSON: {exc}"
        ) from None
    if not isinstance(parsed, dict):
        raise ToolArgumentError(
            f"arguments of tool call {tool_call_name(tool_call)!r} must be a JSON object, "
            f"got {type(parsed).__name__}"
        )
    return parsed


def tool_result_message(tool_call: Mapping[str, Any], content: Any) -> dict[str, Any]:
    """The ``role: tool`` message answering ``tool_call``, carrying the tool's name."""
    if not isinstance(content, str):
        content = (
            json.dumps(content, default=str) if isinstance(content, dict | list) else str(content)
        )
    return {
        "role": "tool",
        "tool_call_id": tool_call.get("id"),
        "name": tool_call_name(tool_call),
        "content": content,
    }


async def _call_one(
    tool_call: Mapping[str, Any],
    functions: Mapping[str, Callable[..., Any]],
    timeout_s: float,
    ctx: RolloutContext | None,
    sync_in_thread: bool,
) -> dict[str, Any]:
    name = tool_call_name(tool_call)
    started = time.perf_counter()
    arguments: Any = None
    error: str | None = None
    output: Any = None
    try:
        function = functions.get(name)
        if function is None:
            raise LookupError(f"unknown tool {name!r}; available: {', '.join(sorted(functions))}")
        arguments = parse_tool_arguments(tool_call)
        async with asyncio.timeout(timeout_s):
            if inspect.iscoroutinefunction(function):
                output = await function(**arguments)
            elif sync_in_thread:
                output = await asyncio.to_thread(function, **arguments)
            else:
                output = function(**arguments)
            # A partial of an async function or an object with an async __call__ is not a
            # coroutine function, yet returns an awaitable: await it too.
            if inspect.isawaitable(output):
                output = await output
    except TimeoutError:
        error = f"tool {name!r} timed out after {timeout_s:g}s"
    except Exception as exc:  # isolation: one failing call never sinks the others
        error = f"{type(exc).__name__}: {exc}"
    latency_ms = (time.perf_counter() - started) * 1000
    if ctx is not None:
        ctx.record_tool_call(latency_ms, name=name, arguments=arguments, result=output, error=error)
    return tool_result_message(tool_call, f"Error: {error}" if error else output)


async def execute_tool_calls(
    tool_calls: list[Mapping[str, Any]],
    functions: Mapping[str, Callable[..., Any]],
    *,
    ctx: RolloutContext | None = None,
    timeout_s: float = 30.0,
    sync_in_thread: bool = True,
) -> list[dict[str, Any]]:
    """Run tool calls concurrently and return their ``role: tool`` messages, in call order.

    Each call is isolated: an unknown tool, bad arguments, an exception or a timeout becomes an
    ``Error: ...`` tool message for the model instead of failing the rollout. Sync functions run
    in a thread (``sync_in_thread``) so they cannot block the event loop. With ``ctx`` every
    call is counted in the rollout's metrics and shown in traces.
    """
    if len(tool_calls) == 1:  # the common case: no gather machinery
        return [await _call_one(tool_calls[0], functions, timeout_s, ctx, sync_in_thread)]
    return list(
        await asyncio.gather(
            *(_call_one(c, functions, timeout_s, ctx, sync_in_thread) for c in tool_calls)
        )
    )
