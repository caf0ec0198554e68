"""``--model human``: the developer is the model, answering each call by hand.

How a UI drives it (the whole interface)::

    backend = HumanBackend()            # or find_human(workspace.backend) under a recorder
    while True:
        request = await backend.next_request()   # an AnswerRequest: a call waiting
        show(request.messages, request.tools)    # the history and the tools the init offered
        try:
            request.answer(content="The answer is 5.")                    # text, or
            request.answer(tool_calls=[{"name": "add", "arguments": {"a": 2, "b": 3}}])
        except AnswerRejected as exc:            # unknown tool, arguments against its schema
            show(exc.problems)                   # the request keeps waiting: fix and answer again
        # request.abort("reason") ends the rollout's call with an error instead.

``check(...)`` gives the same problems without releasing, for validating as the user types.
``on_request`` (optional) is called as each request arrives, to post a UI message; a UI that
follows one rollout waits with ``await backend.request_for(rollout_id)`` instead. Answers are
expanded into full OpenAI completions with ids derived from the request, so with ``--record``
the cassette replays exactly (``--model replay:FILE``). ``ScriptedHuman`` is a headless driver
that answers from a list, for tests.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from osmosis_workbench.engine.models.base import (
    ModelBackend,
    ModelError,
    ModelReply,
    find_backend,
)
from osmosis_workbench.engine.models.scripted import build_completion

#: How the model is named in completions and cassette headers.
HUMAN_MODEL = "human"


class AnswerRejected(ValueError):
    """An answer that cannot be released; ``problems`` lists each one, with the fix."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class AnswerRequest:
    """One model call waiting for the developer: what the agent sent and the tools on offer."""

    #: The chat-callback body as the trainer hands it to a model.
    body: dict[str, Any]
    #: 0-based: how many assistant messages the conversation already holds.
    turn: int
    _future: asyncio.Future[dict[str, Any]] = field(repr=False)

    @property
    def rollout_id(self) -> str | None:
        """The rollout this call belongs to."""
        return self.body.get("rollout_id")

    @property
    def row(self) -> int | None:
        """The dataset row of the rollout, when it came from a dataset."""
        row = (self.body.get("metadata") or {}).get("row_index")
        return row if isinstance(row, int) else None

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The conversation so far, tool results included."""
        return list(self.body.get("messages") or [])

    @property
    def tools(self) -> list[dict[str, Any]]:
        """The OpenAI function tools on offer (the init answer's, or the agent's own)."""
        return list(self.body.get("tools") or [])

    @property
    def tool_names(self) -> list[str]:
        """The names an answer's tool calls may use, in offered order."""
        return [name for name in (_tool_name(t) for t in self.tools) if name]

    @property
    def done(self) -> bool:
        """Whether the request was answered or aborted."""
        return self._future.done()

    def check(
        self, content: str | None = None, tool_calls: Sequence[Mapping[str, Any]] | None = None
    ) -> list[str]:
        """The problems of this answer (empty when it can be released)."""
        if not tool_calls and not (content or "").strip():
            return ["write an answer: text, or one or more tool calls"]
        problems: list[str] = []
        schemas = {_tool_name(t): _parameters(t) for t in self.tools}
        offered = ", ".join(self.tool_names) or "none"
        # Numbered from 1, as the screen numbers the calls a person writes.
        for i, call in enumerate(tool_calls or (), 1):
            name = call.get("name")
            if name not in schemas:
                problems.append(f"tool call {i}: unknown tool {name!r} (offered: {offered})")
                continue
            arguments, problem = _arguments(call.get("arguments"))
            if problem:
                problems.append(f"tool call {i} ({name}): {problem}")
                continue
            problems += [
                f"tool call {i} ({name}): {p}" for p in _schema_problems(schemas[name], arguments)
            ]
        return problems

    def answer(
        self, content: str | None = None, tool_calls: Sequence[Mapping[str, Any]] | None = None
    ) -> None:
        """Release this answer to the agent; ``AnswerRejected`` (still waiting) when invalid."""
        if self.done:
            raise AnswerRejected(["this call was already answered or aborted"])
        problems = self.check(content, tool_calls)
        if problems:
            raise AnswerRejected(problems)
        reply: dict[str, Any] = {"content": content if content and content.strip() else None}
        if tool_calls:
            reply["tool_calls"] = [
                {"name": c["name"], "arguments": _arguments(c.get("arguments"))[0]}
                for c in tool_calls
            ]
        self._future.set_result(reply)

    def abort(self, reason: str = "aborted by the developer") -> None:
        """End this call with an error instead of an answer (the rollout then errors)."""
        if not self.done:
            self._future.set_exception(ModelError("bad_request", f"{HUMAN_MODEL}: {reason}"))


