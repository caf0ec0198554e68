"""LiteLLMBackend through litellm itself, with litellm's mock_response (no network, no key).

Every test that imports litellm lives in this one module: the import costs ~10-13 s of CPU,
paid once here.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from osmosis_workbench.engine.models import LiteLLMBackend, ModelError
from osmosis_workbench.engine.models.litellm_backend import (
    _import_litellm,
    load_litellm,
)
from osmosis_workbench.engine.models.providers import (
    MAX_RETRY_AFTER_S,
    RetryPolicy,
)

ROOT = Path(__file__).resolve().parents[2]
MODEL = "openai/gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "What is 2 + 2?"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "add",
            "parameters": {"type": "object", "properties": {"a": {}, "b": {}}},
        },
    }
]


def chat(**extra: object) -> dict:
    return {
        "model": "default",
        "messages": MESSAGES,
        "rollout_id": "row-0-a0",
        "temperature": 1.0,
        "top_p": 1.0,
        "logprobs": True,
        **extra,
    }


@pytest.fixture(autouse=True)
def provider_keys(monkeypatch):
    """Keys in the environment, as a user with an account has them (no test reaches a network)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")


@pytest.fixture(scope="module")
def litellm():
    # The blocking import the backend runs in a worker thread; paid once for the module.
    return _import_litellm()


