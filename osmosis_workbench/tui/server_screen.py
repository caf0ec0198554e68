"""The Server screen: serve the agent on a real port for trainers, and watch what they send.

``s``/``x`` start and stop the embedded uvicorn server (``Workspace.start_server``, in this
process and event loop) on the host, port and API key in the form (no key: local mode). The
table lists every rollout a trainer sent (``Workspace.live``), updated as hook events arrive;
``p`` pauses one at its next LLM answer and ``d`` opens it in the step debugger through a
``LiveStepSession``, with the same keys as a dataset row. Health, in-flight and queued counts
and the event loop's lag refresh once a second. ``r`` reloads the agent module, and so does
saving a file next to it. With ``--url`` the screen shows the remote server's health instead.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.timer import Timer
from textual.widgets import Input, Label, Static
from textual.worker import WorkerCancelled, WorkerFailed

from osmosis_workbench.tui.commands import ScreenCommands
from osmosis_workbench.tui.gc_control import refreeze_long_lived_objects
from osmosis_workbench.tui.log_pane import LogPane
from osmosis_workbench.tui.messages import SessionStepRequested, TrajectoryRequested
from osmosis_workbench.tui.screen_base import WorkbenchScreen
from osmosis_workbench.tui.widgets.dataset_table import Column, RowTable

if TYPE_CHECKING:
    from osmosis_workbench.engine.live import LiveRollout, LiveRollouts
    from osmosis_workbench.engine.workspace import Workspace

logger = logging.getLogger("osmosis_workbench.tui.server")

_COLUMNS = [
    Column("id", "rollout", 30),
    Column("state", "state", 10),
    Column("turns", "turns", 5, "right"),
    Column("elapsed", "elapsed", 8, "right"),
    Column("reward", "reward", 7, "right"),
    Column("error", "error", 0),
]
_STATE_STYLES = {
    "running": "yellow",
    "paused": "bold cyan",
    "completed": "green",
    "error": "bold red",
    "cancelled": "magenta",
}


#: What only an agent served in this process can do (not offered with --url).
_SERVING_ACTIONS = frozenset(
    {"start_server", "stop_server", "reload_agent", "toggle_watch", "new_key", "copy_key"}
)


def new_api_key() -> str:
    """A server API key in the protocol's shape (``osm_rollout_`` + 32 random bytes)."""
    return "osm_rollout_" + secrets.token_urlsafe(32)


class LoopLagMeter:
    """Measures how late the event loop runs a callback due at a fixed interval.

    The lateness is the time every other callback on the loop had to wait too: the figure
    that says whether the UI (and the server sharing its loop) still answers promptly.
    """

    def __init__(self, interval_s: float = 0.1, window: int = 50) -> None:
        self.interval_s = interval_s
        self.samples: deque[float] = deque(maxlen=window)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    def start(self) -> None:
        """Start sampling on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._schedule()

    def _schedule(self) -> None:
        assert self._loop is not None
        self._due = self._loop.time() + self.interval_s
        self._handle = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None
        self.samples.append(max(0.0, self._loop.time() - self._due))
        self._schedule()

    def stop(self) -> None:
        """Stop sampling."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    @property
    def last_ms(self) -> float:
        """The latest lag, in milliseconds."""
        return self.samples[-1] * 1000 if self.samples else 0.0

    @property
    def max_ms(self) -> float:
        """The worst lag of the window (the last ~5 s), in milliseconds."""
        return max(self.samples, default=0.0) * 1000


class ServerCommands(ScreenCommands):
    """The server screen's palette: its keys (start, stop, pause, step, reload, copy...)."""


