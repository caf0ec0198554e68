"""The local trainer: the trainer side of the rollout protocol, run by the workbench.

It serves ``POST /v1/chat/completions`` (answered by a model backend, through an optional
per-rollout *gate* that can hold, show, replace or abort each answer) and
``POST /v1/rollout/completed`` (collects results), and drives rollouts against any rollout
server: the embedded one (routed in-process over ASGI, the same HTTP exchange without a socket)
or a remote one by URL. It checks what the server sends and records protocol violations, so a
run against ``--url`` doubles as a conformance check of anyone's rollout server.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pydantic_core
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from osmosis_workbench.engine.models import ModelBackend, ModelError
from osmosis_workbench.engine.outcome import LLMCallStats, RolloutOutcome
from server_core.http_client import HTTPClient, HTTPError, HTTPTransportError
from server_core.protocol import CompletedRequest, validate_tool

logger = logging.getLogger("osmosis_workbench.trainer")

#: How many finished runs the trainer remembers, to recognise late callbacks.
_FINISHED_KEPT = 10_000

#: The base URL the embedded server reaches the trainer at, in-process (never resolved).
IN_PROCESS_TRAINER_URL = "http://local-trainer.invalid"


def _clock() -> float:
    """Seconds, for durations (one function, so a test can stand in for the passing time)."""
    return time.perf_counter()


def _json(body: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        pydantic_core.to_json(body), status_code, headers, media_type="application/json"
    )


@dataclass(frozen=True)
class Regenerate:
    """A gate's decision: ask the model again, with these messages as its input."""

    messages: list[dict[str, Any]]


class RolloutAborted(Exception):
    """Raised by a gate to end the rollout: the agent's pending LLM call fails."""

    def __init__(self, reason: str = "aborted by user") -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class LLMExchange:
    """One chat call of a rollout: what the agent sent and what the model answered."""

    turn: int
    request: dict[str, Any]
    completion: dict[str, Any] | None = None
    latency_ms: float = 0.0
    cost_usd: float | None = None
    error: str | None = None
    replaced: bool = False
    #: The model's input when the user edited it (a tool result) and asked again.
    model_messages: list[dict[str, Any]] | None = None
    #: The user's time in this call: the answer held at the gate (looked at in the debugger),
    #: and writing it (``--model human``). Durations leave it out.
    paused_ms: float = 0.0

    @property
    def message(self) -> dict[str, Any]:
        """The answer's message (empty before the model answered)."""
        try:
            return self.completion["choices"][0]["message"]  # type: ignore[index]
        except (TypeError, KeyError, IndexError):
            return {}

    @property
    def usage(self) -> dict[str, Any]:
        """Token usage of the answer."""
        return (self.completion or {}).get("usage") or {}

    @property
    def finish_reason(self) -> str | None:
        """The answer's finish reason (``None`` before the model answered)."""
        try:
            return self.completion["choices"][0].get("finish_reason")  # type: ignore[index]
        except (TypeError, KeyError, IndexError, AttributeError):
            return None

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens of this call (0 when the model reported none)."""
        usage = self.usage
        return int(
            usage.get("total_tokens")
            or int(usage.get("prompt_tokens") or 0) + int(usage.get("completion_tokens") or 0)
        )

    @property
    def request_size(self) -> int:
        """How many messages the agent sent in this call."""
        messages = self.request.get("messages")
        return len(messages) if isinstance(messages, list) else 0

    def stats(self, trajectory: Sequence[dict[str, Any]] = ()) -> LLMCallStats:
        """This call as journaled; ``trajectory``: the rollout's final messages.

        The answer is kept apart only when the trajectory does not hold it where this call's
        request ends (one message compared per call, so long rollouts stay cheap).
        """
        usage, size, message = self.usage, self.request_size, self.message
        kept = trajectory[size] if size < len(trajectory) else None
        return LLMCallStats(
            turn=self.turn,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            latency_ms=self.latency_ms,
            cost_usd=self.cost_usd,
            error=self.error,
            request_size=size,
            finish_reason=self.finish_reason,
            answer=message if message and message != kept else None,
        )


#: ``gate(run, exchange)``: awaited after the model answered and before the agent gets it.
#: It may edit ``exchange.completion`` in place, raise ``RolloutAborted``, or return
#: ``Regenerate(messages)`` to have the model answer again from an edited input.
Gate = Callable[["RolloutRun", LLMExchange], "Awaitable[Regenerate | None]"]


@dataclass
class RolloutRun:
    """Trainer-side state of one rollout it asked a server for."""

    rollout_id: str
    request: dict[str, Any]
    gate: Gate | None = None
    label: str = ""
    tools: list[dict[str, Any]] = field(default_factory=list)
    exchanges: list[LLMExchange] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    #: The completion the server sent, validated (``None`` until one arrived).
    completion: CompletedRequest | None = None
    #: What was wrong with the completion body, when the server sent one that is not valid.
    malformed_completion: str | None = None
    model_error: ModelError | None = None
    aborted: str | None = None
    #: Why the trainer stopped waiting for this rollout's end (its server went away).
    abandoned: str | None = None
    started: float = field(default_factory=_clock)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set once the init's answer has been read (its tools apply to every generation).
    init_answered: asyncio.Event = field(default_factory=asyncio.Event)
    #: Called with each exchange when it starts and when it ends (UIs follow a rollout here).
    on_exchange: Callable[[LLMExchange], None] | None = None
    #: The model this rollout's calls go to, when not the trainer's (a fork answers its first
    #: calls from its parent's record).
    backend: ModelBackend | None = None

    @property
    def paused_ms(self) -> float:
        """How long the rollout's answers were held at the gate, in all."""
        return sum(x.paused_ms for x in self.exchanges)

    @property
    def ended(self) -> bool:
        """Whether the server reported the end (a completion, valid or not, arrived)."""
        return self.completion is not None or self.malformed_completion is not None

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The history as the trainer knows it: last request's messages plus the answer."""
        if self.completion is not None and self.completion.final_messages:
            return self.completion.final_messages
        if not self.exchanges:
            return list(self.request.get("messages", []))
        last = self.exchanges[-1]
        history = list(last.request.get("messages", []))
        if last.message:
            history.append(last.message)
        return history

    def violation(self, message: str) -> None:
        """Record that the server broke the protocol (shown with the outcome)."""
        logger.warning("protocol violation in rollout %r: %s", self.rollout_id, message)
        self.violations.append(message)


