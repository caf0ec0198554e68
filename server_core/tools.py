"""Tool helpers: read tool calls, run them, and build the ``role: tool`` messages.

Both generations of the API work. The 0.2 helpers (``get_tool_call_info``,
``create_tool_result``, ``create_tool_error_result``, ``serialize_tool_result``,
``execute_tool_calls(calls, executor)``) behave exactly as in 0.2. The newer forms
(``execute_tool_calls(calls, {"name": fn}, ctx=ctx)``, ``parse_tool_arguments(tool_call)``)
isolate failures, time each call and count it in the rollout's metrics.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from server_core.errors import ToolArgumentError

if TYPE_CHECKING:
    from server_core.agent import RolloutContext

#: The keys an OpenAI tool call has; a dict with only these and a ``function`` object is
#: read as a tool call by ``parse_tool_arguments`` (any other dict is the arguments).
_TOOL_CALL_KEYS = frozenset({"id", "type", "function", "index"})


# ---- messages -----------------------------------------------------------------------------------


def create_tool_result(tool_call_id: str, content: Any) -> dict[str, Any]:
    """The ``role: tool`` message answering ``tool_call_id`` (content kept as given)."""
    return {"role": "tool", "content": content, "tool_call_id": tool_call_id}


def create_tool_error_result(tool_call_id: str, error_message: str) -> dict[str, Any]:
    """A ``role: tool`` message reporting a failed call: ``"Error: <message>"``."""
    return create_tool_result(tool_call_id, f"Error: {error_message}")


def serialize_tool_result(result: Any) -> str:
    """A tool's return value as message text: numbers as written, bools and others as JSON."""
    if isinstance(result, bool):
        return "true" if result else "false"
    if isinstance(result, int | float):
        return str(result)
    if isinstance(result, str):
        return result
    return json.dumps(result)


def tool_call_name(tool_call: Mapping[str, Any]) -> str:
    """The function name of an OpenAI tool call (empty string when missing)."""
    function = tool_call.get("function") or {}
    return str(function.get("name") or tool_call.get("name") or "")


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


# ---- arguments ---------------------------------------------------------------------------------


def _is_tool_call(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and isinstance(value.get("function"), Mapping)
        and _TOOL_CALL_KEYS.issuperset(value)
        and ("name" in value["function"] or "arguments" in value["function"])
    )


def parse_tool_arguments(arguments: Any) -> dict[str, Any]:
    """A tool call's arguments as a dict.

    ``arguments`` is what a tool call's ``function.arguments`` holds (0.2): a JSON string,
    decoded and required to be an object, or a dict, returned as the same object. A whole
    OpenAI tool call (``{"id", "type", "function": {...}}``) is also accepted: its arguments
    are parsed, and empty ones give ``{}``. Raises ``ToolArgumentError``.
    """
    if _is_tool_call(arguments):
        return _arguments_of_call(arguments)
    if isinstance(arguments, dict):
        return arguments
    if isinstance(arguments, str):
        try:
            parsed = json.loads(arguments)
        except ValueError as exc:
            raise ToolArgumentError(f"Invalid JSON arguments: {exc}") from None
        if not isinstance(parsed, dict):
            raise ToolArgumentError(f"Expected dict from JSON, got {type(parsed).__name__}")
        return parsed
    raise ToolArgumentError(f"Expected str or dict arguments, got {type(arguments).__name__}")


def _arguments_of_call(tool_call: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of a whole tool call; errors name the tool and carry its id."""
    name = tool_call_name(tool_call)
    call_id = str(tool_call.get("id") or "")
    function = tool_call.get("function")
    raw = function.get("arguments") if isinstance(function, Mapping) else tool_call.get("arguments")
    if raw is None or raw == "":
        return {}
    if isinstance(raw, Mapping):
        return dict(raw)
    try:
        parsed = json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise ToolArgumentError(
            f"arguments of tool call {name!r} are not valid JSON: {exc}",
            tool_call_id=call_id,
            tool_name=name,
        ) from None
    if not isinstance(parsed, dict):
        raise ToolArgumentError(
            f"arguments of tool call {name!r} must be a JSON object, got {type(parsed).__name__}",
            tool_call_id=call_id,
            tool_name=name,
        )
    return parsed


def get_tool_call_info(tool_call: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """``(id, name, arguments)`` of a tool call; bad arguments raise ``ToolArgumentError``
    carrying the call's id and name."""
    call_id = tool_call.get("id", "unknown")
    function = tool_call.get("function", {})
    name = function.get("name", "")
    try:
        arguments = parse_tool_arguments(function.get("arguments", {}))
    except ToolArgumentError as exc:
        raise ToolArgumentError(str(exc), tool_call_id=call_id, tool_name=name) from exc
    return call_id, name, arguments


# ---- running -----------------------------------------------------------------------------------


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
        arguments = _arguments_of_call(tool_call)
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
    tool_calls: list[dict[str, Any]],
    executor: Mapping[str, Callable[..., Any]] | Callable[[dict[str, Any]], Awaitable[Any]],
    *,
    ctx: RolloutContext | None = None,
    timeout_s: float = 30.0,
    sync_in_thread: bool = True,
) -> list[Any]:
    """Run tool calls concurrently and return their results in call order.

    ``executor`` is either
    - a mapping of tool name to function (ours): each call is isolated (an unknown tool, bad
      arguments, an exception or a timeout becomes an ``Error: ...`` tool message for the
      model), sync functions run in a thread, and with ``ctx`` every call is counted in the
      rollout's metrics and traces; or
    - an async callable taking one tool call (0.2): the results are whatever it returns,
      gathered concurrently, and the first exception propagates.
    """
    if not tool_calls:
        return []
    if not isinstance(executor, Mapping):
        if not callable(executor):
            raise TypeError(
                "execute_tool_calls() needs a mapping of tool name to function, or an async "
                f"executor taking one tool call; got {type(executor).__name__}"
            )
        return list(await asyncio.gather(*(executor(call) for call in tool_calls)))
    if len(tool_calls) == 1:  # the common case: no gather machinery
        return [await _call_one(tool_calls[0], executor, timeout_s, ctx, sync_in_thread)]
    return list(
        await asyncio.gather(
            *(_call_one(c, executor, timeout_s, ctx, sync_in_thread) for c in tool_calls)
        )
    )
