"""Plain helpers that describe chat messages for the workbench's views (no Textual here).

One place decides how a message is summarised on one line (role, tool name, first line,
tokens), how a tool result finds the name of the tool that produced it, and how an assistant
answer is turned into editable JSON and back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

#: Messages are dicts in the OpenAI chat format.
ChatMessage = Mapping[str, Any]


def content_text(content: Any) -> str:
    """The text of a message's ``content``: a string, or the text parts of a content list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, Mapping):
                if part.get("type") == "text":
                    parts.append(str(part.get("text") or ""))
                else:
                    parts.append(f"[{part.get('type', 'part')}]")
            else:
                parts.append(str(part))
        return "\n".join(parts)
    return str(content)


def first_line(message: ChatMessage) -> str:
    """The first non-empty line of the content; for a bare tool call, its call."""
    # A slice: splitting a megabyte tool result into lines to show one would cost per row.
    for line in content_text(message.get("content"))[:4000].splitlines():
        if line.strip():
            return line.strip()
    calls = message.get("tool_calls") or []
    if calls:
        return ", ".join(call_signature(call) for call in calls)
    return ""


def call_name(call: Any) -> str:
    """The function name of one tool call."""
    function = call.get("function") if isinstance(call, Mapping) else None
    return str((function or {}).get("name") or "?")


def call_arguments(call: Any) -> tuple[Any, bool]:
    """A tool call's arguments decoded from JSON; ``(raw, False)`` when they are not JSON."""
    function = call.get("function") if isinstance(call, Mapping) else None
    raw = (function or {}).get("arguments")
    if isinstance(raw, str):
        try:
            return json.loads(raw), True
        except ValueError:
            return raw, False
    return raw if raw is not None else {}, True


def call_signature(call: Any, limit: int = 60) -> str:
    """``add(a=17, b=25)``: a tool call on one line, for summaries."""
    arguments, ok = call_arguments(call)
    if ok and isinstance(arguments, Mapping):
        inner = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in arguments.items())
    else:
        inner = str(arguments)
    text = f"{call_name(call)}({inner})"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def tool_names_by_call_id(messages: Sequence[ChatMessage]) -> dict[str, str]:
    """Map each tool call id to its tool name, so tool results can be labelled."""
    names: dict[str, str] = {}
    for message in messages:
        for call in message.get("tool_calls") or ():
            if isinstance(call, Mapping) and call.get("id"):
                names[str(call["id"])] = call_name(call)
    return names


def tool_label(message: ChatMessage, names: Mapping[str, str]) -> str:
    """The tool column: the tool a result came from, or the tools an answer calls."""
    if message.get("role") == "tool":
        # Some servers also put the tool's name on the result: the fallback.
        return names.get(str(message.get("tool_call_id")), "") or str(message.get("name") or "?")
    calls = message.get("tool_calls") or []
    if calls:
        label = "→" + call_name(calls[0])
        return label + (f" +{len(calls) - 1}" if len(calls) > 1 else "")
    return ""


def estimate_tokens(message: ChatMessage) -> int:
    """About four characters a token: a size hint where the model gave no count."""
    chars = len(content_text(message.get("content")))
    for call in message.get("tool_calls") or ():
        chars += len(json.dumps(call, ensure_ascii=False))
    return chars // 4 + 1


def answer_tokens(exchanges: Sequence[Any]) -> dict[int, int]:
    """Exact completion tokens of each model answer, keyed by the answer's history index.

    Histories are append-only, so the answer to a request of ``n`` messages is message ``n``.
    """
    tokens: dict[int, int] = {}
    for exchange in exchanges:
        usage = getattr(exchange, "usage", None) or {}
        count = usage.get("completion_tokens")
        if isinstance(count, int):
            tokens[len(exchange.request.get("messages") or ())] = count
    return tokens


def format_tokens(count: int | None, exact: bool) -> str:
    """``1.2k``-style token counts; ``~`` marks an estimate."""
    if count is None:
        return ""
    text = f"{count / 1000:.1f}k" if count >= 10_000 else str(count)
    return text if exact else "~" + text


def format_ms(ms: float | None) -> str:
    """Milliseconds for people: ``12 ms``, ``3.4 s``, ``2 min 5 s``."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    minutes, seconds = divmod(round(ms / 1000), 60)
    return f"{minutes} min {seconds} s"


# ---- editing an answer ------------------------------------------------------------------------


def message_to_editable(message: ChatMessage) -> str:
    """The answer as JSON for the edit dialog: tool call arguments as objects, not strings."""
    editable: dict[str, Any] = {"content": message.get("content")}
    calls = []
    for call in message.get("tool_calls") or ():
        arguments, _ = call_arguments(call)
        calls.append({"id": call.get("id"), "name": call_name(call), "arguments": arguments})
    if calls:
        editable["tool_calls"] = calls
    return compact_json(editable, width=60)


def parse_json(text: str) -> Any:
    """``text`` as JSON, or ``ValueError`` naming the line and column that are wrong."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None


