"""One debuggable dataset rollout: the trainer-side step gate and its session.

A ``StepSession`` runs one rollout through the local trainer with a ``StepGate`` in the chat
endpoint. After each model answer, before the agent sees it, the rollout pauses; the caller
then looks at it and decides: ``next()`` releases it (optionally with an edited answer),
``continue_()`` releases it and stops pausing, ``abort()`` ends the rollout as ERROR
"aborted by user", ``edit_tool_results()`` has the model answer again from edited tool
results. It implements ``stepping.SteppedRollout``: the TUI's n/c/e/q keys call exactly these,
and tests drive them headless.

With ``--model human`` the developer is the model: each LLM call of the rollout stops at the
``HumanBackend`` (``wait()`` returns its ``AnswerRequest``) and the gate does not pause on
the answer they just wrote.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from osmosis_workbench.engine.models import AnswerRequest, HumanBackend, ModelBackend
from osmosis_workbench.engine.outcome import RolloutOutcome
from osmosis_workbench.engine.stepping import PausedAnswer, Stop
from osmosis_workbench.engine.trainer import (
    LLMExchange,
    LocalTrainer,
    Regenerate,
    RolloutAborted,
    RolloutRun,
    ServerTarget,
)


@dataclass(frozen=True)
class _Edited:
    """A gate decision: send this message (and finish reason) to the agent instead."""

    message: dict[str, Any]
    finish_reason: str | None


@dataclass(eq=False)
class _Hold:
    """An answer held at the gate, and the future its decision arrives on."""

    answer: PausedAnswer
    exchange: LLMExchange
    release: asyncio.Future[Any]


def _paused_answer(exchange: LLMExchange) -> PausedAnswer:
    """What the debugger sees of an exchange whose answer is held."""
    if exchange.model_messages is not None:
        model_input = exchange.model_messages
    else:
        model_input = list(exchange.request.get("messages") or [])
    return PausedAnswer(
        turn=exchange.turn,
        message=exchange.message,
        finish_reason=exchange.finish_reason,
        request_messages=model_input,
        usage=exchange.usage,
        latency_ms=exchange.latency_ms,
        replaced=exchange.replaced,
    )


def _with_message(completion: dict[str, Any], edited: _Edited) -> dict[str, Any]:
    """A copy of ``completion`` whose first choice carries the edited answer."""
    replaced = copy.deepcopy(completion)
    choice = replaced["choices"][0]
    choice["message"] = edited.message
    choice["finish_reason"] = edited.finish_reason
    return replaced


class StepGate:
    """A trainer gate that pauses after every model answer while ``stepping`` is on.

    ``pause_from``: the first LLM call (1-based) it pauses at; earlier answers pass (a fork's
    calls replayed from its parent).
    """

    def __init__(self, stepping: bool = True, *, pause_from: int = 1):
        self.stepping = stepping
        self.pause_from = pause_from
        self._hold: _Hold | None = None
        self._pause_event = asyncio.Event()

    @property
    def paused(self) -> PausedAnswer | None:
        """The answer held right now, if any."""
        return self._hold.answer if self._hold is not None else None

    async def __call__(self, run: RolloutRun, exchange: LLMExchange) -> Regenerate | None:
        if run.aborted:
            raise RolloutAborted(run.aborted)
        if not self.stepping or exchange.turn < self.pause_from:
            return None
        hold = _Hold(_paused_answer(exchange), exchange, asyncio.get_running_loop().create_future())
        self._hold = hold
        self._pause_event.set()
        try:
            decision = await hold.release
        finally:
            if self._hold is hold:
                self._hold = None
            self._pause_event.clear()
        if isinstance(decision, RolloutAborted):
            raise decision
        if isinstance(decision, Regenerate):
            return decision
        if isinstance(decision, _Edited) and exchange.completion is not None:
            exchange.completion = _with_message(exchange.completion, decision)
            exchange.replaced = True
        return None

    async def wait_paused(self) -> None:
        """Return once an answer is held at the gate."""
        await self._pause_event.wait()

    def _resolve(self, value: Any) -> bool:
        hold = self._hold
        if hold is None or hold.release.done():
            return False
        # Forget the pause now, not when the gate coroutine next runs: a caller that
        # releases and then waits must wait for the *next* pause.
        self._hold = None
        self._pause_event.clear()
        hold.release.set_result(value)
        return True

    def release(self, edited: dict[str, Any] | None = None) -> bool:
        """Let the held answer through (``edited``: a message the agent gets instead)."""
        hold = self._hold
        if edited is None or hold is None:
            return self._resolve(None)
        return self._resolve(_Edited(edited, hold.answer.finish_reason_for(edited)))

    def regenerate(self, messages: list[dict[str, Any]]) -> bool:
        """Drop the held answer and ask the model again with ``messages`` as its input."""
        return self._resolve(Regenerate(messages))

    def abort(self, reason: str = "aborted by user") -> bool:
        """End the rollout: the agent's pending LLM call fails, the result is ERROR."""
        self.stepping = False
        return self._resolve(RolloutAborted(reason))


