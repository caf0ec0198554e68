"""The 0.2-style agent project in ./agent02 (string tools), ported by its imports only.

It must pass ``osmosis validate``, run through ``osmosis test`` offline (a cassette recorded here
from a scripted model, then replayed by the CLI), serve a round trip the way a 0.2 user's test
does (``TestClient(create_app(...))`` + ``create_mock_trainer_app`` +
``patch_httpx_for_mock_trainer``) and over a real loopback uvicorn, and its own unit tests,
written 0.2-style with a fake LLM client, must pass.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import httpx
import pytest
from compat_support import ThreadedServer, answer, init_body, new_id
from fastapi.testclient import TestClient

from server_core import (
    CompletionsResult,
    OpenAIFunctionToolSchema,
    RolloutCompletionTracker,
    RolloutContext,
    RolloutMetrics,
    RolloutRequest,
    RolloutResult,
    create_app,
    create_mock_trainer_app,
    patch_httpx_for_mock_trainer,
    validate_agent_loop,
)
from tests.server_core.compat.agent02 import server as agent_server
from tests.server_core.compat.agent02.rewards import compute_reward
from tests.server_core.compat.agent02.tools import STRING_TOOL_SCHEMAS, execute_string_calls

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
DATA = HERE / "agent02" / "data.jsonl"
MODULE = "tests.server_core.compat.agent02.server:agent_loop"
ROWS = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]

#: Per question: the tool calls of each turn (several in one turn run in parallel), then the
#: final answer.
PLANS: dict[str, tuple[list[list[tuple[str, dict]]], str]] = {
    "Reverse the word 'osmosis'.": (
        [[("reverse_text", {"text": "osmosis"})]],
        "The reversed word is sisomso. #### sisomso",
    ),
    "How many letters s or p are in 'mississippi'?": (
        [
            [
                ("count_chars", {"text": "mississippi", "char": "s"}),
                ("count_chars", {"text": "mississippi", "char": "p"}),
            ]
        ],
        "4 letters s and 2 letters p: 6. #### 6",
    ),
    "Uppercase the word 'rollout', then reverse it.": (
        [
            [("change_case", {"text": "rollout", "mode": "upper"})],
            [("reverse_text", {"text": "ROLLOUT"})],
        ],
        "#### TUOLLOR",
    ),
}
EXPECTED_TOOL_OUTPUTS = {
    "Reverse the word 'osmosis'.": [["sisomso"]],
    "How many letters s or p are in 'mississippi'?": [["4", "2"]],
    "Uppercase the word 'rollout', then reverse it.": [["ROLLOUT"], ["TUOLLOR"]],
}


def _plan_step(messages: list[dict]) -> tuple[list[tuple[str, dict]] | None, str | None]:
    question = next(m["content"] for m in messages if m.get("role") == "user")
    turns, final = PLANS[question]
    done = sum(1 for m in messages if m.get("role") == "assistant")
    if done < len(turns):
        return turns[done], None
    return None, final


def scripted_compact(body: dict) -> dict:
    """The workbench ScriptedBackend's compact reply for a chat body."""
    calls, final = _plan_step(body["messages"])
    if calls:
        return {"tool_calls": [{"name": n, "arguments": a} for n, a in calls]}
    return {"content": final}


def scripted_openai(body: dict) -> dict:
    """A full OpenAI completion for the loopback trainer (content null beside tool_calls)."""
    calls, final = _plan_step(body["messages"])
    turn = sum(1 for m in body["messages"] if m.get("role") == "assistant")
    usage = {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28}
    if calls:
        tool_calls = [
            {
                "id": f"call_{turn}_{i}",
                "type": "function",
                "function": {"name": n, "arguments": json.dumps(a)},
            }
            for i, (n, a) in enumerate(calls)
        ]
        return answer(
            message={"role": "assistant", "content": None, "tool_calls": tool_calls},
            finish_reason="tool_calls",
            usage=usage,
        )
    return answer(final, usage=usage)


