"""Test helpers for agents: a mock trainer, a completion tracker, and routing callbacks to it.

A 0.2-style agent test serves the agent with ``TestClient(create_app(agent))``, answers its
callbacks with ``create_mock_trainer_app(tracker)``, and routes the server's HTTP calls there
with ``patch_httpx_for_mock_trainer(trainer_client, monkeypatch)``:

    tracker = RolloutCompletionTracker()
    trainer = TestClient(create_mock_trainer_app(tracker))
    patch_httpx_for_mock_trainer(trainer, monkeypatch)
    with TestClient(create_app(agent_loop)) as server:
        server.post("/v1/rollout/init", json={... "server_url": "http://trainer"})
        assert tracker.wait(5.0)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from server_core.http_client import HTTPClient, HTTPReply
from server_core.protocol import (
    CompletionsChoice,
    CompletionsRequest,
    CompletionsResponse,
    CompletionUsage,
    RolloutResponse,
)

#: Words in the last user message that make the mock trainer ask for the ``add`` tool.
_CALCULATOR_WORDS = ("calculate", "add", "sum", "plus", "subtract", "multiply", "divide")
_MOCK_TOOL_CALLS = [
    {
        "id": "call_mock_add",
        "type": "function",
        "function": {"name": "add", "arguments": '{"a": 5, "b": 3}'},
    }
]
_CALLBACK_PATHS = ("/v1/chat/completions", "/v1/rollout/completed")


def fake_token_ids(text: str) -> list[int]:
    """One fake token id per character of ``text``."""
    return list(range(len(text)))


def fake_prompt_token_ids(messages: list[dict[str, Any]]) -> list[int]:
    """Ten fake prompt token ids per message (at least ten)."""
    return list(range(10 * max(1, len(messages))))


@dataclass
class RolloutCompletionTracker:
    """Collects the completions a mock trainer receives; ``wait`` blocks until one arrives."""

    event: threading.Event = field(default_factory=threading.Event)
    responses: list[dict[str, Any]] = field(default_factory=list)

    def record(self, response: dict[str, Any]) -> None:
        """Keep ``response`` and wake the waiters."""
        self.responses.append(response)
        self.event.set()

    def clear(self) -> None:
        """Forget every response and reset the event."""
        self.responses.clear()
        self.event.clear()

    def wait(self, timeout: float = 5.0) -> bool:
        """Whether a response arrived within ``timeout`` seconds."""
        return self.event.wait(timeout)


def _wants_tools(message: dict[str, Any]) -> bool:
    content = message.get("content")
    return (
        message.get("role") == "user"
        and isinstance(content, str)
        and any(word in content.lower() for word in _CALCULATOR_WORDS)
    )


def create_mock_trainer_app(
    tracker: RolloutCompletionTracker | None = None,
    tool_call_generator: Callable[[dict[str, Any]], list[dict[str, Any]] | None] | None = None,
) -> Any:
    """A FastAPI app standing in for a trainer: canned chat answers, completions recorded.

    The answer to a chat depends on its last message: tool calls (from ``tool_call_generator``
    given that message, or an ``add`` call when a user asks to calculate), "The calculation
    is complete." after a tool result, "OK." otherwise.
    """
    try:
        from fastapi import FastAPI
    except ImportError as exc:  # pragma: no cover - fastapi is a dependency of server_core
        raise ImportError(
            "FastAPI is required for create_mock_trainer_app(). Install it with: "
            "pip install fastapi"
        ) from exc
    app = FastAPI(title="Mock Trainer Server")
    completed: dict[str, dict[str, Any]] = {}

    @app.post("/v1/chat/completions")
    async def chat(request: CompletionsRequest) -> dict[str, Any]:
        last = request.messages[-1] if request.messages else {"role": "user", "content": ""}
        if tool_call_generator is not None:
            tool_calls = tool_call_generator(last)
        else:
            tool_calls = _MOCK_TOOL_CALLS if _wants_tools(last) else None
        if tool_calls:
            content = "I'll help you with that calculation."
        elif last.get("role") == "tool":
            content = "The calculation is complete."
        else:
            content = "OK."
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if tool_calls:
            message["tool_calls"] = tool_calls
        prompt_tokens = 10 * max(1, len(request.messages))
        answer = CompletionsResponse(
            id=request.rollout_id,
            created=int(time.time()),
            model=request.model,
            choices=[CompletionsChoice(message=message, finish_reason="stop")],
            usage=CompletionUsage(
                prompt_tokens=prompt_tokens,
                completion_tokens=len(content),
                total_tokens=prompt_tokens + len(content),
            ),
            token_ids=fake_token_ids(content),
            logprobs=[0.0] * len(content),
            prompt_token_ids=fake_prompt_token_ids(request.messages),
        )
        return answer.model_dump()

    @app.post("/v1/rollout/completed")
    async def rollout_completed(response: RolloutResponse) -> dict[str, str]:
        payload = response.model_dump(mode="json", exclude_none=True)
        completed[response.rollout_id] = payload
        if tracker is not None:
            tracker.record(payload)
        return {"status": "ok"}

    @app.get("/v1/rollout/completed/{rollout_id}")
    async def get_completed(rollout_id: str) -> dict[str, Any]:
        return completed.get(rollout_id, {})

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "healthy", "service": "mock-trainer"}

    return app


def _callback_path(url: str) -> str | None:
    for path in _CALLBACK_PATHS:
        if path in str(url):
            return path
    return None


class _TestClientPoster(HTTPClient):
    """The server's callback client, handing each callback to a sync ``TestClient``."""

    def __init__(self, client: Any) -> None:
        self._client = client

    async def _send(
        self, method: str, url: str, body: bytes, headers: dict[str, str], timeout: float | None
    ) -> HTTPReply:
        """Send the request to the mock trainer (callback URLs by their path)."""
        path = _callback_path(url) or url
        response = self._client.request(method, path, content=body, headers=headers)
        return HTTPReply(response.status_code, dict(response.headers), response.content)

    async def aclose(self) -> None:
        """Nothing to release: the test owns the client."""


def patch_httpx_for_mock_trainer(client: Any, monkeypatch: Any) -> None:
    """Route every trainer callback of this process to ``client`` (a mock trainer's TestClient).

    Patches ``httpx.AsyncClient.post`` class-wide, as 0.2 did (so ``OsmosisLLMClient`` and any
    httpx-based code reach the mock), and the server's own pooled callback client. Undone
    with ``monkeypatch``.
    """
    import httpx

    from server_core.trainer_client import TrainerClient

    real_post = httpx.AsyncClient.post

    async def post(self: httpx.AsyncClient, url: Any, *args: Any, **kwargs: Any) -> httpx.Response:
        path = _callback_path(url)
        if path is None:
            return await real_post(self, url, *args, **kwargs)
        kwargs.pop("timeout", None)
        answer = client.post(path, *args, **kwargs)
        try:
            body = answer.json()
        except ValueError:
            return httpx.Response(answer.status_code, content=answer.content)
        return httpx.Response(answer.status_code, json=body)

    poster = _TestClientPoster(client)
    monkeypatch.setattr(httpx.AsyncClient, "post", post)
    monkeypatch.setattr(TrainerClient, "_poster", lambda self, server_url, *, completion: poster)
