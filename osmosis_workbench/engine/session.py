"""One debuggable rollout: the step gate and its plain async API.

A ``StepSession`` runs one rollout through the local trainer with a ``StepGate`` in the chat
endpoint. After each model answer, before the agent sees it, the rollout pauses; the caller
then looks at it and decides: ``next()`` releases it (optionally with an edited answer),
``continue_()`` releases it and stops pausing, ``abort()`` ends the rollout as ERROR
"aborted by user", ``edit_tool_results()`` has the model answer again from edited tool
results. The TUI's n/c/e/q keys call exactly these; tests drive them headless.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from osmosis_workbench.engine.trainer import (
    LLMExchange,
    LocalTrainer,
    Regenerate,
    RolloutAborted,
    RolloutOutcome,
    RolloutRun,
    ServerTarget,
)


@dataclass
class PausedCall:
    """A model answer held at the gate: the rollout waits until it is released."""

    run: RolloutRun
    exchange: LLMExchange
    _release: asyncio.Future

    @property
    def turn(self) -> int:
        """1-based number of the LLM call."""
        return self.exchange.turn

    @property
    def message(self) -> dict[str, Any]:
        """The pending answer's message (content and tool calls)."""
        return self.exchange.message

    @property
    def finish_reason(self) -> str | None:
        """The pending answer's finish reason."""
        try:
            return self.exchange.completion["choices"][0].get("finish_reason")  # type: ignore
        except (TypeError, KeyError, IndexError):
            return None


class StepGate:
    """A trainer gate that pauses after every model answer while ``stepping`` is on."""

    def __init__(self, stepping: bool = True, on_pause: Callable[[PausedCall], None] | None = None):
        self.stepping = stepping
        self.on_pause = on_pause
        self.paused: PausedCall | None = None
        self._pause_event = asyncio.Event()

    async def __call__(self, run: RolloutRun, exchange: LLMExchange) -> Regenerate | None:
        if run.aborted:
            raise RolloutAborted(run.aborted)
        if not self.stepping:
            return
        release: asyncio.Future = asyncio.get_running_loop().create_future()
        paused = PausedCall(run, exchange, release)
        self.paused = paused
        self._pause_event.set()
        if self.on_pause:
            self.on_pause(paused)
        try:
            decision = await release
        finally:
            if self.paused is paused:
                self.paused = None
            self._pause_event.clear()
        if isinstance(decision, RolloutAborted):
            raise decision
        if isinstance(decision, Regenerate):
            return decision
        if decision is not None:  # an edited answer replaces the model's
            exchange.completion = decision
            exchange.replaced = True
        return None

    async def wait_paused(self) -> None:
        """Return once a call is paused at the gate."""
        await self._pause_event.wait()

    def _resolve(self, value: Any) -> bool:
        paused = self.paused
        if paused is None or paused._release.done():
            return False
        # Forget the pause now, not when the gate coroutine next runs: a caller that
        # releases and then waits must wait for the *next* pause.
        self.paused = None
        self._pause_event.clear()
        paused._release.set_result(value)
        return True

    def release(self, replacement: dict[str, Any] | None = None) -> bool:
        """Let the paused answer through (``replacement``: a whole completion to send instead)."""
        return self._resolve(replacement)

    def regenerate(self, messages: list[dict[str, Any]]) -> bool:
        """Drop the paused answer and ask the model again with ``messages`` as its input."""
        return self._resolve(Regenerate(messages))

    def abort(self, reason: str = "aborted by user") -> bool:
        """End the rollout: the agent's pending LLM call fails, the result is ERROR."""
        self.stepping = False
        return self._resolve(RolloutAborted(reason))


def model_input(exchange: LLMExchange) -> list[dict[str, Any]]:
    """The messages the model answered from (edited ones, if the user changed them)."""
    if exchange.model_messages is not None:
        return exchange.model_messages
    return list(exchange.request.get("messages") or [])