def editable_to_message(text: str, original: ChatMessage) -> dict[str, Any]:
    """Parse the edit dialog's JSON back into an assistant message.

    Raises ``ValueError`` with a message that says what to fix.
    """
    edited = parse_json(text)
    if not isinstance(edited, dict):
        raise ValueError('the answer must be a JSON object: {"content": ..., "tool_calls": [...]}')
    unknown = set(edited) - {"content", "tool_calls"}
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}: only content and tool_calls are edited")
    content = edited.get("content")
    if content is not None and not isinstance(content, str):
        raise ValueError("content must be a string or null")
    calls = edited.get("tool_calls") or []
    if not isinstance(calls, list):
        raise ValueError("tool_calls must be a list")
    # Keep fields the dialog does not show (reasoning, provider extras) from the original.
    message: dict[str, Any] = {
        k: v for k, v in original.items() if k not in ("content", "tool_calls")
    }
    message["role"] = "assistant"
    message["content"] = content
    tool_calls = []
    for number, call in enumerate(calls, 1):
        if not isinstance(call, dict) or not isinstance(call.get("name"), str) or not call["name"]:
            raise ValueError(f'tool call {number} needs a "name" (a string)')
        arguments = call.get("arguments", {})
        # On the wire (OpenAI format) arguments are a JSON string, whatever the user typed.
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False)
        tool_calls.append(
            {
                "id": str(call.get("id") or f"call_edited_{number}"),
                "type": "function",
                "function": {"name": call["name"], "arguments": arguments},
            }
        )
    if tool_calls:
        message["tool_calls"] = tool_calls
    elif content is None:
        # Neither text nor calls: the agent could not tell what the model meant.
        raise ValueError("an answer needs content or at least one tool call")
    return message


def compact_json(data: Any, width: int = 72, indent: int = 2, _level: int = 0) -> str:
    """Indented JSON where each object or list that fits in ``width`` stays on one line.

    Tool schemas and arguments read at a glance this way: a few lines, not one per value.
    """
    flat = json.dumps(data, ensure_ascii=False, default=str)
    if len(flat) + indent * _level <= width or not isinstance(data, dict | list) or not data:
        return flat
    pad, inner = " " * (indent * _level), " " * (indent * (_level + 1))
    if isinstance(data, dict):
        items = [
            f"{inner}{json.dumps(str(k), ensure_ascii=False)}: "
            f"{compact_json(v, width, indent, _level + 1)}"
            for k, v in data.items()
        ]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    items = [inner + compact_json(v, width, indent, _level + 1) for v in data]
    return "[\n" + ",\n".join(items) + f"\n{pad}]"


def format_reward(reward: float | None) -> str:
    """A reward as people write it: ``1.0``, ``0.5``, ``0.3333``."""
    if reward is None:
        return "-"
    text = f"{reward:.4f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


# ---- writing an answer (--model human) ----------------------------------------------------------

#: A placeholder per JSON Schema type, for a new tool call's arguments.
_PLACEHOLDERS: dict[str, Any] = {
    "string": "",
    "number": 0,
    "integer": 0,
    "boolean": False,
    "array": [],
    "object": {},
    "null": None,
}


def tool_function(tool: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ``function`` part of an OpenAI tool (or the tool itself, if it has none)."""
    function = tool.get("function")
    return function if isinstance(function, Mapping) else tool


def _parameters(tool: Mapping[str, Any]) -> Mapping[str, Any]:
    schema = tool_function(tool).get("parameters")
    return schema if isinstance(schema, Mapping) else {}


def argument_skeleton(tool: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments to start a new call from: each required parameter with a placeholder.

    The default or first enum value when the schema gives one, else an empty value of its
    type; with no required parameters, every parameter.
    """
    schema = _parameters(tool)
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return {}
    required = [name for name in schema.get("required") or () if name in properties]
    skeleton: dict[str, Any] = {}
    for name in required or list(properties):
        spec = properties[name] if isinstance(properties[name], Mapping) else {}
        if "default" in spec:
            skeleton[name] = spec["default"]
        elif isinstance(spec.get("enum"), list) and spec["enum"]:
            skeleton[name] = spec["enum"][0]
        else:
            kind = spec.get("type")
            skeleton[name] = _PLACEHOLDERS.get(kind if isinstance(kind, str) else "")
    return skeleton


def tool_signature(tool: Mapping[str, Any]) -> str:
    """``add(a: number*, b: number*)``: a tool's parameters on one line, ``*`` = required."""
    schema = _parameters(tool)
    properties = schema.get("properties")
    required = set(schema.get("required") or ())
    params = []
    for name, spec in properties.items() if isinstance(properties, Mapping) else ():
        kind = spec.get("type", "any") if isinstance(spec, Mapping) else "any"
        kind = "|".join(kind) if isinstance(kind, list) else str(kind)
        params.append(f"{name}: {kind}{'*' if name in required else ''}")
    return f"{tool_function(tool).get('name') or '?'}({', '.join(params)})"
