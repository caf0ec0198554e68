"""PROTOCOL.md sections 4-5: the chat and completion callbacks, as the trainer sees them."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from server_core import (
    ChatResult,
    LLMCallError,
    RolloutResult,
    TrainerClient,
    TrainerClientConfig,
    TrainerProtocolError,
    execute_tool_calls,
)


def _has_null(value) -> bool:
    if value is None:
        return True
    if isinstance(value, dict):
        return any(_has_null(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_null(v) for v in value)
    return False


async def _chat_once(ctx):
    result = await ctx.chat(list(ctx.request.messages))
    return ctx.complete([*ctx.request.messages, result.message])


# ---- the chat body ----------------------------------------------------------------------------


async def test_chat_body_has_the_protocol_defaults(serve, make_agent, trainer):
    server = serve(make_agent(run=_chat_once))
    rollout_id = await server.start()
    await trainer.wait_for_completion(rollout_id)
    (body,) = trainer.chat_requests
    assert body == {
        "model": "default",
        "messages": [{"role": "user", "content": "What is 2 + 2?"}],
        "rollout_id": rollout_id,
        "temperature": 1.0,
        "top_p": 1.0,
        "logprobs": True,
    }


async def test_completion_params_apply_to_every_chat_and_explicit_kwargs_win(
    serve, make_agent, trainer
):
    async def run(ctx):
        messages = list(ctx.request.messages)
        first = await ctx.chat(messages, temperature=0.7, max_tokens=128, stop=None)
        messages.append(first.message)
        await ctx.chat(messages)
        return ctx.complete(messages)

    params = {"temperature": 0.2, "top_p": 0.9, "max_tokens": 64, "stop": "END", "seed": 7}
    server = serve(make_agent(run=run))
    rollout_id = await server.start(completion_params=params)
    await trainer.wait_for_completion(rollout_id)
    first, second = trainer.chat_requests
    assert (first["temperature"], first["max_tokens"], first["top_p"], first["seed"]) == (
        0.7,
        128,
        0.9,
        7,
    )
    assert "stop" not in first  # an explicit None removes it (null fields are omitted)
    assert (second["temperature"], second["max_tokens"], second["stop"]) == (0.2, 64, ["END"])
    assert second["logprobs"] is True and second["model"] == "default"
    assert not _has_null(first) and not _has_null(second)


async def test_other_openai_parameters_are_forwarded(serve, make_agent, trainer):
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    extra = {
        "tools": tools,
        "tool_choice": {"type": "function", "function": {"name": "add"}},
        "seed": 1234,
        "response_format": {"type": "json_object"},
        "parallel_tool_calls": False,
        "n": 1,
        "stop": ["a", "b"],
    }

    async def run(ctx):
        result = await ctx.chat(list(ctx.request.messages), **extra)
        return ctx.complete([result.message])

    server = serve(make_agent(run=run))
    rollout_id = await server.start()
    await trainer.wait_for_completion(rollout_id)
    (body,) = trainer.chat_requests
    for key, value in extra.items():
        assert body[key] == value
    assert "max_tokens" not in body  # no hidden per-turn cap (0.2.x sent 512)


async def test_parameters_cannot_replace_the_history_or_the_id(serve, make_agent, trainer):
    server = serve(make_agent(run=_chat_once))
    rollout_id = await server.start(
        completion_params={"messages": [], "rollout_id": "spoof", "model": "policy-v2"}
    )
    await trainer.wait_for_completion(rollout_id)
    (body,) = trainer.chat_requests
    assert body["rollout_id"] == rollout_id
    assert body["messages"] == [{"role": "user", "content": "What is 2 + 2?"}]
    assert body["model"] == "policy-v2"  # a model named by the trainer is passed on


async def test_each_chat_carries_the_whole_append_only_history(serve, make_agent, trainer):
    async def run(ctx):
        messages = list(ctx.request.messages)
        result = await ctx.chat(messages)
        messages.append(result.message)
        messages.extend(await execute_tool_calls(result.tool_calls, {"add": lambda a, b: a + b}))
        result = await ctx.chat(messages)
        messages.append(result.message)
        return ctx.complete(messages)

    trainer.script_chat(
        trainer.answer(None, tool_calls=[trainer.tool_call("add", {"a": 2, "b": 2}, "c1")]),
        trainer.answer("4"),
    )
    server = serve(make_agent(run=run))
    rollout_id = await server.start()
    completion = await trainer.wait_for_completion(rollout_id)
    first, second = trainer.chat_requests
    assert second["messages"][: len(first["messages"])] == first["messages"]
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "tool"]
    assert second["messages"][2] == {
        "role": "tool",
        "tool_call_id": "c1",
        "name": "add",
        "content": "4",
    }
    assert completion["final_messages"] == [
        *second["messages"],
        {"role": "assistant", "content": "4"},
    ]


@pytest.mark.parametrize("api_key", ["trainer-token", None])
async def test_callbacks_carry_the_requests_api_key(serve, make_agent, trainer, api_key):
    server = serve(make_agent())
    rollout_id = await server.start(api_key=api_key)
    await trainer.wait_for_completion(rollout_id)
    (chat_headers,) = trainer.chat_headers
    (completion_headers,) = trainer.completion_headers
    for headers in (chat_headers, completion_headers):
        if api_key is None:
            assert "authorization" not in headers
        else:
            assert headers["authorization"] == f"Bearer {api_key}"
        assert headers["content-type"] == "application/json"


async def test_server_url_path_prefix_is_kept(serve, make_agent, fast_client_config):
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.path.endswith("/chat/completions"):
            return httpx.Response(200, json={"choices": [{"message": {"content": "hi"}}]})
        return httpx.Response(200, json={})

    client = TrainerClient(fast_client_config, transport=httpx.MockTransport(handler))
    server = serve(make_agent(), client=client)
    await server.start("p", server_url="https://trainer.example:8443/api/v2/")
    status = await server.wait_settled("p")
    assert status["completion_delivery"] == "delivered"
    assert seen == [
        "https://trainer.example:8443/api/v2/v1/chat/completions",
        "https://trainer.example:8443/api/v2/v1/rollout/completed",
    ]


# ---- the chat answer --------------------------------------------------------------------------


async def test_chat_result_exposes_the_answer(serve, make_agent, trainer):
    seen: dict = {}

    async def run(ctx):
        result = await ctx.chat(list(ctx.request.messages))
        seen["result"] = result
        return ctx.complete([result.message])

    call = trainer.tool_call("add", {"a": 1, "b": 2}, "call-9")
    trainer.script_chat(
        trainer.answer(
            "thinking",
            tool_calls=[call],
            finish_reason="tool_calls",
            usage={"prompt_tokens": 12, "completion_tokens": 3},
            token_ids=[1, 2, 3],
            logprobs=[-0.1, -0.2, -0.3],
        )
    )
    server = serve(make_agent(run=run))
    rollout_id = await server.start()
    await trainer.wait_for_completion(rollout_id)
    result: ChatResult = seen["result"]
    assert result.message == {"role": "assistant", "content": "thinking", "tool_calls": [call]}
    assert result.tool_calls == [call]
    assert result.has_tool_calls is True
    assert result.content == "thinking"
    assert result.usage == {"prompt_tokens": 12, "completion_tokens": 3}
    assert result.finish_reason == "tool_calls"
    assert result.token_ids == [1, 2, 3]
    assert result.logprobs == [-0.1, -0.2, -0.3]


def test_chat_result_defaults_for_a_minimal_answer():
    message = {"content": None}
    result = ChatResult.from_completion({"choices": [{"message": message}]})
    assert result.message is message  # kept exactly as the trainer sent it
    assert result.finish_reason == "stop"
    assert result.tool_calls == [] and result.has_tool_calls is False
    assert result.content is None
    assert result.usage == {}
    assert result.token_ids == [] and result.logprobs == []


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"id": "x"}, "without 'choices'"),
        ({"choices": []}, "without 'choices'"),
        ({"choices": "nope"}, "without 'choices'"),
        ({"choices": [{"text": "legacy"}]}, "choices[0].message"),
        ([1, 2], "not an object"),
        ("text", "not an object"),
    ],
)
def test_chat_result_names_what_is_wrong_with_a_bad_answer(body, fragment):
    with pytest.raises(
        TrainerProtocolError, match=fragment.replace("[", r"\[").replace("]", r"\]")
    ):
        ChatResult.from_completion(body)


# ---- chat errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "fragment"),
    [
        ({"id": "no-choices"}, "trainer answered 200 without 'choices'"),
        ("not json {", "not JSON"),
        ("", "not JSON"),
        ({"choices": [{"index": 0}]}, "choices[0].message"),
    ],
    ids=["no-choices", "not-json", "empty", "no-message"],
)
async def test_malformed_chat_answer_is_a_protocol_error(
    serve, make_agent, trainer, reply, fragment
):
    if isinstance(reply, str):
        trainer.script_chat(trainer.Reply(200, text=reply))
    else:
        trainer.script_chat(reply)
    server = serve(make_agent())
    rollout_id = await server.start()
    completion = await trainer.wait_for_completion(rollout_id)
    assert completion["status"] == "ERROR"
    assert completion["extra_fields"]["error_category"] == "protocol_error"
    assert fragment in completion["error_message"]
    assert "KeyError" not in completion["error_message"]
    assert "TrainerProtocolError" in completion["extra_fields"]["traceback"]
    assert len(trainer.chats_for(rollout_id)) == 1  # not retried


@pytest.mark.parametrize("status", [400, 401, 404, 409, 422])
async def test_chat_4xx_is_an_llm_error_without_retry(serve, make_agent, trainer, status):
    trainer.script_chat(trainer.Reply(status, json={"detail": "max_tokens too large"}))
    server = serve(make_agent())
    rollout_id = await server.start()
    completion = await trainer.wait_for_completion(rollout_id)
    assert completion["status"] == "ERROR"
    assert completion["extra_fields"]["error_category"] == "llm_error"
    assert str(status) in completion["error_message"]
    assert "max_tokens too large" in completion["error_message"]
    assert "OsmosisValidationError" in completion["extra_fields"]["traceback"]
    assert len(trainer.chats_for(rollout_id)) == 1


async def test_chat_4xx_reaches_the_agent_which_may_handle_it(serve, make_agent, trainer):
    caught: list[LLMCallError] = []

    async def run(ctx):
        messages = list(ctx.request.messages)
        try:
            await ctx.chat(messages, max_tokens=10**9)
        except LLMCallError as exc:
            caught.append(exc)
        result = await ctx.chat(messages)
        return ctx.complete([*messages, result.message])

    trainer.script_chat(trainer.Reply(422, json={"detail": "max_tokens"}))
    server = serve(make_agent(run=run))
    rollout_id = await server.start()
    completion = await trainer.wait_for_completion(rollout_id)
    assert completion["status"] == "COMPLETED"
    assert caught and caught[0].status_code == 422


@pytest.mark.parametrize(
    "failures",
    [[500], [502, 503, 504], [429], [500, 429, 503]],
    ids=["500", "502-503-504", "429", "mixed"],
)
async def test_chat_5xx_and_429_are_retried_then_succeed(serve, make_agent, trainer, failures):
    trainer.script_chat(
        *(
            trainer.Reply(code, json={"detail": "busy"}, headers={"Retry-After": "0"})
            for code in failures
        ),
        trainer.answer("finally"),
    )
    server = serve(make_agent())
    rollout_id = await server.start()
    completion = await trainer.wait_for_completion(rollout_id)
    assert completion["status"] == "COMPLETED"
    assert completion["final_messages"][-1]["content"] == "finally"
    assert len(trainer.chats_for(rollout_id)) == len(failures) + 1
    assert completion["metrics"]["num_llm_calls"] == 1


async def test_chat_5xx_gives_up_after_the_retries(serve, make_agent, trainer):
    trainer.chat_default = trainer.Reply(503, text="overloaded")
    server = serve(make_agent())
    rollout_id = await server.start()
    completion = await trainer.wait_for_completion(rollout_id)
    assert completion["status"] == "ERROR"
    assert completion["extra_fields"]["error_category"] == "llm_error"
    assert "4 attempts" in completion["error_message"] and "503" in completion["error_message"]
    assert len(trainer.chats_for(rollout_id)) == 4  # chat_retries=3


async def test_chat_timeout_is_retried(serve, make_agent, trainer, fast_client_config):
    from dataclasses import replace

    config = replace(fast_client_config, timeout_s=0.05)
    trainer.script_chat(trainer.Reply(200, json=trainer.answer("late"), delay=0.5))
    trainer.script_chat(trainer.answer("on time"))
    server = serve(make_agent(), client_config=config)
    rollout_id = await server.start()
    completion = await trainer.wait_for_completion(rollout_id)
    assert completion["status"] == "COMPLETED"
    assert completion["final_messages"][-1]["content"] == "on time"
    assert len(trainer.chats_for(rollout_id)) == 2


async def test_unreachable_trainer_is_recorded_as_failed_delivery(serve, make_agent, trainer):
    server = serve(make_agent())
    rollout_id = await server.start(server_url=trainer.unreachable_url)
    status = await server.wait_settled(rollout_id)
    assert status["status"] == "error"
    assert status["error_category"] == "llm_error"
    assert status["completion_delivery"] == "failed"
    assert "transport error" in status["delivery_error"]
    assert trainer.completion_attempts == []


def test_backoff_is_capped_and_jittered():
    from server_core.trainer_client import backoff_delay

    delays = {backoff_delay(5, 1.0, 4.0) for _ in range(50)}
    assert all(0 <= d <= 4.0 for d in delays)
    assert len(delays) > 1  # jitter: not the same delay every time


# ---- the completion callback ------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202, 204])
async def test_any_2xx_acknowledges_the_completion(serve, make_agent, trainer, status):
    trainer.completion_default = trainer.Reply(status, json={"ok": True})
    server = serve(make_agent())
    rollout_id = await server.start()
    settled = await server.wait_settled(rollout_id)
    assert settled["completion_delivery"] == "delivered"
    assert len(trainer.attempts_for(rollout_id)) == 1


@pytest.mark.parametrize("status", [400, 401, 404, 409, 422])
async def test_completion_4xx_is_final(serve, make_agent, trainer, status):
    trainer.completion_default = trainer.Reply(status, json={"detail": "unknown rollout"})
    server = serve(make_agent())
    rollout_id = await server.start()
    settled = await server.wait_settled(rollout_id)
    assert settled["completion_delivery"] == "failed"
    assert str(status) in settled["delivery_error"]
    assert settled["status"] == "completed"  # the rollout itself succeeded
    assert len(trainer.attempts_for(rollout_id)) == 1


async def test_completion_5xx_429_and_timeouts_are_retried(
    serve, make_agent, trainer, fast_client_config
):
    from dataclasses import replace

    trainer.script_completion(
        trainer.Reply(500),
        trainer.Reply(429, headers={"Retry-After": "0"}),
        trainer.Reply(200, delay=0.5),  # slower than the client's timeout: not an ack
    )
    config = replace(fast_client_config, completion_timeout_s=0.05)
    server = serve(make_agent(), client_config=config)
    rollout_id = await server.start()
    settled = await server.wait_settled(rollout_id)
    assert settled["completion_delivery"] == "delivered"
    assert len(trainer.attempts_for(rollout_id)) == 4


async def test_completion_gives_up_after_bounded_retries(serve, make_agent, trainer):
    trainer.completion_default = trainer.Reply(502, text="bad gateway")
    server = serve(make_agent())
    rollout_id = await server.start()
    settled = await server.wait_settled(rollout_id)
    assert settled["completion_delivery"] == "failed"
    assert "502" in settled["delivery_error"]
    assert len(trainer.attempts_for(rollout_id)) == 4  # completion_retries=3


async def test_completed_body_omits_null_fields(serve, make_agent, trainer):
    async def run(ctx):
        return ctx.complete(list(ctx.request.messages))  # no reward

    server = serve(make_agent(run=run))
    rollout_id = await server.start()
    completion = await trainer.wait_for_completion(rollout_id)
    assert set(completion) == {
        "rollout_id",
        "status",
        "final_messages",
        "finish_reason",
        "metrics",
        "extra_fields",
    }
    assert not _has_null(completion)
    assert completion["finish_reason"] == "stop"
    assert completion["status"] == "COMPLETED"


async def test_complete_passes_finish_reason_and_int_reward(serve, make_agent, trainer):
    async def run(ctx):
        return ctx.complete([], finish_reason="max_turns", reward=1)

    server = serve(make_agent(run=run))
    rollout_id = await server.start()
    completion = await trainer.wait_for_completion(rollout_id)
    assert completion["finish_reason"] == "max_turns"
    assert completion["reward"] == 1.0 and isinstance(completion["reward"], float)


async def test_metrics_are_counted(serve, make_agent, trainer):
    async def add(a, b):
        await asyncio.sleep(0.005)
        return a + b

    async def run(ctx):
        messages = list(ctx.request.messages)
        result = await ctx.chat(messages)
        messages.append(result.message)
        messages.extend(await execute_tool_calls(result.tool_calls, {"add": add}, ctx=ctx))
        result = await ctx.chat(messages)
        ctx.record_tool_call(latency_ms=2.5)  # an agent counting its own tool
        return ctx.complete([*messages, result.message])

    trainer.script_chat(
        trainer.Reply(
            200,
            json=trainer.answer(
                None,
                tool_calls=[trainer.tool_call("add", {"a": 1, "b": 2})],
                usage={"prompt_tokens": 10, "completion_tokens": 5},
            ),
            delay=0.005,
        ),
        trainer.answer("3", usage={"prompt_tokens": 20, "completion_tokens": 7}),
    )
    server = serve(make_agent(run=run))
    rollout_id = await server.start()
    metrics = (await trainer.wait_for_completion(rollout_id))["metrics"]
    assert metrics["num_llm_calls"] == 2
    assert metrics["num_tool_calls"] == 2
    assert metrics["prompt_tokens"] == 30
    assert metrics["response_tokens"] == 12
    assert metrics["max_context_tokens"] == 27
    assert metrics["llm_latency_ms"] >= 5
    assert metrics["tool_latency_ms"] >= 5 + 2.5
    assert metrics["total_latency_ms"] >= metrics["llm_latency_ms"] + 5
    status = (await server.status(rollout_id)).json()
    assert (status["num_llm_calls"], status["num_tool_calls"]) == (2, 2)


async def test_metrics_survive_a_result_built_by_hand(serve, make_agent, trainer):
    async def run(ctx):
        await ctx.chat(list(ctx.request.messages))
        return RolloutResult("COMPLETED", [], "stop", reward=0.25)

    server = serve(make_agent(run=run))
    rollout_id = await server.start()
    completion = await trainer.wait_for_completion(rollout_id)
    assert completion["metrics"]["num_llm_calls"] == 1
    assert completion["metrics"]["prompt_tokens"] == 10
    assert completion["reward"] == 0.25


async def test_odd_usage_values_do_not_fail_the_rollout(serve, make_agent, trainer):
    trainer.script_chat(
        trainer.answer("ok", usage={"prompt_tokens": "many", "completion_tokens": None})
    )
    server = serve(make_agent())
    rollout_id = await server.start()
    completion = await trainer.wait_for_completion(rollout_id)
    assert completion["status"] == "COMPLETED"
    assert completion["metrics"]["prompt_tokens"] == 0


# ---- ERROR completions ------------------------------------------------------------------------


async def test_agent_exception_reports_partial_trajectory_category_and_traceback(
    serve, make_agent, trainer
):
    class ScoringFailed(Exception):
        pass

    async def run(ctx):
        messages = list(ctx.request.messages)
        result = await ctx.chat(messages)
        messages.append(result.message)
        raise ScoringFailed("grader crashed")

    trainer.script_chat(trainer.answer("partial answer"))
    server = serve(make_agent(run=run))
    rollout_id = await server.start()
    completion = await trainer.wait_for_completion(rollout_id)
    assert completion["status"] == "ERROR"
    assert completion["finish_reason"] == "error"
    assert completion["error_message"] == "grader crashed"  # str(exc), as in 0.2
    assert completion["final_messages"] == [
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "partial answer"},
    ]
    extra = completion["extra_fields"]
    assert extra["error_category"] == "agent_error"
    assert isinstance(extra["traceback"], str)
    assert "ScoringFailed" in extra["traceback"] and "Traceback" in extra["traceback"]
    assert completion["metrics"]["num_llm_calls"] == 1
    assert "reward" not in completion


async def test_failed_chat_reports_the_history_it_was_sent(serve, make_agent, trainer):
    async def run(ctx):
        messages = list(ctx.request.messages)
        result = await ctx.chat(messages)
        messages.append(result.message)
        messages.append({"role": "tool", "tool_call_id": "c", "name": "t", "content": "42"})
        await ctx.chat(messages)  # fails: the trainer refuses it
        return ctx.complete(messages)

    trainer.script_chat(trainer.answer("first"), trainer.Reply(400, json={"detail": "no"}))
    server = serve(make_agent(run=run))
    rollout_id = await server.start()
    completion = await trainer.wait_for_completion(rollout_id)
    assert completion["status"] == "ERROR"
    assert [m["role"] for m in completion["final_messages"]] == ["user", "assistant", "tool"]


async def test_ctx_error_reports_what_the_agent_says(serve, make_agent, trainer):
    async def run(ctx):
        result = await ctx.chat(list(ctx.request.messages))
        if ctx.request.metadata.get("explicit"):
            return ctx.error("gave up", final_messages=[{"role": "user", "content": "x"}])
        assert result.content
        return ctx.error("no tool was called")

    server = serve(make_agent(run=run))
    implicit = await server.start()
    explicit = await server.start(metadata={"explicit": True})
    one = await trainer.wait_for_completion(implicit)
    two = await trainer.wait_for_completion(explicit)
    assert one["status"] == two["status"] == "ERROR"
    assert one["error_message"] == "no tool was called"
    assert one["final_messages"][-1] == {"role": "assistant", "content": "done"}
    assert one["extra_fields"]["error_category"] == "agent_error"
    assert "no tool was called" in one["extra_fields"]["traceback"]
    assert two["final_messages"] == [{"role": "user", "content": "x"}]
    assert (await server.status(implicit)).json()["status"] == "error"


@pytest.mark.parametrize("returned", [None, {"status": "COMPLETED"}, "done"])
async def test_run_returning_something_else_is_an_agent_error(serve, make_agent, trainer, returned):
    async def run(ctx):
        return returned

    server = serve(make_agent(run=run))
    rollout_id = await server.start()
    completion = await trainer.wait_for_completion(rollout_id)
    assert completion["status"] == "ERROR"
    assert completion["extra_fields"]["error_category"] == "agent_error"
    # 0.2's message ("'dict' object has no attribute 'status'"), and the fix in the traceback.
    assert "has no attribute 'status'" in completion["error_message"]
    assert "must return ctx.complete" in completion["extra_fields"]["traceback"]


async def test_a_result_that_cannot_be_serialised_still_gets_one_error_completion(
    serve, make_agent, trainer
):
    async def run(ctx):
        return ctx.complete([{"role": "assistant", "content": object()}])

    server = serve(make_agent(run=run))
    rollout_id = await server.start()
    completion = await trainer.wait_for_completion(rollout_id)
    assert completion["status"] == "ERROR"
    assert completion["extra_fields"]["error_category"] == "agent_error"
    assert "cannot be sent" in completion["error_message"]
    settled = await server.wait_settled(rollout_id)
    assert settled["completion_delivery"] == "delivered"
    assert len(trainer.attempts_for(rollout_id)) == 1


async def test_long_histories_are_sent_intact(serve, make_agent, trainer):
    history = [{"role": "user", "content": f"m{i}"} for i in range(1000)]

    async def run(ctx):
        result = await ctx.chat(list(ctx.request.messages))
        return ctx.complete([*ctx.request.messages, result.message])

    server = serve(make_agent(run=run))
    rollout_id = await server.start(messages=history)
    completion = await trainer.wait_for_completion(rollout_id)
    assert trainer.chat_requests[0]["messages"] == history
    assert completion["final_messages"][:1000] == history


async def test_trainer_client_chat_returns_the_parsed_answer(make_client, trainer):
    client = make_client()
    try:
        answer = await client.chat(trainer.url, {"messages": []}, api_key=None)
        assert answer["choices"][0]["message"]["content"] == "done"
        assert json.loads(json.dumps(answer)) == answer
    finally:
        await client.aclose()


async def test_trainer_client_complete_never_raises(fast_client_config):
    client = TrainerClient(
        TrainerClientConfig(completion_retries=1, backoff_base_s=0.001, backoff_cap_s=0.001),
        transport=httpx.MockTransport(lambda request: 1 / 0),
    )
    delivery = await client.complete("http://x.test", {"rollout_id": "r"}, api_key=None)
    assert not delivery.delivered
    assert delivery.attempts == 2
    assert "ZeroDivisionError" in delivery.error
    bad = await client.complete("http://x.test", {"final_messages": [object()]}, api_key=None)
    assert not bad.delivered and "not JSON" in bad.error
    await client.aclose()
