"""Rich renderables for what the debugger shows: a message, a paused answer, tools, a result.

Kept apart from the widgets so each view is a plain function of engine data: the widgets only
decide *when* to render, these decide *what* a person reads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich.columns import Columns
from rich.console import Group, RenderableType
from rich.highlighter import JSONHighlighter
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from osmosis_workbench.tui.widgets.message_format import (
    call_arguments,
    call_name,
    compact_json,
    content_text,
    format_ms,
    format_reward,
    tool_function,
    tool_label,
    tool_names_by_call_id,
)

if TYPE_CHECKING:
    from osmosis_workbench.engine.outcome import RolloutOutcome

#: Above this many characters content is shown as plain text: markdown layout of a huge
#: message would take seconds and nobody reads it formatted anyway.
_MARKDOWN_LIMIT = 50_000
#: Above this many characters JSON is shown raw rather than re-indented.
_PRETTY_JSON_LIMIT = 200_000

_ROLE_STYLES = {
    "system": "bold bright_black",
    "user": "bold green",
    "assistant": "bold blue",
    "tool": "bold yellow",
}


_JSON_HIGHLIGHTER = JSONHighlighter()
#: Lines of a context message shown in the answer view (the messages view has them whole).
_CONTEXT_LINES = 8


def json_block(data: Any) -> Text:
    """``data`` as highlighted JSON, small objects kept on one line."""
    return _JSON_HIGHLIGHTER(Text(compact_json(data)))


def traceback_block(text: str) -> RenderableType:
    """A Python traceback, highlighted."""
    from rich.syntax import Syntax  # pygments: imported when a traceback is first shown

    return Syntax(
        text.rstrip(), "pytb", theme="ansi_dark", word_wrap=True, background_color="default"
    )


def _facts(rows: Sequence[tuple[str, RenderableType | str]]) -> Table:
    """A two-column label/value grid."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for label, value in rows:
        table.add_row(label, value)
    return table


#: Something markdown would render differently from plain text: emphasis, code, links,
#: headings, quotes, lists, tables. Most messages have none, and plain text renders ~10x
#: faster (it is what keeps a scroll key through a long history under 50 ms).
_MARKDOWN_SYNTAX = re.compile(r"[*_`\[|]|^\s{0,3}(?:#|>|[-+] |\d+[.)] )", re.MULTILINE)


def render_text_content(text: str, *, markdown: bool = False) -> RenderableType:
    """Message text: JSON pretty-printed when it is JSON, else as written (or as markdown).

    As written by default: markdown hides what a reward may read (``#### 42`` becomes a
    heading "42", ``**`` and backticks vanish).
    """
    stripped = text.strip()
    if stripped[:1] in ("{", "[") and len(stripped) <= _PRETTY_JSON_LIMIT:
        try:
            return json_block(json.loads(stripped))
        except ValueError:
            pass
    if not stripped:
        return Text("(empty)", style="dim italic")
    if markdown and len(text) <= _MARKDOWN_LIMIT and _MARKDOWN_SYNTAX.search(text):
        # Imported here: markdown-it and pygments cost ~0.2 s, kept off the first screen.
        from rich.markdown import Markdown

        return Markdown(text, code_theme="ansi_dark")
    return Text(text)


def render_tool_calls(calls: Sequence[Any]) -> list[RenderableType]:
    """Each tool call: number, name, id, then its arguments as pretty JSON."""
    parts: list[RenderableType] = []
    for number, call in enumerate(calls, 1):
        call_id = call.get("id", "") if isinstance(call, Mapping) else ""
        head = Text.assemble(
            (f"{number}. ", "bold"), (call_name(call), "bold magenta"), (f"   {call_id}", "dim")
        )
        arguments, ok = call_arguments(call)
        parts.append(head)
        if ok:
            parts.append(json_block(arguments))
        else:
            parts.append(Text("arguments are not valid JSON:", style="bold red"))
            parts.append(Text(str(arguments)))
    return parts


