"""A model backend that answers from a script: for tests, benchmarks and offline demos.

Replies are written compactly, ``{"content": "4"}`` or
``{"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}]}``, and expanded into full
OpenAI chat completions with ids derived from the request, so the same script answering the
same conversation always produces the same completion (and a cassette recorded from it
replays).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import inspect
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from osmosis_workbench.engine.models.base import ModelError, ModelReply
from osmosis_workbench.engine.models.cassette import request_key

#: A script step: a compact reply, a bare string (the content), a full completion (has
#: "choices"), or an exception instance to raise (to test error handling).
Reply = dict[str, Any] | str | BaseException
ReplyFunction = Callable[[dict[str, Any]], "dict[str, Any] | str | Awaitable[dict[str, Any] | str]"]

#: Compact-reply keys that describe the completion rather than the assistant message.
_COMPLETION_KEYS = ("finish_reason", "token_ids", "logprobs", "usage")


class ScriptedBackend:
    """Answers each call with the next reply of a list, or with what a function returns.

    A list is shared by every rollout that uses the backend, in call order; when it runs out
    the call raises ``ModelError`` (systemic: every later call would too). ``latency_s``
    makes each answer wait, for benchmarks. ``calls`` keeps every body received (unless
    ``keep_calls`` is false).
    """

    def __init__(
        self,
        replies: Sequence[Reply] | ReplyFunction,
        *,
        name: str = "scripted",
        latency_s: float = 0.0,
        keep_calls: bool = True,
    ) -> None:
        self.name = name
        self.latency_s = latency_s
        # Every body holds the whole history: a benchmark of many rollouts turns this off.
        self.keep_calls = keep_calls
        self.calls: list[dict[str, Any]] = []
        if callable(replies):
            self._function: ReplyFunction | None = replies
            self._replies: list[Reply] = []
        else:
            self._function = None
            self._replies = list(replies)
        self._next = 0

    async def complete(self, body: dict[str, Any]) -> ModelReply:
        """Expand the next scripted reply for ``body`` into a completion."""
        started = time.perf_counter()
        if self.keep_calls:
            self.calls.append(body)
        reply: dict[str, Any] | str | BaseException
        if self._function is not None:
            produced = self._function(body)
            reply = await produced if inspect.isawaitable(produced) else produced
        else:
            # Taken before any await, so concurrent calls each get their own step.
            reply = self._take(body)
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if isinstance(reply, BaseException):
            raise reply
        completion = build_completion(reply, body, model=self.name)
        return ModelReply(
            completion, cost_usd=0.0, latency_ms=(time.perf_counter() - started) * 1000
        )

    def _take(self, body: dict[str, Any]) -> Reply:
        if self._next >= len(self._replies):
            rollout = body.get("rollout_id")
            asked = f" (rollout {rollout!r} asked for reply {self._next + 1})" if rollout else ""
            raise ModelError(
                "replay_miss",
                f"{self.name} ran out of replies after {len(self._replies)} calls{asked}: "
                "add replies to the script",
                systemic=True,
            )
        reply = self._replies[self._next]
        self._next += 1
        return reply

    @property
    def remaining(self) -> int:
        """Replies left in a list script (0 for a function script)."""
        return len(self._replies) - self._next

    async def aclose(self) -> None:
        """Nothing to release."""


def build_completion(
    reply: dict[str, Any] | str, body: dict[str, Any], *, model: str
) -> dict[str, Any]:
    """Expand a compact reply (or pass a full completion through) into an OpenAI completion.

    Ids are derived from the request's key, so they are stable across runs.
    """
    key = request_key(body)
    if isinstance(reply, str):
        reply = {"content": reply}
    if "choices" in reply:
        # A copy: a script may hand out the same completion more than once.
        completion = copy.deepcopy(reply)
    else:
        message: dict[str, Any] = {"role": "assistant", "content": reply.get("content")}
        calls = [_tool_call(call, key, i) for i, call in enumerate(reply.get("tool_calls") or [])]
        if calls:
            message["tool_calls"] = calls
        for k, v in reply.items():
            if k not in message and k not in _COMPLETION_KEYS and k != "tool_calls":
                message[k] = v
        finish = reply.get("finish_reason") or ("tool_calls" if calls else "stop")
        completion = {"choices": [{"index": 0, "message": message, "finish_reason": finish}]}
        for k in ("token_ids", "logprobs", "usage"):
            if reply.get(k) is not None:
                completion[k] = reply[k]
    completion.setdefault("id", f"chatcmpl-{key[:24]}")
    completion.setdefault("object", "chat.completion")
    completion.setdefault("created", int(time.time()))
    completion.setdefault("model", model)
    if "usage" not in completion:
        completion["usage"] = _estimate_usage(body, completion)
    return completion


def _tool_call(call: dict[str, Any], key: str, index: int) -> dict[str, Any]:
    """A compact ``{"name", "arguments"}`` call (or a full OpenAI one) in OpenAI form."""
    if "function" in call:
        full = dict(call)
        full.setdefault("type", "function")
    else:
        full = {
            "type": "function",
            "function": {"name": call["name"], "arguments": call.get("arguments", {})},
        }
        if "id" in call:
            full["id"] = call["id"]
    fn = dict(full["function"])
    # OpenAI sends arguments as a JSON string; scripts may write them as a dict.
    if not isinstance(fn.get("arguments"), str):
        fn["arguments"] = json.dumps(fn.get("arguments") or {}, ensure_ascii=False)
    full["function"] = fn
    if "id" not in full:
        full["id"] = "call_" + hashlib.sha256(f"{key}:{index}".encode()).hexdigest()[:24]
    return {"id": full.pop("id"), **full}


def _estimate_usage(body: dict[str, Any], completion: dict[str, Any]) -> dict[str, int]:
    # About four characters a token: enough for token counters and context meters in tests.
    prompt_chars = sum(len(str(m.get("content") or "")) for m in body.get("messages") or ())
    choice = (completion.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    answer_chars = len(str(message.get("content") or "")) + len(
        json.dumps(message.get("tool_calls") or "")
    )
    prompt, answer = prompt_chars // 4 + 1, answer_chars // 4 + 1
    return {"prompt_tokens": prompt, "completion_tokens": answer, "total_tokens": prompt + answer}
