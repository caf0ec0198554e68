"""Where uvicorn's, litellm's and the agent's log records and prints go: a pane, not the terminal.

``install_log_routing(app)`` puts one ``LogRouter`` handler on the root logger, strips terminal
handlers from the loggers of uvicorn, litellm, ``server_core`` and the workbench (they propagate
to the root instead), and registers the router as a print-capture target of the app. Records can
come from any thread (litellm callbacks, ``asyncio.to_thread`` tools), so the router only appends
formatted lines to a bounded buffer under a lock; every ``LogPane`` drains that buffer on a timer.
A burst of thousands of records therefore costs one pane write per tick, never one per record.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any

from rich.highlighter import Highlighter
from rich.text import Text
from textual import events
from textual.widgets import Log

if TYPE_CHECKING:
    from textual.app import App
    from textual.message import Message

#: Loggers whose terminal handlers are removed; their records propagate to the router on root.
ROUTED_LOGGERS: tuple[str, ...] = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "litellm",
    "LiteLLM",
    "LiteLLM Router",
    "LiteLLM Proxy",
    "server_core",
    "osmosis_workbench",
)
# Ours speak at INFO. The root stays at WARNING: httpx logs every request at INFO, which would
# flood the pane (and cost time) during a batch of thousands of rollouts.
_INFO_LOGGERS = ("server_core", "osmosis_workbench")

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_DATE_FORMAT = "%H:%M:%S"

_routers: weakref.WeakKeyDictionary[Any, LogRouter] = weakref.WeakKeyDictionary()


def _terminal_streams() -> set[int]:
    streams = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    return {id(s) for s in streams if s is not None}


def _is_terminal_handler(handler: logging.Handler, terminal: set[int]) -> bool:
    """Whether ``handler`` writes to the terminal (file handlers and test captures are kept)."""
    if not isinstance(handler, logging.StreamHandler) or isinstance(handler, logging.FileHandler):
        return False
    if type(handler).__name__ == "LevelRoutingStreamHandler":  # litellm picks stdout or stderr
        return True
    stream = getattr(handler, "stream", None)
    return id(stream) in terminal or type(stream).__name__ == "_PrintCapture"


class LogRouter(logging.Handler):
    """Collects log records and printed text, from any thread, into a bounded line buffer.

    It is a ``logging.Handler`` (on the root logger) and a Textual message target for
    ``App.begin_capture_print`` (it receives ``events.Print``). Panes read new lines with
    ``read_since``.
    """

    def __init__(self, max_lines: int = 5000) -> None:
        super().__init__(logging.NOTSET)
        self.setFormatter(logging.Formatter(_FORMAT, _DATE_FORMAT))
        self.max_lines = max_lines
        self._lines: deque[str] = deque(maxlen=max_lines)
        self._total = 0
        self._buffer_lock = threading.Lock()
        # print() writes fragments ("a b", then "\n"); whole lines are kept per stream.
        self._partial = {False: "", True: ""}
        self._installed = False
        # Only what we changed is undone, and only if nobody changed it since (uvicorn sets
        # its loggers' levels each time a server starts).
        self._levels: dict[str, int] = {}  # logger -> level before we set INFO
        # Handlers taken off, with the logger's propagate flag from just before.
        self._removed: list[tuple[str, logging.Handler, bool]] = []
        self._app: weakref.ref[Any] | None = None

    # ---- the buffer -------------------------------------------------------------------------

    def push(self, text: str) -> None:
        """Append ``text`` (one or more lines) to the buffer; safe from any thread."""
        lines = text.splitlines() or [""]
        with self._buffer_lock:
            self._lines.extend(lines)
            self._total += len(lines)

    def read_since(self, seen: int) -> tuple[list[str], int]:
        """The lines added after the first ``seen`` ones, and the new count to pass next time."""
        with self._buffer_lock:
            total = self._total
            new = min(total - seen, len(self._lines))
            lines = list(self._lines)[len(self._lines) - new :] if new > 0 else []
        return lines, total

    @property
    def total(self) -> int:
        """How many lines were ever pushed (older ones drop out of the buffer)."""
        return self._total

    # ---- logging ----------------------------------------------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        """Format the record and buffer it (called by logging, in the thread that logged)."""
        app = self._app() if self._app is not None else None
        if app is None or not app.is_running:
            # The app has exited without uninstalling: give the terminal its logging back
            # (and this record too, unless another handler, a newer app's, has it).
            self.uninstall()
            root = logging.getLogger()
            if not root.handlers and record.levelno >= logging.WARNING and logging.lastResort:
                logging.lastResort.handle(record)
            return
        try:
            self.push(self.format(record))
        except Exception:
            self.handleError(record)

    # ---- print capture (the MessageTarget protocol) -----------------------------------------

    def post_message(self, message: Message) -> bool:
        """Receive ``events.Print`` from the app's stdout/stderr capture (any thread)."""
        if isinstance(message, events.Print):
            self.write_print(message.text, stderr=message.stderr)
        return True

    async def _post_message(self, message: Message) -> bool:
        return self.post_message(message)

    def write_print(self, text: str, *, stderr: bool = False) -> None:
        """Buffer printed text, a line at a time (a partial line waits for its end)."""
        with self._buffer_lock:
            pending = self._partial[stderr] + text
            *complete, rest = pending.split("\n")
            self._partial[stderr] = rest
        if complete:
            stamp = time.strftime(_DATE_FORMAT)
            label = "stderr " if stderr else "print  "
            self.push("\n".join(f"{stamp} {label} {line}" for line in complete))

    # ---- installing -------------------------------------------------------------------------

    def install(self, app: App) -> None:
        """Route the loggers and the app's prints here (see the module docstring)."""
        self._app = weakref.ref(app)
        self._installed = True
        for name in _INFO_LOGGERS:
            logger = logging.getLogger(name)
            if logger.level == logging.NOTSET:
                self._levels[name] = logger.level
                logger.setLevel(logging.INFO)
        self.sweep()
        logging.getLogger().addHandler(self)
        app.begin_capture_print(self, stdout=True, stderr=True)
        # Catch handlers that libraries add later (litellm's import), without a pane mounted.
        app.set_interval(0.5, self.sweep, name="log-routing-sweep")

    def sweep(self) -> None:
        """Remove terminal handlers from the routed loggers, including ones added since
        (litellm adds its own when it is first imported, long after start-up)."""
        if not self._installed:
            return  # not installed (or uninstalled already)
        terminal = _terminal_streams()
        for name in ("", *ROUTED_LOGGERS):
            logger = logging.getLogger(name)
            for handler in list(logger.handlers):
                if handler is not self and _is_terminal_handler(handler, terminal):
                    logger.removeHandler(handler)
                    self._removed.append((name, handler, logger.propagate))
                    # Its records went to the terminal instead of up: send them up, to us.
                    # (A logger silenced with propagate off and no handler stays silent:
                    # uvicorn.access with access_log=False.)
                    logger.propagate = True

    def uninstall(self) -> None:
        """Give the loggers back the handlers, propagation and levels we changed."""
        logging.getLogger().removeHandler(self)
        self._installed = False
        levels, self._levels = self._levels, {}
        removed, self._removed = self._removed, []
        for name, level in levels.items():
            logger = logging.getLogger(name)
            if logger.level == logging.INFO:  # still ours
                logger.setLevel(level)
        # Latest first, so each logger ends with the flag it had before we first touched it.
        for name, handler, propagate in reversed(removed):
            logger = logging.getLogger(name)
            if handler not in logger.handlers:
                logger.addHandler(handler)
            logger.propagate = propagate
        app = self._app() if self._app is not None else None
        if app is not None:
            app._capture_print.pop(self, None)  # end_capture_print raises when absent
            _routers.pop(app, None)


