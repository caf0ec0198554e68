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
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pydantic_core

from server_core.agent import RolloutAgentLoop, RolloutContext, RolloutResult
from server_core.errors import RolloutCancelled, error_category
from server_core.executors import GET_TOOLS_THREADS, run_in
from server_core.hooks import RolloutEvents, RolloutHooks
from server_core.protocol import (
    InvalidToolsError,
    RolloutMetrics,
    RolloutRequest,
    RolloutResponse,
    RolloutStatus,
    normalize_tools,
)
from server_core.rollout_llm import RolloutLLM
from server_core.trainer_client import DeliveryProgress, TrainerClient

logger = logging.getLogger("server_core.rollouts")

#: A cancelled rollout still running after this long is cancelled again.
_RECANCEL_AFTER_S = 0.5

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
    #: Largest init body accepted (413 past it): a huge body costs memory and stalls the loop.
    max_body_bytes: int = 16 * 1024 * 1024


class AdmissionError(Exception):
    """An init that is refused: ``status_code`` and ``detail`` become the HTTP answer."""

    def __init__(self, status_code: int, detail: Any, headers: dict[str, str] | None = None):
        super().__init__(str(detail))
        self.status_code = status_code
        self.detail = detail
        self.headers = headers


@dataclass
class _Ending:
    """How ``run`` ended: its result, or the failure that stands in for one."""

    result: Any
    category: str | None = None
    traceback: str | None = None


