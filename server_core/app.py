"""``create_app``: the FastAPI app that serves an agent loop over the rollout protocol.

The app is one route table (``ROUTES``) of plain Starlette routes: the hot paths skip FastAPI's
per-request dependency machinery (measured: about a third of an in-process request), and the
same table generates the OpenAPI document at ``/openapi.json``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydantic_core
from fastapi import FastAPI
from pydantic import BaseModel, ValidationError
from starlette.background import BackgroundTask
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from server_core.agent import RolloutAgentLoop
from server_core.auth import header_matches_key
from server_core.hooks import RolloutHooks
from server_core.platform import register_when_ready
from server_core.protocol import InitResponse, RolloutRequest
from server_core.rollouts import (
    AdmissionError,
    FinishedRollout,
    RolloutManager,
    RolloutRecord,
    ServerLimits,
)
from server_core.trainer_client import TrainerClient, TrainerClientConfig

if TYPE_CHECKING:
    from server_core.platform import WorkspaceCredentials
    from server_core.settings import RolloutSettings

logger = logging.getLogger("server_core.app")

_UNAUTHORIZED = {"detail": "Invalid or missing API key"}


class _RolloutIdConvertor(Convertor[str]):
    """A path segment holding any rollout id: slashes and newlines included (ids are free text)."""

    regex = r"[\s\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("rollout_id", _RolloutIdConvertor())


def _json(body: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    # pydantic-core's encoder is several times faster than json.dumps for these bodies.
    return Response(
        pydantic_core.to_json(body), status_code, headers, media_type="application/json"
    )


class _BodyTooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused past ``limit`` bytes before it is all in memory."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _redacted(value: Any, secret: bool = False) -> Any:
    """``value`` with any ``api_key`` replaced: a 422 must not echo the trainer's key."""
    if secret and value is not None:
        return "***"
    if isinstance(value, dict):
        return {k: _redacted(v, k == "api_key") for k, v in value.items()}
    return value


#: An offending input longer than this (as JSON) is described, not echoed back.
_ECHO_LIMIT = 2000


def _echo(value: Any) -> Any:
    """The input a 422 quotes: as given when small and JSON-able, else a short description."""
    if isinstance(value, bytes | bytearray):  # undecodable JSON text: nothing useful to quote
        return {}
    try:
        size = len(pydantic_core.to_json(value))
    except Exception:
        return f"<{type(value).__name__}>"
    if size > _ECHO_LIMIT:
        return f"<{type(value).__name__} of {size} bytes, not echoed>"
    return value


def _validation_detail(exc: ValidationError) -> list[dict[str, Any]]:
    """FastAPI's 422 ``detail``: ``type``, ``loc`` (under "body"), ``msg``, ``input``."""
    errors = exc.errors(include_url=False, include_context=False)
    for error in errors:
        error["loc"] = ("body", *error["loc"])
        error["input"] = _echo(_redacted(error.get("input"), error["loc"][-1] == "api_key"))
    return errors  # type: ignore[return-value]  # TypedDicts, read as plain dicts


def _loop_ends_with_request(request: Request) -> bool:
    """Whether the caller is Starlette's ``TestClient`` (which names itself in the scope)."""
    client = request.scope.get("client")
    return isinstance(client, tuple | list) and bool(client) and client[0] == "testclient"


