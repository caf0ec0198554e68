"""SDK-0.2-API.md §14: the testing helpers (mock trainer, tracker, httpx patch, fake ids)."""

from __future__ import annotations

import dataclasses
import json
import threading

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from server_core import (
    RolloutCompletionTracker,
    create_mock_trainer_app,
    fake_prompt_token_ids,
    fake_token_ids,
    patch_httpx_for_mock_trainer,
)

ADD_CALL = {
    "id": "call_mock_add",
    "type": "function",
    "function": {"name": "add", "arguments": '{"a": 5, "b": 3}'},
}


def test_fake_token_ids():
    assert fake_token_ids("hello") == [0, 1, 2, 3, 4]
    assert fake_token_ids("") == []


def test_fake_prompt_token_ids():
    assert fake_prompt_token_ids([]) == list(range(10))
    assert fake_prompt_token_ids([{"role": "user"}]) == list(range(10))
    assert fake_prompt_token_ids([{}, {}, {}]) == list(range(30))


# ---- RolloutCompletionTracker ---------------------------------------------------------------


def test_tracker_fields():
    assert dataclasses.is_dataclass(RolloutCompletionTracker)
    names = [f.name for f in dataclasses.fields(RolloutCompletionTracker)]
    assert names[:2] == ["event", "responses"]
    tracker = RolloutCompletionTracker()
    assert isinstance(tracker.event, threading.Event)
    assert tracker.responses == []
    assert RolloutCompletionTracker().event is not tracker.event
    assert RolloutCompletionTracker().responses is not tracker.responses


def test_tracker_record_wait_clear():
    tracker = RolloutCompletionTracker()
    assert tracker.wait(timeout=0.01) is False
    tracker.record({"rollout_id": "r"})
    assert tracker.responses == [{"rollout_id": "r"}]
    assert tracker.event.is_set()
    assert tracker.wait() is True
    tracker.clear()
    assert tracker.responses == []
    assert not tracker.event.is_set()


# ---- create_mock_trainer_app ----------------------------------------------------------------


@pytest.fixture
def mock():
    tracker = RolloutCompletionTracker()
    app = create_mock_trainer_app(tracker)
    with TestClient(app) as client:
        yield app, client, tracker


def _chat(client, messages, rollout_id="r-1", **extra):
    return client.post(
        "/v1/chat/completions", json={"rollout_id": rollout_id, "messages": messages, **extra}
    )


def test_mock_trainer_is_a_titled_fastapi_app(mock):
    app, _client, _ = mock
    assert isinstance(app, FastAPI)
    assert app.title == "Mock Trainer Server"
    assert create_mock_trainer_app().title == "Mock Trainer Server"  # tracker optional


def test_mock_health(mock):
    _, client, _ = mock
    assert client.get("/health").json() == {"status": "healthy", "service": "mock-trainer"}


@pytest.mark.parametrize(
    "text",
    [
        "Please calculate 5+3",
        "ADD these",
        "what is the sum",
        "two plus two",
        "Multiply",
        "divide 4",
    ],
)
def test_mock_chat_asks_for_a_tool_on_calculator_words(mock, text):
    _, client, _ = mock
    response = _chat(client, [{"role": "user", "content": text}])
    assert response.status_code == 200
    body = response.json()
    message = body["choices"][0]["message"]
    assert message["content"] == "I'll help you with that calculation."
    assert message["tool_calls"] == [ADD_CALL]


def test_mock_chat_after_a_tool_result(mock):
    _, client, _ = mock
    messages = [
        {"role": "user", "content": "add 5 and 3"},
        {"role": "assistant", "content": None, "tool_calls": [ADD_CALL]},
        {"role": "tool", "content": "8", "tool_call_id": "call_mock_add"},
    ]
    message = _chat(client, messages).json()["choices"][0]["message"]
    assert message["content"] == "The calculation is complete."
    assert not message.get("tool_calls")


def test_mock_chat_plain_and_empty(mock):
    _, client, _ = mock
    assert (
        _chat(client, [{"role": "user", "content": "hello"}]).json()["choices"][0]["message"][
            "content"
        ]
        == "OK."
    )
    assert _chat(client, []).json()["choices"][0]["message"]["content"] == "OK."


def test_mock_chat_messages_are_exactly_the_02_dicts(mock):
    """§14: the reply message holds role and content, plus tool_calls only when asked for."""
    _, client, _ = mock
    plain = _chat(client, [{"role": "user", "content": "hello"}]).json()
    assert plain["choices"][0]["message"] == {"role": "assistant", "content": "OK."}
    tool = {"role": "tool", "content": "8", "tool_call_id": "call_mock_add"}
    after = _chat(client, [{"role": "user", "content": "add"}, tool]).json()
    assert after["choices"][0]["message"] == {
        "role": "assistant",
        "content": "The calculation is complete.",
    }
    asked = _chat(client, [{"role": "user", "content": "add 5 and 3"}]).json()
    assert asked["choices"][0]["message"] == {
        "role": "assistant",
        "content": "I'll help you with that calculation.",
        "tool_calls": [ADD_CALL],
    }


