"""The Server screen: serving the agent on a real port, a trainer's rollouts, pausing and stepping
them, reloading the agent, and attaching to a remote server with ``--url``.

The trainer here is real too: a ``LocalTrainer`` listening on a loopback port drives rollouts
against the served agent over HTTP, exactly as a training cluster would; only its model is a
``ScriptedBackend``. The screen runs in the workbench app built by ``make_app``, as the CLI
builds it.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import subprocess
import sys
import textwrap
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Static
from tui_driver import Driver, driving

from osmosis_workbench.engine.config import EngineConfig
from osmosis_workbench.engine.live import LiveStepSession
from osmosis_workbench.engine.models import ScriptedBackend
from osmosis_workbench.engine.trainer import LocalTrainer, ServerTarget
from osmosis_workbench.engine.workspace import Workspace
from osmosis_workbench.tui.app import WorkbenchApp, make_app
from osmosis_workbench.tui.dataset_screen import DatasetScreen
from osmosis_workbench.tui.messages import SessionStepRequested, TrajectoryRequested
from osmosis_workbench.tui.server_screen import ServerScreen
from server_core.http_client import HttpxClient

ROOT = Path(__file__).resolve().parents[2]
AGENT = "sample_project.server:agent_loop"


def calculator(body: dict[str, Any]) -> Any:
    """A model that adds the prompt's two numbers with the add tool, then states the sum."""
    last = body["messages"][-1]
    if last["role"] == "tool":
        return {"content": f"The answer is {last['content']}."}
    a, b = (int(n) for n in last["content"].split("+"))
    return {"tool_calls": [{"name": "add", "arguments": {"a": a, "b": b}}]}


def request(rollout_id: str, question: str = "2+3", truth: str = "5") -> dict[str, Any]:
    """A trainer's rollout request (the trainer adds server_url and its callback key)."""
    return {
        "rollout_id": rollout_id,
        "messages": [{"role": "user", "content": question}],
        "completion_params": {},
        "metadata": {"ground_truth": truth},
    }


class Run(Driver):
    """The server screen's run: its status line, rollout list and log."""

    @property
    def screen(self) -> ServerScreen:
        screen = self.app.screen
        assert isinstance(screen, ServerScreen), screen
        return screen

    @property
    def workspace(self) -> Workspace:
        workspace = self.app.workspace
        assert workspace is not None
        return workspace

    def status(self) -> str:
        return str(self.screen.query_one("#server-status", Static).render())

    def state(self, rollout_id: str) -> str:
        return self.screen.table.cell_text(rollout_id, "state")

    def log_text(self) -> str:
        pane = self.screen.log_pane
        pane.drain()
        return "\n".join(pane.lines)


def server_app(*, watch: bool = False, **config: Any) -> WorkbenchApp:
    """The workbench with the calculator model, its server screen on any free port."""
    if "urls" not in config:
        config.setdefault("module", AGENT)
    config.setdefault("search_path", str(ROOT))
    return make_app(EngineConfig(**config), backend=ScriptedBackend(calculator), serve_port=0,
                    watch_agent=watch)  # fmt: skip


@asynccontextmanager
async def running(app: WorkbenchApp | None = None) -> AsyncIterator[Run]:
    """The app, once open, on its server screen (key 3)."""
    async with driving(app or server_app(), (100, 30), driver_type=Run) as run:
        await run.press("3")
        yield run


@pytest.fixture
async def open_workspace() -> AsyncIterator[Callable[..., Any]]:
    """``await open_workspace(**config)``: an opened Workspace with the calculator model (a
    rollout server of its own, for the workbench to attach to)."""
    opened: list[Workspace] = []

    async def _open(**config: Any) -> Workspace:
        if "urls" not in config:
            config.setdefault("module", AGENT)
        config.setdefault("search_path", str(ROOT))
        ws = Workspace(EngineConfig(**config), backend=ScriptedBackend(calculator))
        await ws.open()
        opened.append(ws)
        return ws

    yield _open
    for ws in opened:
        await ws.aclose()


