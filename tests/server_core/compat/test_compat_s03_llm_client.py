"""SDK-0.2-API.md §3: LLMClientProtocol, CompletionsResult, OsmosisLLMClient.

OsmosisLLMClient is driven against a trainer on a real loopback socket (compat_support), with
the §15.1/§15.2/§15.9 "ours" differences applied where the spec says they win on the wire.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from unittest.mock import MagicMock

import pydantic
import pytest
from compat_support import Reply, answer, new_id, tool_call

from server_core import (
    CompletionsResult,
    LLMClientProtocol,
    OsmosisLLMClient,
    OsmosisRolloutError,
    OsmosisServerError,
    OsmosisTimeoutError,
    OsmosisTransportError,
    OsmosisValidationError,
    RolloutClientSettings,
    RolloutMetrics,
    RolloutSettings,
    configure,
)

FAST = dict(retry_base_delay=0.1, retry_max_delay=1.0)

# ---- §3.1 LLMClientProtocol -----------------------------------------------------------------


def test_protocol_is_runtime_checkable_on_both_names():
    class Both:
        async def chat_completions(self, messages, **kwargs): ...

        def get_metrics(self): ...

    class OnlyChat:
        async def chat_completions(self, messages, **kwargs): ...

    assert isinstance(Both(), LLMClientProtocol)
    assert not isinstance(OnlyChat(), LLMClientProtocol)
    assert isinstance(MagicMock(), LLMClientProtocol)
    assert not isinstance(object(), LLMClientProtocol)


def test_osmosis_client_satisfies_the_protocol():
    client = OsmosisLLMClient("http://127.0.0.1:9", "r")
    assert isinstance(client, LLMClientProtocol)


# ---- §3.2 CompletionsResult -----------------------------------------------------------------


def _result(message=None, **kw):
    base = dict(
        message=message if message is not None else {"role": "assistant", "content": "hi"},
        token_ids=[1, 2],
        logprobs=[-0.1, -0.2],
        usage={"prompt_tokens": 3},
        finish_reason="stop",
    )
    base.update(kw)
    return CompletionsResult(**base)


def test_completions_result_fields_in_positional_order():
    assert dataclasses.is_dataclass(CompletionsResult)
    names = [f.name for f in dataclasses.fields(CompletionsResult)]
    assert names == ["message", "token_ids", "logprobs", "usage", "finish_reason"]
    msg = {"role": "assistant", "content": "x"}
    result = CompletionsResult(msg, [1], [0.0], {}, "length")
    assert result.message is msg
    assert (result.token_ids, result.logprobs, result.usage) == ([1], [0.0], {})
    assert result.finish_reason == "length"


def test_completions_result_fields_are_all_required():
    with pytest.raises(TypeError):
        CompletionsResult({"role": "assistant"}, [], [], {})  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        CompletionsResult(message={"role": "assistant"})  # type: ignore[call-arg]


def test_completions_result_is_frozen():
    result = _result()
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.finish_reason = "length"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        result.message = {}  # type: ignore[misc]


def test_completions_result_equality_and_unhashable():
    assert _result() == _result()
    assert _result() != _result(finish_reason="length")
    with pytest.raises(TypeError):
        hash(_result())


def test_completions_result_properties():
    calls = [tool_call("add", {"a": 1})]
    with_calls = _result({"role": "assistant", "content": None, "tool_calls": calls})
    assert with_calls.has_tool_calls is True
    assert with_calls.tool_calls is calls
    assert with_calls.content is None

    plain = _result({"role": "assistant", "content": "hi"})
    assert plain.has_tool_calls is False
    assert plain.tool_calls == []
    assert plain.content == "hi"

    null_calls = _result({"role": "assistant", "content": "x", "tool_calls": None})
    assert null_calls.has_tool_calls is False
    assert null_calls.tool_calls is None

    empty_calls = _result({"role": "assistant", "content": "x", "tool_calls": []})
    assert empty_calls.has_tool_calls is False


# ---- §3.3 OsmosisLLMClient: construction -------------------------------------------------------


def test_client_signature():
    params = list(inspect.signature(OsmosisLLMClient).parameters.values())
    names = [p.name for p in params]
    assert names[:7] == [
        "server_url",
        "rollout_id",
        "api_key",
        "timeout_seconds",
        "max_retries",
        "complete_rollout_retries",
        "settings",
    ]
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params[:7])
    assert params[0].default is inspect.Parameter.empty
    assert params[1].default is inspect.Parameter.empty
    assert all(p.default is None for p in params[2:7])


def test_client_attributes_and_settings_fallbacks(fresh_settings):
    client = OsmosisLLMClient("http://trainer.example/prefix///", "r-1", "key")
    assert client.server_url == "http://trainer.example/prefix"
    assert (client.rollout_id, client.api_key) == ("r-1", "key")
    assert client.timeout_seconds == 300.0
    assert client.max_retries == 3
    assert client.complete_rollout_retries == 2


def test_client_explicit_values_and_falsy_timeout(fresh_settings):
    client = OsmosisLLMClient(
        "http://t", "r", timeout_seconds=12.0, max_retries=0, complete_rollout_retries=0
    )
    assert (client.timeout_seconds, client.max_retries, client.complete_rollout_retries) == (
        12.0,
        0,
        0,
    )
    assert OsmosisLLMClient("http://t", "r", timeout_seconds=0).timeout_seconds == 300.0


def test_client_settings_argument_and_global_settings_at_construction(fresh_settings):
    own = RolloutClientSettings(timeout_seconds=42.0, max_retries=7, complete_rollout_retries=5)
    client = OsmosisLLMClient("http://t", "r", settings=own)
    assert (client.timeout_seconds, client.max_retries, client.complete_rollout_retries) == (
        42.0,
        7,
        5,
    )
    configure(RolloutSettings(client=RolloutClientSettings(max_retries=9, timeout_seconds=11.0)))
    read_now = OsmosisLLMClient("http://t", "r")
    assert (read_now.max_retries, read_now.timeout_seconds) == (9, 11.0)


async def test_async_context_manager_yields_the_client_and_close_is_idempotent():
    client = OsmosisLLMClient("http://127.0.0.1:9", "r")
    async with client as entered:
        assert entered is client
    await client.close()
    await client.close()


def test_fresh_client_metrics_are_zero():
    assert OsmosisLLMClient("http://t", "r").get_metrics() == RolloutMetrics()


# ---- §3.3 chat_completions against a loopback trainer ----------------------------------------


def test_chat_completions_signature():
    params = inspect.signature(OsmosisLLMClient.chat_completions).parameters
    names = list(params)
    assert names[:7] == [
        "self",
        "messages",
        "temperature",
        "top_p",
        "max_tokens",
        "stop",
        "logprobs",
    ]
    assert params["temperature"].default == 1.0
    assert params["top_p"].default == 1.0
    assert params["stop"].default is None
    assert params["logprobs"].default is True
    assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


async def test_chat_body_defaults_without_max_tokens(lb_trainer):
    """§3.3 body with §15.1: no default max_tokens=512; nulls omitted."""
    rid = new_id("chat")
    messages = [{"role": "user", "content": "hi"}]
    async with OsmosisLLMClient(lb_trainer.url, rid) as client:
        await client.chat_completions(messages)
    (body,) = lb_trainer.chats_for(rid)
    assert body["model"] == "default"
    assert body["messages"] == messages
    assert body["rollout_id"] == rid
    assert body["temperature"] == 1.0
    assert body["top_p"] == 1.0
    assert body["logprobs"] is True
    assert "max_tokens" not in body, "§15.1: there is no default max_tokens=512"
    assert "stop" not in body  # None is omitted
    assert not [k for k, v in body.items() if v is None]


async def test_chat_body_key_order(lb_trainer):
    rid = new_id("order")
    async with OsmosisLLMClient(lb_trainer.url, rid) as client:
        await client.chat_completions([{"role": "user", "content": "x"}], max_tokens=20, stop="END")
    keys = list(json.loads(lb_trainer.chat_raw[-1]))
    expected = [
        "model",
        "messages",
        "rollout_id",
        "temperature",
        "top_p",
        "max_tokens",
        "stop",
        "logprobs",
    ]
    assert [k for k in keys if k in expected] == expected


async def test_chat_arguments_reach_the_body(lb_trainer):
    rid = new_id("args")
    async with OsmosisLLMClient(lb_trainer.url, rid) as client:
        await client.chat_completions(
            [{"role": "user", "content": "x"}],
            temperature=0.3,
            top_p=0.9,
            max_tokens=64,
            stop="END",
            logprobs=False,
            model="policy-v2",
        )
    (body,) = lb_trainer.chats_for(rid)
    assert body["temperature"] == 0.3
    assert body["top_p"] == 0.9
    assert body["max_tokens"] == 64
    assert body["stop"] == ["END"]  # normalize_stop
    assert body["logprobs"] is False
    assert body["model"] == "policy-v2"


async def test_chat_forwards_other_openai_kwargs(lb_trainer):
    """§15.1: tools, tool_choice, seed ... are forwarded instead of dropped."""
    rid = new_id("fwd")
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    async with OsmosisLLMClient(lb_trainer.url, rid) as client:
        await client.chat_completions(
            [{"role": "user", "content": "x"}], tools=tools, tool_choice="auto", seed=7
        )
    (body,) = lb_trainer.chats_for(rid)
    assert body["tools"] == tools
    assert body["tool_choice"] == "auto"
    assert body["seed"] == 7


async def test_chat_rollout_id_kwarg_is_a_type_error(lb_trainer):
    async with OsmosisLLMClient(lb_trainer.url, "r") as client:
        with pytest.raises(TypeError):
            await client.chat_completions([], rollout_id="other")


async def test_chat_wrong_value_type_fails_before_any_http_call(lb_trainer):
    rid = new_id("badtype")
    async with OsmosisLLMClient(lb_trainer.url, rid) as client:
        with pytest.raises(pydantic.ValidationError):
            await client.chat_completions([{"role": "user", "content": "x"}], temperature="x")
    assert lb_trainer.chats_for(rid) == []


async def test_chat_result_fields_from_the_answer(lb_trainer):
    calls = [tool_call("add", {"a": 1, "b": 2}, "c1")]
    message = {"role": "assistant", "content": None, "tool_calls": calls, "refusal": None}
    lb_trainer.chat_script.append(
        answer(
            message=message,
            finish_reason="tool_calls",
            usage={"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
            token_ids=[5, 6, 7],
            logprobs=[-0.5, -0.25, 0.0],
        )
    )
    async with OsmosisLLMClient(lb_trainer.url, new_id("res")) as client:
        result = await client.chat_completions([{"role": "user", "content": "add"}])
    assert isinstance(result, CompletionsResult)
    assert result.message == message  # as is, null keys kept
    assert list(result.message) == list(message)
    assert result.finish_reason == "tool_calls"
    assert result.token_ids == [5, 6, 7]
    assert result.logprobs == [-0.5, -0.25, 0.0]
    assert result.usage == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    assert result.has_tool_calls and result.tool_calls == calls


async def test_chat_result_defaults_for_missing_fields(lb_trainer):
    lb_trainer.chat_script.append(
        {"choices": [{"message": {"role": "assistant", "content": "ok"}}]}
    )
    async with OsmosisLLMClient(lb_trainer.url, new_id("defaults")) as client:
        result = await client.chat_completions([{"role": "user", "content": "x"}])
    assert result.finish_reason == "stop"
    assert result.token_ids == []
    assert result.logprobs == []
    assert result.usage == {}
    assert result.content == "ok"


async def test_metrics_accumulate_over_successful_calls(lb_trainer):
    usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    lb_trainer.chat_script.extend([answer("a", usage=usage), answer("b", usage=usage)])
    async with OsmosisLLMClient(lb_trainer.url, new_id("metrics")) as client:
        await client.chat_completions([{"role": "user", "content": "x"}])
        await client.chat_completions([{"role": "user", "content": "y"}])
        metrics = client.get_metrics()
    assert isinstance(metrics, RolloutMetrics)
    assert metrics.num_llm_calls == 2
    assert metrics.prompt_tokens == 14
    assert metrics.response_tokens == 6
    assert metrics.llm_latency_ms > 0
    assert (metrics.total_latency_ms, metrics.tool_latency_ms, metrics.num_tool_calls) == (
        0,
        0,
        0,
    )


async def test_authorization_header_on_chat(lb_trainer):
    rid = new_id("auth")
    async with OsmosisLLMClient(lb_trainer.url, rid, api_key="secret-key") as client:
        await client.chat_completions([{"role": "user", "content": "x"}])
    assert lb_trainer.chat_headers[-1].get("authorization") == "Bearer secret-key"
    async with OsmosisLLMClient(lb_trainer.url, new_id("noauth")) as client:
        await client.chat_completions([{"role": "user", "content": "x"}])
    assert "authorization" not in lb_trainer.chat_headers[-1]


async def test_chat_4xx_is_a_validation_error_without_retry(lb_trainer):
    rid = new_id("4xx")
    lb_trainer.chat_default = Reply(400, text="bad request body")
    settings = RolloutClientSettings(**FAST)
    async with OsmosisLLMClient(lb_trainer.url, rid, max_retries=3, settings=settings) as c:
        with pytest.raises(OsmosisValidationError) as info:
            await c.chat_completions([{"role": "user", "content": "x"}])
    assert info.value.status_code == 400
    assert "bad request body" in str(info.value)
    assert len(lb_trainer.chats_for(rid)) == 1


async def test_chat_unexpected_non_200_status_below_400(lb_trainer):
    rid = new_id("201")
    lb_trainer.chat_default = Reply(201, json=answer("x"))
    async with OsmosisLLMClient(lb_trainer.url, rid, max_retries=2) as client:
        with pytest.raises(OsmosisValidationError, match="Unexpected status code 201") as info:
            await client.chat_completions([{"role": "user", "content": "x"}])
    assert info.value.status_code == 201
    assert len(lb_trainer.chats_for(rid)) == 1


async def test_chat_5xx_is_retried_then_a_server_error(lb_trainer):
    rid = new_id("5xx")
    lb_trainer.chat_default = Reply(503, text="busy")
    settings = RolloutClientSettings(**FAST)
    async with OsmosisLLMClient(lb_trainer.url, rid, max_retries=2, settings=settings) as c:
        with pytest.raises(OsmosisServerError) as info:
            await c.chat_completions([{"role": "user", "content": "x"}])
    assert info.value.status_code == 503
    assert len(lb_trainer.chats_for(rid)) == 3  # max_retries + 1 attempts


async def test_chat_5xx_then_success(lb_trainer):
    rid = new_id("5xx-ok")
    lb_trainer.chat_script.extend([Reply(500, text="oops"), answer("fine")])
    settings = RolloutClientSettings(**FAST)
    async with OsmosisLLMClient(lb_trainer.url, rid, max_retries=2, settings=settings) as c:
        result = await c.chat_completions([{"role": "user", "content": "x"}])
        assert c.get_metrics().num_llm_calls == 1
    assert result.content == "fine"
    assert len(lb_trainer.chats_for(rid)) == 2


async def test_chat_429_is_retried(lb_trainer):
    """§15.2: 429 is retried too."""
    rid = new_id("429")
    lb_trainer.chat_script.extend([Reply(429, json={"detail": "slow down"}), answer("ok")])
    settings = RolloutClientSettings(**FAST)
    async with OsmosisLLMClient(lb_trainer.url, rid, max_retries=2, settings=settings) as c:
        result = await c.chat_completions([{"role": "user", "content": "x"}])
    assert result.content == "ok"
    assert len(lb_trainer.chats_for(rid)) == 2


async def test_chat_timeout_is_retried_then_a_timeout_error(lb_trainer):
    rid = new_id("timeout")
    lb_trainer.chat_default = Reply(200, json=answer("late"), delay=1.0)
    settings = RolloutClientSettings(**FAST)
    async with OsmosisLLMClient(
        lb_trainer.url, rid, timeout_seconds=0.2, max_retries=1, settings=settings
    ) as client:
        with pytest.raises(OsmosisTimeoutError):
            await client.chat_completions([{"role": "user", "content": "x"}])
    assert len(lb_trainer.chats_for(rid)) == 2


async def test_chat_transport_error_is_a_transport_error():
    from compat_support import _free_socket

    sock = _free_socket()  # bound, never listening: connection refused
    port = sock.getsockname()[1]
    try:
        settings = RolloutClientSettings(**FAST)
        client = OsmosisLLMClient(f"http://127.0.0.1:{port}", "r", max_retries=0, settings=settings)
        async with client:
            with pytest.raises(OsmosisTransportError) as info:
                await client.chat_completions([{"role": "user", "content": "x"}])
    finally:
        sock.close()
    assert str(info.value)


async def test_chat_200_without_choices_is_a_protocol_error_with_a_message(lb_trainer):
    """§15.2: not a bare KeyError; the message says what was wrong."""
    lb_trainer.chat_default = {"id": "x", "object": "chat.completion"}
    async with OsmosisLLMClient(lb_trainer.url, new_id("nochoices"), max_retries=0) as client:
        with pytest.raises(Exception, match="choices") as info:
            await client.chat_completions([{"role": "user", "content": "x"}])
    assert type(info.value) is not KeyError


async def test_chat_200_with_a_non_json_body_is_a_protocol_error(lb_trainer):
    lb_trainer.chat_default = Reply(200, text="<html>not json</html>")
    async with OsmosisLLMClient(lb_trainer.url, new_id("nonjson"), max_retries=0) as client:
        with pytest.raises(Exception) as info:
            await client.chat_completions([{"role": "user", "content": "x"}])
    assert not isinstance(info.value, json.JSONDecodeError)
    assert str(info.value)


# ---- §3.3 complete_rollout ------------------------------------------------------------------


def test_complete_rollout_signature():
    params = inspect.signature(OsmosisLLMClient.complete_rollout).parameters
    assert list(params)[:7] == [
        "self",
        "status",
        "final_messages",
        "finish_reason",
        "error_message",
        "metrics",
        "reward",
    ]
    assert params["finish_reason"].default == "stop"
    assert params["error_message"].default is None
    assert params["metrics"].default is None
    assert params["reward"].default is None


async def test_complete_rollout_body_without_nulls(lb_trainer):
    rid = new_id("done")
    final = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    metrics = RolloutMetrics(num_llm_calls=1, prompt_tokens=2)
    async with OsmosisLLMClient(lb_trainer.url, rid, api_key="k") as client:
        await client.complete_rollout("COMPLETED", final, reward=1.0, metrics=metrics)
    (body,) = lb_trainer.attempts_for(rid)
    assert body["rollout_id"] == rid
    assert body["status"] == "COMPLETED"
    assert body["final_messages"] == final
    assert body["finish_reason"] == "stop"
    assert body["reward"] == 1.0
    assert body["metrics"]["num_llm_calls"] == 1 and body["metrics"]["prompt_tokens"] == 2
    assert "error_message" not in body
    assert not [k for k, v in body.items() if v is None]
    assert lb_trainer.completion_headers[-1].get("authorization") == "Bearer k"


async def test_complete_rollout_error_body(lb_trainer):
    rid = new_id("err")
    async with OsmosisLLMClient(lb_trainer.url, rid) as client:
        await client.complete_rollout(
            "ERROR", [], finish_reason="error", error_message="agent failed"
        )
    (body,) = lb_trainer.attempts_for(rid)
    assert (body["status"], body["finish_reason"]) == ("ERROR", "error")
    assert body["error_message"] == "agent failed"
    assert "reward" not in body


async def test_complete_rollout_rejects_a_bad_status(lb_trainer):
    rid = new_id("badstatus")
    async with OsmosisLLMClient(lb_trainer.url, rid) as client:
        with pytest.raises(ValueError, match="'DONE' is not a valid RolloutStatus"):
            await client.complete_rollout("DONE", [])
        with pytest.raises(ValueError, match="is not a valid RolloutStatus"):
            await client.complete_rollout("completed", [])
    assert lb_trainer.attempts_for(rid) == []


async def test_complete_rollout_metrics_none_uses_the_clients_counters(lb_trainer):
    rid = new_id("own-metrics")
    lb_trainer.chat_script.append(
        answer("a", usage={"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10})
    )
    async with OsmosisLLMClient(lb_trainer.url, rid) as client:
        await client.chat_completions([{"role": "user", "content": "x"}])
        await client.complete_rollout("COMPLETED", [])
    (body,) = lb_trainer.attempts_for(rid)
    m = body["metrics"]
    assert (m["num_llm_calls"], m["prompt_tokens"], m["response_tokens"]) == (1, 7, 3)
    assert m["llm_latency_ms"] > 0


@pytest.mark.parametrize("status", [200, 201, 202, 204])
async def test_complete_rollout_any_2xx_acknowledges(lb_trainer, status):
    """§15.9: any 2xx acknowledges (0.2.11 re-posted on 201/202/204)."""
    rid = new_id(f"ack{status}")
    lb_trainer.completion_default = Reply(status, json={"ok": True})
    settings = RolloutClientSettings(**FAST)
    async with OsmosisLLMClient(
        lb_trainer.url, rid, complete_rollout_retries=1, settings=settings
    ) as client:
        await client.complete_rollout("COMPLETED", [])
    assert len(lb_trainer.attempts_for(rid)) == 1


async def test_complete_rollout_4xx_is_a_validation_error_at_once(lb_trainer):
    rid = new_id("c4xx")
    lb_trainer.completion_default = Reply(422, json={"detail": "nope"})
    async with OsmosisLLMClient(lb_trainer.url, rid, complete_rollout_retries=2) as client:
        with pytest.raises(OsmosisValidationError) as info:
            await client.complete_rollout("COMPLETED", [])
    assert info.value.status_code == 422
    assert len(lb_trainer.attempts_for(rid)) == 1


async def test_complete_rollout_5xx_is_retried_then_raised(lb_trainer):
    rid = new_id("c5xx")
    lb_trainer.completion_default = Reply(503, text="down")
    settings = RolloutClientSettings(**FAST)
    async with OsmosisLLMClient(
        lb_trainer.url, rid, complete_rollout_retries=1, settings=settings
    ) as client:
        with pytest.raises(OsmosisRolloutError):
            await client.complete_rollout("COMPLETED", [])
    assert len(lb_trainer.attempts_for(rid)) == 2


async def test_complete_rollout_5xx_then_success(lb_trainer):
    rid = new_id("c5xx-ok")
    lb_trainer.completion_script.append(Reply(500, text="oops"))
    settings = RolloutClientSettings(**FAST)
    async with OsmosisLLMClient(
        lb_trainer.url, rid, complete_rollout_retries=2, settings=settings
    ) as client:
        await client.complete_rollout("COMPLETED", [])
    assert len(lb_trainer.attempts_for(rid)) == 2
    assert len(lb_trainer.completions_for(rid)) == 1


async def test_complete_rollout_429_is_retried(lb_trainer):
    """§15.9: 429 is retried."""
    rid = new_id("c429")
    lb_trainer.completion_script.append(Reply(429, json={"detail": "later"}))
    settings = RolloutClientSettings(**FAST)
    async with OsmosisLLMClient(
        lb_trainer.url, rid, complete_rollout_retries=2, settings=settings
    ) as client:
        await client.complete_rollout("COMPLETED", [])
    assert len(lb_trainer.attempts_for(rid)) == 2