def test_mock_chat_response_shape(mock):
    _, client, _ = mock
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "hello"}]
    body = _chat(client, messages, rollout_id="shape-1", model="policy").json()
    assert body["id"] == "shape-1"
    assert isinstance(body["created"], int)
    assert body["model"] == "policy"
    assert body["object"] == "chat.completion"
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23}
    assert body["token_ids"] == [0, 1, 2]
    assert body["logprobs"] == [0.0, 0.0, 0.0]
    assert "prompt_token_ids" in body


def test_mock_chat_requires_a_completions_request(mock):
    _, client, _ = mock
    assert client.post("/v1/chat/completions", json={"messages": []}).status_code == 422
    assert client.post("/v1/chat/completions", json={"rollout_id": "r"}).status_code == 422
    ok = client.post("/v1/chat/completions", json={"rollout_id": "r", "messages": [], "zzz": 1})
    assert ok.status_code == 200


def test_mock_chat_tool_call_generator():
    calls = [{"id": "g1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    seen = []

    def generator(last_message):
        seen.append(last_message)
        return calls

    with TestClient(create_mock_trainer_app(tool_call_generator=generator)) as client:
        message = _chat(client, [{"role": "user", "content": "hello"}]).json()["choices"][0][
            "message"
        ]
    assert message["tool_calls"] == calls
    assert message["content"] == "I'll help you with that calculation."
    assert seen == [{"role": "user", "content": "hello"}]


def test_mock_completed_records_and_serves_back(mock):
    _, client, tracker = mock
    body = {
        "rollout_id": "done-1",
        "status": "COMPLETED",
        "final_messages": [{"role": "assistant", "content": "x"}],
        "finish_reason": "stop",
        "reward": 1.0,
        "error_message": None,
    }
    response = client.post("/v1/rollout/completed", json=body)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert tracker.wait(timeout=1)
    (stored,) = tracker.responses
    assert stored["rollout_id"] == "done-1" and stored["status"] == "COMPLETED"
    assert "error_message" not in stored  # exclude_none
    assert stored["extra_fields"] == {}
    assert client.get("/v1/rollout/completed/done-1").json() == stored
    assert client.get("/v1/rollout/completed/unknown").json() == {}


def test_mock_completed_rejects_a_bad_status(mock):
    _, client, tracker = mock
    response = client.post("/v1/rollout/completed", json={"rollout_id": "x", "status": "DONE"})
    assert response.status_code == 422
    assert tracker.responses == []


# ---- patch_httpx_for_mock_trainer -----------------------------------------------------------


async def test_patch_routes_callback_urls_to_the_mock(monkeypatch):
    tracker = RolloutCompletionTracker()
    with TestClient(create_mock_trainer_app(tracker)) as mock_client:
        patch_httpx_for_mock_trainer(mock_client, monkeypatch)
        async with httpx.AsyncClient(headers={"Authorization": "Bearer x"}) as client:
            chat = await client.post(
                "http://anything.invalid:1234/prefix/v1/chat/completions",
                json={"rollout_id": "p-1", "messages": [{"role": "user", "content": "hi"}]},
            )
            done = await client.post(
                "http://elsewhere.invalid/v1/rollout/completed",
                json={"rollout_id": "p-1", "status": "COMPLETED", "final_messages": []},
            )
    assert isinstance(chat, httpx.Response)
    assert chat.status_code == 200
    assert chat.json()["choices"][0]["message"]["content"] == "OK."
    assert done.status_code == 200 and done.json() == {"status": "ok"}
    assert tracker.responses[0]["rollout_id"] == "p-1"


async def test_patch_leaves_other_urls_alone(monkeypatch):
    seen = []

    def handler(request):
        seen.append(str(request.url))
        return httpx.Response(201, json={"real": True})

    with TestClient(create_mock_trainer_app()) as mock_client:
        patch_httpx_for_mock_trainer(mock_client, monkeypatch)
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            response = await client.post("http://other.invalid/v1/something", json={})
    assert response.status_code == 201 and response.json() == {"real": True}
    assert seen == ["http://other.invalid/v1/something"]


async def test_patch_is_undone_with_the_monkeypatch():
    original = httpx.AsyncClient.post
    mp = pytest.MonkeyPatch()
    with TestClient(create_mock_trainer_app()) as mock_client:
        patch_httpx_for_mock_trainer(mock_client, mp)
        assert httpx.AsyncClient.post is not original
        mp.undo()
    assert httpx.AsyncClient.post is original


def test_mock_chat_body_is_json_with_nulls(mock):
    _, client, _ = mock
    raw = _chat(client, [{"role": "user", "content": "hello"}]).text
    body = json.loads(raw)
    # Serialized with nulls: the optional CompletionsResponse fields are present.
    assert {
        "id",
        "created",
        "object",
        "model",
        "choices",
        "usage",
        "token_ids",
        "logprobs",
        "prompt_token_ids",
    } <= set(body)