@pytest.fixture
async def trainer() -> AsyncIterator[LocalTrainer]:
    """An external trainer listening on a loopback port (its model: the calculator)."""
    external = LocalTrainer(ScriptedBackend(calculator))
    async with external.listening("127.0.0.1", 0):
        yield external


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0) as client:
        yield client


# ---- serving on a real port ---------------------------------------------------------------------


async def test_start_serve_a_trainer_pause_and_step_its_rollout_then_stop(trainer, http):
    async with running() as run:
        ws = run.workspace
        assert "stopped" in run.status() and "No rollouts yet" in str(
            run.screen.table.render_line(1).text
        )
        await run.press("g")  # a fresh API key in the form
        key = run.screen.query_one("#server-key", Input).value
        assert key.startswith("osm_rollout_") and len(key) > 40
        await run.press("s")
        url = run.screen.url
        assert url is not None and url.startswith("http://127.0.0.1:") and ws.server is not None
        assert f"serving {url} · key {key}" in run.status()
        await run.press("k")
        assert run.app.clipboard == key
        await run.until(lambda: "Uvicorn running on" in run.log_text())  # uvicorn's log, here
        health = (await http.get(f"{url}/health")).json()
        assert health["status"] == "healthy" and health["agent_loop"] == "calculator"
        refused = await http.post(f"{url}/v1/rollout/init", json={**request("x"),
                                  "server_url": trainer.url})  # fmt: skip
        assert refused.status_code == 401  # the key is enforced

        # A trainer's rollout, paused at its first LLM answer (P: pause every rollout).
        await run.press("P")
        assert ws.live.pause_all and "pausing every rollout" in run.status()
        target = ServerTarget(url=url, api_key=key, client=HttpxClient(http))
        rollout = asyncio.create_task(
            trainer.drive(trainer.open_run(request("trainer-1")), target, timeout_s=10)
        )
        await run.until(lambda: "trainer-1" in run.screen.table
                        and run.state("trainer-1") == "paused")  # fmt: skip
        await run.until(lambda: "paused 1" in run.status())
        await run.press("P")
        assert not ws.live.pause_all

        # d: the debugger follows it as a live step session; step it with the same keys.
        await run.press("d")
        [asked] = run.messages(SessionStepRequested)
        debugger = run.app.debugger
        assert isinstance(asked.session, LiveStepSession) and debugger.session is asked.session
        assert run.app.screen is debugger and debugger.state == "paused"
        assert debugger.paused.turn == 1
        assert debugger.paused.message["tool_calls"][0]["function"]["name"] == "add"
        await run.press("n")
        await run.until(lambda: debugger.state == "paused")  # a pause at every answer now
        assert debugger.paused.turn == 2
        assert debugger.paused.message["content"] == "The answer is 5."
        await run.pilot.press("c")
        outcome = await rollout
        assert outcome.ok and outcome.reward == 1.0 and not outcome.violations
        await run.until(lambda: debugger.state == "finished")
        await run.press("3")
        await run.until(lambda: run.state("trainer-1") == "completed")
        assert run.screen.table.cell_text("trainer-1", "reward") == "1"
        await run.press("o")
        shown = run.messages(TrajectoryRequested)[-1]
        assert shown.outcome.reward == 1.0 and shown.title.startswith("trainer-1")
        await run.press("3")

        await run.press("x")
        assert ws.server is None and run.screen.url is None and "stopped" in run.status()
        with pytest.raises(httpx.ConnectError):
            await http.get(f"{url}/health")  # the port is closed


