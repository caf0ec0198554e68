"""`osmosis export`: ATIF trajectories that validate, OpenAI chat JSONL with tool calls kept,
a Parquet table of the rollouts."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from sample_runs import FAILS_ROW_3, run_sample

from osmosis_workbench.cli import main
from osmosis_workbench.engine.export import ATIF_VERSION, atif_trajectory, write_rollout
from osmosis_workbench.engine.journal import JournalEntry, iter_latest
from osmosis_workbench.engine.outcome import (
    LLMCallStats,
    OutcomeStatus,
    RolloutOutcome,
    Verdict,
)
from osmosis_workbench.engine.runs import RunInfo, list_run_dirs


@cache
def atif_validator() -> jsonschema.Draft202012Validator:
    """ATIF's JSON Schema, as published by the `atif` package (PyPI) that implements v1.8."""
    import atif

    schema = atif.Trajectory.model_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def assert_valid_atif(document: dict[str, Any]) -> None:
    """Valid against the published schema, and against the rules a schema cannot say."""
    import atif

    errors = sorted(atif_validator().iter_errors(document), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]
    assert document["schema_version"] == ATIF_VERSION
    atif.Trajectory.model_validate(document)  # step order, call/result links, agent-only fields


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of the sample whose reward function fails row 3 (11 passed, 1 failed)."""
    runs = tmp_path_factory.mktemp("export") / "runs"
    assert run_sample(runs, "--reward", FAILS_ROW_3) == 1
    [run] = list_run_dirs(runs)
    return run


def export(run: Path, fmt: str, output: Path, *extra: str) -> int:
    return main(["export", str(run), "--format", fmt, "-o", str(output), *extra])


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_atif_trajectories_validate_and_keep_calls_results_and_scores(
    sample_run: Path, tmp_path: Path, capsys
):
    output = tmp_path / "run.atif.jsonl"
    assert export(sample_run, "atif", output) == 0
    assert "Wrote 12 rollouts" in capsys.readouterr().out
    documents = lines_of(output)
    assert len(documents) == 12
    for document in documents:
        assert_valid_atif(document)
    first = documents[0]  # row 0: "What is 17 + 25?", one add call, then the answer
    assert [s["source"] for s in first["steps"]] == ["system", "user", "agent", "agent"]
    call = first["steps"][2]["tool_calls"][0]
    assert (call["function_name"], call["arguments"]) == ("add", {"a": 17, "b": 25})
    [result] = first["steps"][2]["observation"]["results"]
    assert result == {"source_call_id": call["tool_call_id"], "content": "42"}
    assert first["steps"][2]["metrics"]["prompt_tokens"] > 0
    assert first["agent"]["tool_definitions"][0]["function"]["name"] == "add"
    assert first["extra"]["osmosis"]["reward"] == 1.0
    assert documents[3]["extra"]["osmosis"]["verdict"] == "fail"


def test_atif_covers_errors_odd_arguments_and_results_no_call_asked_for(tmp_path: Path):
    messages = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}],
        },
        {"role": "tool", "tool_call_id": "stray", "content": "a result before any call"},
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "add them",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "add", "arguments": "not json"},
                },
                {
                    "id": "c2",
                    "type": "function",
                    "function": {"name": "add", "arguments": "[1, 2]"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "error: bad arguments"},
        {"role": "tool", "tool_call_id": "elsewhere", "name": "add", "content": "3"},
        {"role": "developer", "content": "a note"},
    ]
    outcome = RolloutOutcome(
        rollout_id="r-1",
        status=OutcomeStatus.ERROR,
        final_messages=messages,
        error="tool failed",
        error_category="tool_error",
        calls=[LLMCallStats(turn=1, prompt_tokens=10, completion_tokens=None, latency_ms=5.0)],
    )
    entry = JournalEntry(row=7, attempt=1, verdict=Verdict.ERROR, outcome=outcome)
    run = RunInfo(name="by-hand")
    document = atif_trajectory(entry, run)
    assert document is not None
    assert_valid_atif(document)
    steps = document["steps"]
    assert steps[0]["message"] == "Hi there"
    assert steps[1]["source"] == "system" and steps[1]["observation"]["results"][0]["extra"] == {
        "tool_call_id": "stray"
    }
    calls = steps[2]["tool_calls"]
    assert calls[0]["arguments"] == {} and calls[0]["extra"] == {"raw_arguments": "not json"}
    assert calls[1]["extra"] == {"raw_arguments": [1, 2]}
    assert steps[2]["metrics"] == {"prompt_tokens": 10}
    assert steps[3] == {
        "step_id": 4,
        "source": "system",
        "message": "a note",
        "extra": {"role": "developer"},
    }
    # A rollout with no message has no trajectory to write.
    empty = JournalEntry(0, 0, Verdict.ERROR, RolloutOutcome("r-2", OutcomeStatus.ERROR, []))
    assert atif_trajectory(empty, run) is None
    # The workbench's export key: one rollout, one document.
    written = write_rollout(entry, run, tmp_path / "row7.trajectory.json")
    assert_valid_atif(json.loads(written.read_text()))
    as_json = write_rollout(entry, run, tmp_path / "row7.json", fmt="json")
    assert JournalEntry.from_json(json.loads(as_json.read_text())) == entry


def test_openai_jsonl_keeps_the_passing_rows_with_their_tool_calls(
    sample_run: Path, tmp_path: Path, capsys
):
    from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam
    from pydantic import TypeAdapter

    output = tmp_path / "train.jsonl"
    assert export(sample_run, "openai-jsonl", output) == 0
    said = capsys.readouterr().out
    assert "Wrote 11 rollouts" in said and "(1 not passed left out)" in said
    examples = lines_of(output)
    assert len(examples) == 11
    messages_type = TypeAdapter(list[ChatCompletionMessageParam])
    tools_type = TypeAdapter(list[ChatCompletionToolParam])
    journal = {e.row: e for e in iter_latest(sample_run)}
    for example in examples:
        assert set(example) == {"messages", "tools"}
        # Validated as the openai package's types, and nothing dropped on the way (its tool
        # calls are an Iterable: validated as they are listed).
        validated = messages_type.validate_python(example["messages"])
        listed = [{k: list(v) if k == "tool_calls" else v for k, v in m.items()} for m in validated]
        assert listed == example["messages"]
        assert tools_type.validate_python(example["tools"]) == example["tools"]
    first = examples[0]["messages"]
    original = journal[0].outcome.final_messages
    assert first[2]["tool_calls"] == original[2]["tool_calls"]
    assert first[3] == {
        "role": "tool",
        "tool_call_id": original[3]["tool_call_id"],
        "content": "42",
    }
    # --min-reward chooses by reward instead: every completed rollout at 0 or more.
    assert export(sample_run, "openai-jsonl", output, "--min-reward", "0") == 0
    assert len(lines_of(output)) == 12


def test_parquet_holds_one_typed_row_per_rollout(sample_run: Path, tmp_path: Path):
    import pyarrow.parquet as pq

    output = tmp_path / "rollouts.parquet"
    assert export(sample_run, "parquet", output) == 0
    table = pq.read_table(output)
    assert table.num_rows == 12
    journal = list(iter_latest(sample_run))
    assert table.column("reward").to_pylist() == [e.outcome.reward for e in journal]
    assert table.column("passed").to_pylist().count(False) == 1
    assert str(table.schema.field("finished_at").type) == "timestamp[ms, tz=UTC]"
    messages = json.loads(table.column("messages")[0].as_py())
    assert messages == journal[0].outcome.final_messages


def test_jsonl_exports_go_to_stdout_and_bad_runs_are_named(sample_run: Path, capsys, tmp_path):
    assert main(["export", str(sample_run), "--format", "atif", "-o", "-"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 12 and "Wrote 12 rollouts" in captured.err
    code = main(["export", "nope", "--format", "atif", "--runs-dir", str(tmp_path)])
    assert code == 2 and "no run directory 'nope'" in capsys.readouterr().err
    assert export(sample_run, "parquet", Path("-")) == 2
    assert "give -o PATH" in capsys.readouterr().err
