"""``create_app``: the FastAPI app that serves an agent loop over the rollout protocol."""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pydantic_core
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.routing import Route

from server_core.agent import RolloutAgentLoop
from server_core.hooks import RolloutHooks
from server_core.protocol import InitResponse, RolloutRequest
from server_core.rollouts import AdmissionError, RolloutManager, ServerLimits
from server_core.trainer_client import TrainerClient, TrainerClientConfig

logger = logging.getLogger("server_core.app")

_UNAUTHORIZED = {"detail": "Invalid or missing API key"}


def _json(body: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    # pydantic-core's encoder is several times faster than json.dumps for these bodies.
    return Response(
        pydantic_core.to_json(body), status_code, headers, media_type="application/json"
    )


def _key_matches(header: str | None, api_key: str) -> bool:
    """Whether an Authorization header carries ``api_key`` ("Bearer <key>" or the bare key)."""
    if not header:
        return False
    scheme, _, rest = header.strip().partition(" ")
    presented = rest.strip() if scheme.lower() == "bearer" and rest else header.strip()
    # Header values arrive latin-1 decoded: encoding back gives the raw bytes, which a client
    # sends as UTF-8. Encoding the key with "replace" would let '?' match any non-latin-1 char.
    return hmac.compare_digest(presented.encode("latin-1", "replace"), api_key.encode("utf-8"))


def create_app(
    agent_loop: RolloutAgentLoop,
    *,
    api_key: str | None = None,
    max_concurrent: int = 100,
    max_queued: int = 10_000,
    rollout_timeout: float = 600.0,
    record_ttl: float = 3600.0,
    drain_timeout: float = 10.0,
    trace_dir: str | Path | None = None,
    hooks: RolloutHooks | None = None,
    client: TrainerClient | None = None,
    client_config: TrainerClientConfig | None = None,
    limits: ServerLimits | None = None,
) -> FastAPI:
    """Serve ``agent_loop`` over the Remote Rollout protocol v1 (shared/PROTOCOL.md).

    ``api_key``: when set, init/status/cancel and ``/platform/health`` require it as a bearer
    token. ``trace_dir``: write a JSONL trace per rollout under it. ``hooks``: observers and the
    LLM gate (a fresh ``RolloutHooks`` otherwise, at ``app.state.hooks``). ``client``: the shared
    trainer client (the workbench passes one that routes its local trainer in-process).
    """
    if not isinstance(agent_loop, RolloutAgentLoop):
        raise TypeError(
            f"create_app() needs a RolloutAgentLoop instance, got {type(agent_loop).__name__}"
        )
    hooks = hooks or RolloutHooks()
    limits = limits or ServerLimits(
        max_concurrent=max_concurrent,
        max_queued=max_queued,
        rollout_timeout_s=rollout_timeout,
        record_ttl_s=record_ttl,
        drain_timeout_s=drain_timeout,
    )
    if client is None:
        # One chat connection per running rollout: aiohttp's per-request cost does not grow
        # with the pool, and a slow trainer then never leaves rollouts queuing for a socket.
        client = TrainerClient(
            client_config or TrainerClientConfig(max_connections=max(100, limits.max_concurrent))
        )
    manager = RolloutManager(agent_loop, client=client, hooks=hooks, limits=limits)
    trace = None
    if trace_dir is not None:
        from server_core.trace import TraceWriter

        trace = TraceWriter(trace_dir)
        hooks.add_observer(trace)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await manager.shutdown()
            if trace is not None:
                await trace.aclose()

    app = FastAPI(
        title=f"Rollout server: {agent_loop.name or type(agent_loop).__name__}",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.agent_loop = agent_loop
    app.state.rollouts = manager
    app.state.hooks = hooks
    app.state.api_key = api_key
    app.state.trace = trace

    def authorized(request: Request) -> bool:
        return api_key is None or _key_matches(request.headers.get("authorization"), api_key)

    @app.post(
        "/v1/rollout/init",
        status_code=202,
        response_model=InitResponse,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": RolloutRequest.model_json_schema()}},
            }
        },
    )
    async def init_rollout(request: Request) -> Response:
        """Accept a rollout: run get_tools, start the agent in the background, answer 202."""
        if not authorized(request):
            return _json(_UNAUTHORIZED, 401)
        raw = await request.body()
        try:
            rollout = RolloutRequest.model_validate_json(raw)
        except ValidationError as exc:
            # FastAPI's 422 shape, without echoing inputs (they may hold the api_key).
            errors = exc.errors(include_url=False, include_input=False, include_context=False)
            for error in errors:
                error["loc"] = ("body", *error["loc"])
            return _json({"detail": errors}, 422)
        try:
            body = await manager.init(rollout)
        except AdmissionError as exc:
            return _json({"detail": exc.detail}, exc.status_code, exc.headers)
        return _json(body, 202)

    # The hot routes also go first in the router as plain Starlette routes: same handlers,
    # same middleware, without FastAPI's per-request dependency machinery (measured: about a
    # third of an in-process request). The decorated routes above keep them in the OpenAPI.
    app.router.routes.insert(0, Route("/v1/rollout/init", init_rollout, methods=["POST"]))

    @app.get("/health")
    async def health(request: Request) -> Response:
        """Liveness and load: agent name, active and completed rollout counts."""
        return _json(manager.health())

    app.router.routes.insert(1, Route("/health", health, methods=["GET"]))

    @app.get("/platform/health")
    async def platform_health(request: Request) -> Response:
        """The health check the platform makes with the server's key (404 without a key)."""
        if api_key is None:
            return _json({"detail": "Not Found"}, 404)
        if not authorized(request):
            return _json(_UNAUTHORIZED, 401)
        return _json(manager.health())

    # ``:path`` so that ids holding "/" (allowed on the wire) can be addressed too.
    @app.get("/v1/rollout/{rollout_id:path}")
    async def rollout_status(rollout_id: str, request: Request) -> Response:
        """State of one rollout: queued/running/completed/error/cancelled, and its delivery."""
        if not authorized(request):
            return _json(_UNAUTHORIZED, 401)
        record = manager.records.get(rollout_id)
        if record is None:
            return _json({"detail": f"unknown rollout_id {rollout_id!r}"}, 404)
        return _json(record.describe())

    @app.post("/v1/rollout/{rollout_id:path}/cancel", status_code=202)
    async def cancel_rollout(rollout_id: str, request: Request) -> Response:
        """Cancel a rollout; it ends with an ERROR completion, category ``cancelled``."""
        if not authorized(request):
            return _json(_UNAUTHORIZED, 401)
        record = manager.records.get(rollout_id)
        if record is None:
            return _json({"detail": f"unknown rollout_id {rollout_id!r}"}, 404)
        if record.finishing:  # its result is decided (or out): nothing left to cancel
            return _json(
                {
                    "rollout_id": rollout_id,
                    "status": record.status,
                    "detail": "the rollout has already finished",
                },
                200,
            )
        manager.cancel(rollout_id)
        return _json({"rollout_id": rollout_id, "status": "cancelling"}, 202)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug of ours must still answer JSON, and the server keeps serving.
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, 500)

    return app