def row_messages(row: dict) -> list[dict]:
    return [
        {"role": "system", "content": row["system_prompt"]},
        {"role": "user", "content": row["user_prompt"]},
    ]


def tool_outputs(final_messages: list[dict]) -> list[list[str]]:
    """The tool contents of each tool turn, in order."""
    turns: list[list[str]] = []
    previous = None
    for m in final_messages:
        if m.get("role") == "tool":
            if previous != "tool":
                turns.append([])
            turns[-1].append(m["content"])
        previous = m.get("role")
    return turns


# ---- validate -------------------------------------------------------------------------------


def test_osmosis_validate_cli_passes(capsys, monkeypatch):
    from osmosis_workbench.cli import main

    monkeypatch.chdir(ROOT)
    code = main(["validate", "-m", MODULE])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err


def test_validate_agent_loop_passes_with_three_tools():
    result = validate_agent_loop(agent_server.agent_loop)
    assert result.valid, [str(e) for e in result.errors]
    assert result.agent_name == "string_tools"
    assert result.tool_count == 3
    assert result.warnings == []


def test_module_level_app_is_built_with_debug_dir_keyword():
    from fastapi import FastAPI

    assert isinstance(agent_server.app, FastAPI)
    assert agent_server.app.title == "Osmosis RolloutServer (string_tools)"


# ---- osmosis test, offline -------------------------------------------------------------------


