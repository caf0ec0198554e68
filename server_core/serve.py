"""Serving a FastAPI app with uvicorn: headless (``osmosis serve``) or embedded in a running loop.

``EmbeddedServer`` runs ``await uvicorn.Server(config).serve()`` as a task of the caller's event
loop (the workbench's), with signal capture disabled, ``log_config=None`` (records go wherever
the host process routes the ``uvicorn`` loggers) and a short graceful-shutdown timeout. uvicorn
answers a busy port with ``sys.exit(3)``; that ``SystemExit`` is caught here and raised as
``ServerStartError`` with the port named.

For ``osmosis serve`` (uvicorn owning the process), ``HeadlessServer`` is a uvicorn server whose
SIGTERM/SIGINT mean "drain, then exit normally" (uvicorn itself re-raises the signal after its
graceful shutdown, so the process would die of it with status 143).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn

from server_core.errors import ServeError

logger = logging.getLogger("server_core.serve")


class ServerStartError(ServeError, RuntimeError):
    """The server could not start (port busy, bad host, app start-up failed)."""


class _LoopServer(uvicorn.Server):
    """A uvicorn server that leaves signals to its host process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HeadlessServer(uvicorn.Server):
    """A uvicorn server for a process of its own: a signal starts the graceful shutdown (stop
    accepting, the app's lifespan drains and reports the rollouts) and ``run`` then returns.

    uvicorn re-raises a captured signal once it has shut down, so a drained server would still
    end with "killed by SIGTERM"; here a clean drain ends the process normally. A second Ctrl+C
    still forces the exit (uvicorn's ``handle_exit``).
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        signals = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in signals}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def raise_open_files_limit() -> int:
    """Raise this process's open-file limit to its hard maximum; returns the new soft limit.

    Each in-flight rollout can hold a trainer connection: 10,000 of them need more than the
    usual soft limit of 1,024 descriptors.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
        except (ValueError, OSError):
            return soft
    return soft


