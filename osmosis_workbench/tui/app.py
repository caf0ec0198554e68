"""The workbench app: a thin shell that opens the workspace and hosts three modes.

``make_app`` builds it for the CLI and the tests. The first screen appears before the engine
is imported (fastapi, pydantic and the agent module cost about 1.5 s here): a worker imports
and opens the ``Workspace`` afterwards, then hands it to every screen (``set_workspace``).
Modes, switched with 1/2/3/4: "debug" (the step debugger), "dataset", "server" and "runs"
(their screens are imported only when first shown).

Screens ask for things with the messages of ``tui/messages.py`` (step a row, step a live
rollout, show a trajectory, copy, switch the model, retry, a crash); the app answers them
here. The app also owns what lasts across runs: the theme and the key overrides of the
settings file (``tui/settings.py``), and the command palette's app-wide commands
(``tui/commands.py``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import importlib
import logging
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.theme import Theme
from textual.worker import Worker, WorkerState

from osmosis_workbench.tui.clipboard import CopyResult, copy_with_tool, send_osc52
from osmosis_workbench.tui.commands import WorkbenchCommands
from osmosis_workbench.tui.debugger import DebuggerScreen
from osmosis_workbench.tui.gc_control import (
    AfterFrameCollections,
    freeze_long_lived_objects,
    refreeze_long_lived_objects,
    thaw_long_lived_objects,
)
from osmosis_workbench.tui.help import HelpScreen, Section, binding_rows
from osmosis_workbench.tui.log_pane import install_log_routing, uninstall_log_routing
from osmosis_workbench.tui.loop_watchdog import LoopBlock, LoopWatchdog
from osmosis_workbench.tui.messages import (
    CopyRequested,
    CrashReported,
    ModelSwitchRequested,
    RowStepRequested,
    RunsRequested,
    SessionStepRequested,
    TrajectoryRequested,
    WorkspaceRetryRequested,
)
from osmosis_workbench.tui.screen_base import WorkbenchScreen
from osmosis_workbench.tui.settings import (
    DEFAULT_THEME,
    Settings,
    load_settings,
    save_theme,
    settings_path,
)
from osmosis_workbench.tui.widgets import AnswerComposer, CrashDialog, MessageList
from osmosis_workbench.tui.widgets.dialogs import EditResponseDialog
from osmosis_workbench.tui.widgets.search_bar import SearchBar

if TYPE_CHECKING:
    from osmosis_workbench.engine.config import EngineConfig
    from osmosis_workbench.engine.journal import JournalEntry
    from osmosis_workbench.engine.models import ModelBackend
    from osmosis_workbench.engine.outcome import RolloutOutcome
    from osmosis_workbench.engine.runs import RunInfo
    from osmosis_workbench.engine.stepping import SteppedRollout
    from osmosis_workbench.engine.workspace import Workspace

logger = logging.getLogger("osmosis_workbench.tui")

#: Where tracebacks of crashes are kept (the terminal never shows one).
CRASH_LOG = Path(".osmosis") / "workbench-crash.log"

#: The mode switch keys, shared by the bindings and the help screen.
MODES: dict[str, tuple[str, str]] = {
    "debug": ("1", "Debugger"),
    "dataset": ("2", "Dataset"),
    "server": ("3", "Server"),
    "runs": ("4", "Runs"),
}
#: The footer shows the mode keys as one entry, so 100 columns hold every key.
_MODE_GROUP = Binding.Group("Debug/Data/Server/Runs", compact=True)
#: Each theme's counterpart of the other brightness, for "Toggle dark/light theme".
THEME_PAIRS = {
    "textual-dark": "textual-light",
    "catppuccin-mocha": "catppuccin-latte",
    "solarized-dark": "solarized-light",
    "rose-pine": "rose-pine-dawn",
    "atom-one-dark": "atom-one-light",
    "ansi-dark": "ansi-light",
}


def short_model_name(name: str) -> str:
    """A model's name for the header: a file-backed model by its file name alone.

    ``replay:sample_project/cassette.jsonl`` reads ``replay:cassette.jsonl``, so the header
    fits at 80 columns; the full path is in the help and the run's record.
    """
    kind, sep, rest = name.partition(":")
    if sep and ("/" in rest or "\\" in rest) and "://" not in name:
        return f"{kind}:{Path(rest).name}"
    return name


class WorkbenchApp(App[None]):
    """One workspace, three modes: step debugger, dataset, server."""

    CSS_PATH = "workbench.tcss"
    TITLE = "Osmosis workbench"
    DEFAULT_MODE = "debug"

    COMMANDS: ClassVar[set] = {*App.COMMANDS, WorkbenchCommands}

    BINDINGS: ClassVar[list[BindingType]] = [
        *(
            Binding(
                f"{key},f{key}",
                f"switch_mode('{mode}')",
                label,
                key_display=key,
                tooltip=f"The {label.lower()} screen",
                group=_MODE_GROUP,
                id=f"app.{mode}",
            )
            for mode, (key, label) in MODES.items()
        ),
        Binding(
            "question_mark", "help", "Help", key_display="?", tooltip="This help", id="app.help"
        ),
        # Declared here (Textual adds a hidden one otherwise): the key bar always shows it.
        Binding(
            "ctrl+p",
            "command_palette",
            "Palette",
            priority=True,
            tooltip="Every command of this screen and the workbench, with its key",
            id="app.palette",
        ),
        Binding(
            "ctrl+q",
            "quit",
            "Quit",
            priority=True,
            tooltip="Abort a running rollout and leave the workbench",
            id="app.quit",
        ),
    ]

    def __init__(
        self,
        config: EngineConfig,
        *,
        row: int | None = None,
        backend: ModelBackend | None = None,
        serve_port: int = 9000,
        watch_agent: bool = True,
        settings: Settings | None = None,
        settings_file: Path | None = None,
    ) -> None:
        super().__init__()
        #: What the workspace is built from (import-light: building the app imports no engine).
        self.config = config
        #: The settings file (theme, keymap) and what it said when the app was built.
        self.settings_file = settings_file
        self.settings = settings or Settings()
        #: The key overrides in force (binding id -> keys), shown by the help too.
        self.keymap: dict[str, str] = dict(self.settings.keymap)
        #: The config to go back to if a model switch fails to open.
        self._config_before_switch: EngineConfig | None = None
        self.start_row = row
        self.backend = backend
        self.workspace: Workspace | None = None
        self.dataset_error: str | None = None
        self._serve_port = serve_port
        self._watch_agent = watch_agent
        #: The screens of the modes shown so far (each is told when the workspace opens).
        self._mode_screens: dict[str, WorkbenchScreen] = {}
        self._wrote_over_screen = False
        self.loop_watchdog: LoopWatchdog | None = None
        self._first_frame = asyncio.Event()
        #: Full garbage collections run after a frame, not between a key and its frame.
        self.gc_schedule = AfterFrameCollections(self.call_after_refresh)
        for mode in MODES:
            self.add_mode(mode, functools.partial(self._mode_screen, mode))

    # ---- the screens --------------------------------------------------------------------------

    @property
    def debugger(self) -> DebuggerScreen:
        """The step debugger (the "debug" mode's screen)."""
        screen = self._mode_screen("debug")
        assert isinstance(screen, DebuggerScreen)
        return screen

    def _mode_screen(self, mode: str) -> WorkbenchScreen:
        """The screen of ``mode``, built on first use and kept (and given the workspace)."""
        screen = self._mode_screens.get(mode)
        if screen is None:
            screen = self._mode_screens[mode] = self._build_screen(mode)
            if self.workspace is not None:
                screen.set_workspace(self.workspace, self.dataset_error)
        return screen

    def _build_screen(self, mode: str) -> WorkbenchScreen:
        if mode == "debug":
            return DebuggerScreen(opening=self.config.module or self.config.url or "the workspace")
        # Imported when first shown: they import more of the engine; keep it off start-up.
        if mode == "dataset":
            dataset = importlib.import_module("osmosis_workbench.tui.dataset_screen")
            return dataset.DatasetScreen(
                concurrency=self.config.concurrency, attempts=self.config.attempts
            )
        if mode == "runs":
            runs = importlib.import_module("osmosis_workbench.tui.runs_screen")
            return runs.RunsScreen()
        server = importlib.import_module("osmosis_workbench.tui.server_screen")
        return server.ServerScreen(port=self._serve_port, watch=self._watch_agent)

    # ---- start and stop -----------------------------------------------------------------------

    def on_mount(self) -> None:
        self._apply_settings()
        install_log_routing(self)
        # Agent code that blocks the shared loop freezes everything: notice it and say where.
        self.loop_watchdog = LoopWatchdog(
            asyncio.get_running_loop(),
            on_blocked=self._loop_was_blocked,
            on_still_blocked=self._loop_is_blocked,
        )
        self.loop_watchdog.start()
        if self.gc_schedule.install():
            self.set_interval(0.1, self.gc_schedule.tick, name="garbage collection")
        # The worker starts now (so tests can wait for it) but imports the engine only after
        # the first frame: on a thread, the import would still compete for the GIL with it.
        self._first_frame = asyncio.Event()
        self.call_after_refresh(self._first_frame.set)
        self._open_workspace()

    # ---- settings: theme and keys --------------------------------------------------------------

    def _apply_settings(self) -> None:
        """The file's theme and key overrides; what it got wrong, said once."""
        settings = self.settings
        theme = settings.theme or DEFAULT_THEME
        problems = list(settings.problems)
        if theme not in self.available_themes:
            problems.append(
                f"{self.settings_file}: there is no theme {theme!r}; pick one with ctrl+p, "
                f"Theme (it is saved there)"
            )
            theme = DEFAULT_THEME
        self.theme = theme
        if self.keymap:
            self.set_keymap(self.keymap)
        for problem in problems:
            self.notify(problem, title="Settings", severity="warning", timeout=10, markup=False)
        # From now on a theme the user picks is remembered (set above: not a choice).
        self.theme_changed_signal.subscribe(self, self._theme_changed)

    def _theme_changed(self, theme: Theme) -> None:
        if self.settings_file is not None and theme.name != self.settings.theme:
            self.settings.theme = theme.name
            self._save_theme(self.settings_file, theme.name)

    @work(thread=True, group="settings", exit_on_error=False, description="save the theme")
    def _save_theme(self, path: Path, theme: str) -> None:
        try:
            save_theme(path, theme)
        except OSError as exc:
            self.call_from_thread(
                self.notify,
                f"Could not remember the theme in {path}: {exc}",
                title="Settings",
                severity="warning",
                markup=False,
            )

    def action_toggle_theme(self) -> None:
        """Switch between the theme's dark and light versions (remembered)."""
        pairs = {**THEME_PAIRS, **{light: dark for dark, light in THEME_PAIRS.items()}}
        fallback = "textual-light" if self.current_theme.dark else "textual-dark"
        self.theme = pairs.get(self.theme, fallback)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Textual's palette commands the workbench keeps: theme, screenshot (not its key
        panel: ``?`` is the help here; not quit: it is a key of the workbench's own)."""
        yield SystemCommand(
            "Theme", "Pick a theme (remembered across runs)", self.action_change_theme
        )
        yield SystemCommand(
            "Toggle dark/light theme",
            "The current theme's dark or light version (remembered)",
            self.action_toggle_theme,
        )
        for command in super().get_system_commands(screen):
            if command.title == "Screenshot":
                yield command

    def reopen_workspace(self) -> None:
        """Open the workspace again (after a failure, once the cause is fixed)."""
        self.debugger.workspace_reopening()
        self._open_workspace()

    @work(group="workspace", exclusive=True, exit_on_error=False, description="open the workspace")
    async def _open_workspace(self) -> None:
        """Import the engine (off the loop), open the workspace, read the dataset."""
        await self._first_frame.wait()
        old, self.workspace = self.workspace, None
        reopening = old is not None
        if old is not None and (problem := await _close_quietly(old)):
            logger.error("closing the previous workspace failed:\n%s", problem)
        workspace = None
        try:
            engine = await asyncio.to_thread(
                importlib.import_module, "osmosis_workbench.engine.workspace"
            )
            workspace = engine.Workspace(self.config, backend=self.backend)
            await workspace.open()
        except Exception as exc:
            if workspace is not None:
                await _close_quietly(workspace)
            self._workspace_failed(exc)
            return
        self.workspace = workspace
        self._config_before_switch = None
        self.dataset_error = None
        try:
            await workspace.load_dataset()
        except Exception as exc:  # a bad file must not stop the debugger or the server
            self.dataset_error = f"Could not read the dataset {self.config.dataset}: {exc}"
            self.notify(
                self.dataset_error, title="Dataset", severity="error", timeout=10, markup=False
            )
        self.sub_title = f"{workspace.agent_name} · {short_model_name(workspace.model_name)}"
        # What is alive now (Textual, the engine, the agent, the rows) lives as long as the
        # app: out of every later full collection, and so out of the one a long trajectory or
        # a batch does before it freezes its own data (at a batch's start, 120 ms without
        # this). Young generations only: a full collection here took 45-120 ms. Opened again,
        # the previous workspace was frozen with the rest: a full collection lets it go.
        if reopening:
            refreeze_long_lived_objects()
        else:
            freeze_long_lived_objects(full_collection=False)
        for screen in self._mode_screens.values():
            screen.set_workspace(workspace, self.dataset_error)
        if self.start_row is not None:
            row, self.start_row = self.start_row, None
            self.open_debugger(row)

    def _workspace_failed(self, exc: Exception) -> None:
        from server_core.loader import ImportFromStringError

        previous, self._config_before_switch = self._config_before_switch, None
        if previous is not None:
            # A model the user switched to does not open: say why, and go back to the last.
            self.notify(
                f"{exc}. Back on {previous.model}.",
                title=f"Could not switch to --model {self.config.model}",
                severity="error",
                timeout=15,
                markup=False,
            )
            self.config = previous
            self.reopen_workspace()
            return

        # Errors a user causes (a wrong -m, a missing model, a busy port) need their message,
        # not a traceback; anything else is a bug and gets the traceback too.
        if isinstance(exc, ImportFromStringError | ValueError | OSError | ImportError):
            message = str(exc)
        else:
            message = "".join(traceback.format_exception(exc))
        self.debugger.workspace_failed(message)
        self.notify(
            str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            title="Could not open the workspace",
            severity="error",
            timeout=10,
            markup=False,
        )

    async def action_quit(self) -> None:
        """Abort a rollout in progress, close the workspace, exit."""
        # Closed here, while the app runs: what the servers log as they stop still goes to
        # the log pane (once the app has stopped, records would reach the terminal).
        await self._close_workspace()
        self.exit()

    async def on_unmount(self) -> None:
        # Other ways out (a test's end, a crash) close the workspace here.
        if self.loop_watchdog is not None:
            self.loop_watchdog.stop()
        self.gc_schedule.uninstall()
        await self._close_workspace()
        thaw_long_lived_objects()
        uninstall_log_routing(self)

    async def _close_workspace(self) -> None:
        # A rollout held at its gate would keep the server's shutdown waiting: end it first.
        debugger = self._mode_screens.get("debug")
        if isinstance(debugger, DebuggerScreen):
            debugger.detach("the workbench is closing")
        workspace, self.workspace = self.workspace, None
        if workspace is not None and (problem := await _close_quietly(workspace)):
            append_crash_log(f"== closing the workspace failed\n{problem}")

    # ---- a blocked event loop -----------------------------------------------------------------

    def _rollout_label(self, rollout_id: str | None, *, with_id: bool = True) -> str:
        """``row 3 (rollout <id>)`` for a dataset row's rollout, else the rollout id."""
        if rollout_id is None:
            return "the agent"
        workspace = self.workspace
        trainer = workspace.trainer if workspace is not None else None
        if trainer is not None:
            run = trainer.runs.get(rollout_id) or trainer.finished.get(rollout_id)
            if run is not None and run.label:
                return f"{run.label} (rollout {rollout_id})" if with_id else run.label
        return f"rollout {rollout_id}"

    def _loop_is_blocked(self, block: LoopBlock) -> None:
        """On the watchdog's thread, while the loop is held: one line on the terminal itself.

        Nothing on the loop can draw now; the driver's writer thread still writes. The app
        redraws over it once the loop is free.
        """
        driver = self._driver
        if driver is None or self.is_headless or not (block.rollout_id or block.in_user_code):
            return
        width, height = self.size
        who = self._rollout_label(block.rollout_id, with_id=False)
        text = (
            f" ⚠ frozen {block.seconds:.0f} s: {who} runs blocking code at {block.where};"
            " the workbench resumes when it returns "
        )
        text = text[:width].ljust(width)
        self._wrote_over_screen = True
        # Save the cursor, draw the bottom line in black on yellow, restore the cursor.
        driver.write(f"\x1b7\x1b[{height};1H\x1b[0;30;43m{text}\x1b[0m\x1b8")
        driver.flush()

    def _loop_was_blocked(self, block: LoopBlock) -> None:
        """On the loop, once it is free again: say who held it, where, and what to do."""
        if self._wrote_over_screen:
            self._wrote_over_screen = False
            self.refresh(repaint=True)
            self.screen.refresh()
        who = self._rollout_label(block.rollout_id)
        if not (block.rollout_id or block.in_user_code):
            # Not the user's code: ours or a library's; the log keeps it for a bug report.
            logger.warning("the event loop was held %.1f s at %s", block.seconds, block.where)
            return
        message = (
            f"{who} held the event loop for {block.seconds:.1f} s at {block.where}: the whole "
            "workbench (screen, servers, other rollouts) waited. Blocking code in an agent "
            "must not run on the loop: await asyncio.to_thread(fn, ...) or use an async library."
        )
        logger.warning("%s", message)
        self.notify(
            message,
            title="Agent code blocked the event loop",
            severity="warning",
            timeout=15,
            markup=False,
        )

    # ---- what the screens ask for -------------------------------------------------------------

    @on(RowStepRequested)
    def _step_row(self, message: RowStepRequested) -> None:
        self.open_debugger(message.row_index, stepping=message.stepping)

    @on(SessionStepRequested)
    def _step_session(self, message: SessionStepRequested) -> None:
        self.open_session(message.session, label=message.label)

    @on(TrajectoryRequested)
    def _show_trajectory(self, message: TrajectoryRequested) -> None:
        self.show_outcome(message.outcome, message.title, entry=message.entry, run=message.run)

    @on(CopyRequested)
    def _copy_requested(self, message: CopyRequested) -> None:
        self.copy_text(message.text, message.what)

    @on(ModelSwitchRequested)
    def _model_switch_requested(self, message: ModelSwitchRequested) -> None:
        self.switch_model(message.spec)

    @on(RunsRequested)
    def _runs_requested(self, message: RunsRequested) -> None:
        self.switch_mode("runs")
        screen = self._mode_screen("runs")
        if message.run_b is not None:
            screen.choose_runs(message.run_a, message.run_b)  # type: ignore[attr-defined]

    @on(WorkspaceRetryRequested)
    def _retry_workspace(self) -> None:
        self.reopen_workspace()

    @on(CrashReported)
    def _crash_reported(self, message: CrashReported) -> None:
        self.show_crash(message.title, message.error)

    def open_debugger(self, row_index: int, stepping: bool = True) -> None:
        """Switch to the debugger and step through dataset row ``row_index``."""
        # Before the workspace is open the debugger keeps the row and starts it when it is.
        self.switch_mode("debug")
        self.debugger.start_row(row_index, stepping=stepping)

    def show_dataset_row(self, row_index: int) -> None:
        """Switch to the dataset screen with its cursor on row ``row_index``."""
        self.switch_mode("dataset")
        self._mode_screen("dataset").show_row(row_index)  # type: ignore[attr-defined]

    def open_session(self, session: SteppedRollout, label: str | None = None) -> None:
        """Switch to the debugger and follow ``session``."""
        self.switch_mode("debug")
        self.debugger.open_session(session, label=label)

    def show_outcome(
        self,
        outcome: RolloutOutcome,
        title: str,
        *,
        entry: JournalEntry | None = None,
        run: RunInfo | None = None,
    ) -> None:
        """Switch to the debugger and show a finished trajectory, read-only."""
        self.switch_mode("debug")
        self.debugger.show_outcome(outcome, title, entry=entry, run=run)

    def switch_model(self, spec: str) -> None:
        """Open the workspace again with ``--model spec`` (back to this one if it fails)."""
        spec = spec.strip()
        if not spec or (spec == self.config.model and self.backend is None):
            self.notify(f"The model is already {self.config.model}.", timeout=3)
            return
        self._config_before_switch = self.config
        self.config = dataclasses.replace(self.config, model=spec)
        self.backend = None  # a backend given to the app (tests) is the old model
        self.notify(f"Opening the workspace with --model {spec}…", title="Model", timeout=3)
        self.reopen_workspace()

    # ---- copying ------------------------------------------------------------------------------

    def copy_to_clipboard(self, text: str) -> None:
        """Textual's copy (ctrl+c in inputs, the server's URL): OSC 52, in tmux's form there."""
        self._clipboard = text
        if self._driver is not None:
            send_osc52(text, self._driver.write, CopyResult())

    def copy_text(self, text: str, what: str) -> None:
        """Copy ``text`` every way there is, and say which worked (``what`` names it)."""
        self._clipboard = text
        result = CopyResult()
        if self._driver is not None:
            send_osc52(text, self._driver.write, result)
        self._copy_with_tool(text, what, result)

    @work(thread=True, group="clipboard", exit_on_error=False, description="copy")
    def _copy_with_tool(self, text: str, what: str, result: CopyResult) -> None:
        copy_with_tool(text, result)
        message, failed = result.describe(what, len(text))
        self.call_from_thread(
            self.notify,
            message,
            title="Copy failed" if failed else "Copied",
            severity="error" if failed else "information",
            timeout=6,
            markup=False,
        )

    def show_crash(self, title: str, error: BaseException) -> None:
        """An unexpected error: a modal with its traceback (also saved to the crash log)."""
        text = "".join(traceback.format_exception(error))
        logger.error("%s\n%s", title, text)  # the log pane keeps it after the modal closes
        self._save_crash(title, text)
        self.push_screen(
            CrashDialog(title, f"{type(error).__name__}: {error}", text, saved_to=str(CRASH_LOG))
        )

    # A thread: file I/O stays off the event loop, even for a few lines.
    @work(thread=True, group="crash-log", exit_on_error=False)
    def _save_crash(self, title: str, text: str) -> None:
        append_crash_log(f"== {title}\n{text}")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The app's own workers: a failure is a crash, shown, and the app stays."""
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.show_crash(
                f"Unexpected error in {event.worker.description or 'a task'}", event.worker.error
            )

    # ---- help ---------------------------------------------------------------------------------

    def help_sections(self) -> list[Section]:
        """The help screen's key tables: everywhere, this screen, the message list, dialogs."""
        rows = functools.partial(binding_rows, self, keymap=self.keymap)
        sections: list[Section] = [("Anywhere", rows(self.BINDINGS))]
        screen = self.screen
        if isinstance(screen, DebuggerScreen):
            sections.append(("Step debugger", rows(DebuggerScreen.BINDINGS)))
            sections.append(("Message list (m)", rows(MessageList.BINDINGS)))
            sections.append(("Search bar (/)", rows(SearchBar.BINDINGS)))
            sections.append(("Edit dialog (e)", rows(EditResponseDialog.BINDINGS)))
            if self.workspace is not None and self.workspace.human is not None:
                sections.append(("Your answer (--model human)", rows(AnswerComposer.BINDINGS)))
        else:
            sections.append(
                (
                    screen.__class__.__name__.removesuffix("Screen") or "This screen",
                    rows(screen.BINDINGS),
                )
            )
            if any(isinstance(bar, SearchBar) for bar in screen.query(SearchBar)):
                sections.append(("Filter bar (/)", rows(SearchBar.BINDINGS)))
        return sections

    def action_help(self) -> None:
        """Show the help screen (once)."""
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.help_sections()))