def render_message(
    message: Mapping[str, Any],
    *,
    index: int,
    tool_name: str = "",
    tokens: str = "",
    pending: bool = False,
    markdown: bool = False,
) -> RenderableType:
    """One message whole, for the detail pane (``markdown``: its text rendered as such)."""
    role = str(message.get("role") or "?")
    head = Text.assemble((f"#{index} ", "dim"), (role, _ROLE_STYLES.get(role, "bold")))
    if role == "tool":
        head.append(" result of ", style="dim")
        head.append(tool_name or "?", style="bold magenta")
    if tokens:
        head.append(f"   {tokens} tokens", style="dim")
    if pending:
        head.append("   ⏸ pending: the agent has not seen this answer yet", style="bold yellow")
    parts: list[RenderableType] = [head]
    if role == "tool" and message.get("tool_call_id"):
        parts.append(Text(f"call id {message['tool_call_id']}", style="dim"))
    parts.append(Text())
    content = message.get("content")
    calls = message.get("tool_calls") or []
    if content is not None or not calls:
        text = content_text(content)
        parts.append(render_text_content(text, markdown=markdown and role != "tool"))
    if calls:
        parts.append(Rule(f"tool calls ({len(calls)})", style="dim", align="left"))
        parts.extend(render_tool_calls(calls))
    extras = {
        k: v
        for k, v in message.items()
        if k not in ("role", "content", "tool_calls", "tool_call_id", "name")
    }
    if extras:
        parts.append(Rule("other fields", style="dim", align="left"))
        parts.append(json_block(extras))
    return Group(*parts)


def render_context(request_messages: Sequence[Mapping[str, Any]]) -> list[RenderableType]:
    """What the model got that is new this turn: the messages after its previous answer."""
    # Everything after the model's previous answer: the prompt on turn 1, tool results later.
    start = len(request_messages)
    while start > 0 and request_messages[start - 1].get("role") != "assistant":
        start -= 1
    names = tool_names_by_call_id(request_messages)
    parts: list[RenderableType] = []
    for index in range(start, len(request_messages)):
        message = request_messages[index]
        role = str(message.get("role") or "?")
        head = Text.assemble((f"#{index} ", "dim"), (role, _ROLE_STYLES.get(role, "bold")))
        if role == "tool":
            head.append(f" result of {tool_label(message, names)}", style="magenta")
        lines = content_text(message.get("content")).strip().splitlines()
        body = "\n".join(lines[:_CONTEXT_LINES])
        if len(lines) > _CONTEXT_LINES:
            body += f"\n… {len(lines) - _CONTEXT_LINES} more lines (m shows it whole)"
        parts.append(Text.assemble(head, "  ", body or "(empty)"))
    return parts


def render_response(
    *,
    turn: int,
    message: Mapping[str, Any],
    finish_reason: str | None,
    usage: Mapping[str, Any],
    latency_ms: float | None,
    replaced: bool = False,
    request_messages: Sequence[Mapping[str, Any]] = (),
    markdown: bool = False,
) -> RenderableType:
    """The answer held at the gate: facts, content, each tool call, then what it answers."""
    total = usage.get("total_tokens")
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    tokens = "-" if total is None else str(total)
    if prompt is not None and completion is not None:
        tokens += f"  ({prompt} prompt + {completion} completion)"
    facts = _facts(
        [
            ("Turn", str(turn)),
            ("Finish reason", Text(str(finish_reason or "-"), style="bold cyan")),
            ("Tokens", tokens),
            ("Latency", format_ms(latency_ms)),
        ]
    )
    parts: list[RenderableType] = [facts]
    if replaced:
        parts.append(Text("This answer was edited before release.", style="bold yellow"))
    parts.append(Rule("content", style="dim", align="left"))
    content = content_text(message.get("content"))
    if content.strip():
        parts.append(render_text_content(content, markdown=markdown))
    else:
        parts.append(Text("(no content)", style="dim italic"))
    calls = message.get("tool_calls") or []
    parts.append(Rule(f"tool calls ({len(calls)})", style="dim", align="left"))
    if calls:
        parts.extend(render_tool_calls(calls))
    else:
        parts.append(
            Text("(none: the agent will treat this as its final answer)", style="dim italic")
        )
    context = render_context(request_messages)
    if context:
        parts.append(Rule("in reply to (new input of this turn)", style="dim", align="left"))
        parts.extend(context)
    return Group(*parts)


