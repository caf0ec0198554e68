"""``osmosis serve``: serve an agent loop over the rollout protocol, headless.

Everything heavy (server_core, uvicorn, fastapi) is imported inside ``run_serve`` so that
``osmosis --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
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
    p.add_argument("-H", "--host", default="0.0.0.0", help="bind address (default 0.0.0.0)")
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
    p.set_defaults(handler=run_serve)


def _settings(args: argparse.Namespace, api_key: str | None) -> dict[str, Any]:
    return {
        "module": args.module,
        "cwd": os.getcwd(),
        "api_key": api_key,
        "log_dir": args.log,
        "max_concurrent": args.max_concurrent,
        "rollout_timeout": args.rollout_timeout,
        "register": None,
    }


def build_app(settings: dict[str, Any]) -> Any:
    """The served app for ``settings`` (shared by plain serving and reload workers)."""
    from server_core import create_app, load_agent_loop

    agent = load_agent_loop(settings["module"], search_path=settings["cwd"])
    app = create_app(
        agent,
        api_key=settings["api_key"],
        max_concurrent=settings["max_concurrent"],
        rollout_timeout=settings["rollout_timeout"],
        trace_dir=settings["log_dir"],
    )
    register = settings.get("register")
    if register:
        _register_on_startup(app, agent.name, register)
    return app


def _register_on_startup(app: Any, agent_name: str, register: dict[str, Any]) -> None:
    """Register with the platform once the server answers /health (a background task)."""
    import asyncio
    from contextlib import asynccontextmanager

    from server_core import platform

    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any):  # noqa: ANN202 - a Starlette lifespan
        async with inner(a) as state:
            task = asyncio.create_task(
                platform.register_when_ready(
                    local_url=register["local_url"],
                    host=register["host"],
                    port=register["port"],
                    agent_loop_name=agent_name,
                    api_key=register["api_key"],
                    credentials=platform.require_login_for_serve(),
                )
            )
            try:
                yield state
            finally:
                task.cancel()

    app.router.lifespan_context = lifespan


def reload_app_factory() -> Any:
    """App factory for uvicorn's reload workers: settings come from the environment."""
    return build_app(json.loads(os.environ[_RELOAD_SETTINGS_ENV]))


def _fail(message: str, code: int = 1) -> int:
    print(f"Error: {message}", file=sys.stderr)
    return code


def run_serve(args: argparse.Namespace) -> int:
    """Validate, then serve until interrupted (SIGINT/SIGTERM drain the rollouts first)."""
    import logging
    import logging.config

    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from server_core import ImportFromStringError, generate_api_key, load_agent_loop
    from server_core.serve import connect_host

    logging.config.dictConfig(LOGGING_CONFIG)
    log = logging.getLogger("uvicorn.error")
    log.setLevel(args.log_level.upper())
    # The SDK's own records (drain, delivery failures) share uvicorn's console handler.
    sdk_log = logging.getLogger("server_core")
    sdk_log.handlers = logging.getLogger("uvicorn").handlers
    sdk_log.setLevel(args.log_level.upper())

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

    tool_names: list[str] = []
    if args.no_validate:
        from server_core.protocol import RolloutRequest, normalize_tools

        sample = RolloutRequest(
            rollout_id="startup", server_url="http://localhost", messages=[], completion_params={}
        )
        try:
            tool_names = [t["function"]["name"] for t in normalize_tools(agent.get_tools(sample))]
        except Exception as exc:
            log.warning("get_tools() failed at start-up: %s", exc)
    else:
        from server_core.validate import validate_agent_loop

        report = validate_agent_loop(agent)
        if not report.ok:
            print("✗ Agent loop validation failed", file=sys.stderr)
            for problem in report.problems:
                print(f"  - {problem}", file=sys.stderr)
            print("Fix these, or serve anyway with --no-validate.", file=sys.stderr)
            return 1
        tool_names = report.tool_names
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

    settings = _settings(args, api_key)
    if credentials is not None:
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
        settings["register"] = {
            "local_url": f"http://{connect_host(args.host)}:{args.port}",
            "host": host,
            "port": args.port,
            "api_key": api_key,
        }

    common = dict(
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.log_level == "debug",
        timeout_graceful_shutdown=15,
    )
    try:
        if args.reload:
            os.environ[_RELOAD_SETTINGS_ENV] = json.dumps(settings)
            uvicorn.run(
                "osmosis_workbench.commands.serve_cmd:reload_app_factory",
                factory=True,
                reload=True,
                reload_dirs=[os.getcwd()],
                **common,
            )
        else:
            uvicorn.run(build_app(settings), **common)
    except SystemExit as exc:
        if exc.code:
            return _fail(
                f"could not serve on {args.host}:{args.port} (is the port in use? try --port)", 1
            )
    return 0
