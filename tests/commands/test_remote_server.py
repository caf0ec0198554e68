"""``osmosis test --url``: the workbench as the trainer of remote rollout servers on loopback.

- the sample agent served by a separate ``osmosis serve --local`` process passes every row;
- a deliberately non-conforming server gets its protocol violations reported;
- two ``--url`` servers share the rows; a server answering 429 + Retry-After still gets them
  all done.

In-process servers are real uvicorn servers (``server_core.serve.EmbeddedServer``, port 0)
on the test's event loop; ``osmosis test`` then runs in a worker thread (its own event loop).
The model is the sample cassette, replayed.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from osmosis_workbench.cli import main
from server_core import create_app
from server_core.serve import EmbeddedServer

ROOT = Path(__file__).resolve().parents[2]
DATASET = ROOT / "sample_project" / "test_data.jsonl"
MODEL = f"replay:{ROOT / 'sample_project' / 'cassette.jsonl'}"
ROWS = 12


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def osmosis_test(urls: list[str], runs_dir: Path, *extra: str) -> int:
    argv = ["test", "-d", str(DATASET), "--model", MODEL, "--runs-dir", str(runs_dir)]
    for url in urls:
        argv += ["--url", url]
    return main([*argv, *extra])


def summary_count(output: str, label: str) -> int:
    match = re.search(rf"^\s*{label}: (\d+)$", output, re.MULTILINE)
    assert match, f"no '{label}:' line in:\n{output}"
    return int(match.group(1))


# ---- a remote server in its own process -------------------------------------------------------


@pytest.fixture(scope="module")
def remote_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``osmosis serve -m sample_project.server:agent_loop --local -p <free port>``."""
    workdir = tmp_path_factory.mktemp("remote")
    (workdir / "config").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "OSMOSIS_ROLLOUT_API_KEY"}
    env.update(OSMOSIS_CONFIG_DIR=str(workdir / "config"), PYTHONUNBUFFERED="1")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = workdir / "serve.out"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "osmosis_workbench.cli", "serve"),
                *("-m", "sample_project.server:agent_loop", "--local", "-H", "127.0.0.1"),
                *("-p", str(port)),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        end = time.monotonic() + 30
        while True:  # poll /health every 50 ms until it answers (bounded)
            if proc.poll() is not None:
                pytest.fail(f"serve exited with {proc.returncode}: {log_path.read_text()}")
            try:
                if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > end:
                pytest.fail(f"/health did not answer in 30 s: {log_path.read_text()}")
            time.sleep(0.05)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_every_row_passes_against_a_served_process(remote_server, tmp_path, capsys) -> None:
    before = httpx.get(f"{remote_server}/health").json()["completed_rollouts"]
    code = osmosis_test([remote_server], tmp_path)
    out = capsys.readouterr().out
    assert code == 0, out
    assert summary_count(out, "Total") == ROWS
    assert summary_count(out, "Passed") == ROWS
    assert summary_count(out, "Failed") == 0
    assert "protocol violations" not in out.lower()
    # The rows really ran on the remote process.
    after = httpx.get(f"{remote_server}/health").json()
    assert after["completed_rollouts"] - before == ROWS
    assert after["active_rollouts"] == 0