async def test_p_c_and_a_pause_continue_and_abort_a_running_rollout(trainer, http):
    async with running() as run:
        ws = run.workspace
        await run.press("s")
        assert run.screen.url is not None
        target = ServerTarget(url=run.screen.url, client=HttpxClient(http))  # local mode: no key
        ws.live.pause_all = True  # hold both at their first answer
        first = asyncio.create_task(trainer.drive(trainer.open_run(request("r-1")), target, 10))
        second = asyncio.create_task(trainer.drive(trainer.open_run(request("r-2")), target, 10))
        await run.until(lambda: {"r-1", "r-2"} <= set(run.screen.table.keys)
                        and run.state("r-1") == run.state("r-2") == "paused")  # fmt: skip
        ws.live.pause_all = False
        # p on a held rollout explains the keys; c releases r-1 for good.
        run.screen.table.move_cursor("r-1")
        await run.press("p")
        assert any("d steps it, c continues it" in n.message for n in run.notes())
        await run.press("c")
        assert (await first).ok
        # a on r-2: it ends as ERROR, category cancelled, and the trainer hears so.
        run.screen.table.move_cursor("r-2")
        await run.press("a")
        outcome = await second
        assert not outcome.ok and outcome.error_category == "cancelled"
        await run.until(lambda: run.state("r-2") == "cancelled")
        # p on a running (not held) rollout asks for a pause at its next answer; p again: no.
        third = asyncio.create_task(trainer.drive(trainer.open_run(request("r-3")), target, 10))
        await run.until(lambda: "r-3" in run.screen.table)
        run.screen.table.move_cursor("r-3")
        await run.press("p")
        await run.until(lambda: run.state("r-3") in ("paused", "completed"))
        if run.state("r-3") == "paused":
            await run.press("c")
        assert (await third).ok


async def test_a_busy_or_bad_port_is_reported_then_u_k_and_ctrl_l():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        async with running() as run:
            ws = run.workspace
            run.screen.query_one("#server-port", Input).value = str(port)
            await run.press("s")
            errors = [n for n in run.notes() if n.severity == "error"]
            assert errors and errors[-1].title == "Server not started"
            assert str(port) in errors[-1].message and ws.server is None
            assert "stopped" in run.status()
            run.screen.query_one("#server-port", Input).value = "http"
            await run.press("s")
            assert "is not a port number" in run.notes()[-1].message
            # escape leaves the form (letters type there); enter in the form starts the server.
            run.screen.query_one("#server-key", Input).focus()
            await run.press("escape")
            assert run.app.focused is run.screen.table
            run.screen.query_one("#server-port", Input).value = "0"
            run.screen.query_one("#server-host", Input).focus()
            await run.press("enter")
            assert ws.server is not None and run.screen.url is not None
            # While it serves, the footer offers x (stop), and s is not bound.
            assert run.screen.check_action("start_server", ()) is False
            assert run.screen.check_action("stop_server", ()) is True
            # u and k copy the URL and the key (there is none: local mode); ctrl+l clears the log.
            await run.press("u")
            assert run.app.clipboard == run.screen.url
            await run.press("k")
            assert "local mode" in run.notes()[-1].message
            await run.press("ctrl+l")
            assert run.screen.log_pane.line_count == 0
            await run.press("x")


# ---- reloading the agent ------------------------------------------------------------------------

AGENT_SOURCE = """
from server_core import RolloutAgentLoop


class Agent(RolloutAgentLoop):
    name = "{name}"

    def get_tools(self, request):
        return []

    async def run(self, ctx):
        messages = list(ctx.request.messages)
        answer = await ctx.chat(messages)
        return ctx.complete([*messages, answer.message], reward=1.0)


agent_loop = Agent()
"""


async def test_r_reloads_the_agent_and_saving_a_file_reloads_it_too(tmp_path):
    module = tmp_path / "reloadable_agent.py"
    module.write_text(AGENT_SOURCE.format(name="first"))
    app = server_app(module="reloadable_agent:agent_loop", search_path=str(tmp_path), watch=True)
    async with running(app) as run:
        ws = run.workspace
        assert ws.agent_name == "first" and "(watching)" in run.status()
        module.write_text(AGENT_SOURCE.format(name="second"))
        await run.until(lambda: ws.agent_name == "second")  # saved: reloaded, no key needed
        await run.until(lambda: "reloaded agent second" in run.log_text())
        await run.press("w")  # stop watching; r still reloads
        assert "(not watching)" in run.status()
        module.write_text(AGENT_SOURCE.format(name="third"))
        await run.press("r")
        assert ws.agent_name == "third"
        assert run.notes()[-1].message == "reloaded agent third"
        module.write_text("this is not python")
        await run.press("r")
        assert ws.agent_name == "third"  # a broken module keeps the working agent
        assert run.notes()[-1].title == "Agent not reloaded"


