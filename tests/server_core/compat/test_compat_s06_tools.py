"""SDK-0.2-API.md §6: tool helpers, with the issue's newer forms accepted beside 0.2's."""

from __future__ import annotations

import asyncio
import inspect
import time

import pytest
from compat_support import FakeLLM, make_request, tool_call

from server_core import (
    RolloutContext,
    ToolArgumentError,
    create_tool_error_result,
    create_tool_result,
    execute_tool_calls,
    get_tool_call_info,
    parse_tool_arguments,
    serialize_tool_result,
)

# ---- create_tool_result / create_tool_error_result ------------------------------------------


def test_create_tool_result_shape_and_key_order():
    msg = create_tool_result("call_1", "42")
    assert msg == {"role": "tool", "content": "42", "tool_call_id": "call_1"}
    assert list(msg) == ["role", "content", "tool_call_id"]
    assert "name" not in msg


def test_create_tool_result_keeps_non_str_content():
    content = {"a": 1}
    assert create_tool_result("c", content)["content"] is content
    assert create_tool_result("c", 5)["content"] == 5


def test_create_tool_result_keywords():
    assert create_tool_result(tool_call_id="c", content="x")["tool_call_id"] == "c"


def test_create_tool_error_result():
    msg = create_tool_error_result("call_2", "division by zero")
    assert msg == {"role": "tool", "content": "Error: division by zero", "tool_call_id": "call_2"}
    assert list(msg) == ["role", "content", "tool_call_id"]
    assert create_tool_error_result(tool_call_id="c", error_message="m")["content"] == "Error: m"


# ---- serialize_tool_result ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, "true"),
        (False, "false"),
        (42, "42"),
        (3.14, "3.14"),
        (float("nan"), "nan"),
        (10**30, str(10**30)),
        ("already text", "already text"),
        ("", ""),
        (None, "null"),
        ({"a": "é"}, '{"a": "\\u00e9"}'),
        ((1, 2), "[1, 2]"),
        ({1: "x"}, '{"1": "x"}'),
        ([1, {"b": None}], '[1, {"b": null}]'),
    ],
)
def test_serialize_tool_result(value, expected):
    assert serialize_tool_result(value) == expected


def test_serialize_tool_result_returns_a_str_unchanged():
    text = "x" * 10
    assert serialize_tool_result(text) is text


def test_serialize_tool_result_unserializable_raises_json_type_error():
    with pytest.raises(TypeError):
        serialize_tool_result(object())


def test_serialize_tool_result_keyword():
    assert serialize_tool_result(result=1) == "1"


# ---- parse_tool_arguments (0.2 form) --------------------------------------------------------


def test_parse_dict_returns_the_same_object():
    args = {"a": 1, "b": [2]}
    assert parse_tool_arguments(args) is args
    looks_like_call = {"function": "x", "id": 3}
    assert parse_tool_arguments(looks_like_call) is looks_like_call


def test_parse_json_string():
    assert parse_tool_arguments('{"a": 1, "b": "x"}') == {"a": 1, "b": "x"}
    assert parse_tool_arguments("{}") == {}


def test_parse_keyword_name():
    assert parse_tool_arguments(arguments='{"a": 1}') == {"a": 1}


@pytest.mark.parametrize("raw", ["", "{not json", "{'a': 1}"])
def test_parse_invalid_json(raw):
    with pytest.raises(ToolArgumentError, match="Invalid JSON arguments") as info:
        parse_tool_arguments(raw)
    assert (info.value.tool_call_id, info.value.tool_name) == ("", "")
    assert str(info.value).startswith("Invalid JSON arguments: ")


@pytest.mark.parametrize(("raw", "kind"), [("null", "NoneType"), ("[1]", "list"), ("3", "int")])
def test_parse_json_that_is_not_an_object(raw, kind):
    with pytest.raises(ToolArgumentError, match="Expected dict from JSON") as info:
        parse_tool_arguments(raw)
    assert str(info.value) == f"Expected dict from JSON, got {kind}"


@pytest.mark.parametrize(("value", "kind"), [(None, "NoneType"), (b"{}", "bytes"), (5, "int")])
def test_parse_other_input_types(value, kind):
    with pytest.raises(ToolArgumentError, match="Expected str or dict arguments") as info:
        parse_tool_arguments(value)
    assert str(info.value) == f"Expected str or dict arguments, got {kind}"


# ---- parse_tool_arguments (the newer form: a whole OpenAI tool call) --------------------------


def test_parse_a_whole_tool_call():
    call = tool_call("add", {"a": 1, "b": 2}, "call_9")
    assert parse_tool_arguments(call) == {"a": 1, "b": 2}


def test_parse_a_whole_tool_call_with_dict_arguments():
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}
    assert parse_tool_arguments(call) == {"x": 1}


# ---- get_tool_call_info ---------------------------------------------------------------------