def connect_host(host: str) -> str:
    """The address a local client should use to reach a server bound to ``host``."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


class EmbeddedServer:
    """A uvicorn server started and stopped inside an already running event loop."""

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 9000,
        log_level: str = "info",
        graceful_shutdown_s: int = 3,
        **config_kwargs: Any,
    ) -> None:
        self.app = app
        self.host = host
        self.requested_port = port
        self._config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            log_level=log_level,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=graceful_shutdown_s,
            **config_kwargs,
        )
        self._server: _LoopServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether the server is up and accepting connections."""
        task = self._task
        return bool(self._server and self._server.started and task and not task.done())

    @property
    def port(self) -> int:
        """The bound port (the real one when 0 was asked for)."""
        if self._server and self._server.started and self._server.servers:
            port: int = self._server.servers[0].sockets[0].getsockname()[1]
            return port
        return self.requested_port

    @property
    def url(self) -> str:
        """Base URL a local client reaches the server at."""
        return f"http://{connect_host(self.host)}:{self.port}"

    async def _serve(self) -> None:
        assert self._server is not None
        try:
            await self._server.serve()
        except SystemExit as exc:  # uvicorn's way of saying it could not start
            raise ServerStartError(
                f"could not start the server on {self.host}:{self.requested_port} "
                f"(exit code {exc.code}); is the port already in use? pick another with --port"
            ) from None

    async def start(self) -> None:
        """Start serving; returns once the socket is bound, raises ``ServerStartError``."""
        if self.running:
            return
        self._server = _LoopServer(self._config)
        self._task = asyncio.get_running_loop().create_task(self._serve(), name="uvicorn")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises ServerStartError
                raise ServerStartError("the server stopped during start-up")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop accepting, drain (the app's lifespan shutdown), and wait for the end."""
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            await self._task
        except ServerStartError:
            pass
        finally:
            self._server = None
            self._task = None


# ---- serving an agent loop object (0.2's serve_agent_loop) ----------------------------------

#: Where ``serve_agent_loop`` listens by default (as in 0.2).
DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 9000


def validate_and_report(agent_loop: Any, *, verbose: bool = False) -> Any:
    """Validate ``agent_loop`` and print a report (stdout when valid, stderr when not).

    Returns the ``ValidationResult``; never raises for an invalid agent.
    """
    import sys

    from server_core.validate import validate_agent_loop

    result = validate_agent_loop(agent_loop)
    if result.valid:
        print(f"Agent loop '{result.agent_name}' validated successfully.")
        print(f"  - Tools: {result.tool_count}")
        if result.warnings:
            print(f"  - Warnings: {len(result.warnings)}")
            if verbose:
                for warning in result.warnings:
                    print(f"    - {warning}")
        return result
    print(f"Agent loop validation failed with {len(result.errors)} error(s):", file=sys.stderr)
    for error in result.errors:
        print(f"  - {error}", file=sys.stderr)
    if verbose and result.warnings:
        print(f"Warnings ({len(result.warnings)}):", file=sys.stderr)
        for warning in result.warnings:
            print(f"  - {warning}", file=sys.stderr)
    return result


def serve_agent_loop(
    agent_loop: Any,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    validate: bool = True,
    log_level: str = "info",
    reload: bool = False,
    settings: Any = None,
    skip_register: bool = False,
    api_key: str | None = None,
    local_debug: bool = False,
    debug_dir: str | None = None,
) -> None:
    """Validate and serve ``agent_loop`` with uvicorn until interrupted (blocks).

    ``local_debug``: no API key and no platform registration. Otherwise the server requires
    ``api_key`` (a new one is generated and printed when None) and, unless
    ``skip_register``, registers with the platform using the stored login. ``debug_dir``:
    ``log_event`` files go to ``<debug_dir>/<start time>/``. Raises ``ServeError`` for a bad
    combination or a missing login, ``AgentLoopValidationError`` for an invalid agent.
    """
    import os
    import time

    from server_core.app import create_app
    from server_core.auth import generate_api_key
    from server_core.errors import ServeError

    if local_debug:
        if api_key is not None:
            raise ServeError(
                "local_debug=True disables API key authentication; do not provide api_key in "
                "local debug mode."
            )
        skip_register = True
    if reload:
        raise ServeError(
            "reload=True needs the agent as an import string, not an object; run "
            "`osmosis serve -m module:agent_loop --reload` instead."
        )
    credentials = None
    if not skip_register:
        from server_core.platform import PlatformError, require_login_for_serve

        try:
            credentials = require_login_for_serve()
        except PlatformError:
            raise ServeError(
                "Not logged in. Please run 'osmosis login' first, or use skip_register=True "
                "for local testing."
            ) from None
    if validate:
        validate_and_report(agent_loop).raise_if_invalid()
    if not local_debug and api_key is None:
        api_key = generate_api_key()
    session_dir = None
    if debug_dir is not None:
        session_dir = os.path.join(debug_dir, str(int(time.time())))
        os.makedirs(session_dir, exist_ok=True)
    app = create_app(
        agent_loop,
        settings=settings,
        credentials=credentials,
        server_host=host,
        server_port=port,
        api_key=api_key,
        debug_dir=session_dir,
    )
    print(f"Osmosis RolloutServer: agent {agent_loop.name!r} on http://{host}:{port}")
    if api_key is not None:
        print(f"API key (trainers send 'Authorization: Bearer <key>'): {api_key}")
    elif host in ("0.0.0.0", "::", ""):
        logger.warning(
            "serving without an API key on every interface (%s): anyone who can reach this "
            "machine can start rollouts; bind 127.0.0.1 for local work",
            host,
        )
    raise_open_files_limit()
    server = HeadlessServer(uvicorn.Config(app, host=host, port=port, log_level=log_level))
    server.run()