def test_osmosis_test_runs_every_row_offline(tmp_path, capsys, monkeypatch):
    from osmosis_workbench.cli import main

    cassette = tmp_path / "cassette.jsonl"

    async def record() -> list[Any]:
        from osmosis_workbench.engine.batch import BatchRunner
        from osmosis_workbench.engine.config import EngineConfig
        from osmosis_workbench.engine.embedded import EmbeddedRolloutServer
        from osmosis_workbench.engine.models import RecordingBackend, ScriptedBackend
        from osmosis_workbench.engine.trainer import LocalTrainer

        backend = RecordingBackend(
            ScriptedBackend(scripted_compact, name="scripted-strings"), cassette
        )
        trainer = LocalTrainer(backend)
        async with EmbeddedRolloutServer(agent_server.agent_loop, trainer) as server:
            runner = BatchRunner(
                trainer, [server.target], EngineConfig(dataset=str(DATA), concurrency=1)
            )
            results = await runner.run()
        await backend.aclose()
        return results

    recorded = asyncio.run(record())
    assert [r.outcome.reward for r in recorded] == [1.0, 1.0, 1.0]
    assert all(r.outcome.violations == [] for r in recorded), [
        r.outcome.violations for r in recorded
    ]

    monkeypatch.chdir(ROOT)
    out_file = tmp_path / "results.json"
    code = main(
        [
            "test",
            "-m",
            MODULE,
            "-d",
            str(DATA),
            "--model",
            f"replay:{cassette}",
            "--runs-dir",
            str(tmp_path / "runs"),
            "-o",
            str(out_file),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Total: 3" in out and "Passed: 3" in out and "Failed: 0" in out
    results = json.loads(out_file.read_text())
    assert results["summary"]["passed"] == 3
    for entry in results["results"]:
        assert entry["status"] == "COMPLETED"
        assert entry["reward"] == 1.0
        assert entry.get("violations", []) == []


# ---- served round trips -----------------------------------------------------------------------


def _string_tool_generator(last_message: dict) -> list[dict] | None:
    if last_message.get("role") == "user":
        return [
            {
                "id": "call_rev",
                "type": "function",
                "function": {"name": "reverse_text", "arguments": '{"text": "osmosis"}'},
            }
        ]
    return None


def test_served_round_trip_with_the_mock_trainer(monkeypatch):
    """Exactly how a 0.2 user's test drives the agent through the mock trainer."""
    tracker = RolloutCompletionTracker()
    mock_client = TestClient(
        create_mock_trainer_app(tracker, tool_call_generator=_string_tool_generator)
    )
    patch_httpx_for_mock_trainer(mock_client, monkeypatch)

    app = create_app(agent_server.agent_loop)
    with TestClient(app) as client:
        row = ROWS[0]
        response = client.post(
            "/v1/rollout/init",
            json={
                "rollout_id": "agent02-mock-1",
                "server_url": "http://mock-trainer:9999",
                "messages": row_messages(row),
                "completion_params": {"temperature": 0.7},
                "metadata": {"ground_truth": row["ground_truth"]},
            },
        )
        assert response.status_code == 202
        tools = response.json()["tools"]
        assert [t["function"]["name"] for t in tools] == [
            "reverse_text",
            "count_chars",
            "change_case",
        ]
        assert tracker.wait(timeout=3.0)
    (done,) = tracker.responses
    assert done["rollout_id"] == "agent02-mock-1"
    assert done["status"] == "COMPLETED"
    roles = [m["role"] for m in done["final_messages"]]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]
    tool_msg = done["final_messages"][3]
    assert tool_msg == {"role": "tool", "content": "sisomso", "tool_call_id": "call_rev"}
    assert done["final_messages"][-1]["content"] == "The calculation is complete."
    assert done["reward"] == 0.0  # no '#### ' in the mock's answer
    assert done["metrics"]["num_llm_calls"] == 2
    assert done["metrics"]["num_tool_calls"] == 1
    stored = mock_client.get("/v1/rollout/completed/agent02-mock-1").json()
    assert stored["status"] == "COMPLETED"


def test_served_round_trip_with_the_mock_trainer_without_tools(monkeypatch):
    tracker = RolloutCompletionTracker()
    mock_client = TestClient(create_mock_trainer_app(tracker))
    patch_httpx_for_mock_trainer(mock_client, monkeypatch)
    with TestClient(agent_server.app) as client:  # the module-level app
        response = client.post(
            "/v1/rollout/init",
            json={
                "rollout_id": "agent02-mock-2",
                "server_url": "http://mock-trainer:9999",
                "messages": [{"role": "user", "content": "hello"}],
                "completion_params": {},
            },
        )
        assert response.status_code == 202
        assert tracker.wait(timeout=3.0)
    (done,) = tracker.responses
    assert done["status"] == "COMPLETED"
    assert done["final_messages"][-1] == {"role": "assistant", "content": "OK."}
    assert "reward" not in done  # no ground truth: reward None, omitted


@pytest.mark.parametrize("row_index", [0, 1, 2])
def test_served_rows_against_a_loopback_trainer(lb_trainer, row_index):
    lb_trainer.chat_default = scripted_openai
    row = ROWS[row_index]
    rid = new_id(f"agent02-row{row_index}")
    params = {"temperature": 0.3, "max_tokens": 128}
    with TestClient(create_app(agent_server.agent_loop)) as client:
        body = init_body(
            lb_trainer.url,
            rid,
            messages=row_messages(row),
            completion_params=params,
            metadata={"ground_truth": row["ground_truth"]},
            api_key="trainer-key",
        )
        response = client.post("/v1/rollout/init", json=body)
        assert response.status_code == 202
        completion = lb_trainer.wait_for_completion(rid)
    assert completion["status"] == "COMPLETED", completion
    assert completion["reward"] == 1.0
    assert completion["finish_reason"] == "stop"
    assert tool_outputs(completion["final_messages"]) == EXPECTED_TOOL_OUTPUTS[row["user_prompt"]]
    chats = lb_trainer.chats_for(rid)
    turns = len(PLANS[row["user_prompt"]][0]) + 1
    assert len(chats) == turns
    # completion_params reach every chat; the history is append-only and keeps each assistant
    # message exactly as the trainer sent it ("content": null beside tool_calls).
    for i, chat in enumerate(chats):
        assert chat["temperature"] == 0.3 and chat["max_tokens"] == 128
        if i + 1 < len(chats):
            sent = chat["messages"]
            following = chats[i + 1]["messages"]
            assert following[: len(sent)] == sent
            answered = scripted_openai(chat)["choices"][0]["message"]
            assert following[len(sent)] == answered
            assert list(following[len(sent)]) == list(answered)
    metrics = completion["metrics"]
    assert metrics["num_llm_calls"] == turns
    assert metrics["num_tool_calls"] == sum(len(t) for t in PLANS[row["user_prompt"]][0])
    assert metrics["tool_latency_ms"] > 0
    assert metrics["prompt_tokens"] == 20 * turns


def test_init_tools_reach_the_trainer_without_nulls(lb_trainer):
    lb_trainer.chat_default = scripted_openai
    rid = new_id("agent02-tools")
    with TestClient(create_app(agent_server.agent_loop)) as client:
        body = init_body(lb_trainer.url, rid, messages=row_messages(ROWS[0]))
        tools = client.post("/v1/rollout/init", json=body).json()["tools"]
        lb_trainer.wait_for_completion(rid)
    count = next(t for t in tools if t["function"]["name"] == "count_chars")
    assert count["function"]["parameters"]["properties"]["char"] == {"type": "string"}
    case = next(t for t in tools if t["function"]["name"] == "change_case")
    assert case["function"]["parameters"]["properties"]["mode"]["enum"] == ["upper", "lower"]
    assert "null" not in json.dumps(tools)


def test_served_round_trip_over_a_real_loopback_uvicorn(lb_trainer):
    lb_trainer.chat_default = scripted_openai
    server = ThreadedServer(create_app(agent_server.agent_loop)).start()
    try:
        rid = new_id("agent02-uvicorn")
        row = ROWS[2]
        with httpx.Client(base_url=server.url, timeout=10) as http:
            assert http.get("/health").json()["agent_loop"] == "string_tools"
            response = http.post(
                "/v1/rollout/init",
                json=init_body(
                    lb_trainer.url,
                    rid,
                    messages=row_messages(row),
                    metadata={"ground_truth": row["ground_truth"]},
                ),
            )
            assert response.status_code == 202
            completion = lb_trainer.wait_for_completion(rid)
            # The server counts the rollout once the trainer acknowledged it: poll briefly.
            deadline = time.monotonic() + 3.0
            health = http.get("/health").json()
            while health["completed_rollouts"] < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
                health = http.get("/health").json()
    finally:
        server.stop()
    assert completion["status"] == "COMPLETED"
    assert completion["reward"] == 1.0
    assert tool_outputs(completion["final_messages"]) == [["ROLLOUT"], ["TUOLLOR"]]
    assert health["completed_rollouts"] >= 1


def test_rollout_debug_dir_env_at_import(lb_trainer, tmp_path, monkeypatch):
    """The template's ``create_app(agent_loop, debug_dir=os.getenv("ROLLOUT_DEBUG_DIR"))``."""
    lb_trainer.chat_default = scripted_openai
    monkeypatch.setenv("ROLLOUT_DEBUG_DIR", str(tmp_path / "traces"))
    module = importlib.reload(agent_server)
    try:
        rid = new_id("agent02-debug")
        with TestClient(module.app) as client:
            body = init_body(lb_trainer.url, rid, messages=row_messages(ROWS[0]))
            client.post("/v1/rollout/init", json=body)
            lb_trainer.wait_for_completion(rid)
        files = list((tmp_path / "traces").rglob("*.jsonl"))
        assert len(files) == 1
        events = [json.loads(line) for line in files[0].read_text().splitlines()]
        assert [e["event"] for e in events] == [
            "pre_llm",
            "llm_response",
            "tool_results",
            "pre_llm",
            "llm_response",
            "rollout_complete",
        ]
        assert all(e["rollout_id"] == rid for e in events)
        assert events[2]["contents"] == ["sisomso"]
    finally:
        monkeypatch.delenv("ROLLOUT_DEBUG_DIR")
        importlib.reload(agent_server)


# ---- the agent's own unit tests, written 0.2-style ---------------------------------------------


class FakeLLMClient:
    """An object with async chat_completions returning CompletionsResult and get_metrics."""

    def __init__(self, messages: list[dict]):
        self._messages = list(messages)
        self.calls: list[tuple[list[dict], dict]] = []

    async def chat_completions(self, messages, **kwargs) -> CompletionsResult:
        self.calls.append((list(messages), kwargs))
        message = self._messages.pop(0)
        return CompletionsResult(
            message=message,
            token_ids=[1, 2, 3],
            logprobs=[0.0, 0.0, 0.0],
            usage={"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
            finish_reason="tool_calls" if message.get("tool_calls") else "stop",
        )

    def get_metrics(self) -> RolloutMetrics:
        return RolloutMetrics(
            llm_latency_ms=5.0,
            num_llm_calls=len(self.calls),
            prompt_tokens=10 * len(self.calls),
            response_tokens=3 * len(self.calls),
        )


def _request(**overrides) -> RolloutRequest:
    data = dict(
        rollout_id="unit-1",
        server_url="http://localhost:8080",
        messages=row_messages(ROWS[0]),
        completion_params={"temperature": 0.5},
        metadata={"ground_truth": "sisomso"},
    )
    data.update(overrides)
    return RolloutRequest(**data)


async def test_agent_run_with_a_fake_llm():
    fake = FakeLLMClient(
        [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "reverse_text", "arguments": '{"text": "osmosis"}'},
                    }
                ],
            },
            {"role": "assistant", "content": "Reversed: sisomso. #### sisomso"},
        ]
    )
    req = _request()
    ctx = RolloutContext(request=req, tools=STRING_TOOL_SCHEMAS, llm=fake)
    result = await agent_server.agent_loop.run(ctx)
    assert isinstance(result, RolloutResult)
    assert result.status == "COMPLETED"
    assert result.reward == 1.0
    assert result.finish_reason == "stop"
    assert result.error_message is None
    assert [m["role"] for m in result.final_messages] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
    ]
    assert result.final_messages[3] == {
        "role": "tool",
        "content": "sisomso",
        "tool_call_id": "call_1",
    }
    # ctx.chat hands the client exactly (messages, **completion_params).
    assert [kwargs for _, kwargs in fake.calls] == [{"temperature": 0.5}, {"temperature": 0.5}]
    assert result.metrics.num_tool_calls == 1
    assert result.metrics.tool_latency_ms > 0
    assert result.metrics.num_llm_calls == 2
    assert result.metrics.total_latency_ms == 0


