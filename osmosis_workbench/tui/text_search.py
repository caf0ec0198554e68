"""Finding text in a trajectory: the query as a pattern, and which messages hold it.

Plain text by default (regex on request), smart case as in vim and less: a query with no
capital letter ignores case. ``MessageFinder`` keeps one searchable string per message,
built once for a history and extended as it grows (histories are append-only), so each key
typed into the search bar is one compiled pattern run over those strings: about 3 ms at
10,000 messages here (``benchmarks/bench_tui_scroll.py``). No Textual here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from osmosis_workbench.tui.widgets.message_format import call_name, content_text

#: Characters of one message that are searched (a megabyte tool result is searched in part).
_HAYSTACK_LIMIT = 200_000


def compile_query(text: str, *, regex: bool = False) -> re.Pattern[str] | None:
    """The pattern a search for ``text`` uses (``None``: nothing to search for).

    Raises ``ValueError`` naming the problem when ``regex`` and ``text`` is not a valid one.
    """
    if not text:
        return None
    flags = 0 if any(ch.isupper() for ch in text) else re.IGNORECASE
    if not regex:
        return re.compile(re.escape(text), flags)
    try:
        return re.compile(text, flags)
    except re.error as exc:
        raise ValueError(f"not a valid regex: {exc.msg} at {exc.pos}") from None


def message_haystack(message: Mapping[str, Any]) -> str:
    """What a search looks through in one message: its text, its tool calls and their names."""
    parts = [content_text(message.get("content"))[:_HAYSTACK_LIMIT]]
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, Mapping) else None
        arguments = (function or {}).get("arguments")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False)
        parts.append(f"{call_name(call)}({arguments[:_HAYSTACK_LIMIT]})")
    if message.get("name"):
        parts.append(str(message["name"]))
    return "\n".join(parts)


class MessageFinder:
    """Which messages of a history match a pattern (the strings kept, built once)."""

    def __init__(self) -> None:
        self._messages: Sequence[Mapping[str, Any]] | None = None
        self._haystacks: list[str] = []

    def _haystacks_of(self, messages: Sequence[Mapping[str, Any]]) -> list[str]:
        if messages is not self._messages or len(messages) < len(self._haystacks):
            self._messages, self._haystacks = messages, []
        # A running rollout's history grows: only the new messages are read.
        for index in range(len(self._haystacks), len(messages)):
            self._haystacks.append(message_haystack(messages[index]))
        return self._haystacks

    def prepare(self, messages: Sequence[Mapping[str, Any]]) -> None:
        """Build the strings now (when the search bar opens), not on the first key."""
        self._haystacks_of(messages)

    def find(self, messages: Sequence[Mapping[str, Any]], pattern: re.Pattern[str]) -> list[int]:
        """The indices of the messages ``pattern`` occurs in, in order."""
        search = pattern.search
        return [i for i, text in enumerate(self._haystacks_of(messages)) if search(text)]


def next_match(matches: Sequence[int], current: int, *, forward: bool = True) -> int | None:
    """The match after (or before) position ``current``, wrapping around (``None``: none)."""
    if not matches:
        return None
    if forward:
        return next((m for m in matches if m > current), matches[0])
    return next((m for m in reversed(matches) if m < current), matches[-1])
