"""Helpers for reading chat messages (OpenAI shape) without tripping on odd ones."""

from __future__ import annotations

from typing import Any


def parse_tool_calls(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool calls of a message: its ``tool_calls`` list, or ``[]`` when it has none."""
    calls = message.get("tool_calls") or []
    return calls if isinstance(calls, list) else []


def normalize_stop(stop: Any) -> list[str] | None:
    """Stop sequences as a list of strings: a str becomes ``[str]``, a list's items ``str()``."""
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list):
        return [str(item) for item in stop]
    return None


def get_message_content(message: dict[str, Any]) -> str:
    """The text content of a message (``""`` when absent or not a string)."""
    content = message.get("content")
    return content if isinstance(content, str) else ""


def get_message_role(message: dict[str, Any]) -> str:
    """The role of a message, or ``"unknown"``."""
    role = message.get("role")
    return role if isinstance(role, str) else "unknown"


def is_assistant_message(message: dict[str, Any]) -> bool:
    """Whether the message's role is exactly ``"assistant"``."""
    return get_message_role(message) == "assistant"


def is_tool_message(message: dict[str, Any]) -> bool:
    """Whether the message's role is exactly ``"tool"``."""
    return get_message_role(message) == "tool"


def is_user_message(message: dict[str, Any]) -> bool:
    """Whether the message's role is exactly ``"user"``."""
    return get_message_role(message) == "user"


def count_messages_by_role(messages: list[dict[str, Any]]) -> dict[str, int]:
    """How many messages of each role, in the order roles first appear."""
    counts: dict[str, int] = {}
    for message in messages:
        role = get_message_role(message)
        counts[role] = counts.get(role, 0) + 1
    return counts
