"""The shared model-backend API: ModelError, ScriptedBackend, create_backend."""

from __future__ import annotations

import asyncio
import copy
import json
import pickle
import time

import pytest

from osmosis_workbench.engine.models import (
    ERROR_KINDS,
    HumanBackend,
    LiteLLMBackend,
    ModelBackend,
    ModelError,
    ModelReply,
    OpenAICompatibleBackend,
    RecordingBackend,
    ReplayBackend,
    ScriptedBackend,
    create_backend,
    litellm_backend,
)


def body(*contents: str, **extra: object) -> dict:
    messages = [{"role": "user", "content": c} for c in contents]
    return {"model": "default", "messages": messages, "rollout_id": "r1", **extra}


# --- ModelError -------------------------------------------------------------------------------


def test_model_error_is_one_line_and_keeps_its_flags():
    err = ModelError("rate_limit", "rate limited\n  by openai: wait", retryable=True)
    assert str(err) == err.message == "rate limited by openai: wait"
    assert (err.kind, err.retryable, err.systemic) == ("rate_limit", True, False)


def test_model_error_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="unknown ModelError kind 'oops'"):
        ModelError("oops", "x")


def test_model_error_survives_pickle_and_copy():
    # Errors cross thread and process boundaries (workers, journals): flags must survive.
    err = ModelError("authentication", "bad key", systemic=True)
    for clone in (pickle.loads(pickle.dumps(err)), copy.copy(err)):
        assert isinstance(clone, ModelError)
        assert (clone.kind, clone.message, clone.systemic, clone.retryable) == (
            "authentication",
            "bad key",
            True,
            False,
        )


def test_error_kinds_are_the_documented_ones():
    assert set(ERROR_KINDS) == {
        "authentication",
        "rate_limit",
        "context_window",
        "timeout",
        "unknown_model",
        "server_error",
        "bad_request",
        "replay_miss",
        "connection",
    }


# --- ScriptedBackend --------------------------------------------------------------------------


