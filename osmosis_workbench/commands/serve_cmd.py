"""``osmosis serve``: serve an agent loop over the rollout protocol, headless.

Everything heavy (server_core, uvicorn, fastapi) is imported once the port is bound, so that
``osmosis --help`` stays fast and a busy port is reported at once.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import socket
import sys
from dataclasses import asdict, dataclass, replace
from typing import Any

#: Environment variable carrying the serve settings to uvicorn's reload workers.
_RELOAD_SETTINGS_ENV = "OSMOSIS_SERVE_SETTINGS"


def add_serve_parser(subparsers: Any) -> None:
    """Add ``osmosis serve`` to the CLI."""
    p = subparsers.add_parser(
        "serve",
        help="serve an agent loop as a rollout server",
        description="Serve an agent loop over the Remote Rollout protocol (uvicorn).",
    )
    p.add_argument(
        "-m",
        "--module",
        required=True,
        metavar="MODULE:ATTR",
        help="the agent loop, e.g. server:agent_loop",
    )
    p.add_argument("-p", "--port", type=int, default=9000, help="port (default 9000)")
    p.add_argument(
        "-H",
        "--host",
        default=None,
        help="bind address (default 0.0.0.0; with --local 127.0.0.1, this machine only)",
    )
    p.add_argument(
        "--api-key",
        default=None,
        help="key trainers must send (default: $OSMOSIS_ROLLOUT_API_KEY, else a new "
        "one, shown once)",
    )
    p.add_argument(
        "--local",
        action="store_true",
        help="development mode: no API key, no platform registration",
    )
    p.add_argument(
        "--skip-register",
        action="store_true",
        help="require the API key but do not register with the platform",
    )
    p.add_argument(
        "--public-host",
        default=None,
        help="host the platform reaches this server at (default: $OSMOSIS_PUBLIC_HOST)",
    )
    p.add_argument(
        "--log",
        metavar="DIR",
        default=None,
        help="write a JSONL trace per rollout under DIR/<run>/",
    )
    p.add_argument("--reload", action="store_true", help="restart when the code changes")
    p.add_argument(
        "--no-validate", action="store_true", help="skip checking the agent before serving"
    )
    p.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    p.add_argument(
        "--max-concurrent",
        type=int,
        default=100,
        help="rollouts running at once (default 100); more wait in a queue",
    )
    p.add_argument(
        "--rollout-timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="wall-clock deadline of one rollout (default 600)",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="on SIGTERM/Ctrl+C: how long running rollouts may finish before they are "
        "cancelled and reported as errors (default 10)",
    )
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=16 * 1024 * 1024,
        metavar="BYTES",
        help="largest init body accepted; larger ones get 413 (default 16 MiB)",
    )
    p.set_defaults(handler=run_serve)


@dataclass(frozen=True)
class Registration:
    """Registering with the platform once the server answers: where, and with which key."""

    host: str
    port: int
    local_url: str
    api_key: str | None


@dataclass(frozen=True)
class ServeSettings:
    """Everything ``osmosis serve`` builds the app from, resolved once from the arguments.

    Crosses to uvicorn's reload workers (other processes) as JSON in one environment variable.
    """

    module: str
    cwd: str
    api_key: str | None
    log_dir: str | None
    log_level: str
    max_concurrent: int
    rollout_timeout: float
    drain_timeout: float
    max_body_bytes: int
    register: Registration | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace, api_key: str | None) -> ServeSettings:
        """The settings of ``osmosis serve``'s arguments (the key resolved by the caller)."""
        return cls(
            module=args.module,
            cwd=os.getcwd(),
            api_key=api_key,
            log_dir=args.log,
            log_level=args.log_level,
            max_concurrent=args.max_concurrent,
            rollout_timeout=args.rollout_timeout,
            drain_timeout=args.drain_timeout,
            max_body_bytes=args.max_body_bytes,
        )

    def to_json(self) -> str:
        """The settings as JSON (for the reload workers)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        """Settings written by ``to_json``."""
        data = json.loads(text)
        register = data.pop("register", None)
        return cls(**data, register=Registration(**register) if register else None)


def _route_sdk_logs(level: str) -> None:
    """Send the SDK's own records (drain, delivery failures) to uvicorn's console handler."""
    import logging

    sdk_log = logging.getLogger("server_core")
    sdk_log.handlers = logging.getLogger("uvicorn").handlers
    sdk_log.propagate = False
    sdk_log.setLevel(level.upper())


def build_app(settings: ServeSettings) -> Any:
    """The served app for ``settings`` (shared by plain serving and reload workers)."""
    from server_core import create_app, load_agent_loop

    agent = load_agent_loop(settings.module, search_path=settings.cwd)
    register = settings.register
    credentials = None
    if register is not None:
        from server_core import platform

        credentials = platform.require_login_for_serve()
    return create_app(
        agent,
        max_concurrent=settings.max_concurrent,
        credentials=credentials,
        server_host=register.host if register else None,
        server_port=register.port if register else None,
        api_key=settings.api_key,
        rollout_timeout=settings.rollout_timeout,
        drain_timeout=settings.drain_timeout,
        max_body_bytes=settings.max_body_bytes,
        trace_dir=settings.log_dir,
        local_url=register.local_url if register else None,
    )


def reload_app_factory() -> Any:
    """App factory for uvicorn's reload workers: settings come from the environment."""
    settings = ServeSettings.from_json(os.environ[_RELOAD_SETTINGS_ENV])
    _route_sdk_logs(settings.log_level)
    return build_app(settings)