def append_crash_log(text: str) -> str:
    """Append a traceback to the crash log; returns where it went (for the message)."""
    try:
        CRASH_LOG.parent.mkdir(parents=True, exist_ok=True)
        with CRASH_LOG.open("a", encoding="utf-8") as file:
            file.write(text.rstrip() + "\n")
    except OSError as exc:
        return f"nowhere: the crash log {CRASH_LOG} could not be written ({exc})"
    return str(CRASH_LOG)


async def _close_quietly(workspace: Workspace) -> str | None:
    """Close a workspace; returns the traceback if that failed (the caller decides where)."""
    try:
        await asyncio.wait_for(workspace.aclose(), 10.0)
    except Exception as exc:
        return "".join(traceback.format_exception(exc))
    return None


def make_app(
    workspace_config: EngineConfig,
    *,
    row: int | None = None,
    backend: ModelBackend | None = None,
    serve_port: int = 9000,
    watch_agent: bool = True,
    settings_file: Path | None = None,
) -> WorkbenchApp:
    """Build the workbench app: the CLI and the tests use this one factory.

    ``row``: step this dataset row at once. ``backend``: a model backend instead of the
    config's model (tests). ``serve_port``: the server screen's port (0: any free one).
    ``watch_agent``: reload the agent when a file next to it is saved. ``settings_file``:
    the theme and keymap file (default: ``$XDG_CONFIG_HOME/osmosis/workbench.toml``); it is
    read here, before the app's event loop runs.
    """
    path = settings_file or settings_path()
    return WorkbenchApp(
        workspace_config,
        row=row,
        backend=backend,
        serve_port=serve_port,
        watch_agent=watch_agent,
        settings=load_settings(path),
        settings_file=path,
    )
