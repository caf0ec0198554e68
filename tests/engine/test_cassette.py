"""Cassettes: recording a backend's answers and replaying them offline."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest

from osmosis_workbench.engine.models import (
    CassetteError,
    ModelError,
    RecordingBackend,
    ReplayBackend,
    ScriptedBackend,
    canonical_request,
    read_cassette,
    request_key,
)

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two numbers",
            "parameters": {"type": "object", "properties": {"a": {}, "b": {}}},
        },
    }
]


def chat(messages: list[dict], rollout_id: str = "row-0-a0", **params: object) -> dict:
    """A chat-callback body as the protocol sends it."""
    return {
        "model": "default",
        "messages": messages,
        "rollout_id": rollout_id,
        "temperature": 1.0,
        "top_p": 1.0,
        "logprobs": True,
        "tools": TOOLS,
        **params,
    }


SYSTEM = {"role": "system", "content": "You are a calculator."}
USER = {"role": "user", "content": "What is 1 + 2?"}


async def run_calculator(backend, rollout_id: str = "row-0-a0", tool_result: str = "3") -> list:
    """The two-turn conversation of the sample agent: a tool call, then the answer."""
    messages = [SYSTEM, USER]
    first = await backend.complete(chat(messages, rollout_id))
    assistant = first.completion["choices"][0]["message"]
    call = assistant["tool_calls"][0]
    messages = [
        *messages,
        assistant,
        {"role": "tool", "tool_call_id": call["id"], "content": tool_result},
    ]
    second = await backend.complete(chat(messages, rollout_id))
    return [first.completion, second.completion]


def calculator_script() -> ScriptedBackend:
    """The model's two answers to the calculator conversation."""
    turns = [
        {"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}]},
        {"content": "1 + 2 = 3"},
    ]
    return ScriptedBackend(turns, name="openai/gpt-4o-mini")


async def record(path) -> list[list[dict]]:
    """Record one calculator conversation into ``path``; returns its completions."""
    recorder = RecordingBackend(calculator_script(), path)
    completions = await run_calculator(recorder)
    await recorder.aclose()
    return [completions]


# --- keys -------------------------------------------------------------------------------------


def test_canonical_request_keeps_model_input_and_drops_protocol_fields():
    body = chat([USER], seed=7, stream=False, user="u", metadata={"x": 1}, api_key="k", stop=None)
    assert canonical_request(body) == {
        "messages": [USER],
        "tools": TOOLS,
        "params": {"seed": 7, "temperature": 1.0, "top_p": 1.0},
    }
    assert list(canonical_request(body)["params"]) == ["seed", "temperature", "top_p"]
    assert "tools" not in canonical_request({"messages": [USER], "tools": []})


def test_request_key_is_sha256_of_the_canonical_json():
    body = chat([USER])
    text = json.dumps(
        canonical_request(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    assert request_key(body) == hashlib.sha256(text.encode()).hexdigest()


def test_request_key_ignores_rollout_and_protocol_fields_but_not_params():
    base = request_key(chat([USER], "row-1-a0"))
    assert request_key(chat([USER], "row-9-a3", model="other", logprobs=False)) == base
    assert request_key(chat([USER], temperature=0.5)) != base
    assert request_key(chat([USER, USER])) != base


# --- record then replay -----------------------------------------------------------------------


async def test_record_then_replay_gives_identical_completions(tmp_path):
    path = tmp_path / "cassette.jsonl"
    [recorded] = await record(path)

    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["osmosis_cassette"] == 1 and header["model"] == "openai/gpt-4o-mini"
    assert "T" in header["created"]  # ISO 8601
    entries = [json.loads(line) for line in lines[1:]]
    assert len(entries) == 2
    for entry, completion in zip(entries, recorded, strict=True):
        assert entry["response"] == completion
        assert (
            entry["key"]
            == hashlib.sha256(
                json.dumps(entry["request"], sort_keys=True, separators=(",", ":")).encode()
            ).hexdigest()
        )
        assert set(entry) == {"key", "request", "response", "cost_usd", "latency_ms"}
        assert "rollout_id" not in entry["request"]["params"]

    replay = ReplayBackend(path)
    # Another rollout id, same conversation: the replay answers it.
    replayed = await run_calculator(replay, "row-0-a5")
    assert replayed == recorded
    assert replay.size == 2


async def test_replay_answers_repeats_in_order_then_keeps_the_last(tmp_path):
    path = tmp_path / "c.jsonl"
    recorder = RecordingBackend(ScriptedBackend(["first", "second"]), path)
    for i in range(2):
        await recorder.complete(chat([USER], f"row-0-a{i}"))
    await recorder.aclose()

    replay = ReplayBackend(path)
    answers = [
        (await replay.complete(chat([USER], f"row-0-a{i}"))).completion["choices"][0]["message"][
            "content"
        ]
        for i in range(4)
    ]
    assert answers == ["first", "second", "second", "second"]


async def test_replayed_completions_are_copies(tmp_path):
    path = tmp_path / "c.jsonl"
    recorder = RecordingBackend(ScriptedBackend(["x"]), path)
    await recorder.complete(chat([USER]))
    await recorder.aclose()
    replay = ReplayBackend(path)
    first = await replay.complete(chat([USER]))
    first.completion["choices"][0]["message"]["content"] = "mutated"
    again = await replay.complete(chat([USER]))
    assert again.completion["choices"][0]["message"]["content"] == "x"


async def test_recording_appends_to_an_existing_cassette(tmp_path):
    path = tmp_path / "c.jsonl"
    await record(path)
    await record(path)
    _header, entries = read_cassette(path)
    assert len(entries) == 4
    assert sum(1 for line in path.read_text().splitlines() if "osmosis_cassette" in line) == 1


async def test_recording_refuses_a_file_that_is_not_a_cassette(tmp_path):
    path = tmp_path / "notes.jsonl"
    path.write_text('{"hello": 1}\n')
    recorder = RecordingBackend(ScriptedBackend(["x"]), path)
    with pytest.raises(CassetteError, match=r"notes.jsonl line 1 is not a cassette header"):
        await recorder.complete(chat([USER]))
    assert path.read_text() == '{"hello": 1}\n'


async def test_each_entry_is_on_disk_before_the_run_ends(tmp_path):
    path = tmp_path / "c.jsonl"
    recorder = RecordingBackend(ScriptedBackend(["a", "b"]), path)
    await recorder.complete(chat([USER]))
    # Not closed, as in a killed run: the first exchange is already flushed.
    _, entries = read_cassette(path)
    assert len(entries) == 1
    await recorder.complete(chat([USER, USER]))
    assert len(read_cassette(path)[1]) == 2
    await recorder.aclose()


async def test_a_record_cut_short_is_skipped_and_dropped_before_appending(tmp_path):
    path = tmp_path / "c.jsonl"
    await record(path)
    with path.open("a") as f:
        f.write('{"key": "abc", "request": {"mess')  # a run killed mid-write
    _, entries = read_cassette(path)
    assert len(entries) == 2
    await record(path)
    _, entries = read_cassette(path)
    assert len(entries) == 4
    assert path.read_text().endswith("\n")


async def test_concurrent_recording_keeps_every_line_whole(tmp_path):
    path = tmp_path / "c.jsonl"
    recorder = RecordingBackend(ScriptedBackend(lambda b: {"content": "ok" * 2000}), path)
    await asyncio.gather(
        *(recorder.complete(chat([{"role": "user", "content": str(i)}])) for i in range(50))
    )
    await recorder.aclose()
    _, entries = read_cassette(path)
    assert sorted(e["request"]["messages"][0]["content"] for e in entries) == sorted(
        str(i) for i in range(50)
    )
    assert recorder.recorded == 50


# --- replay misses ----------------------------------------------------------------------------


async def miss(path, body: dict) -> ModelError:
    with pytest.raises(ModelError) as info:
        await ReplayBackend(path).complete(body)
    err = info.value
    assert err.kind == "replay_miss" and not err.systemic and not err.retryable
    assert "\n" not in err.message
    return err


async def test_divergence_names_the_message_index_and_role(tmp_path):
    path = tmp_path / "cassette.jsonl"
    [recorded] = await record(path)
    assistant = recorded[0]["choices"][0]["message"]
    call_id = assistant["tool_calls"][0]["id"]
    changed = [SYSTEM, USER, assistant, {"role": "tool", "tool_call_id": call_id, "content": "4"}]
    err = await miss(path, chat(changed, "row-3-a0"))
    assert err.message.startswith(f"no recorded answer in {path} for rollout 'row-3-a0': ")
    assert "message 3 (role tool) differs from the recording: recorded '3' got '4'" in err.message
    assert "re-record with --record" in err.message


async def test_divergence_in_an_early_message_and_long_content_is_truncated(tmp_path):
    path = tmp_path / "c.jsonl"
    await record(path)
    long_question = {"role": "user", "content": "What is 1 + 2? " + "please " * 50}
    err = await miss(path, chat([SYSTEM, long_question]))
    assert "message 1 (role user) differs" in err.message
    assert "recorded 'What is 1 + 2?' got 'What is 1 + 2? please" in err.message
    assert "…'" in err.message
    assert len(err.message) < 400


async def test_divergence_in_tool_call_arguments_shows_the_differing_field(tmp_path):
    path = tmp_path / "c.jsonl"
    [recorded] = await record(path)
    assistant = recorded[0]["choices"][0]["message"]
    [call] = assistant["tool_calls"]
    edited_call = {**call, "function": {"name": "add", "arguments": '{"a": 2}'}}
    edited = {**assistant, "tool_calls": [edited_call]}
    tool = {"role": "tool", "tool_call_id": call["id"], "content": "3"}
    err = await miss(path, chat([SYSTEM, USER, edited, tool]))
    assert "message 2 (role assistant) differs from the recording" in err.message
    # Only the differing field is quoted, and the JSON arguments keep single backslashes.
    assert r"""recorded '{"tool_calls": [{"function": {"arguments": "{\"a\": 1""" in err.message
    assert (
        r"""got '{"tool_calls": [{"function": {"arguments": "{\"a\": 2}", "name": "add"}"""
        in err.message
    )


async def test_divergence_when_the_conversation_goes_further_than_recorded(tmp_path):
    path = tmp_path / "c.jsonl"
    [recorded] = await record(path)
    assistant = recorded[0]["choices"][0]["message"]
    call_id = assistant["tool_calls"][0]["id"]
    final = recorded[1]["choices"][0]["message"]
    longer = [
        SYSTEM,
        USER,
        assistant,
        {"role": "tool", "tool_call_id": call_id, "content": "3"},
        final,
        {"role": "user", "content": "and times 4?"},
    ]
    err = await miss(path, chat(longer))
    assert "message 4 (role assistant) is new" in err.message


async def test_divergence_in_tools_is_named(tmp_path):
    path = tmp_path / "c.jsonl"
    await record(path)
    mul = {"type": "function", "function": {"name": "mul", "parameters": {"type": "object"}}}
    err = await miss(path, chat([SYSTEM, USER], tools=[*TOOLS, mul]))
    assert "tools differ from the recording: added 'mul'" in err.message
    assert "message" not in err.message.split(":", 1)[1].split("(the agent")[0]

    changed_add = [{"type": "function", "function": {**TOOLS[0]["function"], "description": "Sum"}}]
    err = await miss(path, chat([SYSTEM, USER], tools=changed_add))
    assert "changed 'add'" in err.message


async def test_divergence_in_params_is_named(tmp_path):
    path = tmp_path / "c.jsonl"
    await record(path)
    err = await miss(path, chat([SYSTEM, USER], temperature=0.2, seed=3))
    assert "params differ from the recording:" in err.message
    assert "seed recorded (absent) got 3" in err.message
    assert "temperature recorded 1.0 got 0.2" in err.message


async def test_miss_without_rollout_id_and_with_an_empty_cassette(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text(
        '{"osmosis_cassette": 1, "created": "2025-01-01T00:00:00+00:00", "model": "m"}\n'
    )
    body = chat([USER])
    del body["rollout_id"]
    err = await miss(path, body)
    assert "for this request" in err.message and "holds no recorded requests" in err.message


# --- malformed files --------------------------------------------------------------------------


async def test_malformed_line_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    await record(path)
    lines = path.read_text().splitlines()
    lines.insert(2, "{not json")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CassetteError, match=r"bad\.jsonl line 3 is not valid JSON"):
        read_cassette(path)
    # Through a backend it is a systemic ModelError (every call would fail) and a ValueError.
    with pytest.raises(ModelError) as info:
        await ReplayBackend(path).complete(chat([USER]))
    assert info.value.systemic and isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"osmosis_cassette": 1}\n[1, 2]\n', "line 2: an entry must be a JSON object"),
        (
            '{"osmosis_cassette": 1}\n{"request": {"messages": []}}\n',
            "line 2: entry has no 'response'",
        ),
        (
            '{"osmosis_cassette": 1}\n{"request": {"messages": []}, "response": {}}\n',
            "line 2: entry response is not a chat completion",
        ),
        ('{"version": 1}\n', "line 1 is not a cassette header"),
        ('{"osmosis_cassette": 2}\n', "cassette version 2 is not supported"),
        ("", "is empty"),
    ],
)
def test_malformed_cassettes(tmp_path, content, expected):
    path = tmp_path / "c.jsonl"
    path.write_text(content)
    with pytest.raises(CassetteError, match=expected):
        read_cassette(path)


def test_missing_cassette(tmp_path):
    with pytest.raises(CassetteError, match="not found: record one with --record"):
        read_cassette(tmp_path / "none.jsonl")


async def test_load_sync_and_load_are_equivalent(tmp_path):
    path = tmp_path / "c.jsonl"
    await record(path)
    a, b = ReplayBackend(path), ReplayBackend(path)
    a.load_sync()
    await b.load()
    assert a.size == b.size == 2
    assert a.header == b.header
