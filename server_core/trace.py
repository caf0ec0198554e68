"""Trace logs: one JSONL file per rollout, written by the SDK itself (``--log DIR``).

Layout: ``DIR/<run>/<safe id>.jsonl``, where ``<run>`` is the server's start time and
``<safe id>`` is a path-safe form of the rollout id (ids may hold any character on the wire).
Each line is one event with ``seq`` (per rollout, from 1), ``ts`` (unix seconds), ``event`` (the
kind: rollout_started, llm_request, llm_response, tool_call, log_event, rollout_finished) and
``rollout_id``, then the event's data; a ``log_event`` line holds the agent's event as ``name``
and its keyword data as ``data``. Writes happen on one background thread so the event loop
never waits on the disk.

Each message is written once. ``rollout_started`` holds the request's messages; an
``llm_request`` line's ``body.messages`` holds only the messages not traced before, and
``body.messages_from`` the index in the history where they start (the history is the previous
request's messages plus the answer); ``rollout_finished``'s ``completion.final_messages`` is
cut the same way (``completion.final_messages_from``). A rollout whose history is not an
extension of what was traced gets it whole again, from 0.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import re
import threading
import time
from pathlib import Path
from typing import IO, Any

from server_core.executors import SDK_THREADS, run_in
from server_core.hooks import HookEvent

logger = logging.getLogger("server_core.trace")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_STOP = object()


def safe_file_stem(rollout_id: str) -> str:
    """A file name stem for ``rollout_id`` that cannot escape its folder or collide.

    Readable characters are kept (up to 80), everything else becomes ``_``, and a short hash
    of the exact id keeps ``a/b`` and ``a_b`` apart.
    """
    readable = _UNSAFE.sub("_", rollout_id).strip("._-")[:80] or "rollout"
    digest = hashlib.sha256(rollout_id.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{readable}-{digest}"


class TraceWriter:
    """A hooks observer that appends every rollout event to that rollout's JSONL file."""

    def __init__(self, root: str | Path, run_name: str | None = None) -> None:
        self.run_dir = Path(root) / (run_name or time.strftime("%Y%m%d-%H%M%S"))
        self._seq: dict[str, int] = {}
        #: Per rollout, the history traced so far (what later lines are cut against).
        self._history: dict[str, list[Any]] = {}
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write_loop, name="trace-writer", daemon=True)
        self._thread.start()

    def path_for(self, rollout_id: str) -> Path:
        """Where the trace of ``rollout_id`` is written."""
        return self.run_dir / f"{safe_file_stem(rollout_id)}.jsonl"

    def __call__(self, event: HookEvent) -> None:
        rollout_id = event.rollout_id
        seq = self._seq.get(rollout_id, 0) + 1
        finished = event.kind == "rollout_finished"
        if finished:
            self._seq.pop(rollout_id, None)
        else:
            self._seq[rollout_id] = seq
        record = {"seq": seq, "ts": event.time, "event": event.kind, "rollout_id": rollout_id}
        data = event.data
        if event.kind == "log_event":  # the agent's keys must not overwrite the line's own
            data = dict(data)
            record["name"] = data.pop("event", None)
            record["data"] = data
        else:
            data = self._once(event.kind, rollout_id, data)
            record.update((k, v) for k, v in data.items() if k not in record)
        if finished:
            self._history.pop(rollout_id, None)
        self._queue.put((event.rollout_id, record, event.kind == "rollout_finished"))

    def _once(self, kind: str, rollout_id: str, data: dict[str, Any]) -> dict[str, Any]:
        """``data`` with the messages already traced for this rollout cut off."""
        if kind == "rollout_started":
            request = data.get("request") or {}
            self._history[rollout_id] = list(request.get("messages") or [])
        elif kind == "llm_request" and isinstance(data.get("body"), dict):
            body = data["body"]
            messages = body.get("messages") or []
            start = self._new_from(rollout_id, messages)
            self._history[rollout_id] = list(messages)
            data = {**data, "body": {**body, "messages": messages[start:], "messages_from": start}}
        elif kind == "llm_response":
            self._history.setdefault(rollout_id, []).append(data.get("message"))
        elif kind == "rollout_finished" and isinstance(data.get("completion"), dict):
            completion = data["completion"]
            final = completion.get("final_messages") or []
            start = self._new_from(rollout_id, final)
            cut = {**completion, "final_messages": final[start:], "final_messages_from": start}
            data = {**data, "completion": cut}
        return data

    def _new_from(self, rollout_id: str, messages: list[Any]) -> int:
        """Where ``messages`` stops repeating the traced history (0: not an extension)."""
        known = self._history.get(rollout_id) or []
        if len(known) > len(messages):
            return 0
        for old, new in zip(known, messages, strict=False):
            if old is not new and old != new:
                return 0
        return len(known)

    def _write_loop(self) -> None:
        files: dict[str, IO[str]] = {}
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            if isinstance(item, threading.Event):  # a flush barrier
                for handle in files.values():
                    handle.flush()
                item.set()
                continue
            try:
                self._write(files, *item)
            except Exception:  # one bad record or a full disk must not end all tracing
                logger.exception("could not write a trace record of rollout %r", item[0])
        for handle in files.values():
            handle.close()

    def _write(
        self, files: dict[str, IO[str]], rollout_id: str, record: dict[str, Any], last: bool
    ) -> None:
        handle = files.get(rollout_id)
        if handle is None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            # backslashreplace: a lone surrogate is written as a \udXXX escape, still valid JSON.
            handle = files[rollout_id] = open(  # noqa: SIM115 - kept open until the rollout ends
                self.path_for(rollout_id), "a", encoding="utf-8", errors="backslashreplace"
            )
        try:
            handle.write(json.dumps(record, default=str, ensure_ascii=False) + "\n")
        finally:
            if last:
                handle.close()
                del files[rollout_id]

    async def flush(self) -> None:
        """Wait until everything emitted so far is on disk."""
        done = threading.Event()
        self._queue.put(done)
        await run_in(SDK_THREADS, done.wait)

    async def aclose(self) -> None:
        """Write what is queued, close the files and stop the writer thread."""
        self._queue.put(_STOP)
        await run_in(SDK_THREADS, self._thread.join)
