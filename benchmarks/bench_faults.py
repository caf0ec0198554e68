"""Fault scenarios of a rollout server (issue 11), each measured: prints one table.

Run with `uv run python benchmarks/bench_faults.py`. Every scenario uses `create_app(agent)` as
shipped, with its own callback client, and real trainers where sockets matter:

- huge body: a 100 MB init to a real uvicorn server: status, time, the server's peak RSS,
  the worst `/health` latency meanwhile;
- busy thread pool: a 500-message rollout while 12 sync tools (5 s each) fill the default
  thread pool: how long it takes;
- stuck trainer: 40 rollouts to a trainer whose `/v1/rollout/completed` hangs, then 10 to a
  healthy one: how many of the healthy trainer's completions arrive, and when (cap 30 s);
- restarting trainer: 100 rollouts while their trainer is down for 6 s (connection refused):
  how many complete.

To compare with an older version, run this file from that checkout's environment.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

# The environment's own server_core (run from an older checkout's environment to compare).
from server_core import RolloutAgentLoop, TrainerClient, create_app
from server_core.serve import EmbeddedServer

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

AGENT_MODULE = """
from server_core import RolloutAgentLoop, create_app

class Echo(RolloutAgentLoop):
    name = "echo"

    def get_tools(self, request):
        return []

    async def run(self, ctx):
        answer = await ctx.chat(list(ctx.request.messages))
        return ctx.complete([*ctx.request.messages, answer.message])

