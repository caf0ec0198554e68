"""server_core.trace: one JSONL trace per rollout under DIR/<run>/, path-safe file names."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from server_core import execute_tool_calls
from server_core.hooks import HookEvent
from server_core.trace import TraceWriter, safe_file_stem

HOSTILE_IDS = [
    "../../etc/passwd",
    "a/b",
    "a_b",
    "a\\b",
    "/abs/path",
    ".",
    "..",
    "...",
    "-",
    "._.",
    "~root",
    "日本語のID",
    "🎲/../🎲",
    "x" * 256,
    "y" * 255 + "/",
    "nul\x00byte",
    "new\nline",
    "CON",
    " leading space",
]


async def _agent(ctx):
    messages = list(ctx.request.messages)
    result = await ctx.chat(messages)
    messages.append(result.message)
    messages.extend(
        await execute_tool_calls(result.tool_calls, {"add": lambda a, b: a + b}, ctx=ctx)
    )
    ctx.log_event("checkpoint", event_detail="x", seq=99, ts="not-a-time")
    result = await ctx.chat(messages)
    return ctx.complete([*messages, result.message], reward=1.0)


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def test_trace_file_per_rollout_with_every_event(serve, make_agent, trainer, tmp_path):
    def reply(body):
        if len(body["messages"]) == 1:
            return trainer.answer(None, tool_calls=[trainer.tool_call("add", {"a": 1, "b": 1})])
        return trainer.answer("2")

    trainer.chat_default = reply
    server = serve(make_agent(run=_agent), trace_dir=tmp_path)
    async with server.app.router.lifespan_context(server.app):
        rollout_id = await server.start("trace-me", api_key="do-not-log-me")
        await trainer.wait_for_completion(rollout_id)
    # Exiting the lifespan drained the rollout and closed the writer: everything is on disk.
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    (trace_file,) = run_dir.iterdir()
    assert trace_file.suffix == ".jsonl"
    assert trace_file.name.startswith("trace-me")
    records = _read(trace_file)
    assert [r["event"] for r in records] == [
        "rollout_started",
        "llm_request",
        "llm_response",
        "tool_call",
        "log_event",
        "llm_request",
        "llm_response",
        "rollout_finished",
    ]
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert all(isinstance(r["ts"], float) for r in records)
    assert [r["ts"] for r in records] == sorted(r["ts"] for r in records)
    assert {r["rollout_id"] for r in records} == {"trace-me"}
    log = records[4]
    assert log["name"] == "checkpoint"
    assert log["data"] == {"event_detail": "x", "seq": 99, "ts": "not-a-time"}
    assert records[3]["name"] == "add" and records[3]["result"] == 2
    assert records[-1]["completion"]["reward"] == 1.0
    assert "do-not-log-me" not in trace_file.read_text()
    # Each message is written once: a request holds only what the trace did not have yet.
    assert records[1]["body"]["messages_from"] == 1  # the user message came with the start
    assert records[1]["body"]["messages"] == []
    assert records[5]["body"]["messages_from"] == 2  # user + first answer were traced
    assert [m["role"] for m in records[5]["body"]["messages"]] == ["tool"]
    finished = records[-1]["completion"]
    assert finished["final_messages_from"] == 4
    assert [m["role"] for m in finished["final_messages"]] == []  # the last answer was traced
    # Rebuilt from the trace, the history is the whole trajectory.
    history = list(records[0]["request"]["messages"])
    for record in records[1:]:
        if record["event"] == "llm_request":
            history = history[: record["body"]["messages_from"]] + record["body"]["messages"]
        elif record["event"] == "llm_response":
            history.append(record["message"])
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant"]


async def test_hostile_rollout_ids_stay_inside_the_run_dir(serve, make_agent, trainer, tmp_path):
    root = tmp_path / "logs"
    server = serve(make_agent(), trace_dir=root)
    async with server.app.router.lifespan_context(server.app):
        for rollout_id in HOSTILE_IDS:
            await server.start(rollout_id)
        for rollout_id in HOSTILE_IDS:
            await trainer.wait_for_completion(rollout_id)
    (run_dir,) = list(root.iterdir())
    files = sorted(run_dir.iterdir())
    assert len(files) == len(HOSTILE_IDS)  # no collisions (a/b vs a_b), nothing elsewhere
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == sorted(
        [root.relative_to(tmp_path).as_posix(), run_dir.relative_to(tmp_path).as_posix()]
        + [f.relative_to(tmp_path).as_posix() for f in files]
    )
    traced_ids = set()
    for path in files:
        assert path.resolve().parent == run_dir.resolve()
        assert len(path.name) <= 120
        records = _read(path)
        traced_ids |= {r["rollout_id"] for r in records}
        assert records[0]["event"] == "rollout_started"
        assert records[-1]["event"] == "rollout_finished"
    assert traced_ids == set(HOSTILE_IDS)


@pytest.mark.parametrize("rollout_id", HOSTILE_IDS)
def test_safe_file_stem_is_one_plain_path_component(rollout_id):
    stem = safe_file_stem(rollout_id)
    assert stem and stem not in (".", "..")
    assert not set(stem) & set("/\\\x00\n:")
    assert stem.isascii()
    assert len(stem) <= 100
    assert not stem.startswith((".", "-", " "))
    assert safe_file_stem(rollout_id) == stem  # stable


def test_safe_file_stem_keeps_similar_ids_apart():
    stems = {safe_file_stem(i) for i in ["a/b", "a_b", "a:b", "a b", "a\\b", "a" + "/" * 2 + "b"]}
    assert len(stems) == 6
    assert safe_file_stem("run-42").startswith("run-42-")


async def test_trace_writer_survives_a_record_it_cannot_encode(tmp_path):
    writer = TraceWriter(tmp_path, run_name="run")
    circular: dict = {}
    circular["self"] = circular
    writer(HookEvent("log_event", "r1", {"event": "bad", "loop": circular}))
    writer(HookEvent("log_event", "r1", {"event": "surrogate", "text": "\ud800 lone"}))
    writer(HookEvent("rollout_finished", "r1", {"delivery": "delivered"}))
    await asyncio.wait_for(writer.flush(), 5)
    await asyncio.wait_for(writer.aclose(), 5)
    records = _read(writer.path_for("r1"))
    assert [r["event"] for r in records] == ["log_event", "rollout_finished"]
    assert records[0]["data"]["text"] == "\ud800 lone"
    assert [r["seq"] for r in records] == [2, 3]


async def test_trace_writer_path_is_under_the_named_run(tmp_path):
    writer = TraceWriter(tmp_path, run_name="20260101-000000")
    try:
        path = writer.path_for("../x")
        assert path.parent == tmp_path / "20260101-000000"
        assert path.name.endswith(".jsonl")
    finally:
        await writer.aclose()
