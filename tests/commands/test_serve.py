"""``osmosis serve`` as a real subprocess on loopback: options, auth, validation, traces,
reload, a busy port, and SIGTERM draining with an ERROR completion for what was left running.

Every process is started at once by the module's ``fleet`` fixture (start-up dominates these
tests; one process per test, the sample one shared by the read-only tests). The trainer they call
back is a small FastAPI app served in the test's own event loop with
``server_core.serve.EmbeddedServer`` on a free loopback port. Readiness is always polled (GET
/health every 50 ms up to a deadline), never slept for.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from osmosis_workbench.cli import build_parser
from osmosis_workbench.commands.serve_cmd import listen_host
from server_core.serve import EmbeddedServer
from server_core.trace import safe_file_stem

ROOT = Path(__file__).resolve().parents[2]
OSMOSIS = [sys.executable, "-m", "osmosis_workbench.cli"]
SAMPLE = "sample_project.server:agent_loop"
KEY = "osm_rollout_test-serve-key"
ENV_KEY = "osm_rollout_from-env"
START_DEADLINE_S = 30.0

BLOCKING_AGENT = '''
import asyncio

from server_core import RolloutAgentLoop


class Blocking(RolloutAgentLoop):
    """Starts, then waits for an event nobody sets."""

    name = "blocking"

    def get_tools(self, request):
        return []

    async def run(self, ctx):
        await asyncio.Event().wait()


agent_loop = Blocking()
'''

# Its tool's schema is invalid JSON Schema ("strng"), which validation rejects; the server
# itself accepts the tool, so --no-validate serves it. Its run() never returns.
BROKEN_AGENT = """
import asyncio

from server_core import RolloutAgentLoop

LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look a word up",
        "parameters": {"type": "object", "properties": {"q": {"type": "strng"}}},
    },
}


class Broken(RolloutAgentLoop):
    name = "broken"

    def get_tools(self, request):
        return [LOOKUP]

    async def run(self, ctx):
        await asyncio.Event().wait()


agent_loop = Broken()
"""

TINY_AGENT = """
from server_core import RolloutAgentLoop


class Tiny(RolloutAgentLoop):
    name = "tiny_v1"

    def get_tools(self, request):
        return []

    async def run(self, ctx):
        return ctx.complete(list(ctx.request.messages))


agent_loop = Tiny()
"""


# ---- the served process -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(config_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a served process: no login, no inherited key, unbuffered output."""
    env = {k: v for k, v in os.environ.items() if k != "OSMOSIS_ROLLOUT_API_KEY"}
    env.update(OSMOSIS_CONFIG_DIR=str(config_dir), PYTHONUNBUFFERED="1", **extra)
    return env