class ServerScreen(WorkbenchScreen):
    """The served agent, the rollouts trainers send to it, and the process's log."""

    COMMANDS: ClassVar[set] = {ServerCommands}

    TITLE = "Server"
    AUTO_FOCUS = "#server-rollouts"
    STATUS_INTERVAL_S = 1.0

    BINDINGS = [
        Binding(
            "s",
            "start_server",
            "Start",
            tooltip="Serve the agent on the host, port and key above (enter in the form too)",
            id="server.start_server",
        ),
        Binding(
            "x",
            "stop_server",
            "Stop",
            tooltip="Stop the server (paused rollouts resume)",
            id="server.stop_server",
        ),
        Binding(
            "p",
            "toggle_pause",
            "Pause",
            tooltip="Pause the highlighted rollout at its next LLM answer (again: don't)",
            id="server.toggle_pause",
        ),
        Binding(
            "d",
            "step_rollout",
            "Step",
            tooltip="Step the highlighted rollout in the debugger (also enter)",
            id="server.step_rollout",
        ),
        Binding(
            "c",
            "continue_rollout",
            "Continue",
            tooltip="Release the highlighted rollout and stop pausing it",
            id="server.continue_rollout",
        ),
        Binding(
            "a",
            "abort_rollout",
            "Abort",
            tooltip="End the highlighted rollout as ERROR",
            id="server.abort_rollout",
        ),
        Binding(
            "o",
            "open_rollout",
            "Trajectory",
            show=False,
            tooltip="Show the highlighted rollout's messages and result",
            id="server.open_rollout",
        ),
        Binding(
            "P",
            "toggle_pause_all",
            "Pause all",
            show=False,
            tooltip="Pause every rollout at its next LLM answer (again: stop)",
            id="server.toggle_pause_all",
        ),
        Binding(
            "r",
            "reload_agent",
            "Reload",
            tooltip="Re-import the agent module",
            id="server.reload_agent",
        ),
        Binding(
            "w",
            "toggle_watch",
            "Watch",
            show=False,
            tooltip="Reload the agent when a file next to it is saved: on/off",
            id="server.toggle_watch",
        ),
        Binding(
            "g",
            "new_key",
            "New key",
            show=False,
            tooltip="Generate a server API key",
            id="server.new_key",
        ),
        Binding(
            "u",
            "copy_url",
            "Copy URL",
            show=False,
            tooltip="Copy the server URL",
            id="server.copy_url",
        ),
        Binding(
            "k",
            "copy_key",
            "Copy key",
            show=False,
            tooltip="Copy the server API key",
            id="server.copy_key",
        ),
        Binding(
            "ctrl+l",
            "clear_log",
            "Clear log",
            show=False,
            tooltip="Empty the log pane",
            id="server.clear_log",
        ),
        Binding(
            "escape",
            "focus_rollouts",
            "Rollouts",
            show=False,
            tooltip="Leave the form for the rollouts list",
            id="server.focus_rollouts",
        ),
    ]

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 9000,
        api_key: str | None = None,
        watch: bool = True,
    ) -> None:
        super().__init__()
        self.default_host, self.default_port, self.default_key = host, port, api_key or ""
        self.watch_enabled = watch
        self.lag = LoopLagMeter()
        self.url: str | None = None
        self.remote_health: dict[str, Any] | None = None
        self.reloads = 0
        self._busy: str | None = None  # "starting" | "stopping" while one runs
        self._dirty: set[str] = set()
        self._flush_scheduled = False
        self._status_shown = 0.0
        self._ticker: Timer | None = None
        self._watch_stop = asyncio.Event()
        self._watch_task: asyncio.Task | None = None
        self._live: LiveRollouts | None = None  # the workspace's, while this screen follows it
        self._previous_on_change: Any = None

    # ---- composition and typed access -------------------------------------------------------

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="server-form"):
            yield Label("host")
            yield Input(self.default_host, id="server-host", compact=True)
            yield Label("port")
            yield Input(str(self.default_port), id="server-port", type="integer", compact=True)
            yield Label("API key")
            yield Input(
                self.default_key,
                placeholder="none: local mode",
                id="server-key",
                compact=True,
            )
        yield Static(id="server-status")
        yield RowTable(
            _COLUMNS,
            self._row_cells,
            empty_text="No rollouts yet: start the server (s) and point a trainer at its URL.",
            id="server-rollouts",
        )
        yield LogPane(id="server-log")

    @property
    def table(self) -> RowTable:
        """The live rollouts table."""
        return self.query_one("#server-rollouts", RowTable)

    @property
    def log_pane(self) -> LogPane:
        """The log pane (uvicorn, litellm, the agent, prints)."""
        return self.query_one("#server-log", LogPane)

    @property
    def key_input(self) -> Input:
        """The API key field of the form (empty: local mode)."""
        return self.query_one("#server-key", Input)

    @property
    def remote(self) -> bool:
        """Whether the workbench is attached to a remote server (``--url``)."""
        ws = self.workspace
        return ws is not None and ws.remote is not None

    @property
    def serving(self) -> bool:
        """Whether the embedded server is up."""
        ws = self.workspace
        return ws is not None and ws.server is not None

    def on_mount(self) -> None:
        """Start the lag meter and the status ticker; follow the workspace once it is open."""
        self.lag.start()
        self._ticker = self.set_interval(self.STATUS_INTERVAL_S, self._tick, name="server-status")
        if self.workspace is None:
            self._show_status()

    def workspace_opened(self, workspace: Workspace) -> None:
        """Follow a (re)opened workspace: its live rollouts, its server, its agent's folder."""
        self._unfollow()
        live = self._live = workspace.live
        # LiveRollouts has one on_change slot: take it, and give it back on unmount.
        self._previous_on_change = live.on_change
        live.on_change = self._rollout_changed
        self.table.clear()
        self._dirty = set(live.rollouts)
        self._flush_rollouts()
        self.url = workspace.server.url if workspace.server is not None else None
        remote = workspace.remote
        # Attached to a remote server (--url): nothing here can be served or reloaded.
        self.query_one("#server-form").display = remote is None
        if remote is not None:
            self.table.empty_text = (
                f"The rollouts that trainers send there ({remote.url}) are not listed here: "
                "a remote server is seen only through its /health."
            )
            self.table.refresh()
        self.refresh_bindings()
        if self.watch_enabled and remote is None:
            self.watch_agent()
        self._show_status()

    def _unfollow(self) -> None:
        live, self._live = self._live, None
        if live is not None and live.on_change == self._rollout_changed:
            live.on_change = self._previous_on_change

    def on_unmount(self) -> None:
        """Stop following (the server itself keeps running; the app stops it at exit)."""
        self._unfollow()
        self.lag.stop()
        self._stop_watching()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The footer offers Start or Stop, and the rollout keys once there are rollouts.

        Attached to a remote server, nothing that serves or reloads an agent is offered.
        """
        if action in _SERVING_ACTIONS and self.remote:
            return False
        if action == "start_server":
            return not self.serving
        if action == "stop_server":
            return self.serving
        if action in ("toggle_pause", "step_rollout", "continue_rollout", "abort_rollout"):
            return self.is_mounted and self.table.row_count > 0
        return True

    # ---- status --------------------------------------------------------------------------------

    def _tick(self) -> None:
        """Once a second: elapsed times, health, counts, lag."""
        live = self._live
        if live is None:
            self._show_status()
            return
        # Rollouts still running: their elapsed time moves even when nothing happens.
        self._dirty.update(rid for rid, r in live.rollouts.items() if not r.done)
        # LiveRollouts drops the oldest beyond its cap without an event: drop their rows too.
        if self.table.row_count > len(live.rollouts):
            for key in self.table.keys:
                if key not in live.rollouts:
                    self.table.remove_row(key)
        self._flush_rollouts()
        if self.remote:
            self.poll_remote_health()
        self._show_status()

    def status_lines(self) -> tuple[Text, Text]:
        """The two status lines: where the server is, then its health and the loop's lag."""
        ws = self.workspace
        first = Text(no_wrap=True, overflow="ellipsis")
        second = Text(no_wrap=True, overflow="ellipsis")
        lag = self.lag
        lag_text = (
            f"loop lag {lag.last_ms:.0f} ms (max {lag.max_ms:.0f})",
            "red" if lag.max_ms >= 100 else "",
        )
        if ws is None:
            first.append("opening the workspace…", "italic")
            second.append(*lag_text)
            return first, second
        if self.remote:
            assert ws.remote is not None
            first.append("◆ attached to ", "bold")
            first.append(ws.remote.url, "bold cyan")
            first.append(" (--url): batches and stepping run there; nothing is served here")
            health = self.remote_health
        elif self._busy:
            first.append(f"◌ {self._busy}…", "yellow")
            health = None
        elif self.serving and self.url:
            first.append("● serving ", "bold green")
            first.append(self.url, "bold")
            key = ws.server_api_key
            first.append(" · key ")
            first.append(key or "none (local mode)", "bold" if key else "dim")
            first.append(" · u/k copy", "dim")
            health = ws.server_health()
        else:
            first.append("○ stopped", "dim")
            first.append(" · s serves the agent on the host and port above")
            health = None
        if health:
            # held, not state: a rollout marked for pausing runs until its next answer.
            paused = sum(1 for r in ws.live.rollouts.values() if r.held)
            second.append(f"health {health.get('status', '?')}", "green")
            second.append(
                f" · running {health.get('running_rollouts', health.get('active_rollouts', 0))}"
                f" · queued {health.get('queued_rollouts', 0)}"
                f" · completed {health.get('completed_rollouts', 0)}"
                f" · paused {paused} · "
            )
        second.append(*lag_text)
        if ws.live.pause_all:
            second.append(" · pausing every rollout", "bold cyan")
        if not self.remote:
            watched = "watching" if self.watch_enabled and ws.agent_folder() else "not watching"
            second.append(f" · agent {ws.agent_name} ({watched})")
        return first, second

    def _show_status(self) -> None:
        self._status_shown = time.monotonic()
        first, second = self.status_lines()
        # Two fixed lines: no layout pass (a layout repaints the whole screen).
        self.query_one("#server-status", Static).update(
            Text("\n").join([first, second]), layout=False
        )

    @work(exclusive=True, exit_on_error=False, group="server-remote-health")
    async def poll_remote_health(self) -> None:
        """GET the remote server's /health (a remote server is observed only through it)."""
        target = self.workspace.remote if self.workspace else None
        if target is None or target.client is None:
            return
        try:
            response = await target.client.get(f"{target.url}/health", timeout=2.0)
            self.remote_health = response.json() if response.status_code == 200 else None
        except Exception as exc:  # unreachable: show it, try again next tick
            self.remote_health = {"status": f"unreachable ({type(exc).__name__})"}
        self._show_status()

    # ---- the live rollouts --------------------------------------------------------------------

    def _rollout_changed(self, rollout: LiveRollout) -> None:
        # Called on the loop by every hook event: mark it, and flush once per burst.
        self._dirty.add(rollout.rollout_id)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.call_later(self._flush_rollouts)

    def _flush_rollouts(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, set()
        if self._live is None:
            return
        rollouts = self._live.rollouts
        table = self.table
        for rid in dirty:
            rollout = rollouts.get(rid)
            if rollout is None:
                if rid in table:
                    table.remove_row(rid)
                continue
            if rid in table:
                table.touch(rid)
            else:
                table.add_row(rid)
                if table.row_count == 1:
                    self.refresh_bindings()  # the rollout keys apply now
        # The paused and in-flight counts follow the rows, at most four times a second: the
        # counts scan every rollout, and a busy trainer changes rows thousands of times a second.
        if dirty and time.monotonic() - self._status_shown >= 0.25:
            self._show_status()

    def _row_cells(self, rid: str) -> list[Text]:
        # The table asks for the cells of the rows it draws (visible ones only).
        rollout = self._live.rollouts.get(rid) if self._live is not None else None
        if rollout is None:
            return [Text(rid), *(Text("") for _ in _COLUMNS[1:])]
        return self._cells(rollout)

    @staticmethod
    def _cells(rollout: LiveRollout) -> list[Text]:
        state = "paused" if rollout.held else rollout.state
        reward = "—" if rollout.reward is None else f"{rollout.reward:.3g}"
        return [
            Text(rollout.rollout_id, no_wrap=True, overflow="ellipsis"),
            Text(state, style=_STATE_STYLES.get(state, "")),
            Text(str(rollout.turns), justify="right"),
            Text(f"{rollout.elapsed_s:.1f}s", justify="right"),
            Text(reward, justify="right"),
            Text(" ".join((rollout.error or "").split()), style="red", no_wrap=True),
        ]

    def highlighted(self) -> LiveRollout | None:
        """The rollout under the cursor."""
        key = self.table.cursor_key
        if key is None or self._live is None:
            return None
        return self._live.rollouts.get(key)

    def _chosen(self) -> LiveRollout | None:
        rollout = self.highlighted()
        if rollout is None or self._live is None:
            self.notify("no rollout selected: trainers' rollouts appear here", timeout=3)
        return rollout

    def action_toggle_pause(self) -> None:
        """Pause the highlighted rollout at its next LLM answer (again: stop pausing it)."""
        rollout = self._chosen()
        if rollout is None:
            return
        live = self._live
        assert live is not None
        rid = rollout.rollout_id
        if rollout.done:
            self.notify(f"{rid} has finished", timeout=3)
        elif rollout.held:
            self.notify(f"{rid} is paused: d steps it, c continues it, a aborts it", timeout=3)
        elif rid in live.pause_requested:
            live.pause_requested.discard(rid)
            self.notify(f"{rid} will not pause", timeout=2)
        else:
            live.pause(rid)
            self.notify(f"{rid} pauses at its next LLM answer; d steps it", timeout=3)

    def action_toggle_pause_all(self) -> None:
        """Pause every rollout at its next LLM answer (again: stop)."""
        live = self._live
        if live is None:
            return
        live.pause_all = not live.pause_all
        self.notify(
            "pausing every rollout at its next LLM answer"
            if live.pause_all
            else "not pausing every rollout",
            timeout=2,
        )
        self._show_status()

    async def action_step_rollout(self) -> None:
        """Open the highlighted rollout in the step debugger (it pauses at its next answer)."""
        rollout = self._chosen()
        if rollout is None:
            return
        if rollout.done:
            self.action_open_rollout()
            return
        assert self._live is not None
        from osmosis_workbench.engine.live import LiveStepSession

        session = LiveStepSession(self._live, rollout.rollout_id)
        # Ask for the pause now, not when the debugger gets to it: the rollout keeps running
        # meanwhile and could pass its next answer. (The debugger's own start() is harmless.)
        await session.start()
        self.post_message(SessionStepRequested(session))

    def action_open_rollout(self) -> None:
        """Show the trajectory of the highlighted rollout (finished or as far as it got)."""
        rollout = self._chosen()
        if rollout is None:
            return
        reward = "—" if rollout.reward is None else f"{rollout.reward:.3g}"
        title = f"{rollout.rollout_id} · {rollout.state} · reward {reward}"
        self.post_message(TrajectoryRequested(rollout.outcome(), title))

    @on(RowTable.RowSelected, "#server-rollouts")
    async def _row_selected(self) -> None:
        await self.action_step_rollout()

    def action_continue_rollout(self) -> None:
        """Release the highlighted rollout and stop pausing it."""
        rollout = self._chosen()
        if rollout is not None and self._live and not self._live.continue_(rollout.rollout_id):
            self.notify(f"{rollout.rollout_id} is not paused", timeout=2)

    def action_abort_rollout(self) -> None:
        """End the highlighted rollout as ERROR (cancelled), paused or not."""
        rollout = self._chosen()
        ws = self.workspace
        if rollout is None or rollout.done or ws is None:
            return
        # Held at the gate or not (waiting for the model, in a tool, queued): it ends now.
        if not ws.live.cancel(rollout.rollout_id, "aborted from the workbench"):
            self.notify(f"{rollout.rollout_id} could not be cancelled", severity="warning")

    def action_focus_rollouts(self) -> None:
        """Leave the form: keys act on the screen again."""
        self.table.focus()

    # ---- starting and stopping ----------------------------------------------------------------

    def _form(self) -> tuple[str, int, str | None] | None:
        host = self.query_one("#server-host", Input).value.strip() or "127.0.0.1"
        raw_port = self.query_one("#server-port", Input).value.strip()
        try:
            port = int(raw_port)
        except ValueError:
            port = -1
        if not 0 <= port <= 65535:
            self.notify(
                f"port {raw_port!r} is not a port number: give 0-65535 (0: any free port)",
                title="Server not started",
                severity="error",
            )
            return None
        key = self.key_input.value.strip() or None
        return host, port, key

    @on(Input.Submitted)
    def _form_submitted(self) -> None:
        self.table.focus()
        self.action_start_server()

    def action_start_server(self) -> None:
        """Serve the agent on the form's host and port (a key: trainers must send it)."""
        if self._ready_workspace("start the server") is None:
            return
        if self.remote:
            self.notify(
                "attached to a remote server with --url: there is nothing to serve here",
                severity="warning",
            )
            return
        if self._busy:
            self.notify(f"the server is {self._busy}", timeout=2)
            return
        if self.serving:
            self.notify(f"already serving at {self.url}: x stops it", timeout=3)
            return
        form = self._form()
        if form is not None:
            self._busy = "starting"
            self._show_status()
            self.start_server(*form)

    @work(exit_on_error=False, group="server-control")
    async def start_server(self, host: str, port: int, api_key: str | None) -> None:
        """Start the embedded server; a busy port becomes an error notification."""
        ws = self.workspace
        assert ws is not None
        try:
            self.url = await ws.start_server(host=host, port=port, api_key=api_key)
        except Exception as exc:  # ServerStartError (port busy...), a failing app start-up
            self.notify(str(exc), title="Server not started", severity="error", timeout=8)
            return
        finally:
            self._busy = None
            self.refresh_bindings()
            self._show_status()
        logger.info("serving %s at %s", ws.agent_name, self.url)
        self.notify(f"serving at {self.url}", title="Server started", timeout=3)

    def action_stop_server(self) -> None:
        """Stop the server: paused rollouts are released, running ones drain."""
        if self._busy:
            self.notify(f"the server is {self._busy}", timeout=2)
            return
        if not self.serving:
            self.notify("the server is not running", timeout=2)
            return
        self._busy = "stopping"
        self._show_status()
        self.stop_server()

    @work(exit_on_error=False, group="server-control")
    async def stop_server(self) -> None:
        """Stop the embedded server (a paused rollout would hold the drain until its timeout)."""
        ws = self.workspace
        assert ws is not None
        live = ws.live
        live.pause_all = False
        for rid, rollout in list(live.rollouts.items()):
            if not rollout.done:
                live.continue_(rid)
        try:
            await ws.stop_server()
        finally:
            self._busy = None
            self.refresh_bindings()
            self.url = None
            self._show_status()
        self.notify("server stopped", timeout=2)

    def action_new_key(self) -> None:
        """Put a new random API key in the form (used at the next start)."""
        self.key_input.value = new_api_key()
        note = ": restart the server (x, s) to use it" if self.serving else ""
        self.notify(f"new API key{note}", timeout=3)

    def action_copy_url(self) -> None:
        """Copy the server's URL to the clipboard."""
        ws = self.workspace
        url = ws.remote.url if ws is not None and ws.remote is not None else self.url
        if not url:
            self.notify("the server is not running", timeout=2)
            return
        self.app.copy_to_clipboard(url)
        self.notify(f"copied {url}", timeout=2)

    def action_copy_key(self) -> None:
        """Copy the server's API key to the clipboard."""
        key = self.workspace.server_api_key if self.workspace and self.serving else None
        if not key:
            self.notify("no API key: the server runs in local mode (or is stopped)", timeout=3)
            return
        self.app.copy_to_clipboard(key)
        self.notify("copied the API key", timeout=2)

    # ---- reloading the agent ------------------------------------------------------------------

    def action_reload_agent(self) -> None:
        """Re-import the agent's module (new rollouts use the new code)."""
        if self._ready_workspace("reload the agent") is None:
            return
        if self.remote:
            self.notify(
                "attached to a remote server with --url: no agent module to reload",
                severity="warning",
            )
            return
        self.reload_agent()

    @work(exclusive=True, exit_on_error=False, group="agent-reload")
    async def reload_agent(self) -> bool:
        """Reload; a broken module keeps the old agent and shows the import error."""
        ws = self.workspace
        if ws is None:
            return False
        try:
            name = await ws.reload_agent()
        except Exception as exc:  # ImportFromStringError, a syntax error in the user's code
            logger.error("agent reload failed: %s", exc)
            self.notify(str(exc), title="Agent not reloaded", severity="error", timeout=8)
            return False
        self.reloads += 1
        refreeze_long_lived_objects()  # the old module was frozen with the rest: let it go
        # A served agent restarts on the same host and port; its URL may still differ (port 0).
        if ws.server is not None:
            self.url = ws.server.url
        logger.info("reloaded agent %s", name)
        self.notify(f"reloaded agent {name}", timeout=2)
        self._show_status()
        return True

    def action_toggle_watch(self) -> None:
        """Turn reload-on-save on or off."""
        self.watch_enabled = not self.watch_enabled
        if self.watch_enabled:
            self.watch_agent()
        else:
            self._stop_watching()
        self.notify(f"reload on save {'on' if self.watch_enabled else 'off'}", timeout=2)
        self._show_status()

    def watch_agent(self) -> None:
        """Reload the agent whenever a Python file next to it changes (until toggled off)."""
        self._stop_watching()
        folder = self.workspace.agent_folder() if self.workspace else None
        if folder is not None:
            # A plain task, not a worker: it never ends, and tests wait for workers to end.
            self._watch_task = asyncio.create_task(self._watch(folder), name="agent-watch")

    def _stop_watching(self) -> None:
        self._watch_stop.set()
        if self._watch_task is not None:
            self._watch_task.cancel()
            self._watch_task = None

    async def _watch(self, folder: Path) -> None:
        from watchfiles import PythonFilter, awatch

        self._watch_stop = stop = asyncio.Event()
        try:
            # Python files only (editors' swap files and __pycache__ are noise), and a short
            # debounce: a save that writes several files reloads once.
            async for changes in awatch(
                folder, watch_filter=PythonFilter(), stop_event=stop, debounce=200, step=50
            ):
                names = sorted({Path(path).name for _, path in changes})
                logger.info("changed: %s; reloading the agent", ", ".join(names))
                started = time.perf_counter()
                try:
                    await self.reload_agent().wait()
                except (WorkerCancelled, WorkerFailed):
                    continue  # a newer reload replaced it, or the failure was reported
                logger.info("reload took %.0f ms", (time.perf_counter() - started) * 1000)
        except asyncio.CancelledError:
            raise
        except Exception:  # the watcher itself failed (folder removed...): log, stop watching
            logger.exception("watching %s for changes failed", folder)

    def action_clear_log(self) -> None:
        """Empty the log pane."""
        self.log_pane.clear()
