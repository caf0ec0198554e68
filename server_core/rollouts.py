"""The rollout manager: admission, idempotency, running, deadlines and exactly-once completion.

Every rollout that got a 202 is driven by one task here, and that task ends in exactly one
completion delivery sequence (``TrainerClient.complete``), whatever happens inside: the agent
returns, raises, times out, is cancelled, or the server shuts down. If the trainer cannot be
reached after bounded retries, the rollout's ``completion_delivery`` reads ``failed``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from server_core.agent import RolloutAgentLoop, RolloutContext, RolloutResult
from server_core.errors import RolloutCancelled, error_category
from server_core.hooks import RolloutHooks
from server_core.protocol import (
    CompletedRequest,
    RolloutMetrics,
    RolloutRequest,
    RolloutStatus,
    normalize_tools,
)
from server_core.trainer_client import Delivery, TrainerClient

logger = logging.getLogger("server_core.rollouts")

#: A sync get_tools slower than this on the loop is moved to a thread for good.
_INLINE_GET_TOOLS_BUDGET_S = 0.002


@dataclass(frozen=True)
class ServerLimits:
    """Admission and lifecycle limits of one server (PROTOCOL.md section 6)."""

    max_concurrent: int = 100
    max_queued: int = 10_000
    rollout_timeout_s: float = 600.0
    get_tools_timeout_s: float = 30.0
    record_ttl_s: float = 3600.0
    #: On shutdown: how long running rollouts may finish before they are cancelled.
    drain_timeout_s: float = 10.0
    #: On shutdown: how long the cancelled rollouts' ERROR completions may take to deliver.
    final_delivery_timeout_s: float = 10.0


class AdmissionError(Exception):
    """An init that is refused: ``status_code`` and ``detail`` become the HTTP answer."""

    def __init__(self, status_code: int, detail: Any, headers: dict[str, str] | None = None):
        super().__init__(str(detail))
        self.status_code = status_code
        self.detail = detail
        self.headers = headers


@dataclass(eq=False)
class RolloutRecord:
    """Server-side state of one accepted rollout, kept for the record TTL after it ends."""

    request: RolloutRequest
    init_response: dict[str, Any]
    status: str = "queued"  # queued | running | completed | error | cancelled
    delivery: str = "pending"  # pending | delivered | failed
    delivery_error: str | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    cancel_reason: str | None = None
    error_category: str | None = None
    finishing: bool = False
    context: RolloutContext | None = None
    metrics: RolloutMetrics | None = None
    task: asyncio.Task | None = None

    @property
    def rollout_id(self) -> str:
        return self.request.rollout_id

    def describe(self) -> dict[str, Any]:
        """The body of ``GET /v1/rollout/{id}``."""
        metrics = self.metrics or (self.context.metrics if self.context else RolloutMetrics())
        return {
            "rollout_id": self.rollout_id,
            "status": self.status,
            "completion_delivery": self.delivery,
            "delivery_error": self.delivery_error,
            "error_category": self.error_category,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "num_llm_calls": metrics.num_llm_calls,
            "num_tool_calls": metrics.num_tool_calls,
        }


class _ToolsProvider:
    """Calls the agent's ``get_tools`` without letting it block the loop.

    The first call runs in a thread and is timed; if it is fast, later calls run inline (a
    thread hop per init costs more than most get_tools), each still timed, and any slow call
    sends the agent back to threads for good. Async ``get_tools`` is awaited with a timeout.
    """

    def __init__(self, agent: RolloutAgentLoop, timeout_s: float) -> None:
        self._agent = agent
        self._timeout_s = timeout_s
        self._inline = False
        self._probed = False
        self._cache_source: Any = None
        self._cache_tools: list[dict[str, Any]] = []

    def _timed_call(self, request: RolloutRequest) -> tuple[Any, float]:
        started = time.perf_counter()
        tools = self._agent.get_tools(request)
        return tools, time.perf_counter() - started

    async def __call__(self, request: RolloutRequest) -> list[dict[str, Any]]:
        if self._inline:
            tools, took = self._timed_call(request)
            if asyncio.iscoroutine(tools):
                tools = await asyncio.wait_for(tools, self._timeout_s)
            elif took > _INLINE_GET_TOOLS_BUDGET_S * 5:
                self._inline = False
                logger.warning(
                    "get_tools() took %.1f ms on the event loop; running it in a thread from now on",
                    took * 1000,
                )
        else:
            tools, took = await asyncio.wait_for(
                asyncio.to_thread(self._timed_call, request), self._timeout_s
            )
            if asyncio.iscoroutine(tools):
                tools = await asyncio.wait_for(tools, self._timeout_s)
            if not self._probed:
                self._probed = True
                self._inline = took < _INLINE_GET_TOOLS_BUDGET_S
        return self._normalized(tools)

    def _normalized(self, tools: Any) -> list[dict[str, Any]]:
        # Most agents return the same module-level list every time: check it once.
        if tools is self._cache_source and tools is not None:
            return self._cache_tools
        normalized = normalize_tools(tools)
        self._cache_source, self._cache_tools = tools, normalized
        return normalized


class RolloutManager:
    """Accepts, runs and reports the rollouts of one server."""

    def __init__(
        self,
        agent: RolloutAgentLoop,
        *,
        client: TrainerClient,
        hooks: RolloutHooks,
        limits: ServerLimits,
    ) -> None:
        self.agent = agent
        self.client = client
        self.hooks = hooks
        self.limits = limits
        self.records: OrderedDict[str, RolloutRecord] = OrderedDict()
        self._by_key: dict[str, RolloutRecord] = {}
        self._pending_inits: dict[str, asyncio.Future] = {}
        self._slots = asyncio.Semaphore(limits.max_concurrent)
        self._tools = _ToolsProvider(agent, limits.get_tools_timeout_s)
        self.running = 0
        self.queued = 0
        self.completed_total = 0
        self.draining = False

    # ---- admission -------------------------------------------------------------------------

    async def init(self, request: RolloutRequest) -> dict[str, Any]:
        """Admit ``request`` and start it; returns the 202 body or raises ``AdmissionError``."""
        if self.draining:
            raise AdmissionError(503, "server is shutting down; retry on another server")
        key = request.dedup_key
        existing = self._by_key.get(key) or self.records.get(request.rollout_id)
        if existing is not None:
            return self._repeat(existing, request)
        pending = self._pending_inits.get(key)
        if pending is not None:  # the same init is being admitted right now
            return self._repeat(await asyncio.shield(pending), request)
        if self.queued >= self.limits.max_queued:
            raise AdmissionError(
                429,
                f"rollout queue is full ({self.queued} queued, {self.running} running)",
                headers={"Retry-After": "1"},
            )
        self._prune()
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending_inits[key] = future
        try:
            try:
                tools = await self._tools(request)
            except TimeoutError:
                raise AdmissionError(
                    500,
                    f"get_tools() did not return within {self.limits.get_tools_timeout_s:g}s; "
                    "no rollout was started",
                ) from None
            except ValueError as exc:
                raise AdmissionError(
                    500, f"get_tools() returned invalid tools: {exc}; no rollout was started"
                ) from None
            except Exception as exc:
                logger.exception("get_tools() failed for rollout %r", request.rollout_id)
                raise AdmissionError(
                    500,
                    f"get_tools() raised {type(exc).__name__}: {exc}; no rollout was started",
                ) from None
            body = {"rollout_id": request.rollout_id, "tools": tools}
            record = RolloutRecord(request=request, init_response=body)
            self.records[request.rollout_id] = record
            self._by_key[key] = record
            self.queued += 1
            record.task = asyncio.get_running_loop().create_task(
                self._drive(record, tools), name=f"rollout:{request.rollout_id[:64]}"
            )
            future.set_result(record)
            return body
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: nobody else may be waiting
            raise
        finally:
            self._pending_inits.pop(key, None)

    @staticmethod
    def _repeat(record: RolloutRecord, request: RolloutRequest) -> dict[str, Any]:
        if record.rollout_id != request.rollout_id:
            raise AdmissionError(
                409,
                f"idempotency_key {request.dedup_key!r} was already used by rollout "
                f"{record.rollout_id!r}; use a new key for a new rollout",
            )
        if record.request.dedup_key != request.dedup_key:
            raise AdmissionError(
                409,
                f"rollout_id {request.rollout_id!r} is already in use with another "
                "idempotency_key",
            )
        return record.init_response

    def _prune(self) -> None:
        """Forget finished rollouts older than the record TTL (oldest first)."""
        horizon = time.time() - self.limits.record_ttl_s
        while self.records:
            record = next(iter(self.records.values()))
            if record.finished_at is None or record.finished_at > horizon:
                break
            self.records.popitem(last=False)
            if self._by_key.get(record.request.dedup_key) is record:
                del self._by_key[record.request.dedup_key]

    # ---- running ---------------------------------------------------------------------------

    async def _drive(self, record: RolloutRecord, tools: list[dict[str, Any]]) -> None:
        """Run one rollout to its single completion delivery."""
        request = record.request
        ctx = RolloutContext(request, client=self.client, hooks=self.hooks, tools=tools)
        record.context = ctx
        result: RolloutResult | None = None
        exc_info: BaseException | None = None
        admitted = False
        hooks_on = self.hooks.active
        try:
            async with self._slots:
                admitted = True
                self.queued -= 1
                self.running += 1
                record.status = "running"
                record.started_at = time.time()
                ctx._started = time.perf_counter()
                if hooks_on:
                    await self.hooks.emit(
                        "rollout_started",
                        request.rollout_id,
                        request=request.model_dump(mode="json", exclude={"api_key"}),
                        tools=tools,
                    )
                try:
                    async with asyncio.timeout(self.limits.rollout_timeout_s) as deadline:
                        result = await self.agent.run(ctx)
                except TimeoutError as exc:
                    if deadline.expired():
                        result = self._failure(
                            ctx,
                            f"rollout exceeded its {self.limits.rollout_timeout_s:g}s deadline",
                            "timeout",
                            exc,
                        )
                    else:
                        exc_info = exc
                finally:
                    self.running -= 1
        except asyncio.CancelledError as exc:
            if record.cancel_reason is None:
                raise  # not ours: the loop itself is going away
            asyncio.current_task().uncancel()
            if not admitted:
                self.queued -= 1
            result = self._failure(ctx, record.cancel_reason, "cancelled", exc)
        except RolloutCancelled as exc:
            result = self._failure(ctx, str(exc) or "rollout cancelled", "cancelled", exc)
        except Exception as exc:
            exc_info = exc
        if exc_info is not None:
            result = self._failure(
                ctx,
                f"{type(exc_info).__name__}: {exc_info}",
                error_category(exc_info),
                exc_info,
            )
        elif not isinstance(result, RolloutResult):
            result = self._failure(
                ctx,
                "run() must return ctx.complete(...) or ctx.error(...), "
                f"got {type(result).__name__}",
                "agent_error",
                None,
            )
        await self._finish(record, ctx, result)

    @staticmethod
    def _failure(
        ctx: RolloutContext, message: str, category: str, exc: BaseException | None
    ) -> RolloutResult:
        result = ctx.error(message)
        result.extra_fields["error_category"] = category
        if exc is not None:
            result.extra_fields["traceback"] = "".join(
                traceback.format_exception(type(exc), exc, exc.__traceback__)
            )
        else:
            result.extra_fields["traceback"] = f"{message}\n"
        return result

    async def _finish(self, record: RolloutRecord, ctx: RolloutContext, result: RolloutResult):
        record.finishing = True
        metrics: RolloutMetrics = result.metrics if result.metrics is not None else ctx.metrics
        metrics.total_latency_ms = ctx.elapsed_ms()
        extra = dict(result.extra_fields)
        if result.status == RolloutStatus.ERROR:
            extra.setdefault("error_category", "agent_error")
            extra.setdefault("traceback", f"{result.error_message}\n")
            record.error_category = extra["error_category"]
        completion = CompletedRequest(
            rollout_id=record.rollout_id,
            status=result.status,
            final_messages=result.final_messages,
            finish_reason=result.finish_reason,
            error_message=result.error_message,
            reward=result.reward,
            metrics=metrics,
            extra_fields=extra,
        )
        if result.status == RolloutStatus.COMPLETED:
            record.status = "completed"
        else:
            record.status = "cancelled" if record.error_category == "cancelled" else "error"
        body = completion.wire()
        try:
            delivery = await self.client.complete(
                record.request.server_url, body, api_key=record.request.api_key
            )
        except asyncio.CancelledError:
            delivery = Delivery(False, None, 0, "delivery cancelled at shutdown")
        record.delivery = "delivered" if delivery.delivered else "failed"
        record.delivery_error = delivery.error
        record.finished_at = time.time()
        record.metrics, record.context = metrics, None
        self.completed_total += 1
        if not delivery.delivered:
            logger.error(
                "completion of rollout %r was not delivered after %d attempts: %s",
                record.rollout_id,
                delivery.attempts,
                delivery.error,
            )
        if self.hooks.active:
            await self.hooks.emit(
                "rollout_finished",
                record.rollout_id,
                completion=body,
                delivery=record.delivery,
                delivery_error=record.delivery_error,
            )

    # ---- control ---------------------------------------------------------------------------

    def cancel(self, rollout_id: str, reason: str = "cancelled by request") -> bool:
        """Cancel a rollout; it ends with an ERROR completion, category ``cancelled``."""
        record = self.records.get(rollout_id)
        if record is None:
            return False
        task = record.task
        if task is not None and not task.done() and not record.finishing and not record.cancel_reason:
            record.cancel_reason = reason
            task.cancel()
        return True

    def in_flight(self) -> list[RolloutRecord]:
        """Rollouts whose task has not finished (queued, running or delivering)."""
        return [r for r in self.records.values() if r.task is not None and not r.task.done()]

    async def shutdown(self) -> None:
        """Stop admitting, let running rollouts drain, then cancel the rest (each reported)."""
        self.draining = True
        tasks = [r.task for r in self.in_flight() if r.task is not None]
        if tasks:
            logger.info("draining %d rollouts (up to %gs)", len(tasks), self.limits.drain_timeout_s)
            _, pending = await asyncio.wait(tasks, timeout=self.limits.drain_timeout_s)
            if pending:
                logger.warning("cancelling %d rollouts still running at shutdown", len(pending))
                for record in self.in_flight():
                    self.cancel(record.rollout_id, "server shutting down")
                await asyncio.wait(pending, timeout=self.limits.final_delivery_timeout_s)
        await self.client.aclose()

    def health(self) -> dict[str, Any]:
        """The body of ``GET /health``."""
        return {
            "status": "healthy",
            "agent_loop": self.agent.name,
            "active_rollouts": self.running + self.queued,
            "completed_rollouts": self.completed_total,
            "running_rollouts": self.running,
            "queued_rollouts": self.queued,
            "draining": self.draining,
        }