class Served:
    """One ``osmosis serve`` process; its combined output goes to a file."""

    def __init__(self, args: list[str], *, cwd: Path, workdir: Path, env_extra=None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"serve-{self.port}.out"
        config_dir = workdir / "config"
        config_dir.mkdir(exist_ok=True)
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [*OSMOSIS, "serve", *args, "-H", "127.0.0.1", "-p", str(self.port)],
                cwd=cwd,
                env=clean_env(config_dir, **(env_extra or {})),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def health(self) -> dict[str, Any] | None:
        try:
            response = httpx.get(f"{self.url}/health", timeout=1.0)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    def wait_healthy(self, deadline_s: float = START_DEADLINE_S) -> dict[str, Any]:
        """Poll /health every 50 ms until it answers 200 (the process must stay alive)."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                pytest.fail(f"serve exited with {self.proc.returncode}:\n{self.output()}")
            body = self.health()
            if body is not None:
                return body
            time.sleep(0.05)
        pytest.fail(f"/health did not answer within {deadline_s}s:\n{self.output()}")

    def stop(self) -> int:
        """SIGTERM, and the exit code (killed if it does not end in 20 s)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class Exited:
    """An ``osmosis serve`` expected to refuse to start: its exit code and output."""

    def __init__(self, args: list[str], *, cwd: Path, workdir: Path, name: str) -> None:
        config_dir = workdir / "config"
        config_dir.mkdir(exist_ok=True)
        self.out_path, self.err_path = workdir / f"{name}.out", workdir / f"{name}.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                [*OSMOSIS, "serve", *args],
                cwd=cwd,
                env=clean_env(config_dir),
                stdout=out,
                stderr=err,
            )

    def result(self, timeout: float = START_DEADLINE_S) -> tuple[int, str, str]:
        """(exit code, stdout, stderr), once the process ended."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"serve did not exit within {timeout}s: {self.err_path.read_text()}")
        return code, self.out_path.read_text(), self.err_path.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Every served process this module needs, all started at once (start-up dominates the
    time of these tests, and the processes start in parallel). One process per test, except
    ``sample``, which the read-only tests share."""
    workdir = tmp_path_factory.mktemp("serve")
    agents = workdir / "agents"
    agents.mkdir()
    write_module(agents, "broken_agent", BROKEN_AGENT)
    write_module(agents, "blocking_agent", BLOCKING_AGENT)
    reload_dir = workdir / "reload"  # only the reloading server watches this folder
    reload_dir.mkdir()
    write_module(reload_dir, "tiny_agent", TINY_AGENT)
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    busy_port = blocker.getsockname()[1]
    log_dir = workdir / "traces"

    started: dict[str, Any] = {}
    try:
        started["sample"] = Served(
            ["-m", SAMPLE, "--skip-register", "--api-key", KEY, "--log", str(log_dir)],
            cwd=ROOT,
            workdir=workdir,
            # --api-key wins over the environment.
            env_extra={"OSMOSIS_ROLLOUT_API_KEY": "osm_rollout_from-env-ignored"},
        )
        started["sample"].log_dir = log_dir
        started["no_validate"] = Served(
            [
                "-m",
                "broken_agent:agent_loop",
                "--local",
                "--no-validate",
                "--rollout-timeout",
                "0.5",
                "--log-level",
                "warning",
            ],
            cwd=agents,
            workdir=workdir,
        )
        started["sigterm"] = Served(
            [
                "-m",
                "blocking_agent:agent_loop",
                "--skip-register",
                "--max-concurrent",
                "1",
                "--drain-timeout",
                "0.3",
            ],
            cwd=agents,
            workdir=workdir,
            env_extra={"OSMOSIS_ROLLOUT_API_KEY": ENV_KEY},
        )
        # No --api-key and none in the environment: a key is generated (and must survive
        # reloads, which start a new worker process).
        started["reload"] = Served(
            ["-m", "tiny_agent:agent_loop", "--skip-register", "--reload"],
            cwd=reload_dir,
            workdir=workdir,
        )
        started["reload"].source = reload_dir / "tiny_agent.py"
        started["no_login"] = Exited(
            ["-m", SAMPLE, "-H", "127.0.0.1", "-p", "0"], cwd=ROOT, workdir=workdir, name="login"
        )
        started["busy_port"] = Exited(
            ["-m", SAMPLE, "--local", "-H", "127.0.0.1", "-p", str(busy_port)],
            cwd=ROOT,
            workdir=workdir,
            name="busy",
        )
        started["busy_port"].port = busy_port
        started["invalid"] = Exited(
            ["-m", "broken_agent:agent_loop", "--local", "-H", "127.0.0.1", "-p", "0"],
            cwd=agents,
            workdir=workdir,
            name="invalid",
        )
        yield started
    finally:
        for process in started.values():
            process.stop()
        blocker.close()


def write_module(folder: Path, name: str, source: str) -> None:
    (folder / f"{name}.py").write_text(source, encoding="utf-8")


# ---- a trainer on loopback --------------------------------------------------------------------


def completion_body(content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-loopback",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
    }


class LoopbackTrainer:
    """Answers chat with a fixed message and records every callback with its headers."""

    def __init__(self, answer: str = "The answer is 42.") -> None:
        self.chats: list[dict] = []
        self.chat_auth: list[str | None] = []
        self.completions: list[dict] = []
        self.completion_auth: list[str | None] = []
        self.url = ""
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> dict:
            self.chats.append(await request.json())
            self.chat_auth.append(request.headers.get("authorization"))
            return completion_body(answer)

        @app.post("/v1/rollout/completed")
        async def completed(request: Request) -> dict:
            self.completions.append(await request.json())
            self.completion_auth.append(request.headers.get("authorization"))
            return {"ok": True}

        self.app = app

    def completions_for(self, rollout_id: str) -> list[dict]:
        return [c for c in self.completions if c.get("rollout_id") == rollout_id]

    def init_body(self, rollout_id: str, **fields: Any) -> dict[str, Any]:
        body = {
            "rollout_id": rollout_id,
            "server_url": self.url,
            "messages": [{"role": "user", "content": "What is 17 + 25?"}],
            "completion_params": {"temperature": 0.0},
            "metadata": {"ground_truth": "42"},
            "api_key": "cb-secret-key",
        }
        body.update(fields)
        return body


