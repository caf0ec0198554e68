"""server_core.tools: parse arguments, run a batch of tool calls, build tool result messages."""

from __future__ import annotations

import asyncio
import functools
import time

import pytest

from server_core import (
    RolloutContext,
    RolloutRequest,
    TrainerClient,
    execute_tool_calls,
    parse_tool_arguments,
    tool_result_message,
)
from server_core.rollout_llm import RolloutLLM
from server_core.tools import ToolArgumentError


def call(name: str, arguments, call_id: str = "c1") -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


# ---- parse_tool_arguments ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('{"a": 1, "b": [2, 3]}', {"a": 1, "b": [2, 3]}),
        ({"a": 1}, {"a": 1}),
        ("", {}),
        (None, {}),
        ('{"nested": {"x": null}}', {"nested": {"x": None}}),
    ],
)
def test_parse_tool_arguments(arguments, expected):
    assert parse_tool_arguments(call("f", arguments)) == expected


def test_parse_tool_arguments_returns_a_copy_of_a_dict():
    original = {"a": 1}
    parsed = parse_tool_arguments(call("f", original))
    parsed["a"] = 2
    assert original == {"a": 1}


def test_parse_tool_arguments_takes_a_plain_dict_as_the_arguments_themselves():
    # The 0.2 form: a dict that is not a tool call is the arguments, returned as they are.
    arguments = {"name": "f", "arguments": '{"q": "x"}'}
    assert parse_tool_arguments(arguments) is arguments


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [("{not json", "not valid JSON"), ("[1, 2]", "JSON object"), ('"text"', "JSON object")],
)
def test_parse_tool_arguments_names_the_tool_when_arguments_are_bad(arguments, fragment):
    with pytest.raises(ToolArgumentError, match=fragment) as info:
        parse_tool_arguments(call("calculator", arguments))
    assert "calculator" in str(info.value)
    assert info.value.tool_name == "calculator" and info.value.tool_call_id == "c1"


# ---- tool_result_message ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "text"),
    [("plain", "plain"), (42, "42"), (2.5, "2.5"), ({"x": [1]}, '{"x": [1]}'), ([1, 2], "[1, 2]")],
)
def test_tool_result_message_carries_the_name_and_text(content, text):
    message = tool_result_message(call("add", "{}", "call-7"), content)
    assert message == {"role": "tool", "tool_call_id": "call-7", "name": "add", "content": text}


# ---- execute_tool_calls -----------------------------------------------------------------------


async def test_calls_run_concurrently_and_answer_in_call_order():
    async def slow(label, delay):
        await asyncio.sleep(delay)
        return label

    calls = [
        call("slow", '{"label": "first", "delay": 0.1}', "c1"),
        call("slow", '{"label": "second", "delay": 0.05}', "c2"),
        call("slow", '{"label": "third", "delay": 0.1}', "c3"),
    ]
    started = time.perf_counter()
    messages = await execute_tool_calls(calls, {"slow": slow})
    assert time.perf_counter() - started < 0.2  # not 0.25: concurrent
    assert [m["content"] for m in messages] == ["first", "second", "third"]
    assert [m["tool_call_id"] for m in messages] == ["c1", "c2", "c3"]
    assert all(m["name"] == "slow" for m in messages)


async def test_each_call_is_isolated():
    def boom():
        raise RuntimeError("tool crashed")

    async def hang():
        await asyncio.Event().wait()

    calls = [
        call("add", '{"a": 1, "b": 2}', "ok"),
        call("missing", "{}", "unknown"),
        call("add", "{broken", "bad-json"),
        call("add", '{"a": 1}', "bad-args"),
        call("boom", "{}", "raises"),
        call("hang", "{}", "times-out"),
    ]
    functions = {"add": lambda a, b: a + b, "boom": boom, "hang": hang}
    messages = await execute_tool_calls(calls, functions, timeout_s=0.05)
    by_id = {m["tool_call_id"]: m["content"] for m in messages}
    assert by_id["ok"] == "3"
    assert by_id["unknown"].startswith("Error:") and "unknown tool 'missing'" in by_id["unknown"]
    assert "add" in by_id["unknown"]  # lists what is available
    assert by_id["bad-json"].startswith("Error:") and "not valid JSON" in by_id["bad-json"]
    assert by_id["bad-args"].startswith("Error: TypeError")
    assert by_id["raises"] == "Error: RuntimeError: tool crashed"
    assert by_id["times-out"] == "Error: tool 'hang' timed out after 0.05s"
    assert [m["name"] for m in messages] == ["add", "missing", "add", "add", "boom", "hang"]


async def test_sync_tools_run_off_the_event_loop():
    def blocking(seconds):
        time.sleep(seconds)
        return "slept"

    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        messages = await execute_tool_calls(
            [
                call("blocking", '{"seconds": 0.15}', "a"),
                call("blocking", '{"seconds": 0.15}', "b"),
            ],
            {"blocking": blocking},
        )
    finally:
        task.cancel()
    assert [m["content"] for m in messages] == ["slept", "slept"]
    assert ticks >= 5  # the loop kept running while the tools slept


async def test_sync_tool_timeout_in_a_thread():
    def blocking():
        time.sleep(0.2)

    (message,) = await execute_tool_calls(
        [call("blocking", "{}")], {"blocking": blocking}, timeout_s=0.02
    )
    assert "timed out" in message["content"]


async def test_sync_tools_can_run_inline():
    import threading

    threads = []

    def where():
        threads.append(threading.current_thread())
        return "here"

    await execute_tool_calls([call("where", "{}")], {"where": where}, sync_in_thread=False)
    assert threads == [threading.main_thread()]


async def test_awaitables_from_non_coroutine_callables_are_awaited():
    async def add(a, b):
        return a + b

    class AsyncCallable:
        async def __call__(self, x):
            return x * 2

    messages = await execute_tool_calls(
        [call("partial", '{"b": 2}', "p"), call("obj", '{"x": 21}', "o")],
        {"partial": functools.partial(add, 1), "obj": AsyncCallable()},
    )
    assert [m["content"] for m in messages] == ["3", "42"]


async def test_calls_are_counted_in_the_rollout_metrics():
    request = RolloutRequest(
        rollout_id="r", server_url="http://trainer.test", messages=[], completion_params={}
    )
    ctx = RolloutContext(request, [], RolloutLLM(request, TrainerClient()))

    async def slow_add(a, b):
        await asyncio.sleep(0.01)
        return a + b

    await execute_tool_calls(
        [call("add", '{"a": 1, "b": 2}', "1"), call("nope", "{}", "2")], {"add": slow_add}, ctx=ctx
    )
    assert ctx.metrics.num_tool_calls == 2
    assert ctx.metrics.tool_latency_ms >= 10
    ctx.record_tool_call(latency_ms=5.0)
    assert ctx.metrics.num_tool_calls == 3


async def test_an_empty_batch_is_empty():
    assert await execute_tool_calls([], {}) == []