class HumanBackend:
    """A model backend whose answers come from the developer, one ``AnswerRequest`` per call.

    Calls wait, in arrival order, until a driver (a screen, ``ScriptedHuman``) answers them.
    """

    name = HUMAN_MODEL

    def __init__(self, on_request: Callable[[AnswerRequest], None] | None = None) -> None:
        self.on_request = on_request
        self._waiting: asyncio.Queue[AnswerRequest] = asyncio.Queue()
        self._open: list[AnswerRequest] = []
        #: Set (and replaced) each time a request arrives: ``request_for`` waits on it.
        self._arrived = asyncio.Event()

    @property
    def pending(self) -> list[AnswerRequest]:
        """The calls waiting for an answer now, oldest first."""
        return [r for r in self._open if not r.done]

    def pending_for(self, rollout_id: str) -> AnswerRequest | None:
        """The call of ``rollout_id`` waiting for an answer now, if any."""
        return next((r for r in self.pending if r.rollout_id == rollout_id), None)

    async def request_for(self, rollout_id: str) -> AnswerRequest:
        """The next call of ``rollout_id`` waiting for an answer (waits for one to arrive)."""
        while True:
            arrived = self._arrived  # before looking: an arrival after the look sets it
            request = self.pending_for(rollout_id)
            if request is not None:
                return request
            await arrived.wait()

    async def next_request(self) -> AnswerRequest:
        """The next call waiting for an answer (waits for one to arrive)."""
        while True:
            request = await self._waiting.get()
            if not request.done:
                return request

    async def complete(self, body: dict[str, Any]) -> ModelReply:
        """Wait for the developer's answer to this call and expand it into a completion."""
        started = time.perf_counter()
        turn = sum(1 for m in body.get("messages") or () if m.get("role") == "assistant")
        request = AnswerRequest(body, turn, asyncio.get_running_loop().create_future())
        self._open.append(request)
        self._waiting.put_nowait(request)
        arrived, self._arrived = self._arrived, asyncio.Event()
        arrived.set()
        if self.on_request is not None:
            self.on_request(request)
        try:
            reply = await request._future
        finally:
            self._open.remove(request)
        completion = build_completion(reply, body, model=HUMAN_MODEL)
        waited_ms = (time.perf_counter() - started) * 1000
        return ModelReply(completion, cost_usd=0.0, latency_ms=waited_ms, person_ms=waited_ms)

    async def aclose(self) -> None:
        """Abort every call still waiting, so no rollout hangs on a closed backend."""
        for request in self.pending:
            request.abort("the workbench closed before this call was answered")


def find_human(backend: ModelBackend | None) -> HumanBackend | None:
    """The ``HumanBackend`` in ``backend`` or wrapped by it (a recorder), if any."""
    return find_backend(backend, HumanBackend)


#: What ``ScriptedHuman`` answers: ``{"content": ...}`` and/or ``{"tool_calls": [...]}``, or
#: a function of the request returning one.
HumanAnswer = Mapping[str, Any] | Callable[[AnswerRequest], Mapping[str, Any]]


class ScriptedHuman:
    """A headless developer for tests: answers each request with the next answer of a list.

    A rejected answer is kept in ``rejections`` and the same request gets the next answer, so
    a test can script a mistake and its correction. Use as ``async with ScriptedHuman(...)``.
    """

    def __init__(self, backend: HumanBackend, answers: Sequence[HumanAnswer]) -> None:
        self.backend = backend
        self.answers = list(answers)
        self.rejections: list[AnswerRejected] = []
        self.seen: list[AnswerRequest] = []
        self._task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Answer requests until the list is used up (then leave the rest waiting)."""
        answers = iter(self.answers)
        while True:
            request = await self.backend.next_request()
            self.seen.append(request)
            while not request.done:
                answer = next(answers, None)
                if answer is None:
                    return
                if callable(answer):
                    answer = answer(request)
                try:
                    request.answer(answer.get("content"), answer.get("tool_calls"))
                except AnswerRejected as exc:
                    self.rejections.append(exc)

    async def __aenter__(self) -> ScriptedHuman:
        self._task = asyncio.create_task(self.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def _tool_name(tool: Any) -> str | None:
    fn = tool.get("function") if isinstance(tool, dict) else None
    name = fn.get("name") if isinstance(fn, dict) else None
    return name if isinstance(name, str) else None


def _parameters(tool: dict[str, Any]) -> dict[str, Any]:
    schema = (tool.get("function") or {}).get("parameters")
    return schema if isinstance(schema, dict) else {"type": "object"}


def _arguments(raw: Any) -> tuple[dict[str, Any], str | None]:
    """Arguments as an object, from an object or its JSON text; else a problem."""
    if raw is None:
        return {}, None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            return {}, f"arguments are not valid JSON ({exc})"
    if not isinstance(raw, dict):
        return {}, f"arguments must be a JSON object, got {type(raw).__name__}"
    return raw, None


def _schema_problems(schema: dict[str, Any], arguments: dict[str, Any]) -> list[str]:
    """Each way ``arguments`` breaks the tool's JSON Schema, as "where: what"."""
    import jsonschema  # ~0.1 s; only a human answer with tool calls needs it

    try:
        validator_class = jsonschema.validators.validator_for(schema)
        validator_class.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return [f"the tool's own parameters schema is invalid ({exc.message}); fix the agent"]
    validator = validator_class(schema)
    problems = []
    for error in sorted(validator.iter_errors(arguments), key=lambda e: list(e.path)):
        where = ".".join(str(p) for p in error.path) or "arguments"
        problems.append(f"{where}: {error.message}")
    return problems
