"""String tools for the example RolloutServer (a 0.2 template-style tools.py).

Ported from osmosis-ai 0.2 by changing the imports only:
``from osmosis_ai.rollout.core.exceptions import ...`` / ``...core.schemas`` / ``...tools``
became ``from server_core import ...``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Coroutine, Dict, List  # noqa: UP035

from server_core import (
    OpenAIFunctionParametersSchema,
    OpenAIFunctionPropertySchema,
    OpenAIFunctionSchema,
    OpenAIFunctionToolSchema,
    ToolArgumentError,
    create_tool_error_result,
    create_tool_result,
    execute_tool_calls,
    get_tool_call_info,
    serialize_tool_result,
)

logger = logging.getLogger(__name__)

# =============================================================================
# String Tools
# =============================================================================

TOOL_DELAY_SECONDS = 0.01

ToolFunction = Callable[..., Coroutine[Any, Any, Any]]


async def reverse_text(text: str) -> str:
    """Reverse a string."""
    await asyncio.sleep(TOOL_DELAY_SECONDS)
    return text[::-1]


async def count_chars(text: str, char: str) -> int:
    """Count how many times a character occurs in a string."""
    await asyncio.sleep(TOOL_DELAY_SECONDS)
    if len(char) != 1:
        raise ValueError("char must be exactly one character")
    return text.count(char)


async def change_case(text: str, mode: str) -> str:
    """Upper- or lower-case a string."""
    await asyncio.sleep(TOOL_DELAY_SECONDS)
    if mode == "upper":
        return text.upper()
    if mode == "lower":
        return text.lower()
    raise ValueError(f"Unknown mode '{mode}'")


STRING_TOOLS: Dict[str, ToolFunction] = {  # noqa: UP006
    "reverse_text": reverse_text,
    "count_chars": count_chars,
    "change_case": change_case,
}


async def _execute_string_call(tool_call: Dict[str, Any]) -> Dict[str, str]:  # noqa: UP006
    """Execute a single string tool call."""
    try:
        tool_call_id, function_name, arguments = get_tool_call_info(tool_call)
    except ToolArgumentError as e:
        tool_call_id = e.tool_call_id or tool_call.get("id", "unknown")
        return create_tool_error_result(tool_call_id, str(e))

    tool_fn = STRING_TOOLS.get(function_name)
    if tool_fn is None:
        return create_tool_error_result(
            tool_call_id,
            f"Unknown function '{function_name}'. Available: {sorted(STRING_TOOLS.keys())}",
        )

    try:
        result = await tool_fn(**arguments)
        return create_tool_result(tool_call_id, serialize_tool_result(result))
    except TypeError as e:
        return create_tool_error_result(tool_call_id, f"Invalid arguments: {e}")
    except ValueError as e:
        return create_tool_error_result(tool_call_id, str(e))
    except Exception:
        logger.exception("Unexpected error executing %s", function_name)
        return create_tool_error_result(tool_call_id, "Tool execution failed")


async def execute_string_calls(tool_calls: List[Dict[str, Any]]) -> List[Dict[str, str]]:  # noqa: UP006
    """Execute multiple string tool calls concurrently."""
    return await execute_tool_calls(tool_calls, _execute_string_call)


async def timed_execute(tool_calls: List[Dict[str, Any]]) -> tuple[List[Dict[str, str]], float]:  # noqa: UP006
    """Execute the calls and return the results with the elapsed milliseconds."""
    start = time.monotonic()
    results = await execute_string_calls(tool_calls)
    return results, (time.monotonic() - start) * 1000.0


def _text_property(description: str) -> OpenAIFunctionPropertySchema:
    return OpenAIFunctionPropertySchema(type="string", description=description)


STRING_TOOL_SCHEMAS: List[OpenAIFunctionToolSchema] = [  # noqa: UP006
    OpenAIFunctionToolSchema(
        type="function",
        function=OpenAIFunctionSchema(
            name="reverse_text",
            description="Reverse a string",
            parameters=OpenAIFunctionParametersSchema(
                type="object",
                properties={"text": _text_property("The text to reverse")},
                required=["text"],
            ),
        ),
    ),
    OpenAIFunctionToolSchema(
        type="function",
        function=OpenAIFunctionSchema(
            name="count_chars",
            description="Count how many times a character occurs in a string",
            parameters=OpenAIFunctionParametersSchema(
                type="object",
                properties={
                    "text": _text_property("The text to search"),
                    # No description: must not reach the trainer as "description": null.
                    "char": OpenAIFunctionPropertySchema(type="string"),
                },
                required=["text", "char"],
            ),
        ),
    ),
    OpenAIFunctionToolSchema(
        type="function",
        function=OpenAIFunctionSchema(
            name="change_case",
            description="Upper- or lower-case a string",
            parameters=OpenAIFunctionParametersSchema(
                type="object",
                properties={
                    "text": _text_property("The text to change"),
                    "mode": OpenAIFunctionPropertySchema(
                        type="string", description="upper or lower", enum=["upper", "lower"]
                    ),
                },
                required=["text", "mode"],
            ),
        ),
    ),
]
