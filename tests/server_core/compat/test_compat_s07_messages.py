"""SDK-0.2-API.md §7: message helpers."""

from __future__ import annotations

import pytest

from server_core import (
    count_messages_by_role,
    get_message_content,
    get_message_role,
    is_assistant_message,
    is_tool_message,
    is_user_message,
    normalize_stop,
    parse_tool_calls,
)


def test_parse_tool_calls_returns_the_same_list():
    calls = [{"id": "c1"}]
    assert parse_tool_calls({"tool_calls": calls}) is calls


@pytest.mark.parametrize(
    "msg",
    [
        {},
        {"tool_calls": None},
        {"tool_calls": []},
        {"tool_calls": ({"id": "c"},)},
        {"tool_calls": "calls"},
        {"tool_calls": {"id": "c"}},
    ],
)
def test_parse_tool_calls_non_lists_give_empty(msg):
    assert parse_tool_calls(msg) == []


@pytest.mark.parametrize(
    ("stop", "expected"),
    [
        (None, None),
        ("END", ["END"]),
        ("", [""]),
        (["a", "b"], ["a", "b"]),
        ([1, None], ["1", "None"]),
        ([], []),
        (("a",), None),
        (5, None),
    ],
)
def test_normalize_stop(stop, expected):
    assert normalize_stop(stop) == expected


@pytest.mark.parametrize(
    ("msg", "expected"),
    [
        ({"content": "hi"}, "hi"),
        ({"content": None}, ""),
        ({}, ""),
        ({"content": [{"type": "text", "text": "hi"}]}, ""),
        ({"content": 5}, ""),
    ],
)
def test_get_message_content(msg, expected):
    assert get_message_content(msg) == expected


@pytest.mark.parametrize(
    ("msg", "expected"),
    [
        ({"role": "user"}, "user"),
        ({"role": "Assistant"}, "Assistant"),
        ({}, "unknown"),
        ({"role": None}, "unknown"),
        ({"role": 3}, "unknown"),
    ],
)
def test_get_message_role(msg, expected):
    assert get_message_role(msg) == expected


def test_role_predicates_are_exact_and_case_sensitive():
    assert is_assistant_message({"role": "assistant"}) is True
    assert is_assistant_message({"role": "Assistant"}) is False
    assert is_tool_message({"role": "tool"}) is True
    assert is_tool_message({"role": "TOOL"}) is False
    assert is_user_message({"role": "user"}) is True
    assert is_user_message({"role": "assistant"}) is False
    assert is_user_message({}) is False


def test_count_messages_by_role():
    counts = count_messages_by_role(
        [
            {"role": "system"},
            {"role": "user"},
            {"role": "assistant"},
            {"role": "tool"},
            {"role": "assistant"},
            {},
        ]
    )
    assert counts == {"system": 1, "user": 1, "assistant": 2, "tool": 1, "unknown": 1}
    assert list(counts) == ["system", "user", "assistant", "tool", "unknown"]
    assert count_messages_by_role([]) == {}