class _Cycle:
    """An object that only a garbage collection frees (it refers to itself)."""

    def __init__(self) -> None:
        self.me = self


async def test_a_reload_frees_what_was_frozen_and_let_go_since(tmp_path):
    # The app freezes what is alive when it opens (gc_control.freeze_long_lived_objects). A
    # reload lets go of the old module and the old embedded server, reference cycles that a
    # frozen heap would keep until the app ends: the reload thaws and collects.
    module = tmp_path / "freed_agent.py"
    module.write_text(AGENT_SOURCE.format(name="first"))
    app = server_app(module="freed_agent:agent_loop", search_path=str(tmp_path))
    async with running(app) as run:
        ws = run.workspace
        cycle = _Cycle()
        let_go = weakref.ref(cycle)
        gc.freeze()
        del cycle  # frozen garbage from now on
        gc.collect()
        assert let_go() is not None  # frozen: collections pass it by
        module.write_text(AGENT_SOURCE.format(name="second"))
        await run.press("r")
        assert ws.agent_name == "second"
        assert let_go() is None
        assert gc.get_freeze_count() > 0  # and what is alive is frozen again


# ---- attached to a remote server (--url) ---------------------------------------------------------


async def test_with_url_the_screens_work_against_the_remote_server(open_workspace, tmp_path):
    served = await open_workspace()
    url = await served.start_server(host="127.0.0.1", port=0)
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        '{"system_prompt": "calc", "user_prompt": "1+2", "ground_truth": 3}\n'
        '{"system_prompt": "calc", "user_prompt": "5+5", "ground_truth": 10}\n'
    )
    async with running(server_app(urls=(url,), dataset=str(rows))) as run:
        remote = run.workspace
        await run.until(lambda: "health healthy" in run.status())
        assert f"attached to {url}" in run.status()
        # Nothing here offers to serve or reload an agent: there is none in this process.
        shown = "\n".join(strip.text for strip in run.screen._compositor.render_strips())
        for offer in ("start the server", "s serves", "s Start", "r Reload", "API key"):
            assert offer not in shown, offer
        assert "rollouts that trainers send there" in shown
        await run.press("s", "r", "g")
        assert remote.server is None and not run.screen.query_one("#server-form").display
        # A batch from the dataset screen runs on the remote server, the same way.
        await run.press("2", "r")
        dataset = run.app.screen
        assert isinstance(dataset, DatasetScreen) and dataset.summary is not None
        assert dataset.summary.passed == 2
    assert served.server_health()["completed_rollouts"] == 2  # they ran over there


def test_importing_the_screens_imports_neither_litellm_nor_the_engine():
    # The app imports a mode's screen on the UI path when it is first shown: it must be light.
    code = textwrap.dedent(
        """
        import sys
        import osmosis_workbench.tui.dataset_screen, osmosis_workbench.tui.server_screen
        heavy = ("litellm", "fastapi", "osmosis_workbench.engine.trainer")
        print(sorted(name for name in heavy if name in sys.modules))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True)  # fmt: skip
    assert out.stdout.strip() == "[]"


# ---- layout snapshot ----------------------------------------------------------------------------


async def _steady(pilot: Pilot) -> None:
    await Run(pilot.app, pilot, []).press("3")  # type: ignore[arg-type]
    # The loop's lag changes from run to run: show a steady status line for the picture.
    screen = pilot.app.screen
    assert isinstance(screen, ServerScreen)
    screen.lag.stop()
    screen.lag.samples.clear()
    screen._show_status()
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
def test_server_layout_snapshot(snap_compare, size):
    app = make_app(EngineConfig(module=AGENT, search_path=str(ROOT)),
                   backend=ScriptedBackend(calculator), watch_agent=False)  # fmt: skip
    assert snap_compare(app, terminal_size=size, run_before=_steady)
