"""OpenAI-compatible servers (--base-url, openai/NAME) against a real HTTP server on loopback.

The server (``loopback_openai``) is the only fake: the CLI, the local trainer, the embedded
rollout server and the sample agent are the real ones.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from loopback_openai import LoopbackOpenAI, Status

from osmosis_workbench.cli import main
from osmosis_workbench.engine.models import ModelError, OpenAICompatibleBackend
from osmosis_workbench.engine.models.providers import RetryPolicy

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ["-m", "sample_project.server:agent_loop", "-d", "sample_project/test_data.jsonl"]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "add",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
            },
        },
    }
]


class Sleeps:
    """Records backoff waits instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def backend(server: LoopbackOpenAI, **kwargs) -> tuple[OpenAICompatibleBackend, Sleeps]:
    sleeps = Sleeps()
    policy = {
        k: kwargs.pop(k) for k in ("max_retries", "base_delay_s", "max_delay_s") if k in kwargs
    }
    retry = RetryPolicy(**policy, sleep=sleeps)
    return OpenAICompatibleBackend(
        "served-model", base_url=server.base_url, retry=retry, **kwargs
    ), sleeps


def base_url_run(server: LoopbackOpenAI, runs: Path, *extra: str) -> list[str]:
    """``osmosis test`` arguments: the sample agent against ``server`` as model "calc"."""
    return [
        "test",
        *SAMPLE,
        "--model",
        "calc",
        "--base-url",
        server.base_url,
        "--runs-dir",
        str(runs),
        *extra,
    ]


def chat(**extra: object) -> dict:
    return {
        "model": "default",
        "rollout_id": "r-1",
        "logprobs": True,
        "metadata": {"row_index": 0},
        "messages": [{"role": "user", "content": "What is 2 + 3?"}],
        **extra,
    }


