"""Record and replay model answers: the cassette, the offline default.

A cassette is a JSONL file. Line 1 is a header
``{"osmosis_cassette": 1, "created": ISO8601, "model": NAME}``; every further line is one
exchange ``{"key", "request": {"messages", "tools"?, "params"}, "response", "cost_usd",
"latency_ms"}``. ``RecordingBackend`` writes it while a real model answers; ``ReplayBackend``
answers from it, keyed by ``request_key`` of the chat body, so a run replays without a key or
a network.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import IO, Any

from osmosis_workbench.engine.models.base import (
    PROTOCOL_KEYS,
    ModelBackend,
    ModelError,
    ModelReply,
    find_backend,
    read_user_file,
)

logger = logging.getLogger("osmosis_workbench.engine.models")

CASSETTE_VERSION = 1

#: How much of a diverging message a replay-miss error shows.
_SHOWN_CHARS = 80

#: Marks a param one side does not have (None is a value a param could hold).
_ABSENT = object()

_RERECORD_HINT = "the agent's code or data changed since recording; re-record with --record"


def canonical_request(body: dict[str, Any]) -> dict[str, Any]:
    """The part of a chat body that decides the model's answer, as a cassette stores it.

    ``messages`` as given, ``tools`` when there are any, and ``params``: every other key except
    protocol and per-run ones (model, rollout_id, logprobs, stream, api_key, user, metadata)
    and null values, so the same conversation in another rollout maps to the same key.
    """
    request: dict[str, Any] = {"messages": body.get("messages") or []}
    # No tools and an empty tools list ask the model the same thing.
    if body.get("tools"):
        request["tools"] = body["tools"]
    # The protocol omits null fields, but an agent may send them: an explicit null and an
    # absent key must not make two keys for one request.
    request["params"] = {
        k: body[k]
        for k in sorted(body)
        if k not in PROTOCOL_KEYS and k not in ("messages", "tools") and body[k] is not None
    }
    return request


def _key_of(request: dict[str, Any]) -> str:
    # Sorted keys and fixed separators: the key must not depend on dict order or on how the
    # JSON was spaced when the body was built.
    text = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def request_key(body: dict[str, Any]) -> str:
    """The sha256 hex key of a chat body: equal for bodies the model sees as the same."""
    return _key_of(canonical_request(body))


class CassetteError(ModelError, ValueError):
    """A cassette file that cannot be used (missing, not a cassette, a malformed line).

    It is a ``ModelError`` (kind ``replay_miss``, systemic: every call would fail the same way)
    so the trainer reports it like any backend failure, and a ``ValueError`` for callers that
    load a cassette outside a run.
    """

    def __init__(self, message: str) -> None:
        super().__init__("replay_miss", message, systemic=True)


def _header(model: str) -> dict[str, Any]:
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return {"osmosis_cassette": CASSETTE_VERSION, "created": created, "model": model}


def _check_header(path: Path, line: str) -> dict[str, Any]:
    try:
        header = json.loads(line)
    except ValueError:
        header = None
    if not isinstance(header, dict) or "osmosis_cassette" not in header:
        raise CassetteError(
            f"{path} line 1 is not a cassette header "
            '(expected {"osmosis_cassette": 1, ...}): pass a file written with --record'
        )
    if header["osmosis_cassette"] != CASSETTE_VERSION:
        raise CassetteError(
            f"{path} line 1: cassette version {header['osmosis_cassette']!r} is not supported "
            f"(this workbench reads version {CASSETTE_VERSION}): re-record it with --record"
        )
    return header


def read_cassette(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Parse a cassette file into its header and its entries, in file order (blocking I/O).

    A last line cut short by a killed recording is skipped with a warning; any other bad line
    raises ``CassetteError`` naming the file and the line.
    """
    path = Path(path)
    fix = f"record one with --record {path}, or check the path"
    text = read_user_file(path, "cassette", fix, CassetteError)
    lines = text.split("\n")
    if not text.strip():
        raise CassetteError(f"cassette {path} is empty: record one with --record {path}")
    header = _check_header(path, lines[0])
    entries: list[dict[str, Any]] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError as exc:
            # Only the final, newline-less line can be an interrupted write; anything else is
            # damage the user must hear about.
            if number == len(lines) and not text.endswith("\n"):
                logger.warning(
                    "%s line %d: skipping a record cut short by an interrupted run", path, number
                )
                break
            raise CassetteError(f"{path} line {number} is not valid JSON: {exc}") from None
        problem = _entry_problem(entry)
        if problem:
            raise CassetteError(f"{path} line {number}: {problem}")
        entries.append(entry)
    return header, entries