class _Handlers:
    """The endpoints of one server: auth, then the rollout manager."""

    def __init__(self, manager: RolloutManager, api_key: str | None) -> None:
        self.manager = manager
        self.api_key = api_key

    def authorized(self, request: Request) -> bool:
        api_key = self.api_key
        return api_key is None or header_matches_key(request.headers.get("authorization"), api_key)

    async def init_rollout(self, request: Request) -> Response:
        """Accept a rollout: run get_tools, start the agent in the background, answer 202."""
        if not self.authorized(request):
            return _json(_UNAUTHORIZED, 401)
        limit = self.manager.limits.max_body_bytes
        try:
            raw = await _read_body(request, limit)
        except _BodyTooLarge:
            return _json(
                {
                    "detail": f"request body is larger than this server's limit of {limit} bytes; "
                    "send a shorter history or raise the limit (ServerLimits.max_body_bytes, "
                    "osmosis serve --max-body-bytes)"
                },
                413,
            )
        except ClientDisconnect:
            return _json({"detail": "client disconnected"}, 400)
        try:
            rollout = RolloutRequest.model_validate_json(raw)
        except ValidationError as exc:
            return _json({"detail": _validation_detail(exc)}, 422)
        try:
            body = await self.manager.init(rollout)
        except AdmissionError as exc:
            return _json({"detail": exc.detail}, exc.status_code, exc.headers)
        # Let the rollout take its first step before answering: a rollout whose trainer
        # answers in process (tests) may then finish before the request does.
        await asyncio.sleep(0)
        response = _json(body, 202)
        if not self.manager.serving and _loop_ends_with_request(request):
            # Starlette's TestClient without ``with``: no lifespan, and an event loop that
            # ends with this request. As in 0.2, the rollout still runs: the answer is sent,
            # then the request waits for the rollout before it lets the loop go.
            response.background = BackgroundTask(self.manager.wait, rollout.rollout_id)
        return response

    async def health(self, request: Request) -> Response:
        """Liveness and load: agent name, active and completed rollout counts."""
        return _json(self.manager.health())

    async def platform_health(self, request: Request) -> Response:
        """The health check the platform makes with the server's key (404 without a key)."""
        if self.api_key is None:
            return _json({"detail": "Not found"}, 404)
        if not self.authorized(request):
            return _json(_UNAUTHORIZED, 401)
        return _json(self.manager.health())

    def _addressed(self, request: Request) -> RolloutRecord | FinishedRollout | Response:
        """The rollout a status or cancel request names, or the error answer."""
        if not self.authorized(request):
            return _json(_UNAUTHORIZED, 401)
        rollout_id = request.path_params["rollout_id"]
        record = self.manager.records.get(rollout_id)
        if record is None:
            return _json({"detail": f"unknown rollout_id {rollout_id!r}"}, 404)
        return record

    async def rollout_status(self, request: Request) -> Response:
        """State of one rollout: queued/running/completed/error/cancelled, and its delivery."""
        record = self._addressed(request)
        return record if isinstance(record, Response) else _json(record.describe())

    async def cancel_rollout(self, request: Request) -> Response:
        """Cancel a rollout; it ends with an ERROR completion, category ``cancelled``."""
        record = self._addressed(request)
        if isinstance(record, Response):
            return record
        if record.finishing:  # its result is decided (or out): nothing left to cancel
            return _json(
                {
                    "rollout_id": record.rollout_id,
                    "status": record.status,
                    "detail": "the rollout has already finished",
                },
                200,
            )
        self.manager.cancel(record.rollout_id)
        return _json({"rollout_id": record.rollout_id, "status": "cancelling"}, 202)


@dataclass(frozen=True)
class RouteSpec:
    """One endpoint: where it lives, which handler serves it, and how OpenAPI describes it."""

    method: str
    path: str
    handler: str
    summary: str
    status: int = 200
    body: type[BaseModel] | None = None
    answer: type[BaseModel] | None = None
    auth: bool = False


#: Every endpoint of a rollout server (docs/PROTOCOL.md section 2). Order matters: the cancel
#: route must come before the status route, whose id may itself end in "/cancel".
ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("POST", "/v1/rollout/init", "init_rollout", "Start a rollout", 202,
              RolloutRequest, InitResponse, auth=True),
    RouteSpec("GET", "/health", "health", "Liveness and load"),
    RouteSpec("GET", "/platform/health", "platform_health", "Health, checked with the key",
              auth=True),
    RouteSpec("POST", "/v1/rollout/{rollout_id:rollout_id}/cancel", "cancel_rollout",
              "Cancel a rollout", 202, auth=True),
    RouteSpec("GET", "/v1/rollout/{rollout_id:rollout_id}", "rollout_status",
              "State of one rollout", auth=True),
)  # fmt: skip