@asynccontextmanager
async def loopback_trainer(**kwargs: Any) -> AsyncIterator[LoopbackTrainer]:
    trainer = LoopbackTrainer(**kwargs)
    server = EmbeddedServer(trainer.app, host="127.0.0.1", port=0, log_level="warning")
    await server.start()
    trainer.url = server.url
    try:
        yield trainer
    finally:
        await server.stop()


async def eventually(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll ``predicate`` every 20 ms (the loop keeps serving the trainer meanwhile)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.02)
    pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")


async def ahealth(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=2.0) as http:
        response = await http.get(f"{url}/health")
    assert response.status_code == 200
    return response.json()


# ---- defaults and start-up --------------------------------------------------------------------


def test_serve_option_defaults() -> None:
    args = build_parser().parse_args(["serve", "-m", "server:agent_loop"])
    assert (args.port, args.host, args.api_key) == (9000, None, None)
    assert (args.local, args.skip_register, args.reload, args.no_validate) == (
        False,
        False,
        False,
        False,
    )
    assert (args.max_concurrent, args.rollout_timeout, args.log) == (100, 600.0, None)


@pytest.mark.parametrize(
    ("host", "local", "bound", "warns"),
    [
        (None, False, "0.0.0.0", False),  # a key is required: every interface is fine
        (None, True, "127.0.0.1", False),  # no key: this machine only
        ("0.0.0.0", True, "0.0.0.0", True),  # asked for, but said out loud
        ("::", True, "::", True),
        ("127.0.0.1", True, "127.0.0.1", False),
        ("10.1.2.3", False, "10.1.2.3", False),
    ],
)
def test_local_mode_listens_on_this_machine_unless_told_otherwise(host, local, bound, warns):
    chosen, warning = listen_host(host, local=local)
    assert chosen == bound
    assert (warning is not None) is warns
    if warns:
        assert "without an API key" in warning and "--host 127.0.0.1" in warning


@pytest.fixture
def sample_server(fleet: dict[str, Any]) -> Served:
    """The sample agent, --skip-register with --api-key KEY and --log (shared, read-only)."""
    server = fleet["sample"]
    server.wait_healthy()
    return server


def test_startup_prints_agent_tools_and_url(sample_server: Served) -> None:
    out = sample_server.output()
    assert "Agent: calculator" in out
    assert "Tools: 4" in out
    assert f"Uvicorn running on http://127.0.0.1:{sample_server.port}" in out
    # The key came from --api-key: it is not echoed, and no key was generated.
    assert KEY not in out and "shown once" not in out
    assert "draining" not in out  # validation's throwaway server stays quiet
    body = sample_server.health()
    assert body is not None
    assert body["status"] == "healthy" and body["agent_loop"] == "calculator"
    assert {"active_rollouts", "completed_rollouts"} <= set(body)


async def test_skip_register_requires_the_key(sample_server: Served) -> None:
    url = sample_server.url
    async with loopback_trainer() as trainer, httpx.AsyncClient(timeout=5.0) as http:
        body = trainer.init_body("auth-check")
        env_key = {"authorization": "Bearer osm_rollout_from-env-ignored"}
        for headers in ({}, {"authorization": "Bearer wrong-key"}, env_key):
            response = await http.post(f"{url}/v1/rollout/init", json=body, headers=headers)
            assert response.status_code == 401, response.text
            assert response.json() == {"detail": "Invalid or missing API key"}
        assert (await http.get(f"{url}/platform/health")).status_code == 401
        response = await http.get(
            f"{url}/platform/health", headers={"authorization": f"Bearer {KEY}"}
        )
        assert response.status_code == 200 and response.json()["agent_loop"] == "calculator"

        response = await http.post(
            f"{url}/v1/rollout/init", json=body, headers={"authorization": f"Bearer {KEY}"}
        )
        assert response.status_code == 202, response.text
        assert response.json()["rollout_id"] == "auth-check"
        assert len(response.json()["tools"]) == 4
        await eventually(lambda: trainer.completions_for("auth-check"), what="the completion")
    # Nothing was started by the refused inits: one chat, one completion.
    assert len(trainer.chats) == 1
    assert len(trainer.completions) == 1