def _tool_card(tool: Mapping[str, Any]) -> Panel:
    function = tool_function(tool)
    parameters = function.get("parameters") or {}
    body = Group(
        Text(str(function.get("description") or "(no description)"), style="italic"),
        Text(),
        json_block(parameters),
    )
    # expand=False: cards take their content's width, so Columns fits two or three a row.
    return Panel(
        body,
        title=Text(str(function.get("name") or "?"), style="bold magenta"),
        title_align="left",
        border_style="bright_black",
        expand=False,
    )


def render_tools(tools: Sequence[Mapping[str, Any]], *, source: str) -> RenderableType:
    """The agent's tools: name, description and the JSON Schema of the parameters."""
    if not tools:
        return Text(f"No tools ({source}).", style="dim italic")
    return Group(
        Text(f"{len(tools)} tools ({source})", style="bold"),
        Columns([_tool_card(tool) for tool in tools], padding=(0, 1)),
    )


def _metric(name: Any, value: Any) -> str:
    if isinstance(value, float):
        return format_ms(value) if str(name).endswith("_ms") else f"{value:.4g}"
    return value if isinstance(value, str) else compact_json(value)


def render_outcome(
    outcome: RolloutOutcome, *, title: str = "", markdown: bool = False
) -> RenderableType:
    """A finished rollout: status, reward, finish reason, duration, tokens, calls, errors."""
    ok = outcome.ok
    reward = format_reward(outcome.reward)
    # Time spent paused in the debugger is the user's, not the rollout's: left out.
    duration = Text(format_ms(outcome.working_ms))
    if outcome.paused_ms >= 1:
        duration.append(
            f"  (not counting {format_ms(outcome.paused_ms)} of yours: paused, answering)",
            style="dim",
        )
    rows: list[tuple[str, RenderableType | str]] = [
        ("Status", Text(outcome.status, style="bold green" if ok else "bold red")),
        ("Reward", Text(reward, style="bold")),
        ("Finish reason", str(outcome.finish_reason or "-")),
        ("Duration", duration),
        ("Tokens", str(outcome.tokens)),
        ("LLM calls", str(outcome.llm_calls)),
        ("Messages", str(len(outcome.final_messages))),
    ]
    if outcome.cost_usd:
        rows.append(("Cost", f"${outcome.cost_usd:.4f}"))
    if outcome.error:
        category = f"  ({outcome.error_category})" if outcome.error_category else ""
        rows.append(("Error", Text(f"{outcome.error}{category}", style="bold red")))
    parts: list[RenderableType] = []
    if title:
        parts.append(Text(title, style="bold"))
    parts.append(_facts(rows))
    metrics = outcome.metrics_without_pauses()
    if metrics:
        title = "metrics (your time left out)" if outcome.paused_ms >= 1 else "metrics"
        parts.append(Rule(title, style="dim", align="left"))
        parts.append(_facts([(str(k), _metric(k, v)) for k, v in metrics.items()]))
    if outcome.violations:
        parts.append(Rule("protocol violations", style="yellow", align="left"))
        parts.extend(Text(f"• {v}", style="yellow") for v in outcome.violations)
    if outcome.traceback:
        parts.append(Rule("traceback", style="red", align="left"))
        parts.append(traceback_block(outcome.traceback))
    # The last words of the model, which the reward usually judges.
    final = next(
        (
            m
            for m in reversed(outcome.final_messages)
            if m.get("role") == "assistant" and content_text(m.get("content")).strip()
        ),
        None,
    )
    if final is not None:
        parts.append(Rule("final answer", style="dim", align="left"))
        parts.append(render_text_content(content_text(final.get("content")), markdown=markdown))
    return Group(*parts)