def _openapi_document(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of ``ROUTES`` (built once, on first request)."""
    schemas: dict[str, Any] = {}

    def ref(model: type[BaseModel]) -> dict[str, str]:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    paths: dict[str, Any] = {}
    for spec in ROUTES:
        path = spec.path.replace(":rollout_id}", "}")
        operation: dict[str, Any] = {"summary": spec.summary, "operationId": spec.handler}
        if "{rollout_id}" in path:
            operation["parameters"] = [
                {"name": "rollout_id", "in": "path", "required": True, "schema": {"type": "string"}}
            ]
        if spec.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref(spec.body)}},
            }
        answer: dict[str, Any] = {"description": "OK"}
        if spec.answer is not None:
            answer["content"] = {"application/json": {"schema": ref(spec.answer)}}
        operation["responses"] = {str(spec.status): answer}
        if spec.auth:
            operation["security"] = [{"bearer": []}]
        paths.setdefault(path, {})[spec.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": app.title, "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def create_app(
    agent_loop: RolloutAgentLoop,
    max_concurrent: int | None = None,
    record_ttl_seconds: float | None = None,
    settings: RolloutSettings | None = None,
    credentials: WorkspaceCredentials | None = None,
    server_host: str | None = None,
    server_port: int | None = None,
    api_key: str | None = None,
    debug_dir: str | Path | None = None,
    on_startup: Callable[[], Awaitable[None]] | None = None,
    on_shutdown: Callable[[], Awaitable[None]] | None = None,
    *,
    max_queued: int = 10_000,
    rollout_timeout: float | None = None,
    drain_timeout: float = 10.0,
    max_body_bytes: int | None = None,
    trace_dir: str | Path | None = None,
    hooks: RolloutHooks | None = None,
    client: TrainerClient | None = None,
    client_config: TrainerClientConfig | None = None,
    limits: ServerLimits | None = None,
    record_ttl: float | None = None,
    local_url: str | None = None,
    freeze_heap: bool = True,
) -> FastAPI:
    """Serve ``agent_loop`` over the Remote Rollout protocol v1 (docs/PROTOCOL.md).

    The positional parameters are osmosis-ai 0.2's: ``max_concurrent`` and
    ``record_ttl_seconds`` fall back to ``settings`` (``get_settings()`` when None);
    ``credentials`` + ``server_host`` + ``server_port`` register the server with the platform
    once it answers ``/health``; ``api_key`` makes init/status/cancel and ``/platform/health``
    require it as a bearer token; ``debug_dir`` makes ``ctx.log_event`` write
    ``<debug_dir>/<rollout_id>.jsonl``; ``on_startup``/``on_shutdown`` are awaited in the
    app's lifespan.

    Ours, keyword-only: ``max_queued`` (past it, 429), ``rollout_timeout`` (per-rollout
    deadline, default ``settings.server.request_timeout_seconds``, 600 s), ``drain_timeout``,
    ``max_body_bytes`` (413 past it), ``trace_dir`` (a JSONL trace per rollout), ``hooks``
    (observers and the LLM gate; ``app.state.hooks``), ``client``/``client_config`` (the
    shared trainer client), ``limits`` (all limits at once), ``local_url`` (where this server
    answers ``/health`` before registering; default ``http://127.0.0.1:<server_port>``),
    ``freeze_heap`` (at start-up, move what is alive into the collector's permanent generation:
    full collections then skip the imported libraries; undone at shutdown; a host that manages
    its own garbage collection, like the workbench, passes False).
    """
    if not isinstance(agent_loop, RolloutAgentLoop):
        raise TypeError(
            f"create_app() needs a RolloutAgentLoop instance, got {type(agent_loop).__name__}"
        )
    if settings is None:
        from server_core.settings import get_settings

        settings = get_settings()
    server_settings = settings.server
    if limits is None:
        concurrent = max_concurrent or server_settings.max_concurrent_rollouts
        limits = ServerLimits(
            max_concurrent=concurrent,
            max_queued=max_queued,
            rollout_timeout_s=rollout_timeout or server_settings.request_timeout_seconds,
            record_ttl_s=record_ttl
            if record_ttl is not None
            else (record_ttl_seconds or server_settings.record_ttl_seconds),
            drain_timeout_s=drain_timeout,
            **({"max_body_bytes": max_body_bytes} if max_body_bytes else {}),
        )
    hooks = hooks or RolloutHooks()
    if client is None:
        # One chat connection per running rollout: aiohttp's per-request cost does not grow
        # with the pool, and a slow trainer then never leaves rollouts queuing for a socket.
        client = TrainerClient(
            client_config or _client_config(settings, max(100, limits.max_concurrent))
        )
    manager = RolloutManager(
        agent_loop,
        client=client,
        hooks=hooks,
        limits=limits,
        debug_dir=None if debug_dir is None else str(debug_dir),
    )
    trace = None
    if trace_dir is not None:
        from server_core.trace import TraceWriter

        trace = TraceWriter(trace_dir)
        hooks.add_observer(trace)
    handlers = _Handlers(manager, api_key)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registration: asyncio.Task[object] | None = None
        try:
            manager.serving = True
            client.preload()
            if freeze_heap:
                freeze_long_lived_objects()
            if on_startup is not None:
                await on_startup()
            if credentials is not None and server_host is not None and server_port is not None:
                registration = asyncio.get_running_loop().create_task(
                    register_when_ready(
                        local_url=local_url or f"http://127.0.0.1:{server_port}",
                        host=server_host,
                        port=server_port,
                        agent_loop_name=agent_loop.name,
                        api_key=api_key or "",
                        credentials=credentials,
                    )
                )
            yield
        finally:
            if registration is not None:
                try:
                    await asyncio.wait_for(
                        registration, server_settings.registration_shutdown_timeout_seconds
                    )
                except Exception:  # registration only warns; shutdown goes on
                    logger.warning("platform registration did not finish before shutdown")
            try:
                if on_shutdown is not None:
                    await on_shutdown()
            finally:
                await manager.shutdown()
                if trace is not None:
                    await trace.aclose()
                if freeze_heap:
                    gc.unfreeze()  # a stopped app (a test's, say) must be collectable again

    app = FastAPI(
        title=f"Osmosis RolloutServer ({agent_loop.name})",
        description="Remote rollout server (docs/PROTOCOL.md)",
        lifespan=lifespan,
    )
    for index, spec in enumerate(ROUTES):
        app.router.routes.insert(
            index, Route(spec.path, getattr(handlers, spec.handler), methods=[spec.method])
        )
    app.openapi = lambda: app.openapi_schema or _cache_openapi(app)  # type: ignore[method-assign]
    app.state.agent_loop = agent_loop
    app.state.rollouts = manager
    app.state.hooks = hooks
    app.state.api_key = api_key
    app.state.trace = trace
    app.add_exception_handler(Exception, _unexpected)
    return app


def freeze_long_lived_objects() -> None:
    """Collect once, then freeze what is left: everything alive at start-up lives as long as
    the server. Measured: full collections of 25-130 ms (of fastapi, pydantic, uvicorn, the
    agent's modules) stalled ``/health`` under load; frozen, they are skipped."""
    gc.collect()
    gc.freeze()


def _cache_openapi(app: FastAPI) -> dict[str, Any]:
    app.openapi_schema = _openapi_document(app)
    return app.openapi_schema


async def _unexpected(request: Request, exc: Exception) -> Response:
    # A bug of ours must still answer JSON, and the server keeps serving.
    logger.exception("unexpected error on %s %s", request.method, request.url.path)
    return _json({"detail": f"internal error: {type(exc).__name__}"}, 500)


def _client_config(settings: RolloutSettings, connections: int) -> TrainerClientConfig:
    """The callbacks' timeouts and backoff from the (global) client settings."""
    client = settings.client
    return TrainerClientConfig(
        timeout_s=client.timeout_seconds,
        backoff_base_s=client.retry_base_delay,
        backoff_cap_s=client.retry_max_delay,
        max_connections=max(connections, client.max_connections),
    )