@pytest.fixture
def no_openai_env(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


# --- the backend ------------------------------------------------------------------------------


async def test_tool_call_answer_with_tools_tool_choice_and_usage(no_openai_env):
    def policy(body):
        return {"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}

    with LoopbackOpenAI(policy, api_key="sk-local") as server:
        b, _ = backend(server, api_key="sk-local")
        try:
            reply = await b.complete(
                chat(tools=TOOLS, tool_choice="auto", top_k=5, temperature=0.2)
            )
        finally:
            await b.aclose()
    [got] = server.received
    assert got.headers["authorization"] == "Bearer sk-local"
    # The server's model name, OpenAI's params and a custom server's extensions go; the
    # protocol's own keys (rollout_id, logprobs, metadata) do not.
    assert got.body == {
        "model": "served-model",
        "messages": chat()["messages"],
        "tools": TOOLS,
        "tool_choice": "auto",
        "top_k": 5,
        "temperature": 0.2,
    }
    choice = reply.completion["choices"][0]
    [call] = choice["message"]["tool_calls"]
    assert call["function"] == {"name": "add", "arguments": '{"a": 2, "b": 3}'}
    assert choice["finish_reason"] == "tool_calls" and "logprobs" not in choice
    assert reply.completion["usage"]["completion_tokens"] == 7
    assert reply.cost_usd is None and reply.latency_ms > 0


async def test_transient_failures_are_retried_then_answered(no_openai_env):
    answers = iter(
        [
            Status(503, {"error": {"message": "overloaded"}}),
            Status(429, {"error": {"message": "slow down"}}, {"retry-after": "0.25"}),
            {"content": "5"},
        ]
    )
    with LoopbackOpenAI(lambda body: next(answers)) as server:
        b, sleeps = backend(server, base_delay_s=0.5, max_delay_s=8.0)
        try:
            reply = await b.complete(chat())
        finally:
            await b.aclose()
    assert reply.completion["choices"][0]["message"]["content"] == "5"
    assert len(server.received) == 3
    assert 0 <= sleeps.delays[0] <= 0.5 and sleeps.delays[1] == 0.25


@pytest.mark.parametrize(
    ("status", "message", "kind", "says"),
    [
        (400, "Invalid value for 'tool_choice'", "bad_request", "rejected the request"),
        (404, "The model `nope` does not exist", "unknown_model", "check the model name"),
        (400, "This model's maximum context length is 4096 tokens", "context_window", "too long"),
        (403, "not allowed", "authentication", "permission denied"),
        (429, "You exceeded your current quota (insufficient_quota)", "rate_limit", "quota"),
    ],
)
async def test_final_failures_are_not_retried(no_openai_env, status, message, kind, says):
    with LoopbackOpenAI(lambda body: Status(status, {"error": {"message": message}})) as server:
        b, sleeps = backend(server)
        try:
            with pytest.raises(ModelError) as info:
                await b.complete(chat())
        finally:
            await b.aclose()
    assert len(server.received) == 1 and sleeps.delays == []
    err = info.value
    assert err.kind == kind and not err.retryable and says in err.message
    assert message in err.message and "served-model" in err.message


async def test_retries_give_up_after_the_policy_says(no_openai_env):
    with LoopbackOpenAI(lambda body: Status(502, {"detail": "bad gateway"})) as server:
        b, sleeps = backend(server, max_retries=2)
        try:
            with pytest.raises(ModelError, match="gave up after 3 attempts") as info:
                await b.complete(chat())
        finally:
            await b.aclose()
    assert len(server.received) == 3 and len(sleeps.delays) == 2
    assert info.value.kind == "server_error" and "bad gateway" in info.value.message


async def test_a_refused_connection_is_final_and_names_the_base_url(no_openai_env):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    sleeps = Sleeps()
    b = OpenAICompatibleBackend("m", base_url=url, retry=RetryPolicy(sleep=sleeps))
    try:
        with pytest.raises(ModelError) as info:
            await b.complete(chat())
    finally:
        await b.aclose()
    err = info.value
    assert (err.kind, err.retryable, err.systemic) == ("connection", False, True)
    assert f"cannot connect to {url}" in err.message and "is the server running" in err.message
    assert sleeps.delays == []


async def test_a_server_that_is_not_openai_compatible_is_named(no_openai_env):
    with LoopbackOpenAI(lambda body: Status(200, {"hello": "world"})) as server:
        b, _ = backend(server)
        try:
            with pytest.raises(ModelError, match=r"without a 'choices' list.*ends in /v1"):
                await b.complete(chat())
        finally:
            await b.aclose()


# --- through the CLI --------------------------------------------------------------------------


def test_osmosis_test_against_a_base_url_runs_every_row_without_litellm(tmp_path):
    with LoopbackOpenAI() as server:
        code = (
            "import sys; from osmosis_workbench.cli import main; "
            "rc = main(sys.argv[1:]); "
            "assert 'litellm' not in sys.modules, 'litellm was imported'; sys.exit(rc)"
        )
        done = subprocess.run(
            [sys.executable, "-c", code, *base_url_run(server, tmp_path, "--limit", "4")],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            env={k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"},
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Passed: 4" in done.stdout
    # The probe, then every turn of the four rows (each row solves in 2-3 calls).
    tool_rounds = [r for r in server.received if r.body.get("tools")]
    assert {r.body["model"] for r in server.received} == {"calc"}
    assert len(tool_rounds) >= 8


def test_a_refused_key_is_one_line_naming_the_variable_exit_2_no_retries(
    tmp_path, capsys, no_openai_env
):
    with LoopbackOpenAI(api_key="sk-right") as server:
        code = main(base_url_run(server, tmp_path))
    out, err = capsys.readouterr()
    assert code == 2
    assert len(server.received) == 1  # the probe, once: no retries, no row
    [line] = err.splitlines()
    assert line.startswith(f"Error: authentication failed for calc at {server.base_url}")
    assert "set OPENAI_API_KEY" in line and "--model-api-key" in line
    assert out == ""


def test_a_hosted_model_without_its_key_stops_before_any_network(tmp_path, capsys, no_openai_env):
    code = main(["test", *SAMPLE, "--model", "openai/gpt-4o-mini", "--runs-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 2
    [line] = err.splitlines()
    assert "OPENAI_API_KEY is not set: export OPENAI_API_KEY=" in line
    assert out == ""