def _entry_problem(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return "an entry must be a JSON object"
    for field in ("request", "response"):
        if not isinstance(entry.get(field), dict):
            return f"entry has no {field!r} object"
    if not isinstance(entry["request"].get("messages"), list):
        return "entry request has no 'messages' list"
    if not isinstance(entry["response"].get("choices"), list):
        return "entry response is not a chat completion (no 'choices' list)"
    return None


class RecordingBackend:
    """Wraps a backend and appends every exchange it answers to a cassette.

    Each entry is written and flushed as soon as its answer arrives, so a run that is killed
    keeps what it recorded. Writing happens in a worker thread, one entry at a time, in the
    order answers arrive.
    """

    def __init__(self, inner: ModelBackend, path: str | Path) -> None:
        self.inner = inner
        self.path = Path(path)
        self.name = f"{inner.name} (recording to {self.path})"
        self.recorded = 0
        self._file: IO[str] | None = None
        self._lock = asyncio.Lock()

    async def complete(self, body: dict[str, Any]) -> ModelReply:
        """Answer with the inner backend, then record the exchange; errors are not recorded."""
        reply = await self.inner.complete(body)
        entry = {
            "key": "",
            "request": canonical_request(body),
            "response": reply.completion,
            "cost_usd": reply.cost_usd,
            "latency_ms": reply.latency_ms,
        }
        # The lock keeps lines whole and in answer order; the thread keeps JSON encoding of
        # long histories and the write off the event loop.
        async with self._lock:
            await asyncio.to_thread(self._write, entry)
        self.recorded += 1
        return reply

    def _write(self, entry: dict[str, Any]) -> None:
        if self._file is None:
            self._file = self._open()
        entry["key"] = _key_of(entry["request"])
        self._file.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._file.flush()

    def _open(self) -> IO[str]:
        """Open the cassette for appending, writing the header if it is new."""
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open("rb") as raw:
                first = raw.readline().decode("utf-8", "replace")
            _check_header(self.path, first)
            self._drop_partial_last_line()
            return self.path.open("a", encoding="utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = self.path.open("w", encoding="utf-8")
        f.write(json.dumps(_header(self.inner.name), ensure_ascii=False) + "\n")
        f.flush()
        return f

    def _drop_partial_last_line(self) -> None:
        # A run killed mid-write leaves a line without its newline; appending after it would
        # glue two records into one malformed line.
        with self.path.open("rb+") as f:
            data = f.read()
            if data.endswith(b"\n"):
                return
            keep = data.rfind(b"\n") + 1
            logger.warning("%s: dropping a record cut short by an interrupted run", self.path)
            f.truncate(keep)

    async def aclose(self) -> None:
        """Close the cassette file and the inner backend."""
        async with self._lock:
            if self._file is not None:
                f, self._file = self._file, None
                await asyncio.to_thread(f.close)
        await self.inner.aclose()


def find_replay(backend: ModelBackend | None) -> ReplayBackend | None:
    """The ``ReplayBackend`` in ``backend`` or wrapped by it (a recorder), if any."""
    return find_backend(backend, ReplayBackend)


class ReplayBackend:
    """Answers chat calls from a cassette; a request it has no answer for is a ``replay_miss``.

    A request recorded several times (pass@k asks the same thing k times) gets its answers in
    recorded order, then the last one again for every further ask. Replies cost nothing; with
    ``simulate_latency`` each reply waits its recorded latency, for demos and benchmarks.
    """

    def __init__(self, path: str | Path, *, simulate_latency: bool = False) -> None:
        self.path = Path(path)
        self.name = f"replay:{path}"
        self.simulate_latency = simulate_latency
        self.header: dict[str, Any] = {}
        self._by_key: dict[str, list[dict[str, Any]]] | None = None
        self._requests: list[dict[str, Any]] = []
        self._served: dict[str, int] = {}
        self._load_lock = asyncio.Lock()

    async def load(self) -> None:
        """Read the cassette in a worker thread; done once, on first use if not called."""
        async with self._load_lock:
            if self._by_key is None:
                self._index(*await asyncio.to_thread(read_cassette, self.path))

    def load_sync(self) -> None:
        """Read the cassette now, blocking: for setup code that runs outside the event loop."""
        if self._by_key is None:
            self._index(*read_cassette(self.path))

    def _index(self, header: dict[str, Any], entries: list[dict[str, Any]]) -> None:
        by_key: dict[str, list[dict[str, Any]]] = {}
        for entry in entries:
            # Keyed by the recorded request itself, not the stored key, so a hand-edited
            # request still matches what it now says.
            key = _key_of(entry["request"])
            if key not in by_key:
                self._requests.append(entry["request"])
            by_key.setdefault(key, []).append(entry)
        self.header = header
        self._by_key = by_key

    @property
    def size(self) -> int:
        """How many exchanges the cassette holds (0 before it is loaded)."""
        return sum(len(v) for v in (self._by_key or {}).values())

    async def complete(self, body: dict[str, Any]) -> ModelReply:
        """The recorded answer to ``body``, or ``ModelError(kind="replay_miss")``."""
        if self._by_key is None:
            await self.load()
        assert self._by_key is not None
        started = time.perf_counter()
        request = canonical_request(body)
        key = _key_of(request)
        answers = self._by_key.get(key)
        if not answers:
            # Comparing against every recording is CPU work proportional to the cassette; a
            # changed agent makes every rollout miss, so keep it off the event loop.
            message = await asyncio.to_thread(self._miss_message, body, request)
            raise ModelError("replay_miss", message)
        # Counted per key and taken before any await, so concurrent repeats (pass@k) each get
        # the next recorded answer.
        served = self._served.get(key, 0)
        self._served[key] = served + 1
        entry = answers[min(served, len(answers) - 1)]
        if self.simulate_latency and entry.get("latency_ms"):
            await asyncio.sleep(float(entry["latency_ms"]) / 1000)
        # A copy: the caller may annotate the completion, and repeats must stay as recorded.
        completion = copy.deepcopy(entry["response"])
        return ModelReply(
            completion=completion,
            cost_usd=0.0,
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    def _miss_message(self, body: dict[str, Any], request: dict[str, Any]) -> str:
        rollout = body.get("rollout_id")
        where = f"no recorded answer in {self.path} for " + (
            f"rollout {rollout!r}" if rollout is not None else "this request"
        )
        if not self._requests:
            return f"{where}: the cassette holds no recorded requests (record with --record)"
        return f"{where}: {describe_divergence(request, self._requests)} ({_RERECORD_HINT})"

    async def aclose(self) -> None:
        """Nothing to release: the cassette is read whole at load."""


def describe_divergence(request: dict[str, Any], recorded: list[dict[str, Any]]) -> str:
    """Say how ``request`` differs from the closest of the ``recorded`` requests.

    The closest shares the longest common prefix of messages, preferring recordings with the
    same tools and params; the answer names the first differing message (its index in
    ``messages`` and its role), or the tools / params that changed.
    """
    messages = request["messages"]
    tools, params = request.get("tools"), request["params"]

    def rank(rec: dict[str, Any]) -> tuple[bool, int, bool, int, bool, bool]:
        same_tools = rec.get("tools") == tools
        same_params = rec["params"] == params
        prefix = _common_prefix(rec["messages"], messages)
        # On a tie, a recording that has its own message where the request diverges shows
        # "recorded X got Y", which says more than "message N is new".
        counterpart = prefix < len(rec["messages"]) and prefix < len(messages)
        closeness = -abs(len(rec["messages"]) - len(messages))
        return (same_tools and same_params, prefix, counterpart, closeness, same_tools, same_params)

    best = max(recorded, key=rank)
    parts: list[str] = []
    message_part = _message_divergence(best["messages"], messages)
    if message_part:
        parts.append(message_part)
    if best.get("tools") != tools:
        parts.append(_tools_divergence(best.get("tools") or [], tools or []))
    if best["params"] != params:
        parts.append(_params_divergence(best["params"], params))
    # The key differs, so something above differs; this guards key-only corruption.
    return "; ".join(parts) or "the request differs from every recording"


def _common_prefix(a: list[Any], b: list[Any]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _message_divergence(recorded: list[Any], got: list[Any]) -> str | None:
    i = _common_prefix(recorded, got)
    if i == len(recorded) == len(got):
        return None
    if i < len(recorded) and i < len(got):
        rec, new = recorded[i], got[i]
        return (
            f"message {i} (role {_role(new)}) differs from the recording: "
            f"recorded {_shown(rec, new)} got {_shown(new, rec)}"
        )
    if i < len(got):
        return (
            f"message {i} (role {_role(got[i])}) is new: the closest recording ends after "
            f"{_count(len(recorded))}, got {_shown(got[i], None)}"
        )
    return (
        f"the request ends after {_count(len(got))} but the recording goes on with message "
        f"{i} (role {_role(recorded[i])}) {_shown(recorded[i], None)}"
    )


def _count(n: int) -> str:
    return f"{n} message" if n == 1 else f"{n} messages"


def _role(message: Any) -> str:
    return str(message.get("role", "?")) if isinstance(message, dict) else "?"


def _shown(message: Any, other: Any) -> str:
    """A short quote of ``message``: only the fields that differ from ``other`` (the text
    alone when only the text differs), so the difference survives the truncation."""
    if isinstance(message, dict) and isinstance(other, dict):
        differ = sorted(k for k in message.keys() | other.keys() if message.get(k) != other.get(k))
        if differ == ["content"] and isinstance(message.get("content"), str):
            text = message["content"]
        else:
            text = _json({k: message.get(k) for k in differ})
    elif isinstance(message, dict) and set(message) <= {"role", "content"}:
        text = str(message.get("content"))
    else:
        text = _json(message)
    text = " ".join(text.split())
    if len(text) > _SHOWN_CHARS:
        text = text[: _SHOWN_CHARS - 1] + "…"
    # Plain quotes, not repr(): repr would double every backslash of JSON-in-JSON arguments.
    return f"'{text}'"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _tool_names(tools: list[Any]) -> dict[str, Any]:
    named: dict[str, Any] = {}
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        name = fn.get("name") if isinstance(fn, dict) else None
        named[str(name) if name else f"#{i}"] = tool
    return named


def _tools_divergence(recorded: list[Any], got: list[Any]) -> str:
    rec, new = _tool_names(recorded), _tool_names(got)
    changes = [f"added {n!r}" for n in new if n not in rec]
    changes += [f"removed {n!r}" for n in rec if n not in new]
    changes += [f"changed {n!r}" for n in new if n in rec and rec[n] != new[n]]
    if not changes and list(rec) != list(new):
        changes.append("reordered")
    return "tools differ from the recording: " + ", ".join(changes)


def _params_divergence(recorded: dict[str, Any], got: dict[str, Any]) -> str:
    changes = []
    for name in sorted(set(recorded) | set(got)):
        if recorded.get(name, _ABSENT) != got.get(name, _ABSENT):
            was = _short_value(recorded.get(name, _ABSENT))
            now = _short_value(got.get(name, _ABSENT))
            changes.append(f"{name} recorded {was} got {now}")
    return "params differ from the recording: " + ", ".join(changes)


def _short_value(value: Any) -> str:
    if value is _ABSENT:
        return "(absent)"
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 40 else text[:39] + "…"