class Sleeps:
    """A stand-in for asyncio.sleep that records the delays and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
def scripted_litellm(litellm, monkeypatch):
    """Make each acompletion attempt use the next mock_response of a list, counting attempts.

    The real litellm.acompletion still runs (and raises or answers) for every attempt.
    """
    state = {"outcomes": [], "attempts": 0, "kwargs": []}
    real = litellm.acompletion

    async def acompletion(**kwargs):
        state["kwargs"].append(kwargs)
        outcome = state["outcomes"][min(state["attempts"], len(state["outcomes"]) - 1)]
        state["attempts"] += 1
        return await real(**{**kwargs, "mock_response": outcome})

    monkeypatch.setattr(litellm, "acompletion", acompletion)
    return state


def backend(**kwargs) -> tuple[LiteLLMBackend, Sleeps]:
    sleeps = Sleeps()
    kwargs.setdefault("api_key", None)
    policy = {
        k: kwargs.pop(k) for k in ("max_retries", "base_delay_s", "max_delay_s") if k in kwargs
    }
    retry = RetryPolicy(**policy, sleep=sleeps)
    return LiteLLMBackend(kwargs.pop("model", MODEL), retry=retry, **kwargs), sleeps


# --- the lazy import --------------------------------------------------------------------------


def test_importing_the_models_package_does_not_import_litellm():
    code = (
        "import osmosis_workbench.engine.models as m, sys; "
        "m.create_backend('gpt-4o-mini', api_key='k', record_to='unused.jsonl'); "
        "assert 'litellm' not in sys.modules, 'litellm was imported'"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert not (ROOT / "unused.jsonl").exists()


def test_litellm_logs_go_to_our_handlers_not_the_terminal(litellm):
    assert litellm.suppress_debug_info is True
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        log = logging.getLogger(name)
        assert log.propagate
        assert not [h for h in log.handlers if isinstance(h, logging.StreamHandler)]


async def test_load_litellm_returns_the_same_module(litellm):
    assert await load_litellm() is litellm


# --- answers ----------------------------------------------------------------------------------


async def test_plain_answer(litellm):
    b, _ = backend(extra_kwargs={"mock_response": "4"})
    reply = await b.complete(chat())
    c = reply.completion
    assert c["object"] == "chat.completion" and c["id"]
    assert isinstance(c["created"], int)
    assert c["choices"][0]["message"] == {"role": "assistant", "content": "4"}
    assert c["choices"][0]["finish_reason"] == "stop"
    usage = c["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    # gpt-4o-mini is in litellm's bundled price table.
    assert reply.cost_usd is not None and reply.cost_usd > 0
    assert reply.latency_ms >= 0
    json.dumps(c)  # plain JSON, ready for the HTTP answer


async def test_tool_call_answer(litellm):
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "add", "arguments": '{"a": 2, "b": 2}'},
    }
    b, _ = backend(extra_kwargs={"mock_response": None, "mock_tool_calls": [call]})
    c = (await b.complete(chat(tools=TOOLS, tool_choice="auto"))).completion
    [got] = c["choices"][0]["message"]["tool_calls"]
    assert got["id"] == "call_1"
    assert got["function"] == {"name": "add", "arguments": '{"a": 2, "b": 2}'}
    assert got["type"] == "function"


async def test_unknown_price_gives_no_cost(litellm):
    b, _ = backend(model="openai/my-local-finetune", extra_kwargs={"mock_response": "x"})
    assert (await b.complete(chat())).cost_usd is None


async def test_forwards_sampling_params_and_drops_protocol_fields(scripted_litellm, caplog):
    scripted_litellm["outcomes"] = ["ok"]
    b, _ = backend(base_url="http://localhost:8000/v1", api_key="sk-test")
    body = chat(tools=TOOLS, seed=3, max_tokens=64, stop=["\n"], stream=True, top_k=5)
    with caplog.at_level(logging.WARNING, logger="osmosis_workbench.engine.models"):
        await b.complete(body)
        await b.complete(body)
    # An unknown param is dropped with one warning, not one per call.
    ours = [r for r in caplog.records if r.name == "osmosis_workbench.engine.models"]
    assert [r.getMessage() for r in ours] == [
        "openai/gpt-4o-mini: not forwarding 'top_k', not an OpenAI chat parameter"
    ]
    sent = scripted_litellm["kwargs"][0]
    assert sent["model"] == MODEL and sent["messages"] == MESSAGES
    assert sent["tools"] == TOOLS
    assert (sent["temperature"], sent["top_p"], sent["seed"], sent["max_tokens"]) == (
        1.0,
        1.0,
        3,
        64,
    )
    assert sent["stop"] == ["\n"]
    assert (sent["api_base"], sent["api_key"]) == ("http://localhost:8000/v1", "sk-test")
    for dropped in ("rollout_id", "logprobs", "stream", "top_k"):
        assert dropped not in sent
    # Our retries are the only ones: the provider SDK must not retry inside an attempt.
    assert sent["max_retries"] == 0


# --- errors -----------------------------------------------------------------------------------


def _errors(litellm):
    m = "gpt-4o-mini"
    return {
        "auth": litellm.AuthenticationError("Incorrect API key", llm_provider="openai", model=m),
        "rate": litellm.RateLimitError("Rate limit reached", llm_provider="openai", model=m),
        "quota": litellm.RateLimitError(
            "You exceeded your current quota (insufficient_quota)", llm_provider="openai", model=m
        ),
        "context": litellm.ContextWindowExceededError(
            "maximum context length is 128000 tokens", llm_provider="openai", model=m
        ),
        "timeout": litellm.Timeout("Request timed out", llm_provider="openai", model=m),
        "not_found": litellm.NotFoundError(
            "The model `gpt-9` does not exist", llm_provider="openai", model="gpt-9"
        ),
        "bad_model": litellm.BadRequestError(
            "invalid model ID", llm_provider="openai", model="gpt-9"
        ),
        "connection": litellm.APIConnectionError(
            "Server disconnected", llm_provider="openai", model=m
        ),
        "refused": litellm.APIConnectionError("Connection refused", llm_provider="openai", model=m),
        "no_host": litellm.InternalServerError(
            "AnthropicException - Cannot connect to host api.anthropic.com:443 [Name or service "
            "not known]",
            llm_provider="anthropic",
            model=m,
        ),
        "internal": litellm.InternalServerError("boom", llm_provider="openai", model=m),
        "unavailable": litellm.ServiceUnavailableError(
            "overloaded", llm_provider="openai", model=m
        ),
        "bad_request": litellm.BadRequestError(
            "Invalid value for 'tool_choice'", llm_provider="openai", model=m
        ),
    }


@pytest.mark.parametrize(
    ("error", "kind", "retryable", "systemic", "says"),
    [
        ("auth", "authentication", False, True, "set OPENAI_API_KEY (export OPENAI_API_KEY=...)"),
        ("rate", "rate_limit", True, False, "rate limited by openai"),
        ("quota", "rate_limit", False, True, "quota exhausted"),
        ("context", "context_window", False, False, "context window exceeded"),
        ("timeout", "timeout", True, False, "did not answer in time"),
        ("not_found", "unknown_model", False, True, "unknown model openai/gpt-4o-mini"),
        ("bad_model", "unknown_model", False, True, "check the model name"),
        ("connection", "connection", True, False, "cannot reach the openai API"),
        ("refused", "connection", False, True, "cannot connect to the openai API"),
        ("no_host", "connection", False, True, "cannot connect to the openai API"),
        ("internal", "server_error", True, False, "openai server error"),
        ("unavailable", "server_error", True, False, "openai server error"),
        ("bad_request", "bad_request", False, False, "Invalid value for 'tool_choice'"),
    ],
)
async def test_error_mapping(scripted_litellm, litellm, error, kind, retryable, systemic, says):
    scripted_litellm["outcomes"] = [_errors(litellm)[error]]
    b, _ = backend(max_retries=0)
    with pytest.raises(ModelError) as info:
        await b.complete(chat())
    err = info.value
    assert (err.kind, err.retryable, err.systemic) == (kind, retryable, systemic)
    assert MODEL in err.message and says in err.message
    assert "\n" not in err.message and "litellm." not in err.message


async def test_authentication_error_with_an_explicit_key_and_another_provider(
    scripted_litellm, litellm
):
    scripted_litellm["outcomes"] = [_errors(litellm)["auth"]]
    b, _ = backend(api_key="sk-wrong")
    with pytest.raises(ModelError, match="the key passed with --model-api-key was rejected"):
        await b.complete(chat())
    b, _ = backend(model="anthropic/claude-3-5-haiku-latest")
    with pytest.raises(ModelError, match=r"set ANTHROPIC_API_KEY .* or pass --model-api-key"):
        await b.complete(chat())


async def test_unknown_provider_is_a_systemic_unknown_model(litellm):
    # No mock: litellm itself rejects the provider before any network call.
    b, sleeps = backend(model="nosuchprovider/some-model")
    with pytest.raises(ModelError) as info:
        await b.complete(chat())
    assert info.value.kind == "unknown_model" and info.value.systemic
    assert "nosuchprovider/some-model" in info.value.message
    assert sleeps.delays == []


async def test_refused_connection_to_a_base_url_is_a_connection_error(litellm):
    # A port that was just free and is closed again: nothing listens there. litellm reports
    # the refused connection as a 500 "Connection error.".
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    b, sleeps = backend(base_url=url, api_key="sk-x", max_retries=1)
    with pytest.raises(ModelError) as info:
        await b.complete(chat())
    err = info.value
    assert err.kind == "connection" and err.retryable
    assert f"cannot reach {url}" in err.message and "--base-url" in err.message
    assert len(sleeps.delays) == 1


# --- retries ----------------------------------------------------------------------------------


async def test_retries_transient_errors_then_succeeds(scripted_litellm, litellm):
    errors = _errors(litellm)
    scripted_litellm["outcomes"] = [errors["rate"], errors["unavailable"], errors["timeout"], "ok"]
    b, sleeps = backend(max_retries=3, base_delay_s=0.5, max_delay_s=8.0)
    reply = await b.complete(chat())
    assert reply.completion["choices"][0]["message"]["content"] == "ok"
    assert scripted_litellm["attempts"] == 4
    # Full jitter: each wait is somewhere in [0, min(cap, base * 2**n)].
    assert len(sleeps.delays) == 3
    for n, delay in enumerate(sleeps.delays):
        assert 0 <= delay <= min(8.0, 0.5 * 2**n)


async def test_retry_exhaustion_raises_the_last_error(scripted_litellm, litellm):
    scripted_litellm["outcomes"] = [_errors(litellm)["rate"]]
    b, sleeps = backend(max_retries=2)
    with pytest.raises(ModelError) as info:
        await b.complete(chat())
    assert scripted_litellm["attempts"] == 3
    assert len(sleeps.delays) == 2
    assert info.value.kind == "rate_limit" and info.value.retryable
    assert "gave up after 3 attempts" in info.value.message


async def test_non_retryable_errors_raise_at_once(scripted_litellm, litellm):
    scripted_litellm["outcomes"] = [_errors(litellm)["auth"], "never reached"]
    b, sleeps = backend(max_retries=3)
    with pytest.raises(ModelError):
        await b.complete(chat())
    assert scripted_litellm["attempts"] == 1 and sleeps.delays == []


async def test_backoff_is_capped_and_jittered(scripted_litellm, litellm):
    scripted_litellm["outcomes"] = [_errors(litellm)["internal"]]
    b, sleeps = backend(max_retries=5, base_delay_s=0.5, max_delay_s=1.0)
    with pytest.raises(ModelError):
        await b.complete(chat())
    assert len(sleeps.delays) == 5
    assert all(0 <= d <= 1.0 for d in sleeps.delays)
    assert len(set(sleeps.delays)) > 1  # jittered, not a fixed schedule


async def test_retry_after_is_honoured_and_capped(scripted_litellm, litellm):
    def limited(after: str):
        return litellm.RateLimitError(
            "slow down", llm_provider="openai", model="gpt-4o-mini", headers={"retry-after": after}
        )

    scripted_litellm["outcomes"] = [limited("2.5"), limited("100000"), "ok"]
    b, sleeps = backend(max_retries=3, base_delay_s=0.0, max_delay_s=0.0)
    await b.complete(chat())
    assert sleeps.delays == [2.5, MAX_RETRY_AFTER_S]


async def test_missing_credentials_reported_as_a_500_is_final_and_names_the_variable(
    scripted_litellm, litellm
):
    # What litellm raises when the OpenAI SDK finds no key: a 500 that no retry fixes.
    scripted_litellm["outcomes"] = [
        litellm.InternalServerError(
            "OpenAIException - Missing credentials. Please pass an `api_key`, or set the "
            "`OPENAI_API_KEY` environment variable.",
            llm_provider="openai",
            model="gpt-4o-mini",
        )
    ]
    b, sleeps = backend(base_url="http://localhost:8000/v1", max_retries=3)
    with pytest.raises(ModelError) as info:
        await b.complete(chat())
    err = info.value
    assert (err.kind, err.retryable, err.systemic) == ("authentication", False, True)
    assert "set OPENAI_API_KEY" in err.message
    assert scripted_litellm["attempts"] == 1 and sleeps.delays == []


async def test_a_missing_key_fails_before_importing_or_calling(scripted_litellm, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    b, _ = backend(model="anthropic/claude-3-5-haiku-latest")
    with pytest.raises(ModelError, match=r"^ANTHROPIC_API_KEY is not set: export ANTHROPIC"):
        await b.complete(chat())
    assert scripted_litellm["attempts"] == 0