def test_get_tool_call_info():
    call = tool_call("add", {"a": 1}, "call_1")
    assert get_tool_call_info(call) == ("call_1", "add", {"a": 1})
    assert get_tool_call_info(tool_call=call)[0] == "call_1"


def test_get_tool_call_info_defaults():
    assert get_tool_call_info({"function": {"name": "f"}}) == ("unknown", "f", {})
    assert get_tool_call_info({"id": "c"}) == ("c", "", {})
    assert get_tool_call_info({"id": "c", "function": {"arguments": {"x": 1}}}) == (
        "c",
        "",
        {"x": 1},
    )


def test_get_tool_call_info_raises_a_tool_argument_error_with_id_and_name():
    call = {"id": "call_7", "function": {"name": "div", "arguments": "{broken"}}
    with pytest.raises(ToolArgumentError, match="Invalid JSON arguments") as info:
        get_tool_call_info(call)
    assert info.value.tool_call_id == "call_7"
    assert info.value.tool_name == "div"
    no_id = {"function": {"name": "div", "arguments": "[1]"}}
    with pytest.raises(ToolArgumentError, match="Expected dict from JSON") as info:
        get_tool_call_info(no_id)
    assert (info.value.tool_call_id, info.value.tool_name) == ("unknown", "div")


def test_get_tool_call_info_function_none_is_an_attribute_error():
    with pytest.raises(AttributeError):
        get_tool_call_info({"id": "c", "function": None})


# ---- execute_tool_calls (0.2 form: an async executor) ---------------------------------------


async def test_execute_tool_calls_empty_or_falsy():
    async def executor(call):  # pragma: no cover - never called
        raise AssertionError("called")

    assert await execute_tool_calls([], executor) == []
    assert await execute_tool_calls(None, executor) == []


async def test_execute_tool_calls_executor_form_in_order():
    calls = [tool_call("a", {}, "c1"), tool_call("b", {}, "c2"), tool_call("c", {}, "c3")]

    async def executor(call):
        await asyncio.sleep(0.01 * (3 - int(call["id"][1])))  # later ones finish first
        return create_tool_result(call["id"], call["function"]["name"].upper())

    results = await execute_tool_calls(calls, executor)
    assert isinstance(results, list)
    assert results == [
        {"role": "tool", "content": "A", "tool_call_id": "c1"},
        {"role": "tool", "content": "B", "tool_call_id": "c2"},
        {"role": "tool", "content": "C", "tool_call_id": "c3"},
    ]


async def test_execute_tool_calls_executor_returns_whatever_it_returns():
    """The executor's return values are the results, untouched (no name key added, no copy)."""
    returned = [{"role": "tool", "content": "x", "tool_call_id": "c1", "custom": 1}]

    async def executor(call):
        return returned[0]

    (result,) = await execute_tool_calls([tool_call("f", {}, "c1")], executor)
    assert result is returned[0]


async def test_execute_tool_calls_runs_concurrently():
    async def executor(call):
        await asyncio.sleep(0.1)
        return create_tool_result(call["id"], "ok")

    calls = [tool_call("f", {}, f"c{i}") for i in range(3)]
    started = time.perf_counter()
    await execute_tool_calls(calls, executor)
    assert time.perf_counter() - started < 0.2


async def test_execute_tool_calls_propagates_the_first_exception():
    async def executor(call):
        if call["id"] == "bad":
            raise ValueError("tool exploded")
        return create_tool_result(call["id"], "ok")

    with pytest.raises(ValueError, match="tool exploded"):
        await execute_tool_calls([tool_call("f", {}, "ok"), tool_call("f", {}, "bad")], executor)


async def test_execute_tool_calls_executor_keyword():
    async def executor(call):
        return create_tool_result(call["id"], "kw")

    results = await execute_tool_calls(tool_calls=[tool_call("f", {}, "c1")], executor=executor)
    assert results == [{"role": "tool", "content": "kw", "tool_call_id": "c1"}]


def test_execute_tool_calls_first_parameter():
    params = list(inspect.signature(execute_tool_calls).parameters)
    assert params[:2] == ["tool_calls", "executor"]
    assert inspect.iscoroutinefunction(execute_tool_calls)


# ---- execute_tool_calls (the newer mapping form) --------------------------------------------


async def test_execute_tool_calls_mapping_form_with_ctx():
    def add(a, b):
        return a + b

    async def shout(text):
        return text.upper()

    ctx = RolloutContext(request=make_request(), tools=[], llm=FakeLLM())
    calls = [tool_call("add", {"a": 1, "b": 2}, "c1"), tool_call("shout", {"text": "hi"}, "c2")]
    results = await execute_tool_calls(calls, {"add": add, "shout": shout}, ctx=ctx)
    assert [m["role"] for m in results] == ["tool", "tool"]
    assert [m["tool_call_id"] for m in results] == ["c1", "c2"]
    assert "3" in results[0]["content"]
    assert "HI" in results[1]["content"]