async def test_agent_handles_bad_tool_arguments():
    fake = FakeLLMClient(
        [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "bad_1",
                        "type": "function",
                        "function": {"name": "reverse_text", "arguments": "{oops"},
                    },
                    {"type": "function", "function": {"name": "count_chars", "arguments": "[1]"}},
                    {
                        "id": "x_1",
                        "type": "function",
                        "function": {"name": "explode", "arguments": "{}"},
                    },
                ],
            },
            {"role": "assistant", "content": "I could not. #### ?"},
        ]
    )
    ctx = RolloutContext(_request(), STRING_TOOL_SCHEMAS, fake)
    result = await agent_server.agent_loop.run(ctx)
    tools = [m for m in result.final_messages if m["role"] == "tool"]
    assert tools[0]["tool_call_id"] == "bad_1"
    assert tools[0]["content"].startswith("Error: Invalid JSON arguments")
    assert tools[1]["tool_call_id"] == "unknown"
    assert tools[1]["content"] == "Error: Expected dict from JSON, got list"
    assert tools[2]["content"].startswith("Error: Unknown function 'explode'")
    assert result.reward == 0.0


async def test_agent_stops_at_max_turns():
    looping = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c",
                "type": "function",
                "function": {"name": "reverse_text", "arguments": '{"text": "a"}'},
            }
        ],
    }
    fake = FakeLLMClient([looping, looping])
    ctx = RolloutContext(request=_request(max_turns=2), tools=[], llm=fake)
    result = await agent_server.agent_loop.run(ctx)
    assert result.finish_reason == "max_turns"
    assert result.status == "COMPLETED"