@dataclass
class ServerTarget:
    """A rollout server to run against: its URL, key and the client that reaches it."""

    url: str
    #: ``AiohttpClient`` (remote servers), ``ASGIClient`` (the embedded one, in-process).
    client: HTTPClient
    api_key: str | None = None
    #: The trainer URL this server calls back (in-process for the embedded server).
    trainer_url: str | None = None
    #: The embedded server, reached without a socket: it cannot go away mid-run.
    in_process: bool = False

    def headers(self) -> dict[str, str]:
        """Auth headers for requests to the server."""
        return {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}


class InitRefused(Exception):
    """The server refused an init: ``status_code``, ``detail`` and a retry delay if any.

    ``unreachable``: no HTTP answer at all, the connection failed (is the server still up?);
    ``cause`` is then the client's own words for it.
    """

    def __init__(
        self,
        status_code: int | None,
        detail: str,
        retry_after: float | None = None,
        *,
        unreachable: bool = False,
        cause: str = "",
    ):
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.retry_after = retry_after
        self.unreachable = unreachable
        self.cause = cause

    @property
    def busy(self) -> bool:
        """Whether the server is only busy (429/503): try later or elsewhere."""
        return self.status_code in (429, 503)


class LocalTrainer:
    """Serves the trainer endpoints from a model backend and drives rollouts."""

    def __init__(self, backend: ModelBackend, *, callback_key: str | None = None) -> None:
        self.backend = backend
        #: The bearer token servers must send on callbacks (we hand it over in each request).
        self.callback_key = callback_key or "osm_trainer_" + secrets.token_urlsafe(16)
        self.runs: dict[str, RolloutRun] = {}
        #: Recently finished runs, so a late callback (a second completion, a chat after the
        #: end) is still recognised and reported instead of meeting a 404.
        self.finished: OrderedDict[str, RolloutRun] = OrderedDict()
        #: Violations seen after a rollout's outcome was reported: (rollout_id, message).
        self.late_violations: list[tuple[str, str]] = []
        self.url = IN_PROCESS_TRAINER_URL
        self.app = self._build_app()

    # ---- serving ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def listening(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Also serve the trainer on a real port, for remote rollout servers; yields its URL."""
        from server_core.serve import EmbeddedServer

        server = EmbeddedServer(self.app, host=host, port=port, log_level="warning")
        await server.start()
        self.url = server.url
        try:
            yield self.url
        finally:
            self.url = IN_PROCESS_TRAINER_URL
            await server.stop()

    def _find(self, rollout_id: Any) -> RolloutRun | None:
        if not isinstance(rollout_id, str):
            return None
        return self.runs.get(rollout_id) or self.finished.get(rollout_id)

    def _violation(self, run: RolloutRun, message: str) -> None:
        run.violation(message)
        if run.rollout_id in self.finished:  # its outcome is out already: report it apart
            self.late_violations.append((run.rollout_id, message))

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization") or ""
        scheme, _, token = header.partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else header.strip()
        return hmac.compare_digest(
            token.encode("latin-1", "replace"), self.callback_key.encode("latin-1", "replace")
        )

    def _build_app(self) -> Starlette:
        # Plain Starlette: two JSON endpoints need no dependency injection, and FastAPI's
        # per-request machinery is a third of the cost of an in-process hop.
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/rollout/completed", self._completed, methods=["POST"]),
            ]
        )

    async def _read_json(self, request: Request) -> Any:
        raw = await request.body()
        if len(raw) > 1_000_000:  # large histories: parse off the event loop
            return await asyncio.to_thread(pydantic_core.from_json, raw)
        return pydantic_core.from_json(raw)

    async def _chat(self, request: Request) -> Response:
        try:
            body = await self._read_json(request)
        except ValueError:
            return _json({"detail": "body is not JSON"}, 400)
        rollout_id = body.get("rollout_id") if isinstance(body, dict) else None
        run = self._find(rollout_id)
        if run is None:
            return _json({"detail": f"unknown rollout_id {rollout_id!r}"}, 404)
        if not self._authorized(request):
            run.violation("chat callback without the api_key from the init request")
            return _json({"detail": "Invalid or missing API key"}, 401)
        if run.ended:
            self._violation(run, "chat callback after the rollout's completion")
            return _json({"detail": "the rollout is already completed"}, 409)
        if not run.init_answered.is_set():
            # The agent may call back before the trainer has read the init's 202 (it runs as
            # soon as it is accepted); the init's tools must apply to this call too.
            try:
                await asyncio.wait_for(run.init_answered.wait(), 30.0)
            except TimeoutError:
                run.violation("chat callback for a rollout whose init never answered")
        if run.aborted:
            return _json({"error": {"type": "aborted", "message": run.aborted}}, 409)
        messages = body.get("messages")
        if not isinstance(messages, list):
            run.violation("chat callback without a 'messages' list")
            return _json({"detail": "'messages' must be a list"}, 422)
        if run.exchanges:
            previous = run.exchanges[-1].request.get("messages", [])
            if messages[: len(previous)] != previous:
                run.violation(
                    f"chat call {len(run.exchanges) + 1} does not extend the previous history "
                    "(messages must be append-only)"
                )
        backend_body = dict(body)
        if "tools" not in backend_body and run.tools:
            # A real trainer applies the init response's tools to every generation.
            backend_body["tools"] = run.tools
        # Which dataset row this is (row_index), for backends that answer per row; a protocol
        # key, so it never reaches a provider nor a cassette key.
        backend_body["metadata"] = run.request.get("metadata") or {}
        exchange = LLMExchange(turn=len(run.exchanges) + 1, request=body)
        run.exchanges.append(exchange)
        if run.on_exchange:
            run.on_exchange(exchange)
        backend = run.backend or self.backend
        while True:
            try:
                reply = await backend.complete(backend_body)
            except ModelError as exc:
                run.model_error = run.model_error or exc
                exchange.error = str(exc)
                if run.on_exchange:
                    run.on_exchange(exchange)
                # 4xx: the server must not retry what the backend already retried.
                return _json({"error": {"type": exc.kind, "message": str(exc)}}, 424)
            exchange.completion = reply.completion
            exchange.latency_ms = reply.latency_ms
            exchange.paused_ms += reply.person_ms
            exchange.cost_usd = reply.cost_usd
            if run.gate is None:
                break
            held = _clock()
            try:
                decision = await run.gate(run, exchange)
            except RolloutAborted as exc:
                exchange.paused_ms += (_clock() - held) * 1000
                run.aborted = exc.reason
                exchange.error = exc.reason
                if run.on_exchange:
                    run.on_exchange(exchange)
                return _json({"error": {"type": "aborted", "message": exc.reason}}, 409)
            exchange.paused_ms += (_clock() - held) * 1000
            if not isinstance(decision, Regenerate):
                break
            # The user edited the input (a tool result): ask the model again with it. The
            # agent's own history is unchanged; only this call's model input differs.
            backend_body = {**backend_body, "messages": decision.messages}
            exchange.model_messages = decision.messages
            if run.on_exchange:
                run.on_exchange(exchange)
        if run.on_exchange:
            run.on_exchange(exchange)
        return _json(exchange.completion)

    async def _completed(self, request: Request) -> Response:
        try:
            raw = await self._read_json(request)
        except ValueError:
            return _json({"detail": "body is not JSON"}, 400)
        rollout_id = raw.get("rollout_id") if isinstance(raw, dict) else None
        run = self._find(rollout_id)
        if run is None:
            return _json({"detail": f"unknown rollout_id {rollout_id!r}"}, 404)
        if not self._authorized(request):
            run.violation("completion callback without the api_key from the init request")
            return _json({"detail": "Invalid or missing API key"}, 401)
        try:
            completion = CompletedRequest.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            )
            run.violation(f"completion body does not match the protocol: {problems}")
            if not run.ended:
                run.malformed_completion = problems
                run.done.set()
            return _json({"detail": problems}, 422)
        if run.ended:
            self._violation(run, "second completion for the same rollout (must be exactly one)")
            return _json({"detail": "already completed"}, 200)
        run.completion = completion
        run.done.set()
        return _json({"status": "ok"})

    # ---- driving rollouts ------------------------------------------------------------------

    def open_run(
        self,
        request: dict[str, Any],
        *,
        gate: Gate | None = None,
        label: str = "",
        on_exchange: Callable[[LLMExchange], None] | None = None,
        trainer_url: str | None = None,
        backend: ModelBackend | None = None,
    ) -> RolloutRun:
        """Register a rollout before its init is sent (the callbacks can arrive at once).

        ``backend``: the model this rollout asks instead of the trainer's.
        """
        rollout_id = request.get("rollout_id") or uuid.uuid4().hex
        request = {
            **request,
            "rollout_id": rollout_id,
            "server_url": trainer_url or self.url,
            "api_key": self.callback_key,
        }
        run = RolloutRun(
            rollout_id=rollout_id,
            request=request,
            gate=gate,
            label=label,
            on_exchange=on_exchange,
            backend=backend,
        )
        self.runs[rollout_id] = run
        return run

    async def send_init(self, run: RolloutRun, target: ServerTarget) -> None:
        """POST the init; checks the answer. Raises ``InitRefused`` when it is not a 202."""
        try:
            await self._send_init(run, target)
        finally:
            run.init_answered.set()  # chat callbacks that came early may go on now

    async def _send_init(self, run: RolloutRun, target: ServerTarget) -> None:
        try:
            response = await target.client.post(
                f"{target.url}/v1/rollout/init", json=run.request, headers=target.headers()
            )
        except HTTPError as exc:
            # (ASGIClient never raises: the embedded app answers 500 instead.)
            cause = str(exc) or type(exc).__name__
            raise InitRefused(
                None,
                f"could not reach the rollout server at {target.url}: {cause}",
                unreachable=isinstance(exc, HTTPTransportError),
                cause=cause,
            ) from None
        if response.status_code != 202:
            retry_after = None
            if "retry-after" in response.headers:
                try:
                    retry_after = float(response.headers["retry-after"])
                except ValueError:
                    retry_after = None
            if response.status_code == 200:
                run.violation("init answered 200; the protocol requires 202")
            else:
                raise InitRefused(
                    response.status_code,
                    f"init refused with HTTP {response.status_code}: {response.text[:500]}",
                    retry_after,
                )
        try:
            answer = response.json()
        except ValueError:
            run.violation("init answer is not JSON")
            return
        if not isinstance(answer, dict) or answer.get("rollout_id") != run.rollout_id:
            run.violation("init answer does not echo the rollout_id")
        tools = answer.get("tools") if isinstance(answer, dict) else None
        if not isinstance(tools, list):
            run.violation("init answer has no 'tools' list")
            return
        for index, tool in enumerate(tools):
            for problem in validate_tool(tool):
                run.violation(f"init answer tool {index}: {problem}")
        run.tools = tools

    async def wait(self, run: RolloutRun, target: ServerTarget, timeout_s: float) -> RolloutOutcome:
        """Wait for the completion (asking the server to cancel at the deadline)."""
        try:
            await asyncio.wait_for(run.done.wait(), timeout_s)
        except TimeoutError:
            await self.cancel_on_server(run, target)
            try:
                await asyncio.wait_for(run.done.wait(), 10.0)
            except TimeoutError:
                run.violation(
                    f"no completion callback within {timeout_s:g}s (every accepted rollout "
                    "must be reported exactly once)"
                )
        return self.outcome(run)

    async def cancel_on_server(self, run: RolloutRun, target: ServerTarget) -> None:
        """Ask ``target`` to cancel ``run`` (it then ends as ERROR, category cancelled)."""
        with contextlib.suppress(HTTPError):  # a server without the (optional) cancel endpoint
            await target.client.post(
                f"{target.url}/v1/rollout/{run.rollout_id}/cancel", headers=target.headers()
            )

    async def drive(
        self, run: RolloutRun, target: ServerTarget, timeout_s: float
    ) -> RolloutOutcome:
        """Send ``run``'s init to ``target`` and wait for its end (see ``open_run``)."""
        try:
            try:
                await self.send_init(run, target)
            except InitRefused as exc:
                return self.outcome(run, init_error=exc)
            return await self.wait(run, target, timeout_s + 5.0)
        finally:
            self.forget(run)

    def abandon(self, run: RolloutRun, reason: str) -> None:
        """Stop waiting for ``run``'s completion (its server is gone, or nobody waits any
        more); a run whose completion arrived already keeps it."""
        if run.ended:
            return
        run.abandoned = reason
        run.done.set()

    def forget(self, run: RolloutRun) -> None:
        """Move a run whose outcome is out to the bounded recently-finished list."""
        self.runs.pop(run.rollout_id, None)
        self.finished[run.rollout_id] = run
        while len(self.finished) > _FINISHED_KEPT:
            self.finished.popitem(last=False)

    def outcome(self, run: RolloutRun, init_error: InitRefused | None = None) -> RolloutOutcome:
        """Summarise a run (finished or not) as a ``RolloutOutcome``."""
        costs = [x.cost_usd for x in run.exchanges if x.cost_usd is not None]
        trajectory = run.messages  # the final messages, when the completion has them
        return RolloutOutcome.build(
            run.completion,
            rollout_id=run.rollout_id,
            messages_so_far=trajectory,
            duration_ms=(_clock() - run.started) * 1000,
            paused_ms=run.paused_ms,
            tokens=sum(x.total_tokens for x in run.exchanges),
            llm_calls=len(run.exchanges),
            tools=run.tools,
            violations=run.violations,
            calls=[x.stats(trajectory) for x in run.exchanges],
            cost_usd=sum(costs) if costs else None,
            fallback_error=(
                f"malformed completion: {run.malformed_completion}"
                if run.malformed_completion is not None
                else None
            ),
            model_error=run.model_error,
            init_error=init_error,
            aborted=run.aborted,
        )
