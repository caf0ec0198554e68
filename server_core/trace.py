"""Trace logs: one JSONL file per rollout, written by the SDK itself (``--log DIR``).

Layout: ``DIR/<run>/<safe id>.jsonl``, where ``<run>`` is the server's start time and
``<safe id>`` is a path-safe form of the rollout id (ids may hold any character on the wire).
Each line is one event with ``seq`` (per rollout, from 1), ``ts`` (unix seconds), ``event`` (the
kind: rollout_started, llm_request, llm_response, tool_call, log_event, rollout_finished) and
``rollout_id``, then the event's data; a ``log_event`` line holds the agent's event as ``name``
and its keyword data as ``data``. Writes happen on one background thread so the event loop
never waits on the disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import queue
import re
import threading
import time
from pathlib import Path
from typing import IO

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
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write_loop, name="trace-writer", daemon=True)
        self._thread.start()

    def path_for(self, rollout_id: str) -> Path:
        """Where the trace of ``rollout_id`` is written."""
        return self.run_dir / f"{safe_file_stem(rollout_id)}.jsonl"

    def __call__(self, event: HookEvent) -> None:
        seq = self._seq.get(event.rollout_id, 0) + 1
        if event.kind == "rollout_finished":
            self._seq.pop(event.rollout_id, None)
        else:
            self._seq[event.rollout_id] = seq
        record = {"seq": seq, "ts": event.time, "event": event.kind, "rollout_id": event.rollout_id}
        if event.kind == "log_event":  # the agent's keys must not overwrite the line's own
            data = dict(event.data)
            record["name"] = data.pop("event", None)
            record["data"] = data
        else:
            record.update((k, v) for k, v in event.data.items() if k not in record)
        self._queue.put((event.rollout_id, record, event.kind == "rollout_finished"))

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

    def _write(self, files: dict[str, IO[str]], rollout_id: str, record: dict, last: bool) -> None:
        handle = files.get(rollout_id)
        if handle is None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            # backslashreplace: a lone surrogate is written as a \udXXX escape, still valid JSON.
            handle = files[rollout_id] = open(
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
        await asyncio.to_thread(done.wait)

    async def aclose(self) -> None:
        """Write what is queued, close the files and stop the writer thread."""
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)