def listen_host(host: str | None, *, local: bool) -> tuple[str, str | None]:
    """The address ``osmosis serve`` binds, and a warning when an open server binds them all.

    Without a key anyone who reaches the port can make the server post to any URL, so local
    mode listens on this machine only unless told otherwise.
    """
    if host is None:
        return ("127.0.0.1" if local else "0.0.0.0"), None
    if local and host in ("0.0.0.0", "::", ""):
        return host, (
            f"--local serves without an API key on every interface ({host or '*'}): anyone "
            "who can reach this port can start rollouts that call any URL. Use --host "
            "127.0.0.1, or drop --local to require a key."
        )
    return host, None


def _bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port``, inheritable (uvicorn's reload workers get it).

    Stdlib only, so a busy port is reported before any slow import. Raises ``OSError`` whose
    message is one line naming the port and the fix.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            message = (
                f"port {port} is already in use on {host}; stop the other server or pick "
                "another port with --port"
            )
        elif exc.errno == errno.EACCES:
            message = f"no permission to listen on port {port}; use a port above 1023 (--port)"
        elif exc.errno == errno.EADDRNOTAVAIL:
            message = (
                f"{host!r} is not an address of this machine; pick another --host "
                "(0.0.0.0 listens on every interface)"
            )
        else:
            message = f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        raise OSError(exc.errno, message) from None
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _fail(message: str, code: int = 1) -> int:
    print(f"Error: {message}", file=sys.stderr)
    return code


def _tool_names_without_validation(agent: Any, log: Any) -> list[str]:
    """The agent's tool names for the banner, best effort (``--no-validate``)."""
    import asyncio
    import inspect

    from server_core.protocol import RolloutRequest, normalize_tools

    sample = RolloutRequest(
        rollout_id="startup", server_url="http://localhost", messages=[], completion_params={}
    )
    try:
        tools = agent.get_tools(sample)
        if inspect.isawaitable(tools):
            tools = asyncio.run(asyncio.wait_for(_awaited(tools), 30.0))
        return [t["function"]["name"] for t in normalize_tools(tools)]
    except Exception as exc:
        log.warning("get_tools() failed at start-up: %s", exc)
        return []


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def run_serve(args: argparse.Namespace) -> int:
    """Validate, then serve until interrupted (SIGINT/SIGTERM drain the rollouts first)."""
    if not 0 <= args.port <= 65535:
        return _fail(f"--port must be between 0 and 65535, got {args.port}", 2)
    if args.max_concurrent < 1:
        return _fail("--max-concurrent must be at least 1", 2)
    if args.rollout_timeout <= 0 or args.drain_timeout < 0:
        return _fail("--rollout-timeout must be positive and --drain-timeout not negative", 2)
    if args.max_body_bytes < 1024:
        return _fail("--max-body-bytes must be at least 1024", 2)
    args.host, warning = listen_host(args.host, local=args.local)
    if warning:
        print(f"Warning: {warning}", file=sys.stderr)
    # Bind first: a busy port is reported at once, in one line, before any slow import.
    try:
        sock = _bind_socket(args.host, args.port)
    except OSError as exc:
        return _fail(exc.strerror or str(exc))
    port = sock.getsockname()[1]  # the real one when 0 was asked for
    try:
        return _serve(args, sock, port)
    finally:
        sock.close()


def _serve(args: argparse.Namespace, sock: socket.socket, port: int) -> int:
    """Check the login, load and validate the agent, then serve on the bound ``sock``."""
    import logging
    import logging.config

    from server_core.serve import raise_open_files_limit

    raise_open_files_limit()  # thousands of rollouts in flight hold thousands of sockets

    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from server_core import ImportFromStringError, generate_api_key, load_agent_loop
    from server_core.serve import HeadlessServer, connect_host

    logging.config.dictConfig(LOGGING_CONFIG)
    log = logging.getLogger("uvicorn.error")
    log.setLevel(args.log_level.upper())

    credentials = None
    if not (args.local or args.skip_register):
        from server_core import platform

        try:
            credentials = platform.require_login_for_serve()
        except platform.PlatformError as exc:
            return _fail(str(exc))

    log.info("Osmosis RolloutServer starting...")
    try:
        agent = load_agent_loop(args.module, search_path=os.getcwd())
    except ImportFromStringError as exc:
        return _fail(str(exc), 2)

    if args.no_validate:
        tool_names = _tool_names_without_validation(agent, log)
    else:
        import asyncio

        from server_core.validate import avalidate_agent_loop

        report = asyncio.run(avalidate_agent_loop(agent))
        if not report.ok:
            print("✗ Agent loop validation failed", file=sys.stderr)
            for problem in report.errors:
                where = f"{problem.field}: " if problem.field else ""
                print(f"  - {where}{problem.message} [{problem.code}]", file=sys.stderr)
            print("Fix these, or serve anyway with --no-validate.", file=sys.stderr)
            return 1
        tool_names = report.tool_names
    # Routed only now: the validation's own throwaway server would log a "draining" line.
    _route_sdk_logs(args.log_level)
    log.info("Agent: %s", agent.name)
    log.info("Tools: %d", len(tool_names))

    api_key: str | None = None
    if not args.local:
        api_key = args.api_key or os.environ.get("OSMOSIS_ROLLOUT_API_KEY")
        if not api_key:
            api_key = generate_api_key()
            log.info("API key (shown once; trainers send it as 'Authorization: Bearer <key>'):")
            log.info("  %s", api_key)
    else:
        log.info("Local mode: no API key, no platform registration (development only)")

    settings = ServeSettings.from_args(args, api_key)
    if credentials is not None:
        settings = replace(settings, register=_registration(args, port, api_key, log, connect_host))

    config_kwargs: dict[str, Any] = dict(
        host=args.host,
        port=port,
        log_level=args.log_level,
        access_log=args.log_level == "debug",
        timeout_graceful_shutdown=15,
    )
    if args.reload:
        from uvicorn.supervisors import ChangeReload

        os.environ[_RELOAD_SETTINGS_ENV] = settings.to_json()
        config = uvicorn.Config(
            "osmosis_workbench.commands.serve_cmd:reload_app_factory",
            factory=True,
            reload=True,
            reload_dirs=[os.getcwd()],
            **config_kwargs,
        )
        server = HeadlessServer(config)
        _log_listening(log, args.host, port)
        ChangeReload(config, target=server.run, sockets=[sock]).run()
        return 0

    config = uvicorn.Config(build_app(settings), **config_kwargs)
    server = HeadlessServer(config)
    _log_listening(log, args.host, port)
    try:
        server.run(sockets=[sock])
    except SystemExit as exc:
        if exc.code:
            return _fail("the server failed to start (see the log above)", 1)
    if not server.started:
        return _fail("the server failed to start (see the log above)", 1)
    return 0


def _log_listening(log: Any, host: str, port: int) -> None:
    # uvicorn only logs this itself when it binds the socket; ours is bound already.
    shown = f"[{host}]" if ":" in host else host
    log.info("Uvicorn running on http://%s:%d (Press CTRL+C to quit)", shown, port)


def _registration(
    args: argparse.Namespace, port: int, api_key: str | None, log: Any, connect_host: Any
) -> Registration:
    """What to register with the platform once the server answers /health."""
    from server_core import platform

    host = platform.public_host(args.public_host) or (
        args.host if args.host not in ("0.0.0.0", "::", "") else None
    )
    if host is None:
        import socket

        host = socket.gethostname()
        log.warning(
            "No public host given: registering %r. Set OSMOSIS_PUBLIC_HOST or "
            "--public-host to the address the platform can reach.",
            host,
        )
    return Registration(
        host=host, port=port, local_url=f"http://{connect_host(args.host)}:{port}", api_key=api_key
    )