def tool_results_of(exchange: LLMExchange) -> list[dict[str, Any]]:
    """The tool messages at the end of an exchange's input (the results the answer replies to)."""
    results: list[dict[str, Any]] = []
    for message in reversed(model_input(exchange)):
        if message.get("role") != "tool":
            break
        results.append(message)
    return results[::-1]


def replace_message(completion: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``completion`` whose first choice carries ``message`` (an edited answer)."""
    edited = copy.deepcopy(completion)
    edited["choices"][0]["message"] = message
    if message.get("tool_calls"):
        edited["choices"][0]["finish_reason"] = "tool_calls"
    return edited


class StepSession:
    """Runs one rollout that pauses after each LLM answer; the debugger's engine."""

    def __init__(
        self,
        trainer: LocalTrainer,
        target: ServerTarget,
        request: dict[str, Any],
        *,
        timeout_s: float = 600.0,
        stepping: bool = True,
        label: str = "",
        on_pause: Callable[[PausedCall], None] | None = None,
        on_exchange: Callable[[LLMExchange], None] | None = None,
    ) -> None:
        self.trainer = trainer
        self.target = target
        self.request = request
        self.timeout_s = timeout_s
        self.label = label
        self.gate = StepGate(stepping, on_pause)
        self.on_exchange = on_exchange
        self.run: RolloutRun | None = None
        self.task: asyncio.Task[RolloutOutcome] | None = None

    async def start(self) -> None:
        """Send the init; the rollout then runs until its first pause."""
        loop = asyncio.get_running_loop()
        self.task = loop.create_task(self._run(), name=f"step:{self.label}")

    async def _run(self) -> RolloutOutcome:
        self.run = self.trainer.open_run(
            self.request,
            gate=self.gate,
            label=self.label,
            on_exchange=self.on_exchange,
            trainer_url=self.target.trainer_url,
        )
        return await self.trainer.drive(self.run, self.target, self.timeout_s)

    @property
    def paused(self) -> PausedCall | None:
        """The call held at the gate right now, if any."""
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

    async def wait(self) -> PausedCall | None:
        """Wait for the next pause; ``None`` when the rollout finished instead."""
        assert self.task is not None, "call start() first"
        if self.gate.paused is not None:
            return self.gate.paused
        pause = asyncio.ensure_future(self.gate.wait_paused())
        try:
            await asyncio.wait({pause, self.task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            pause.cancel()
        return self.gate.paused

    def next(self, replacement: dict[str, Any] | None = None) -> bool:
        """Release the paused answer (``n``), optionally replaced by an edited completion."""
        return self.gate.release(replacement)

    def new_tool_results(self) -> list[dict[str, Any]]:
        """The tool messages the paused answer replies to (those sent since the last answer)."""
        paused = self.gate.paused
        if paused is None:
            return []
        return tool_results_of(paused.exchange)

    def edit_tool_results(self, contents: dict[str, str]) -> bool:
        """Ask the model again with edited tool results (``tool_call_id -> new content``).

        Only this call's model input changes; the paused answer is replaced by the new one,
        and the rollout pauses again on it.
        """
        paused = self.gate.paused
        if paused is None:
            return False
        messages = [
            {**m, "content": contents[m.get("tool_call_id")]}
            if m.get("role") == "tool" and m.get("tool_call_id") in contents
            else m
            for m in model_input(paused.exchange)
        ]
        return self.gate.regenerate(messages)

    def continue_(self) -> bool:
        """Stop pausing and release the current answer (``c``)."""
        self.gate.stepping = False
        return self.gate.release()

    def abort(self, reason: str = "aborted by user") -> bool:
        """Abort the rollout (``q``); it ends as ERROR with ``reason``."""
        if self.gate.abort(reason):
            return True
        if self.run is not None and not self.finished:
            # Not paused (e.g. the model is still answering): abort at the next gate.
            self.run.aborted = reason
        return False

    async def finish(self) -> RolloutOutcome:
        """Wait for the end of the rollout and return its outcome."""
        assert self.task is not None, "call start() first"
        return await self.task