class _Unsendable(Exception):
    """``run`` returned something that is not a result the protocol can carry."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def _failure(
    message: str, category: str, exc: BaseException | None, *, hint: str | None = None
) -> _Ending:
    """An ERROR ending with its category and the traceback of ``exc`` (or the message).

    ``hint`` (what to fix) goes first in the traceback field.
    """
    if exc is not None:
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    else:
        trace = f"{message}\n"
    if hint:
        trace = f"{hint}\n{trace}"
    result = RolloutResult("ERROR", [], "error", error_message=message)
    return _Ending(result, category, trace)


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
    #: The driver task has begun; before that a cancel is only recorded (a task cancelled
    #: before its first step never runs its body, so it could not report).
    driving: bool = False
    finishing: bool = False
    context: RolloutContext | None = None
    metrics: RolloutMetrics | None = None
    task: asyncio.Task[None] | None = None

    @property
    def rollout_id(self) -> str:
        return self.request.rollout_id

    @property
    def dedup_key(self) -> str:
        return self.request.dedup_key

    def describe(self) -> dict[str, Any]:
        """The body of ``GET /v1/rollout/{id}``."""
        metrics = self.metrics or (self.context.metrics if self.context else RolloutMetrics())
        return _describe(self, metrics.num_llm_calls, metrics.num_tool_calls)


class FinishedRollout(NamedTuple):
    """A rollout that has ended, kept for the record TTL (idempotency, status) as one tuple.

    A live rollout is a dozen objects the garbage collector tracks (record, task, context,
    request model...); a finished one is this, one object. Measured: full collections over the
    records of a busy server took 50-130 ms and stalled ``/health``.
    """

    rollout_id: str
    dedup_key: str
    status: str
    delivery: str
    delivery_error: str | None
    error_category: str | None
    created_at: float
    started_at: float | None
    finished_at: float
    num_llm_calls: int
    num_tool_calls: int
    tools: list[dict[str, Any]]

    @property
    def finishing(self) -> bool:
        """Its result is out: nothing left to cancel."""
        return True

    @property
    def task(self) -> None:
        """No task: it has ended."""
        return None

    @property
    def init_response(self) -> dict[str, Any]:
        """The 202 body a repeated init gets."""
        return {"rollout_id": self.rollout_id, "tools": self.tools}

    def describe(self) -> dict[str, Any]:
        """The body of ``GET /v1/rollout/{id}``."""
        return _describe(self, self.num_llm_calls, self.num_tool_calls)


def _describe(
    record: RolloutRecord | FinishedRollout, llm_calls: int, tool_calls: int
) -> dict[str, Any]:
    return {
        "rollout_id": record.rollout_id,
        "status": record.status,
        "completion_delivery": record.delivery,
        "delivery_error": record.delivery_error,
        "error_category": record.error_category,
        "created_at": record.created_at,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "num_llm_calls": llm_calls,
        "num_tool_calls": tool_calls,
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
        #: Set once the first call (in a thread) has shown how long get_tools takes. A burst
        #: of inits waits for that verdict instead of sending every call to a thread.
        self._probed = asyncio.Event()
        self._probing = False
        self._cache_source: Any = None
        self._cache_tools: list[dict[str, Any]] = []

    async def __call__(self, request: RolloutRequest) -> tuple[Any, list[dict[str, Any]]]:
        """The tools as ``get_tools`` returned them, and as sent in the init response."""
        tools = await self._call(request)
        return tools, self._normalized(tools)

    def _timed_call(self, request: RolloutRequest) -> tuple[Any, float]:
        started = time.perf_counter()
        tools = self._agent.get_tools(request)
        return tools, time.perf_counter() - started

    async def _call(self, request: RolloutRequest) -> Any:
        if not self._probed.is_set():
            if self._probing:
                await self._probed.wait()
            else:
                return await self._probe(request)
        if not self._inline:
            return await self._in_thread(request)
        tools, took = self._timed_call(request)
        if asyncio.iscoroutine(tools):
            async with asyncio.timeout(self._timeout_s):
                tools = await tools
        elif took > _INLINE_GET_TOOLS_BUDGET_S * 5:
            self._inline = False
            logger.warning(
                "get_tools() took %.1f ms on the event loop; running it in a thread from now",
                took * 1000,
            )
        return tools

    async def _probe(self, request: RolloutRequest) -> Any:
        self._probing = True
        try:
            tools, took = await self._in_thread_timed(request)
            self._inline = took < _INLINE_GET_TOOLS_BUDGET_S
            return tools
        finally:
            self._probing = False
            self._probed.set()

    async def _in_thread(self, request: RolloutRequest) -> Any:
        tools, _ = await self._in_thread_timed(request)
        return tools

    async def _in_thread_timed(self, request: RolloutRequest) -> tuple[Any, float]:
        # asyncio.timeout, not wait_for: no extra task per call (measured in a burst of inits).
        async with asyncio.timeout(self._timeout_s):
            tools, took = await run_in(GET_TOOLS_THREADS, self._timed_call, request)
            if asyncio.iscoroutine(tools):
                tools = await tools
        return tools, took

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
        debug_dir: str | None = None,
    ) -> None:
        self.agent = agent
        #: Where ``ctx.log_event`` writes one JSONL file per rollout (``create_app(debug_dir=)``).
        self.debug_dir = debug_dir
        self.client = client
        self.hooks = hooks
        self.limits = limits
        #: Every rollout the server knows: in flight, or finished within the record TTL.
        self.records: OrderedDict[str, RolloutRecord | FinishedRollout] = OrderedDict()
        self._by_key: dict[str, RolloutRecord | FinishedRollout] = {}
        self._pending_inits: dict[str, asyncio.Future[RolloutRecord]] = {}  # by dedup key
        self._pending_ids: dict[
            str, asyncio.Future[RolloutRecord]
        ] = {}  # the same futures, by rollout_id
        self._finished: deque[FinishedRollout] = deque()
        self._slots = asyncio.Semaphore(limits.max_concurrent)
        self._tools = _ToolsProvider(agent, limits.get_tools_timeout_s)
        self.running = 0
        self.queued = 0
        self.completed_total = 0
        self.draining = False
        #: The app's lifespan has started (a server runs it; a bare test client does not).
        self.serving = False

    # ---- admission -------------------------------------------------------------------------

    async def init(self, request: RolloutRequest) -> dict[str, Any]:
        """Admit ``request`` and start it; returns the 202 body or raises ``AdmissionError``."""
        self._prune()
        key = request.dedup_key
        rollout_id = request.rollout_id
        # A repeat gets its 202 again whatever the load, even while draining: it starts nothing.
        existing = self._by_key.get(key) or self.records.get(rollout_id)
        if existing is not None:
            return self._repeat(existing, request)
        pending = self._pending_inits.get(key) or self._pending_ids.get(rollout_id)
        if pending is not None:  # the same rollout is being admitted right now
            return self._repeat(await asyncio.shield(pending), request)
        if self.draining:
            raise AdmissionError(503, "server is shutting down; retry on another server")
        # Capacity is max_concurrent running plus max_queued waiting. Inits still in get_tools
        # count too, or a burst of them would all pass this check together.
        limits = self.limits
        admitted = self.running + self.queued + len(self._pending_inits)
        if admitted >= limits.max_concurrent + limits.max_queued:
            raise AdmissionError(
                429,
                f"rollout queue is full ({self.queued} queued, {self.running} running)",
                headers={"Retry-After": "1"},
            )
        future: asyncio.Future[RolloutRecord] = asyncio.get_running_loop().create_future()
        self._pending_inits[key] = future
        self._pending_ids[rollout_id] = future
        try:
            try:
                raw_tools, tools = await self._tools(request)
            except TimeoutError:
                raise AdmissionError(
                    500,
                    f"get_tools() did not return within {self.limits.get_tools_timeout_s:g}s; "
                    "no rollout was started",
                ) from None
            except InvalidToolsError as exc:
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
                self._drive(record, raw_tools, tools), name=f"rollout:{request.rollout_id[:64]}"
            )
            future.set_result(record)
            return body
        except BaseException as exc:
            if not isinstance(exc, AdmissionError):  # e.g. the caller went away mid-init
                exc = AdmissionError(503, "this rollout's first init was interrupted; retry")
            future.set_exception(exc)
            future.exception()  # mark retrieved: nobody else may be waiting
            raise
        finally:
            self._pending_inits.pop(key, None)
            self._pending_ids.pop(rollout_id, None)

    @staticmethod
    def _repeat(record: RolloutRecord | FinishedRollout, request: RolloutRequest) -> dict[str, Any]:
        if record.rollout_id != request.rollout_id:
            raise AdmissionError(
                409,
                f"idempotency_key {request.dedup_key!r} was already used by rollout "
                f"{record.rollout_id!r}; use a new key for a new rollout",
            )
        # Same rollout_id: a repeat with the same key or with none is the same rollout.
        key = request.idempotency_key
        if key is not None and key != record.dedup_key:
            raise AdmissionError(
                409,
                f"rollout_id {request.rollout_id!r} is already in use with another idempotency_key",
            )
        return record.init_response

    def _prune(self) -> None:
        """Forget finished rollouts older than the record TTL (in the order they finished).

        ``_finished`` is ordered by finish time, so a long-running rollout admitted early does
        not keep everything admitted after it in memory.
        """
        horizon = time.time() - self.limits.record_ttl_s
        finished = self._finished
        while finished and finished[0].finished_at <= horizon:
            record = finished.popleft()
            if self.records.get(record.rollout_id) is record:
                del self.records[record.rollout_id]
            if self._by_key.get(record.dedup_key) is record:
                del self._by_key[record.dedup_key]

    # ---- running ---------------------------------------------------------------------------

    async def _drive(
        self, record: RolloutRecord, raw_tools: list[Any], tools: list[dict[str, Any]]
    ) -> None:
        """Run one rollout to its single completion delivery."""
        record.driving = True
        request = record.request
        started = time.monotonic()  # as in 0.2: time queued for a slot counts in the latency
        events = RolloutEvents(self.hooks, request.rollout_id)
        llm = RolloutLLM(request, self.client, events)
        ctx = RolloutContext(
            request=request,
            tools=raw_tools,
            llm=llm,
            _start_time=started,
            _debug_dir=self.debug_dir,
            _events=events,
        )
        record.context = ctx
        ending: _Ending | None = None
        exc_info: BaseException | None = None
        admitted = False
        hooks_on = self.hooks.active
        try:
            if record.cancel_reason is not None:  # cancelled before this task first ran
                raise asyncio.CancelledError
            async with self._slots:
                admitted = True
                self.queued -= 1
                self.running += 1
                record.status = "running"
                record.started_at = time.time()
                deadline: asyncio.Timeout | None = None
                try:
                    if hooks_on:
                        await self.hooks.emit(
                            "rollout_started",
                            request.rollout_id,
                            request=request.model_dump(mode="json", exclude={"api_key"}),
                            tools=tools,
                        )
                    async with asyncio.timeout(self.limits.rollout_timeout_s) as deadline:
                        result = await self.agent.run(ctx)
                    ending = _Ending(result)
                except TimeoutError as exc:
                    if deadline is not None and deadline.expired():
                        ending = _failure(
                            f"rollout exceeded its {self.limits.rollout_timeout_s:g}s deadline",
                            "timeout",
                            exc,
                        )
                    else:
                        exc_info = exc
                finally:
                    self.running -= 1
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            cancelling = task.cancelling() if task is not None else 0
            if record.cancel_reason is None and cancelling:
                raise  # not ours: the loop itself is going away
            while task is not None and task.cancelling():  # ours: handled here, all of them
                task.uncancel()
            if not admitted:
                self.queued -= 1
            if record.cancel_reason is not None:
                ending = _failure(record.cancel_reason, "cancelled", exc)
            else:  # raised inside the agent's own code, nobody cancelled this rollout
                exc_info = exc
        except RolloutCancelled as exc:
            ending = _failure(str(exc) or "rollout cancelled", "cancelled", exc)
        except Exception as exc:
            exc_info = exc
        if exc_info is not None:
            # As in 0.2, the message is the exception's text; the traceback names its class.
            message = str(exc_info) or type(exc_info).__name__
            ending = _failure(message, error_category(exc_info), exc_info)
        assert ending is not None
        await self._finish(record, ctx, llm, ending)

    def _completion_body(
        self, record: RolloutRecord, ctx: RolloutContext, llm: RolloutLLM, ending: _Ending
    ) -> dict[str, Any]:
        """The completion body for ``ending`` (raises if the result cannot go on the wire)."""
        result = ending.result
        # Read as 0.2 does, by attribute: a result-like object of the agent's own works too,
        # and a wrong one fails with 0.2's message ("'dict' object has no attribute ...").
        try:
            status = RolloutStatus(result.status)
            final_messages = result.final_messages
            finish_reason, error_message = result.finish_reason, result.error_message
            reward, metrics = result.reward, result.metrics
        except (AttributeError, ValueError) as exc:
            raise _Unsendable(
                str(exc),
                "run() must return ctx.complete(...) or ctx.error(...) (a RolloutResult with "
                f'status "COMPLETED" or "ERROR"); it returned {type(result).__name__} '
                f"{result!r:.200}",
            ) from None
        if not isinstance(metrics, RolloutMetrics):
            metrics = ctx._build_metrics()
        # Ours: the largest context of the rollout is known here, whatever built the result.
        if not metrics.max_context_tokens:
            metrics = metrics.model_copy(update={"max_context_tokens": llm.max_context_tokens})
        if not metrics.total_latency_ms:
            metrics = metrics.model_copy(update={"total_latency_ms": ctx.elapsed_ms()})
        extra: dict[str, Any] = {}
        if status is RolloutStatus.ERROR:
            # Ours: an ERROR without messages reports the trajectory it had reached.
            if not final_messages:
                final_messages = llm.partial_messages
            extra["error_category"] = ending.category or "agent_error"
            extra["traceback"] = ending.traceback or f"{error_message}\n"
        completion = RolloutResponse(
            rollout_id=record.rollout_id,
            status=status,
            final_messages=final_messages,
            finish_reason=finish_reason,
            error_message=error_message,
            reward=reward,
            metrics=metrics,
            extra_fields=extra,
        )
        body = completion.wire()
        pydantic_core.to_json(body)  # fail here, not in the middle of delivery
        return body

    def _wire_result(
        self, record: RolloutRecord, ctx: RolloutContext, llm: RolloutLLM, ending: _Ending
    ) -> dict[str, Any]:
        """The completion body; a result that cannot be sent becomes an ERROR that can."""
        try:
            return self._completion_body(record, ctx, llm, ending)
        except _Unsendable as exc:
            fallback = _failure(exc.message, "agent_error", None, hint=exc.hint)
        except Exception as exc:
            logger.exception("rollout %r returned a result that cannot be sent", record.rollout_id)
            message = f"the rollout's result cannot be sent: {type(exc).__name__}: {exc}"
            fallback = _failure(message, "agent_error", exc)
        try:
            return self._completion_body(record, ctx, llm, fallback)
        except Exception:  # the partial trajectory is not serialisable either: send none
            llm.partial_messages = []
            return self._completion_body(record, ctx, llm, fallback)

    async def _finish(
        self, record: RolloutRecord, ctx: RolloutContext, llm: RolloutLLM, ending: _Ending
    ) -> None:
        record.finishing = True
        body = self._wire_result(record, ctx, llm, ending)
        if body["status"] == RolloutStatus.COMPLETED.value:
            record.status = "completed"
        else:
            category = body.get("extra_fields", {}).get("error_category", "agent_error")
            record.error_category = category
            record.status = "cancelled" if category == "cancelled" else "error"
        progress = DeliveryProgress()
        try:
            delivery = await self.client.complete(
                record.request.trainer_url, body, api_key=record.request.api_key, progress=progress
            )
        except asyncio.CancelledError:
            last = f" (last error: {progress.error})" if progress.error else ""
            progress.error = f"delivery cancelled at shutdown{last}"
            delivery = progress.result()
        except Exception as exc:  # complete() never raises; this is only a safety net
            progress.error = f"{type(exc).__name__}: {exc}"
            delivery = progress.result()
        record.delivery = "delivered" if delivery.delivered else "failed"
        record.delivery_error = delivery.error
        record.finished_at = time.time()
        metrics = ctx.metrics
        record.metrics, record.context = metrics, None
        # Kept for the record TTL (idempotency, status) as one tuple.
        done = FinishedRollout(
            rollout_id=record.rollout_id,
            dedup_key=record.dedup_key,
            status=record.status,
            delivery=record.delivery,
            delivery_error=record.delivery_error,
            error_category=record.error_category,
            created_at=record.created_at,
            started_at=record.started_at,
            finished_at=record.finished_at,
            num_llm_calls=metrics.num_llm_calls,
            num_tool_calls=metrics.num_tool_calls,
            tools=record.init_response["tools"],
        )
        if self.records.get(done.rollout_id) is record:
            self.records[done.rollout_id] = done
        if self._by_key.get(done.dedup_key) is record:
            self._by_key[done.dedup_key] = done
        self._finished.append(done)
        self.completed_total += 1
        if not delivery.delivered:
            logger.error(
                "completion of rollout %r was not delivered after %d attempt%s: %s",
                record.rollout_id,
                delivery.attempts,
                "" if delivery.attempts == 1 else "s",
                delivery.error,
            )
        if self.hooks.active:
            await ctx._events.emit(  # type: ignore[union-attr]
                "rollout_finished",
                completion=body,
                delivery=record.delivery,
                delivery_error=record.delivery_error,
            )

    # ---- control ---------------------------------------------------------------------------

    def cancel(self, rollout_id: str, reason: str = "cancelled by request") -> bool:
        """Cancel a rollout; it ends with an ERROR completion, category ``cancelled``.

        Returns False for an unknown id. A rollout already delivering its result is left alone.
        """
        record = self.records.get(rollout_id)
        if record is None:
            return False
        if not isinstance(record, RolloutRecord):
            return True  # finished
        task = record.task
        if task is None or task.done() or record.finishing or record.cancel_reason:
            return True
        record.cancel_reason = reason
        if record.driving:
            task.cancel()
            self._recancel_later(record)
        return True

    def _recancel_later(self, record: RolloutRecord) -> None:
        """Cancel again until the rollout ends: agent code can swallow a cancellation
        (``asyncio.wait_for`` on Python 3.11 does when its inner task finishes at that moment)."""

        def again() -> None:
            task = record.task
            if task is None or task.done() or record.finishing:
                return
            task.cancel()
            self._recancel_later(record)

        asyncio.get_running_loop().call_later(_RECANCEL_AFTER_S, again)

    async def wait(self, rollout_id: str) -> None:
        """Wait until a rollout has ended and its completion delivery is over."""
        record = self.records.get(rollout_id)
        if record is not None and record.task is not None and not record.task.done():
            await asyncio.wait([record.task])

    def in_flight(self) -> list[RolloutRecord]:
        """Rollouts whose task has not finished (queued, running or delivering)."""
        return [
            r
            for r in self.records.values()
            if isinstance(r, RolloutRecord) and r.task is not None and not r.task.done()
        ]

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
                _, pending = await asyncio.wait(
                    pending, timeout=self.limits.final_delivery_timeout_s
                )
                if pending:
                    # Deliveries still retrying: give up on them (each records "failed") rather
                    # than leave them running against a closed client after the app is gone.
                    for task in pending:
                        task.cancel()
                    await asyncio.wait(pending, timeout=1.0)
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