app = create_app(Echo())
"""


class Echo(RolloutAgentLoop):
    """One chat, then complete; with ``metadata.sleep`` a 5 s sync tool instead."""

    name = "echo"

    def get_tools(self, request: Any) -> list[Any]:
        return []

    async def run(self, ctx: Any) -> Any:
        if ctx.request.metadata.get("sleep"):
            await asyncio.to_thread(time.sleep, 5)  # a user's sync tool, on the default pool
            return ctx.complete([])
        messages = list(ctx.request.messages)
        if ctx.request.metadata.get("long"):
            messages = [{"role": "user", "content": f"message {n}"} for n in range(500)]
        answer = await ctx.chat(messages)
        return ctx.complete([*messages, answer.message])


def trainer(
    completions: dict[str, float], *, hang: asyncio.Event | None = None
) -> Callable[[dict[str, Any], Receive, Send], Awaitable[None]]:
    """A minimal trainer (ASGI): a fixed chat answer; completions noted by rollout id."""

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        data = json.loads(body)
        if scope["path"].endswith("/chat/completions"):
            answer: dict[str, Any] = {
                "choices": [{"message": {"role": "assistant", "content": "ok"}}]
            }
        else:
            if hang is not None:
                await hang.wait()
            completions[data["rollout_id"]] = time.perf_counter()
            completions[data["rollout_id"] + ":status"] = data["status"] == "COMPLETED"
            answer = {}
        raw = json.dumps(answer).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": raw})

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init(rollout_id: str, server_url: str, **metadata: Any) -> dict[str, Any]:
    return {
        "rollout_id": rollout_id,
        "server_url": server_url,
        "messages": [{"role": "user", "content": "x"}],
        "completion_params": {},
        "metadata": metadata,
    }


async def huge_body() -> str:
    """A 100 MB init to a real uvicorn server."""
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "echo_server.py").write_text(AGENT_MODULE)
        port = free_port()
        env = {**os.environ, "PYTHONPATH": folder}
        command = [sys.executable, "-m", "uvicorn", "echo_server:app", "--port", str(port)]
        server = subprocess.Popen([*command, "--log-level", "warning"], env=env)
        url = f"http://127.0.0.1:{port}"
        worst = 0.0
        try:
            async with httpx.AsyncClient(timeout=120) as client:
                for _ in range(300):
                    try:
                        await client.get(f"{url}/health")
                        break
                    except httpx.HTTPError:
                        await asyncio.sleep(0.05)
                body = init("big", "http://127.0.0.1:9")
                body["messages"][0]["content"] = "x" * 100_000_000
                content = json.dumps(body).encode()

                async def probe() -> None:
                    nonlocal worst
                    while True:
                        started = time.perf_counter()
                        await client.get(f"{url}/health")
                        worst = max(worst, time.perf_counter() - started)
                        await asyncio.sleep(0.02)

                prober = asyncio.create_task(probe())
                started = time.perf_counter()
                headers = {"content-type": "application/json"}
                answer = await client.post(
                    f"{url}/v1/rollout/init", content=content, headers=headers
                )
                took = time.perf_counter() - started
                await asyncio.sleep(0.5)
                prober.cancel()
            peak = _peak_rss_mb(server.pid)
        finally:
            server.terminate()
            server.wait()
    return (
        f"HTTP {answer.status_code} in {took:.2f} s; peak RSS {peak:.0f} MB; "
        f"/health worst {worst * 1000:.0f} ms"
    )


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def busy_thread_pool() -> str:
    """A 500-message rollout while 12 sync tools fill the default thread pool."""
    completions: dict[str, float] = {}
    client = TrainerClient(transport=httpx.ASGITransport(app=trainer(completions)))
    app = create_app(Echo(), client=client)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://server") as http:
        for n in range(12):
            await http.post(
                "/v1/rollout/init", json=init(f"tool-{n}", "http://trainer", sleep=True)
            )
        await asyncio.sleep(0.1)
        started = time.perf_counter()
        await http.post("/v1/rollout/init", json=init("long", "http://trainer", long=True))
        while "long" not in completions:
            await asyncio.sleep(0.005)
        took = completions["long"] - started
        while len([k for k in completions if ":" not in k]) < 13:
            await asyncio.sleep(0.05)
    await app.state.rollouts.shutdown()
    return f"the 500-message rollout took {took:.2f} s"


async def stuck_trainer() -> str:
    """40 rollouts to a trainer whose completions hang, then 10 to a healthy one."""
    release = asyncio.Event()
    stuck_done: dict[str, float] = {}
    healthy_done: dict[str, float] = {}
    stuck = EmbeddedServer(trainer(stuck_done, hang=release), host="127.0.0.1", port=0)
    healthy = EmbeddedServer(trainer(healthy_done), host="127.0.0.1", port=0)
    await stuck.start()
    await healthy.start()
    app = create_app(Echo())
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://server") as http:
            for n in range(40):
                await http.post("/v1/rollout/init", json=init(f"stuck-{n}", stuck.url))
            await asyncio.sleep(1.0)
            started = time.perf_counter()
            for n in range(10):
                await http.post("/v1/rollout/init", json=init(f"healthy-{n}", healthy.url))
            while len(healthy_done) < 20 and time.perf_counter() - started < 30:
                await asyncio.sleep(0.02)
            took = time.perf_counter() - started
            arrived = len(healthy_done) // 2  # before the stuck trainer is let go
    finally:
        release.set()
        await app.state.rollouts.shutdown()
        await stuck.stop()
        await healthy.stop()
    return f"{arrived}/10 healthy completions after {took:.2f} s"


async def restarting_trainer() -> str:
    """100 rollouts while their trainer is down for 6 s."""
    port = free_port()
    done: dict[str, float] = {}
    app = create_app(Echo())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://server") as http:
        for n in range(100):
            await http.post("/v1/rollout/init", json=init(f"r-{n}", f"http://127.0.0.1:{port}"))
        await asyncio.sleep(6.0)
        server = EmbeddedServer(trainer(done), host="127.0.0.1", port=port)
        await server.start()
        started = time.perf_counter()
        while len(done) < 200 and time.perf_counter() - started < 60:
            await asyncio.sleep(0.1)
        await server.stop()
    await app.state.rollouts.shutdown()
    completed = sum(1 for key, value in done.items() if key.endswith(":status") and value)
    reported = len(done) // 2
    return (
        f"{completed} of 100 COMPLETED, {reported - completed} ERROR, {100 - reported} unreported"
    )


async def main() -> None:
    scenarios = [
        ("100 MB init body", huge_body),
        ("12 sync tools fill the thread pool", busy_thread_pool),
        ("a trainer whose completions hang", stuck_trainer),
        ("the trainer down for 6 s", restarting_trainer),
    ]
    rows = []
    for name, scenario in scenarios:
        rows.append((name, await scenario()))
    print("| scenario | result |\n|---|---|")
    for name, result in rows:
        print(f"| {name} | {result} |")
    print(f"\nmachine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")


if __name__ == "__main__":
    asyncio.run(main())