async def test_agent_with_a_magicmock_llm():
    llm = MagicMock()

    async def chat_completions(messages, **kwargs):
        return CompletionsResult(
            {"role": "assistant", "content": "#### sisomso"}, [], [], {}, "stop"
        )

    llm.chat_completions = chat_completions
    llm.get_metrics.return_value = RolloutMetrics(num_llm_calls=1)
    ctx = RolloutContext(_request(), [], llm)
    result = await agent_server.agent_loop.run(ctx)
    assert result.reward == 1.0
    assert result.metrics.num_llm_calls == 1


def test_context_helpers_as_unit_tests_use_them():
    fake = FakeLLMClient([])
    ctx = RolloutContext(request=_request(), tools=[], llm=fake)
    final = [{"role": "assistant", "content": "#### x"}]
    done = ctx.complete(final_messages=final)
    assert (done.status, done.finish_reason, done.final_messages) == ("COMPLETED", "stop", final)
    failed = ctx.error(error_message="tool server down")
    assert (failed.status, failed.error_message, failed.final_messages) == (
        "ERROR",
        "tool server down",
        [],
    )
    assert RolloutResult("COMPLETED", [], "stop") == RolloutResult("COMPLETED", [], "stop")
    assert RolloutResult("COMPLETED", [], "stop").metrics is None