def install_log_routing(app: App, *, max_lines: int = 5000) -> LogRouter:
    """Route log records and prints of this process into ``app``'s log panes (idempotent)."""
    router = _routers.get(app)
    if router is None:
        router = LogRouter(max_lines)
        router.install(app)
        _routers[app] = router
    return router


def uninstall_log_routing(app: App) -> None:
    """Undo ``install_log_routing`` (the app calls it when it exits; panes do too)."""
    router = _routers.pop(app, None)
    if router is not None:
        router.uninstall()


def log_router(app: App) -> LogRouter | None:
    """The router installed for ``app``, if any."""
    return _routers.get(app)


class LogLineHighlighter(Highlighter):
    """Colours the level word of a log line (and dims the timestamp)."""

    _STYLES = (
        (r"\b(ERROR|CRITICAL)\b", "bold red"),
        (r"\bWARNING\b", "yellow"),
        (r"\bstderr\b", "magenta"),
        (r"^\d\d:\d\d:\d\d", "dim"),
    )

    def highlight(self, text: Text) -> None:
        """Apply the styles in place."""
        for pattern, style in self._STYLES:
            text.highlight_regex(pattern, style)


class LogPane(Log):
    """A bounded, line-API log view fed by the app's ``LogRouter``."""

    DEFAULT_CSS = """
    LogPane {
        height: 10;
        border: round $panel-lighten-2;
        border-title-color: $text-muted;
    }
    LogPane:focus {
        border: round $accent;
    }
    """

    def __init__(
        self,
        *,
        max_lines: int = 5000,
        poll_interval_s: float = 0.1,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(highlight=True, max_lines=max_lines, name=name, id=id, classes=classes)
        self.highlighter = LogLineHighlighter()
        self.poll_interval_s = poll_interval_s
        self._seen = 0
        self.border_title = "log"

    def on_mount(self) -> None:
        """Attach to the router (installing it if the app has not) and start draining."""
        self.router = install_log_routing(self.app, max_lines=self.max_lines or 5000)
        self.drain()
        self.set_interval(self.poll_interval_s, self.drain, name="log-pane-drain")

    def drain(self) -> int:
        """Write the lines buffered since the last drain; returns how many."""
        lines, self._seen = self.router.read_since(self._seen)
        if lines:
            self.write_lines(lines)
        return len(lines)

    def on_unmount(self) -> None:
        """Uninstall the routing when the app is shutting down (its panes go last)."""
        if not self.app.is_running:
            uninstall_log_routing(self.app)