async def test_log_dir_gets_a_trace_per_rollout(sample_server: Served) -> None:
    rollout_id = "trace me/../run #1"
    async with loopback_trainer() as trainer, httpx.AsyncClient(timeout=5.0) as http:
        response = await http.post(
            f"{sample_server.url}/v1/rollout/init",
            json=trainer.init_body(rollout_id),
            headers={"authorization": f"Bearer {KEY}"},
        )
        assert response.status_code == 202, response.text
        [completion] = await eventually(
            lambda: trainer.completions_for(rollout_id), what="the completion"
        )
    assert completion["status"] == "COMPLETED"
    assert completion["reward"] == 1.0
    assert completion["final_messages"][-1]["content"] == "The answer is 42."
    # Both callbacks carried the init's api_key.
    assert trainer.chat_auth == ["Bearer cb-secret-key"]
    assert trainer.completion_auth == ["Bearer cb-secret-key"]

    log_dir: Path = sample_server.log_dir  # type: ignore[attr-defined]
    name = f"{safe_file_stem(rollout_id)}.jsonl"

    def finished_trace() -> list[dict] | None:
        paths = list(log_dir.glob(f"*/{name}"))
        if len(paths) != 1:
            return None
        lines = [json.loads(x) for x in paths[0].read_text(encoding="utf-8").splitlines()]
        return lines if lines and lines[-1]["event"] == "rollout_finished" else None

    events = await eventually(finished_trace, what=f"{log_dir}/<run>/{name}")
    # The file is in one run folder under DIR, never at a path built from the raw id.
    [trace_path] = list(log_dir.glob(f"*/{name}"))
    assert trace_path.parent.parent == log_dir
    kinds = [e["event"] for e in events]
    assert kinds[0] == "rollout_started" and kinds[-1] == "rollout_finished"
    assert "llm_request" in kinds and "llm_response" in kinds
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert all(e["rollout_id"] == rollout_id for e in events)
    assert events[-1]["completion"]["status"] == "COMPLETED"
    assert "cb-secret-key" not in trace_path.read_text(encoding="utf-8")


def generated_key(server: Served) -> str:
    """The key ``osmosis serve`` generated and printed (it must be printed exactly once)."""
    out = server.output()
    keys = re.findall(r"osm_rollout_[A-Za-z0-9_-]+", out)
    assert len(keys) == 1, out
    assert "shown once" in out
    assert len(keys[0]) > len("osm_rollout_") + 30
    return keys[0]