async def test_scripted_content_reply_is_a_full_openai_completion():
    backend = ScriptedBackend([{"content": "4"}])
    reply = await backend.complete(body("2+2?"))
    assert isinstance(reply, ModelReply)
    c = reply.completion
    assert c["object"] == "chat.completion"
    assert c["id"].startswith("chatcmpl-")
    assert isinstance(c["created"], int)
    assert c["model"] == "scripted"
    assert c["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "4"}, "finish_reason": "stop"}
    ]
    usage = c["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert "token_ids" not in c and "logprobs" not in c


async def test_scripted_tool_call_compact_form_expands():
    backend = ScriptedBackend([{"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}]}])
    c = (await backend.complete(body("add 1 and 2"))).completion
    choice = c["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] is None
    [call] = message["tool_calls"]
    assert call["type"] == "function"
    assert call["id"].startswith("call_")
    assert call["function"] == {"name": "add", "arguments": '{"a": 1, "b": 2}'}
    assert json.loads(call["function"]["arguments"]) == {"a": 1, "b": 2}


async def test_scripted_ids_are_stable_for_the_same_request_and_distinct_otherwise():
    reply = {"tool_calls": [{"name": "add", "arguments": {}}, {"name": "mul", "arguments": {}}]}
    a = (await ScriptedBackend([reply]).complete(body("q"))).completion
    b = (await ScriptedBackend([reply]).complete(body("q"))).completion
    other = (await ScriptedBackend([reply]).complete(body("another q"))).completion
    ids = [t["id"] for t in a["choices"][0]["message"]["tool_calls"]]
    assert ids == [t["id"] for t in b["choices"][0]["message"]["tool_calls"]]
    assert len(set(ids)) == 2
    assert ids[0] != other["choices"][0]["message"]["tool_calls"][0]["id"]
    assert a["id"] == b["id"] != other["id"]


async def test_scripted_passes_token_ids_logprobs_and_string_shorthand():
    backend = ScriptedBackend(
        ["hi", {"content": "x", "token_ids": [1, 2], "logprobs": [-0.1, -0.2]}]
    )
    first = (await backend.complete(body("a"))).completion
    second = (await backend.complete(body("b"))).completion
    assert first["choices"][0]["message"]["content"] == "hi"
    assert second["token_ids"] == [1, 2] and second["logprobs"] == [-0.1, -0.2]
    assert backend.remaining == 0
    assert [b["messages"][0]["content"] for b in backend.calls] == ["a", "b"]
    quiet = ScriptedBackend(["x"], keep_calls=False)
    await quiet.complete(body("a"))
    assert quiet.calls == []


async def test_scripted_raises_a_clear_error_when_the_script_runs_out():
    backend = ScriptedBackend([{"content": "only one"}])
    await backend.complete(body("first"))
    with pytest.raises(ModelError) as info:
        await backend.complete(body("second", rollout_id="row-7-a0"))
    err = info.value
    assert err.kind == "replay_miss" and err.systemic and not err.retryable
    assert "ran out of replies after 1 calls" in err.message
    assert "'row-7-a0'" in err.message and "reply 2" in err.message


async def test_scripted_raises_scripted_exceptions():
    boom = ModelError("rate_limit", "slow down", retryable=True)
    backend = ScriptedBackend([boom, {"content": "ok"}])
    with pytest.raises(ModelError) as info:
        await backend.complete(body("a"))
    assert info.value is boom
    assert (await backend.complete(body("a"))).completion["choices"][0]["message"][
        "content"
    ] == "ok"


async def test_scripted_function_sync_and_async():
    def echo(b: dict) -> dict:
        return {"content": b["messages"][-1]["content"].upper()}

    async def aecho(b: dict) -> dict:
        await asyncio.sleep(0)
        return {"content": b["messages"][-1]["content"][::-1]}

    assert (await ScriptedBackend(echo).complete(body("abc"))).completion["choices"][0]["message"][
        "content"
    ] == "ABC"
    assert (await ScriptedBackend(aecho).complete(body("abc"))).completion["choices"][0]["message"][
        "content"
    ] == "cba"


async def test_scripted_full_completion_passes_through():
    full = {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "z"},
                "finish_reason": "length",
            }
        ]
    }
    c = (await ScriptedBackend([full]).complete(body("q"))).completion
    assert c["choices"][0]["finish_reason"] == "length"
    assert c["object"] == "chat.completion" and "usage" in c


async def test_scripted_latency_runs_concurrently_and_in_order():
    backend = ScriptedBackend([{"content": str(i)} for i in range(20)], latency_s=0.05)
    started = time.perf_counter()
    replies = await asyncio.gather(*(backend.complete(body(f"q{i}")) for i in range(20)))
    elapsed = time.perf_counter() - started
    # 20 calls x 50 ms run concurrently: far below the 1 s a serial backend would take.
    assert 0.05 <= elapsed < 0.5
    contents = [r.completion["choices"][0]["message"]["content"] for r in replies]
    assert contents == [str(i) for i in range(20)]
    assert all(r.latency_ms >= 45 for r in replies)


async def test_backends_satisfy_the_protocol():
    assert isinstance(ScriptedBackend([]), ModelBackend)
    assert isinstance(LiteLLMBackend("openai/x"), ModelBackend)


# --- create_backend ---------------------------------------------------------------------------


def test_create_backend_resolves_specs(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    # Started by the litellm spec below; kept from importing litellm in this test process.
    monkeypatch.setattr(litellm_backend, "start_loading", lambda: False)
    openai = create_backend("openai/gpt-4o-mini")
    assert isinstance(openai, OpenAICompatibleBackend)
    assert (openai.name, openai.model) == ("openai/gpt-4o-mini", "gpt-4o-mini")
    assert openai.url == "https://api.openai.com/v1/chat/completions"
    # With --base-url any name is the server's model name, as vLLM serves it.
    served = create_backend(
        "Qwen/Qwen2.5-7B-Instruct", base_url="http://localhost:8000/v1/", api_key="k"
    )
    assert isinstance(served, OpenAICompatibleBackend)
    assert served.model == "Qwen/Qwen2.5-7B-Instruct"
    assert served.url == "http://localhost:8000/v1/chat/completions"
    assert served.api_key == "k"
    assert create_backend("hosted_vllm/m", base_url="http://h/v1").model == "m"

    claude = create_backend("anthropic/claude-3-5-haiku")
    assert isinstance(claude, LiteLLMBackend) and claude.provider == "anthropic"
    forced = create_backend("litellm:azure/gpt-4o", base_url="https://x.azure.com", api_key="k")
    assert isinstance(forced, LiteLLMBackend) and forced.base_url == "https://x.azure.com"

    cassette = tmp_path / "c.jsonl"
    cassette.write_text('{"osmosis_cassette": 1, "created": "x", "model": "m"}\n')
    replay = create_backend(f"replay:{cassette}")
    assert isinstance(replay, ReplayBackend)
    assert replay.name == f"replay:{cassette}"

    recording = create_backend("gpt-4o-mini", record_to=tmp_path / "out.jsonl")
    assert isinstance(recording, RecordingBackend)
    assert isinstance(recording.inner, OpenAICompatibleBackend)
    assert "openai/gpt-4o-mini" in recording.name

    assert isinstance(create_backend("human"), HumanBackend)


def test_a_hosted_provider_without_its_key_fails_at_creation(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    for spec, env in (("gpt-4o-mini", "OPENAI_API_KEY"), ("anthropic/x", "ANTHROPIC_API_KEY")):
        with pytest.raises(ModelError) as info:
            create_backend(spec)
        assert info.value.kind == "authentication" and info.value.systemic
        assert info.value.message.startswith(f"{env} is not set: export {env}=")
    # A key on the command line, or a custom server (often keyless), is judged by its answer.
    assert create_backend("gpt-4o-mini", api_key="sk-x")
    assert create_backend("m", base_url="http://localhost:8000/v1")


def test_create_backend_errors_name_the_input_and_the_fix(tmp_path):
    with pytest.raises(ValueError, match="empty model spec"):
        create_backend("  ")
    with pytest.raises(ValueError, match=r"needs a file path, e.g. replay:"):
        create_backend("replay:")
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(FileNotFoundError, match=f"cassette {missing} not found.*--record"):
        create_backend(f"replay:{missing}")