def test_get_tools_returns_the_module_list():
    tools = agent_server.agent_loop.get_tools(_request())
    assert tools is STRING_TOOL_SCHEMAS
    assert all(isinstance(t, OpenAIFunctionToolSchema) for t in tools)


async def test_tool_executor_runs_calls_concurrently_in_order():
    calls = [
        {
            "id": "a",
            "type": "function",
            "function": {"name": "change_case", "arguments": '{"text": "Ab", "mode": "lower"}'},
        },
        {
            "id": "b",
            "type": "function",
            "function": {"name": "count_chars", "arguments": '{"text": "aaa", "char": "a"}'},
        },
        {
            "id": "c",
            "type": "function",
            "function": {"name": "count_chars", "arguments": '{"text": "aaa", "char": "aa"}'},
        },
        {
            "id": "d",
            "type": "function",
            "function": {"name": "change_case", "arguments": '{"text": "x"}'},
        },
    ]
    results = await execute_string_calls(calls)
    assert results[0] == {"role": "tool", "content": "ab", "tool_call_id": "a"}
    assert results[1] == {"role": "tool", "content": "3", "tool_call_id": "b"}
    assert results[2] == {
        "role": "tool",
        "content": "Error: char must be exactly one character",
        "tool_call_id": "c",
    }
    assert results[3]["content"].startswith("Error: Invalid arguments:")


def test_compute_reward_as_the_template_calls_it():
    assert compute_reward("So: #### 6", "6") == 1.0
    assert compute_reward("So: #### 7", "6") == 0.0
    assert compute_reward("no marker", "6") == 0.0
    assert compute_reward("#### TUOLLOR.", "TUOLLOR", {"row": 1}) == 1.0
    assert compute_reward("#### 6", "6", data_source="strings") == 1.0
    assert compute_reward.__name__ == "compute_reward"


def test_the_project_imports_only_top_level_server_core():
    """The port is mechanical: every SDK import is ``from server_core import X``."""
    import ast
    import sys

    for name in ("server.py", "tools.py", "rewards.py"):
        tree = ast.parse((HERE / "agent02" / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                root = node.module.split(".")[0]
                assert (
                    node.module == "server_core"
                    or root in sys.stdlib_module_names
                    or root
                    in (
                        "uvicorn",
                        "rewards",
                        "tools",
                    )
                ), f"{name}: from {node.module} import ..."
            if isinstance(node, ast.Import):
                for alias in node.names:
                    root = alias.name.split(".")[0]
                    assert root in sys.stdlib_module_names or root == "uvicorn", alias.name
