"""Shared pieces of the load benchmarks: a fake trainer, a minimal HTTP/1.1 client, /proc readers.

Nothing here is part of the SDK. The fake trainer is a raw ASGI app (no framework) served by
uvicorn; the client is a few dozen lines over asyncio streams with keep-alive connections, so
that the load side of a benchmark costs far less CPU than the server it measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pydantic_core

HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")

#: The one answer the fake trainer gives to every chat callback (an OpenAI chat completion).
CHAT_COMPLETION = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 0,
    "model": "bench",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "4"},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13},
}
CHAT_COMPLETION_BYTES = pydantic_core.to_json(CHAT_COMPLETION)

#: The tools the benchmark agents (ours and the baseline) return in the init response.
BENCH_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two numbers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                "required": ["a", "b"],
            },
        },
    }
]

#: The chat body a server sends (about the size of the one ours builds for one user message).
CHAT_BODY = pydantic_core.to_json(
    {
        "model": "default",
        "messages": [{"role": "user", "content": "What is 2 + 2?"}],
        "rollout_id": "r-000000",
        "temperature": 1.0,
        "top_p": 1.0,
        "logprobs": True,
        "max_tokens": 64,
    }
)


def free_port() -> int:
    """A free TCP port on the loopback address."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def pin_to_cpu(cpu: int | None) -> None:
    """Pin this process to one core (None: leave it alone)."""
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpu % (os.cpu_count() or 1)})


def raise_fd_limit(want: int = 65_536) -> int:
    """Raise RLIMIT_NOFILE towards ``want`` (up to the hard limit); returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_bytes(pid: int) -> int:
    """VmRSS of ``pid`` from /proc/<pid>/status, in bytes (0 if unreadable)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (all its threads), from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return 0.0
    fields = data[data.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (from /proc/stat; idle and iowait excluded)."""
    try:
        with open("/proc/stat", "rb") as fh:
            fields = [int(x) for x in fh.readline().split()[1:9]]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by nearest rank (nan when empty)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def install_uvloop() -> None:
    """Use uvloop for asyncio.run when it is installed (uvicorn[standard] brings it)."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


# ---- the fake trainer ------------------------------------------------------------------------


class FakeTrainer:
    """Raw ASGI app: ``/v1/chat/completions`` (fixed answer, optional latency) and
    ``/v1/rollout/completed`` (counts completions per rollout_id).

    ``on_completed(rollout_id)`` is called for every completion (the load generator's hook).
    """

    def __init__(
        self,
        chat_latency_s: float = 0.0,
        on_completed: Callable[[str], None] | None = None,
    ) -> None:
        self.chat_latency_s = chat_latency_s
        self.on_completed = on_completed
        self.completions: Counter[str] = Counter()
        self.chat_calls = 0
        self.bad_completions = 0
        self._chat_headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(CHAT_COMPLETION_BYTES)).encode()),
        ]
        self._ok_headers = [(b"content-type", b"application/json"), (b"content-length", b"11")]

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        path = scope["path"]
        if path.endswith("/v1/chat/completions"):
            self.chat_calls += 1
            if self.chat_latency_s > 0:
                await asyncio.sleep(self.chat_latency_s)
            await send(
                {"type": "http.response.start", "status": 200, "headers": self._chat_headers}
            )
            await send({"type": "http.response.body", "body": CHAT_COMPLETION_BYTES})
            return
        if path.endswith("/v1/rollout/completed"):
            try:
                completion = pydantic_core.from_json(body)
                rollout_id = completion["rollout_id"]
                ok = completion.get("status") == "COMPLETED"
            except (ValueError, KeyError, TypeError):
                rollout_id, ok = None, False
            if rollout_id is not None:
                self.completions[rollout_id] += 1
                if not ok:
                    self.bad_completions += 1
                if self.on_completed is not None:
                    self.on_completed(rollout_id)
            await send({"type": "http.response.start", "status": 200, "headers": self._ok_headers})
            await send({"type": "http.response.body", "body": b'{"ok":true}'})
            return
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def trainer_config(app: Any, port: int) -> Any:
    """The uvicorn config of a fake trainer: quiet, long keep-alive, deep backlog."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=HOST,
        port=port,
        log_config=None,
        access_log=False,
        log_level="error",
        lifespan="off",
        timeout_keep_alive=120,
        backlog=8192,
    )


async def start_uvicorn(config: Any) -> tuple[Any, asyncio.Task]:
    """Start a uvicorn server inside the running loop; returns it once it listens."""
    import uvicorn

    class _Server(uvicorn.Server):
        def install_signal_handlers(self) -> None:  # older uvicorn
            pass

        @contextlib.contextmanager
        def capture_signals(self):  # newer uvicorn
            yield

    server = _Server(config)
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped during start-up")
        await asyncio.sleep(0.005)
    return server, task


# ---- a minimal HTTP/1.1 client ----------------------------------------------------------------


class HTTPError(Exception):
    """The connection broke or the answer could not be read."""


class RawConnection:
    """One keep-alive HTTP/1.1 connection over asyncio streams (Content-Length bodies)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._host_header = f"Host: {host}:{port}\r\n".encode()

    async def _connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """Send one request and read its answer; raises ``HTTPError`` on a broken connection."""
        if self._writer is None:
            try:
                await self._connect()
            except OSError as exc:
                self.close()
                raise HTTPError(f"connect: {type(exc).__name__}: {exc}") from None
        assert self._reader is not None and self._writer is not None
        head = (
            f"{method} {path} HTTP/1.1\r\n".encode()
            + self._host_header
            + (
                b"Content-Type: application/json\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                if body or method != "GET"
                else b"\r\n"
            )
        )
        try:
            self._writer.write(head + body)
            raw = await self._reader.readuntil(b"\r\n\r\n")
            status = int(raw[9:12])
            length = 0
            close = False
            for line in raw.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
                elif name == b"transfer-encoding":
                    raise HTTPError("chunked answers are not supported")
            payload = await self._reader.readexactly(length) if length else b""
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            self.close()
            raise HTTPError(f"{type(exc).__name__}: {exc}") from None
        if close:
            self.close()
        return status, payload