# ---- in-process servers on loopback -----------------------------------------------------------


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port; yields its URL."""
    server = EmbeddedServer(app, host="127.0.0.1", port=0, log_level="warning")
    await server.start()
    try:
        yield server.url
    finally:
        await server.stop()


class InitGate:
    """ASGI wrapper around a rollout app: counts inits, and refuses the first ``refuse``
    of them with 429 + ``Retry-After``."""

    def __init__(self, app: Any, *, refuse: int = 0, retry_after: str = "1") -> None:
        self.app = app
        self.refuse = refuse
        self.retry_after = retry_after
        self.inits: list[tuple[float, str]] = []  # (monotonic time, rollout_id)
        self.refused: list[tuple[float, str]] = []

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/v1/rollout/init":
            # Peek at the rollout id, then hand the body on to the real app.
            chunks: list[dict] = []
            while True:
                message = await receive()
                chunks.append(message)
                if not message.get("more_body"):
                    break
            raw = b"".join(c.get("body", b"") for c in chunks)
            rollout_id = re.search(rb'"rollout_id":\s*"([^"]*)"', raw).group(1).decode()
            self.inits.append((time.monotonic(), rollout_id))
            if len(self.refused) < self.refuse:
                self.refused.append((time.monotonic(), rollout_id))
                response = JSONResponse(
                    {"detail": "busy"}, 429, headers={"Retry-After": self.retry_after}
                )
                await response(scope, receive, send)
                return

            async def replay() -> dict:
                return chunks.pop(0) if chunks else await receive()

            await self.app(scope, replay, send)
            return
        await self.app(scope, receive, send)


def sample_app() -> Any:
    from sample_project.server import agent_loop

    return create_app(agent_loop)


async def test_rows_spread_over_two_urls(tmp_path, capsys) -> None:
    first, second = InitGate(sample_app()), InitGate(sample_app())
    async with serving(first) as url_a, serving(second) as url_b:
        code = await asyncio.to_thread(osmosis_test, [url_a, url_b], tmp_path)
    out = capsys.readouterr().out
    assert code == 0, out
    assert summary_count(out, "Passed") == ROWS
    a, b = len(first.inits), len(second.inits)
    assert a + b == ROWS
    assert min(a, b) >= ROWS // 4, (a, b)  # both did a real share, not one or two rows
    ids = {rid for _, rid in first.inits} | {rid for _, rid in second.inits}
    assert len(ids) == ROWS


async def test_429_with_retry_after_still_gets_every_row_done(tmp_path, capsys) -> None:
    """Busy answers are retried after Retry-After and every row still runs and passes."""
    app = sample_app()
    gate = InitGate(app, refuse=3, retry_after="1")
    async with serving(gate) as url:
        await asyncio.to_thread(osmosis_test, [url], tmp_path)
        completed = app.state.rollouts.completed_total
    out = capsys.readouterr().out
    assert summary_count(out, "Total") == ROWS
    assert summary_count(out, "Passed") == ROWS, out
    assert "init refused" not in out and "init_failed" not in out, out
    assert len(gate.refused) == 3
    assert len(gate.inits) == ROWS + 3
    assert completed == ROWS  # every accepted rollout ran to its completion on the server
    # Each refused rollout was tried again once, no sooner than Retry-After allows (the
    # runner's jitter may take it down to half).
    accepted = gate.inits[3:]
    for refused_at, rollout_id in gate.refused:
        retries = [t for t, rid in accepted if rid.startswith(rollout_id)]
        assert len(retries) == 1, (rollout_id, gate.inits)
        assert retries[0] - refused_at >= 0.45


# ---- a non-conforming server ------------------------------------------------------------------


def nonconforming_app() -> FastAPI:
    """A rollout server that breaks the protocol on purpose.

    Every init is answered 200 instead of 202. Row 0: completes (reward 1) and posts that
    completion twice. Row 1: calls chat and posts its completion without the Authorization
    header (both are refused), then posts an ERROR completion with the key.
    """
    app = FastAPI()
    tasks: set[asyncio.Task] = set()
    #: (row, callback, with auth, HTTP status the trainer answered)
    answers: list[tuple[int, str, bool, int]] = []

    async def post(http: httpx.AsyncClient, row: int, url: str, body: dict, headers=None):
        response = await http.post(url, json=body, headers=headers)
        answers.append((row, url.rsplit("/", 1)[-1], headers is not None, response.status_code))
        return response

    async def misbehave(body: dict) -> None:
        base, rollout_id = body["server_url"], body["rollout_id"]
        auth = {"authorization": f"Bearer {body['api_key']}"}
        messages = body["messages"]
        async with httpx.AsyncClient(timeout=10.0) as http:
            row = body["metadata"]["row_index"]
            completed_url = f"{base}/v1/rollout/completed"
            if row == 0:
                completion = {
                    "rollout_id": rollout_id,
                    "status": "COMPLETED",
                    "final_messages": [*messages, {"role": "assistant", "content": "42"}],
                    "finish_reason": "stop",
                    "reward": 1.0,
                }
                for _ in range(2):
                    await post(http, row, completed_url, completion, auth)
                return
            chat = await post(
                http,
                row,
                f"{base}/v1/chat/completions",
                {"model": "default", "messages": messages, "rollout_id": rollout_id},
            )
            completion = {
                "rollout_id": rollout_id,
                "status": "ERROR",
                "final_messages": messages,
                "finish_reason": "error",
                "error_message": f"chat callback answered HTTP {chat.status_code}",
            }
            await post(http, row, completed_url, completion)
            await post(http, row, completed_url, completion, auth)

    @app.post("/v1/rollout/init")
    async def init(request: Request) -> JSONResponse:
        body = await request.json()
        task = asyncio.create_task(misbehave(body))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return JSONResponse({"rollout_id": body["rollout_id"], "tools": []}, status_code=200)

    app.state.tasks = tasks
    app.state.answers = answers
    return app


async def test_protocol_violations_are_reported(tmp_path, capsys) -> None:
    app = nonconforming_app()
    async with serving(app) as url:
        code = await asyncio.to_thread(
            osmosis_test, [url], tmp_path, "--limit", "2", "--concurrency", "1"
        )
        await asyncio.gather(*app.state.tasks)
    out = capsys.readouterr().out
    assert code != 0, out  # row 1 failed
    assert summary_count(out, "Total") == 2
    assert summary_count(out, "Passed") == 1
    assert summary_count(out, "Failed") == 1
    lines = [line.strip() for line in out.splitlines()]
    reported = [line for line in lines if line.startswith("protocol violations: ")]
    assert len(reported) == 2, out  # one line per row
    assert all("init answered 200; the protocol requires 202" in line for line in reported)
    row1 = next(line for line in reported if "chat callback without the api_key" in line)
    assert "completion callback without the api_key" in row1
    # init 200 on both rows, chat and completion without auth on row 1.
    assert summary_count(out, "Protocol violations") >= 4
    # The trainer refused the callbacks without its key, and took the one with it.
    row1 = [a for a in app.state.answers if a[0] == 1]
    assert row1 == [
        (1, "completions", False, 401),
        (1, "completed", False, 401),
        (1, "completed", True, 200),
    ]


async def test_a_second_completion_is_reported(tmp_path, capsys) -> None:
    app = nonconforming_app()
    async with serving(app) as url:
        await asyncio.to_thread(osmosis_test, [url], tmp_path, "--limit", "1")
        await asyncio.gather(*app.state.tasks)
    out = capsys.readouterr().out
    # The duplicate is acknowledged (the trainer remembers finished rollouts) and reported.
    assert [a[3] for a in app.state.answers] == [200, 200], app.state.answers
    assert "second completion for the same rollout" in out, out
    assert summary_count(out, "Protocol violations") == 2


class SlowInitAnswer:
    """ASGI wrapper: the init's 202 reaches the trainer 300 ms late (a slow path back), so
    the agent's first chat callback arrives before the trainer has read the init answer."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/rollout/init":
            await self.app(scope, receive, send)
            return

        async def late_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                await asyncio.sleep(0.3)  # the delay under test, not a readiness wait
            await send(message)

        await self.app(scope, receive, late_send)


async def test_a_chat_that_overtakes_the_init_answer_still_gets_the_tools(tmp_path, capsys):
    async with serving(SlowInitAnswer(sample_app())) as url:
        code = await asyncio.to_thread(osmosis_test, [url], tmp_path, "--limit", "2")
    out = capsys.readouterr().out
    assert code == 0, out
    assert summary_count(out, "Passed") == 2