async def init_status(server: Served, trainer: LoopbackTrainer, rollout_id: str, key=None):
    headers = {"authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient(timeout=5.0) as http:
        response = await http.post(
            f"{server.url}/v1/rollout/init", json=trainer.init_body(rollout_id), headers=headers
        )
    return response.status_code


async def test_generated_key_is_shown_once_and_works(fleet: dict[str, Any]) -> None:
    server: Served = fleet["reload"]  # the one server without a key given
    server.wait_healthy()
    key = generated_key(server)
    async with loopback_trainer() as trainer:
        assert await init_status(server, trainer, "no-key") == 401
        assert await init_status(server, trainer, "generated-key", key) == 202
        [completion] = await eventually(
            lambda: trainer.completions_for("generated-key"), what="the completion"
        )
    assert completion["status"] == "COMPLETED"
    assert trainer.completion_auth == ["Bearer cb-secret-key"]


# ---- refusing to start ------------------------------------------------------------------------


def test_without_login_it_refuses_and_names_the_ways_out(fleet: dict[str, Any]) -> None:
    code, out, err = fleet["no_login"].result()
    assert code != 0
    assert "osmosis login" in err
    assert "--local" in err and "--skip-register" in err
    assert "Traceback" not in out + err
    assert "Uvicorn running" not in out + err


def test_busy_port_is_one_clear_line(fleet: dict[str, Any]) -> None:
    process = fleet["busy_port"]
    code, out, err = process.result()
    output = (out + err).strip()
    assert code != 0
    assert "Traceback" not in output
    lines = output.splitlines()
    assert len(lines) == 1, output
    assert f"port {process.port}" in lines[0] and "in use" in lines[0]


def test_validation_failure_exits_1_and_lists_the_problem(fleet: dict[str, Any]) -> None:
    code, out, err = fleet["invalid"].result()
    assert code == 1
    assert "validation failed" in err
    assert "lookup" in err and "strng" in err
    assert "--no-validate" in err
    assert "Uvicorn running" not in out + err


# ---- serving options --------------------------------------------------------------------------


async def test_no_validate_local_serves_and_rollout_timeout_applies(fleet: dict[str, Any]):
    """--no-validate serves the broken agent; --local needs no key; --rollout-timeout ends its
    never-ending run as an ERROR ``timeout``; --log-level warning hides the info lines."""
    server: Served = fleet["no_validate"]
    assert server.wait_healthy()["agent_loop"] == "broken"
    async with loopback_trainer() as trainer, httpx.AsyncClient(timeout=5.0) as http:
        assert (await http.get(f"{server.url}/platform/health")).status_code == 404
        started = time.monotonic()
        response = await http.post(
            f"{server.url}/v1/rollout/init", json=trainer.init_body("never-ends")
        )
        assert response.status_code == 202, response.text
        assert response.json()["tools"][0]["function"]["name"] == "lookup"
        [completion] = await eventually(
            lambda: trainer.completions_for("never-ends"), what="the timeout's completion"
        )
        took = time.monotonic() - started
    assert completion["status"] == "ERROR"
    assert completion["extra_fields"]["error_category"] == "timeout"
    assert "0.5s" in completion["error_message"]
    assert took < 8.0  # the default deadline is 600 s
    out = server.output()
    assert "INFO:" not in out and "Agent: broken" not in out
    assert server.stop() == 0


async def test_sigterm_drains_then_reports_running_rollouts_as_cancelled(fleet: dict[str, Any]):
    """Env key, --max-concurrent 1 (one running, one queued), SIGTERM: both end in exactly
    one ERROR completion with category ``cancelled``, and the process exits 0."""
    server: Served = fleet["sigterm"]
    server.wait_healthy()
    assert "osm_rollout_" not in server.output()  # the env key is used, none is generated
    async with loopback_trainer() as trainer, httpx.AsyncClient(timeout=5.0) as http:
        auth = {"authorization": f"Bearer {ENV_KEY}"}
        for rollout_id in ("running-1", "queued-2"):
            response = await http.post(
                f"{server.url}/v1/rollout/init", json=trainer.init_body(rollout_id), headers=auth
            )
            assert response.status_code == 202, response.text

        end = time.monotonic() + 10
        while True:
            body = await ahealth(server.url)
            if body["running_rollouts"] == 1 and body["queued_rollouts"] == 1:
                break
            assert time.monotonic() < end, body
            await asyncio.sleep(0.05)
        assert trainer.completions == []

        server.proc.send_signal(signal.SIGTERM)
        await eventually(lambda: server.proc.poll() is not None, timeout=20, what="the exit")
    assert server.proc.returncode == 0, server.output()
    for rollout_id in ("running-1", "queued-2"):
        completions = trainer.completions_for(rollout_id)
        assert len(completions) == 1, trainer.completions
        [completion] = completions
        assert completion["status"] == "ERROR"
        assert completion["extra_fields"]["error_category"] == "cancelled"
        assert "shutting down" in completion["error_message"]
    assert trainer.completion_auth == ["Bearer cb-secret-key"] * 2
    assert "draining 2 rollouts" in server.output()


async def test_reload_picks_up_a_code_change(fleet: dict[str, Any]) -> None:
    server: Served = fleet["reload"]
    assert server.wait_healthy()["agent_loop"] == "tiny_v1"
    key = generated_key(server)
    path: Path = server.source  # type: ignore[attr-defined]
    path.write_text(path.read_text(encoding="utf-8").replace("tiny_v1", "tiny_v2"), "utf-8")

    def reloaded() -> bool:
        body = server.health()
        return body is not None and body["agent_loop"] == "tiny_v2"

    await eventually(reloaded, timeout=20, what="/health to show the reloaded agent")
    assert "Reloading" in server.output()
    # The new worker serves with the same key, and did not print another one.
    assert generated_key(server) == key
    async with loopback_trainer() as trainer:
        assert await init_status(server, trainer, "after-reload") == 401
        assert await init_status(server, trainer, "after-reload", key) == 202
        await eventually(lambda: trainer.completions_for("after-reload"), what="completion")
    assert server.stop() == 0
