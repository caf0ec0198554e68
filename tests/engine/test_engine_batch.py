"""Batch runs: rows through the protocol, rewards, pass@k, bad rows, busy servers, early stop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from osmosis_workbench.engine.batch import BatchRunner
from osmosis_workbench.engine.config import EngineConfig
from osmosis_workbench.engine.datasets import RowSelection
from osmosis_workbench.engine.embedded import EmbeddedRolloutServer
from osmosis_workbench.engine.journal import JournalEntry, JournalWriter, read_journal
from osmosis_workbench.engine.models import ModelError, ReplayBackend, ScriptedBackend
from osmosis_workbench.engine.summary import summarize
from osmosis_workbench.engine.trainer import LocalTrainer
from sample_project.server import agent_loop as calculator
from server_core import ServerLimits

SAMPLE = Path(__file__).resolve().parents[2] / "sample_project"


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def question(a: int, b: int, **extra: Any) -> dict[str, Any]:
    return {"system_prompt": "calc", "user_prompt": f"{a}+{b}", "ground_truth": a + b, **extra}


def adder(body: dict) -> dict:
    """A scripted model that adds the two numbers of the prompt with the add tool."""
    messages = body["messages"]
    if messages[-1]["role"] == "tool":
        return {"content": f"The answer is {messages[-1]['content']}."}
    a, b = messages[-1]["content"].split("+")
    return {"tool_calls": [{"name": "add", "arguments": {"a": int(a), "b": int(b)}}]}


async def run_batch(backend: Any, config: EngineConfig, agent: Any = calculator, **kwargs):
    trainer = LocalTrainer(backend)
    async with EmbeddedRolloutServer(agent, trainer, **kwargs.pop("server", {})) as server:
        runner = BatchRunner(trainer, [server.target], config, **kwargs)
        results = await runner.run()
    return runner, results


async def test_sample_dataset_replays_and_every_row_passes(tmp_path: Path):
    backend = ReplayBackend(SAMPLE / "cassette.jsonl")
    journal = JournalWriter(tmp_path / "journal.jsonl")
    _runner, results = await run_batch(
        backend,
        EngineConfig(dataset=str(SAMPLE / "test_data.jsonl"), concurrency=4),
        journal=journal,
    )
    journal.close()
    assert len(results) == 12
    assert all(r.passed for r in results), [r.outcome.error for r in results if not r.passed]
    entries = read_journal(tmp_path)
    assert sorted(entries) == [(i, 0) for i in range(12)]
    entry = entries[(6, 0)].to_json()
    # The journal holds the request, the full trajectory, the reward and the metrics.
    assert entry["request"]["messages"][1]["content"] == "What is 9 * 9 + 9 * 9?"
    assert [m["role"] for m in entry["final_messages"]].count("tool") == 3
    assert entry["reward"] == 1.0 and entry["metrics"]["num_llm_calls"] == 3
    # Tokens per call are journaled (the cassette recorded usage for each answer).
    assert [c["turn"] for c in entry["calls"]] == [1, 2, 3]
    assert all(c["prompt_tokens"] > 0 and c["completion_tokens"] > 0 for c in entry["calls"])
    assert entry["tokens"] == sum(
        c["prompt_tokens"] + c["completion_tokens"] for c in entry["calls"]
    )
    # An entry reads back from its JSON unchanged.
    assert JournalEntry.from_json(entry).to_json() == entry
    summary = summarize(entries.values(), bad_rows=0, duration_s=1.0, k=1)
    assert summary.all_passed and summary.reward_mean == 1.0 and summary.pass_at_k == 1.0


async def test_bad_rows_are_reported_and_the_others_run(tmp_path: Path):
    data = write_jsonl(
        tmp_path / "d.jsonl",
        [
            question(1, 2),
            "{broken json",
            {"system_prompt": "x", "ground_truth": 1},
            question(3, 4),
        ],
    )
    bad: list[Any] = []
    _runner, results = await run_batch(
        ScriptedBackend(adder), EngineConfig(dataset=str(data)), on_bad_row=bad.append
    )
    assert sorted(r.row for r in results) == [0, 3]
    assert all(r.passed for r in results)
    assert [(e.index, e.line) for e in bad] == [(1, 2), (2, 3)]
    assert "user_prompt" in bad[1].message
    summary = summarize(results, bad_rows=len(bad), duration_s=1, k=1)
    assert not summary.all_passed and summary.bad_rows == 2


async def test_pass_at_k_over_several_attempts(tmp_path: Path):
    data = write_jsonl(tmp_path / "d.jsonl", [question(1, 1), question(2, 2)])
    calls = {"n": 0}

    def sometimes_wrong(body: dict) -> dict:
        # Row "1+1" is always answered wrong; row "2+2" right on every other attempt.
        messages = body["messages"]
        prompt = messages[1]["content"]
        if prompt == "1+1":
            return {"content": "It is 3."}
        calls["n"] += 1
        return {"content": "It is 4." if calls["n"] % 2 else "It is 5."}

    _runner, results = await run_batch(
        ScriptedBackend(sometimes_wrong), EngineConfig(dataset=str(data), attempts=4, concurrency=1)
    )
    assert len(results) == 8
    summary = summarize(results, bad_rows=0, duration_s=1, k=4)
    assert summary.pass_at_k == 0.5  # one of two rows passed at least once
    assert summary.pass_at_1 == 0.25  # row 0: 0/4, row 1: 2/4
    assert summary.reward_mean == 0.25


async def test_reward_function_overrides_the_agents_reward(tmp_path: Path):
    data = write_jsonl(tmp_path / "d.jsonl", [question(1, 2)])

    def by_messages(messages, ground_truth, metadata):
        return 0.25 if messages[-1]["role"] == "assistant" else 0

    _runner, results = await run_batch(
        ScriptedBackend(adder),
        EngineConfig(dataset=str(data), pass_threshold=0.2),
        reward_fn=by_messages,
    )
    assert results[0].outcome.reward == 0.25 and results[0].passed


async def test_a_systemic_model_error_stops_the_batch_early(tmp_path: Path):
    data = write_jsonl(tmp_path / "d.jsonl", [question(i, i) for i in range(40)])
    failure = ModelError(
        "authentication", "authentication failed: check OPENAI_API_KEY", systemic=True
    )
    runner, results = await run_batch(
        ScriptedBackend(lambda body: failure), EngineConfig(dataset=str(data), concurrency=2)
    )
    assert runner.stopped_early and "OPENAI_API_KEY" in runner.stopped_early
    assert 0 < len(results) < 10
    assert all(r.outcome.error_category == "llm_error" for r in results)


async def test_a_busy_server_429_is_retried_until_every_row_ran(tmp_path: Path):
    data = write_jsonl(tmp_path / "d.jsonl", [question(i, 1) for i in range(12)])
    _runner, results = await run_batch(
        ScriptedBackend(adder, latency_s=0.01),
        EngineConfig(dataset=str(data), concurrency=6),
        server={"limits": ServerLimits(max_concurrent=1, max_queued=1)},
    )
    assert len(results) == 12 and all(r.passed for r in results)


async def test_rows_spread_over_several_servers(tmp_path: Path):
    data = write_jsonl(tmp_path / "d.jsonl", [question(i, 1) for i in range(10)])
    trainer = LocalTrainer(ScriptedBackend(adder))
    async with (
        EmbeddedRolloutServer(calculator, trainer) as one,
        EmbeddedRolloutServer(calculator, trainer) as two,
    ):
        runner = BatchRunner(
            trainer, [one.target, two.target], EngineConfig(dataset=str(data), concurrency=4)
        )
        results = await runner.run()
        counts = [s.app.state.rollouts.completed_total for s in (one, two)]
    assert len(results) == 10 and all(r.passed for r in results)
    assert counts == [5, 5]


async def test_selection_and_only_pick_the_rows(tmp_path: Path):
    data = write_jsonl(tmp_path / "d.jsonl", [question(i, 1) for i in range(10)])
    _, results = await run_batch(
        ScriptedBackend(adder),
        EngineConfig(dataset=str(data), selection=RowSelection(rows=frozenset({1, 4, 7}))),
        only={(4, 0), (7, 0)},
    )
    assert sorted(r.row for r in results) == [4, 7]