class RawPool:
    """Up to ``size`` keep-alive connections; a request waits for a free one.

    A request that meets a broken connection is retried once on a new one: every request the
    benchmarks send this way is idempotent (init is deduplicated by rollout_id, GET /health).
    """

    def __init__(self, host: str, port: int, size: int) -> None:
        self.host = host
        self.port = port
        self.size = size
        self._idle: list[RawConnection] = []
        self._created = 0
        self._waiters: asyncio.Queue[RawConnection] = asyncio.Queue()
        self.reconnects = 0

    async def _acquire(self) -> RawConnection:
        if self._idle:
            return self._idle.pop()
        if self._created < self.size:
            self._created += 1
            return RawConnection(self.host, self.port)
        return await self._waiters.get()

    def _release(self, conn: RawConnection) -> None:
        if self._waiters._getters:  # type: ignore[attr-defined]  # hand over directly
            self._waiters.put_nowait(conn)
        else:
            self._idle.append(conn)

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        conn = await self._acquire()
        try:
            try:
                return await conn.request(method, path, body)
            except HTTPError:
                self.reconnects += 1
                return await conn.request(method, path, body)
        finally:
            self._release(conn)

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()


async def wait_healthy(host: str, port: int, timeout_s: float = 30.0) -> float:
    """Poll GET /health until a 200; returns the seconds it took (raises TimeoutError)."""
    started = time.perf_counter()
    deadline = started + timeout_s
    while time.perf_counter() < deadline:
        conn = RawConnection(host, port)
        try:
            status, _ = await conn.request("GET", "/health")
            if status == 200:
                return time.perf_counter() - started
        except (HTTPError, OSError):
            pass
        finally:
            conn.close()
        await asyncio.sleep(0.005)
    raise TimeoutError(f"no /health answer on {host}:{port} within {timeout_s:g}s")


async def wait_listening(host: str, port: int, timeout_s: float = 30.0) -> None:
    """Wait until something accepts TCP connections on ``host:port``."""
    deadline = time.perf_counter() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port}") from None
            await asyncio.sleep(0.01)
        else:
            writer.close()
            return