class StepSession:
    """A dataset row's rollout that pauses after each LLM answer (a ``SteppedRollout``)."""

    def __init__(
        self,
        trainer: LocalTrainer,
        target: ServerTarget,
        request: dict[str, Any],
        *,
        timeout_s: float = 600.0,
        stepping: bool = True,
        label: str = "",
        on_exchange: Callable[[LLMExchange], None] | None = None,
        cannot_regenerate: str | None = None,
        human: HumanBackend | None = None,
        backend: ModelBackend | None = None,
        pause_from: int = 1,
    ) -> None:
        self.trainer = trainer
        self.target = target
        self.request = request
        self.timeout_s = timeout_s
        self.label = label
        self.gate = StepGate(stepping, pause_from=pause_from)
        #: The model this rollout asks, when not the trainer's (a fork's).
        self.backend = backend
        self.on_exchange = on_exchange
        #: Why the model cannot answer an edited history (a replay), if it cannot.
        self.cannot_regenerate = cannot_regenerate
        #: The developer as the model (``--model human``): its calls are stops too.
        self.human = human
        self.run: RolloutRun | None = None
        self.task: asyncio.Task[RolloutOutcome] | None = None
        self._cancelling: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Send the init; the rollout then runs until its first pause."""
        if self.task is None:
            loop = asyncio.get_running_loop()
            self.task = loop.create_task(self._run(), name=f"step:{self.label}")

    async def _run(self) -> RolloutOutcome:
        self.run = self.trainer.open_run(
            self.request,
            gate=self.gate,
            label=self.label,
            on_exchange=self.on_exchange,
            trainer_url=self.target.trainer_url,
            backend=self.backend,
        )
        return await self.trainer.drive(self.run, self.target, self.timeout_s)

    @property
    def paused(self) -> PausedAnswer | None:
        """The answer held at the gate right now, if any."""
        return self.gate.paused

    @property
    def finished(self) -> bool:
        """Whether the rollout has ended (its outcome is ready)."""
        return self.task is not None and self.task.done()

    @property
    def outcome(self) -> RolloutOutcome | None:
        """How the rollout ended, once it has."""
        if self.task is not None and self.task.done() and not self.task.cancelled():
            return self.task.result()
        return None

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The history so far, including the paused answer."""
        if self.outcome is not None:
            return self.outcome.final_messages
        return self.run.messages if self.run else list(self.request.get("messages", []))

    @property
    def tools(self) -> list[dict[str, Any]]:
        """The tools the server returned at init (their JSON Schemas)."""
        return self.run.tools if self.run else []

    @property
    def exchanges(self) -> Sequence[LLMExchange]:
        """The LLM calls so far."""
        return self.run.exchanges if self.run else ()

    @property
    def rollout_id(self) -> str:
        """The rollout's id (as sent in its init)."""
        return str(self.request.get("rollout_id") or "")

    @property
    def answer_request(self) -> AnswerRequest | None:
        """The LLM call waiting for the developer's answer now (``--model human``), if any."""
        return self.human.pending_for(self.rollout_id) if self.human is not None else None

    async def wait(self) -> Stop | None:
        """Wait for the next stop: a held answer, or a call waiting for the developer's
        answer; ``None`` when the rollout finished instead."""
        assert self.task is not None, "call start() first"
        stop = self.gate.paused or self.answer_request
        if stop is not None:
            return stop
        waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(self.gate.wait_paused())}
        if self.human is not None:
            waiters.add(asyncio.ensure_future(self.human.request_for(self.rollout_id)))
        try:
            await asyncio.wait({*waiters, self.task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        return self.gate.paused or self.answer_request

    def next(self, edited: dict[str, Any] | None = None) -> bool:
        """Release the paused answer (``n``), or the edited message in its place."""
        return self.gate.release(edited)

    def edit_tool_results(self, contents: dict[str, str]) -> bool:
        """Ask the model again with edited tool results (``tool_call_id -> new content``).

        Only this call's model input changes; the paused answer is replaced by the new one,
        and the rollout pauses again on it.
        """
        paused = self.gate.paused
        if paused is None or self.cannot_regenerate:
            return False
        messages = [
            {**m, "content": contents[m["tool_call_id"]]}
            if m.get("role") == "tool" and m.get("tool_call_id") in contents
            else m
            for m in paused.request_messages
        ]
        return self.gate.regenerate(messages)

    def continue_(self) -> bool:
        """Stop pausing and release the current answer (``c``)."""
        self.gate.stepping = False
        return self.gate.release()

    def abort(self, reason: str = "aborted by user") -> bool:
        """Abort the rollout (``q``); it ends as ERROR with ``reason``.

        Held at the gate: the agent's call fails at once. Otherwise the agent is working (a
        tool, its own code) or the model is answering: the server is asked to cancel the
        rollout now (a running tool is cancelled with it), and a model answer that still
        arrives stops at the gate.
        """
        if self.gate.abort(reason):
            return True
        request = self.answer_request
        if request is not None:
            # The model call fails; the rollout ends as aborted (below) all the same.
            request.abort(reason)
        run = self.run
        if run is not None and not self.finished and not run.aborted:
            run.aborted = reason
            self._cancelling = asyncio.get_running_loop().create_task(
                self.trainer.cancel_on_server(run, self.target), name=f"cancel:{self.label}"
            )
        return False

    def let_go(self) -> None:
        """Nobody follows this rollout any more: it runs on to its end without pausing."""
        self.continue_()

    async def finish(self) -> RolloutOutcome:
        """Wait for the end of the rollout and return its outcome."""
        assert self.task is not None, "call start() first"
        return await self.task
