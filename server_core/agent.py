"""The agent API: ``RolloutAgentLoop``, ``RolloutContext``, ``RolloutResult``, the LLM client seam.

An agent subclasses ``RolloutAgentLoop``, names itself, returns its tools for a request and
implements ``async run(ctx)``. Inside ``run`` it talks to the policy model with ``ctx.chat`` and
ends with ``return ctx.complete(messages)`` (or ``ctx.error(...)``). The server delivers the
result to the trainer exactly once, whatever ``run`` does (``server_core.rollouts``).

These classes are the osmosis-ai 0.2 ones, field for field: a context is a plain dataclass over
an LLM client (anything with ``chat_completions`` and ``get_metrics``), so an agent's unit test
builds ``RolloutContext(request=..., tools=..., llm=fake)`` directly. Under the server the
client is ``server_core.rollout_llm.RolloutLLM``, which adds what the protocol needs.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from server_core.errors import TrainerProtocolError
from server_core.protocol import RolloutMetrics, RolloutRequest

if TYPE_CHECKING:
    from server_core.hooks import RolloutEvents
    from server_core.tool_schemas import OpenAIFunctionToolSchema

logger = logging.getLogger("server_core.agent")


# ---- the LLM's answer ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CompletionsResult:
    """One LLM answer as the agent sees it; ``message`` is exactly what the trainer sent.

    Append ``message`` to the history unchanged: trainers check that each chat request
    extends the previous one (prefix consistency for token alignment).
    """

    message: dict[str, Any]
    token_ids: list[int]
    logprobs: list[float]
    usage: dict[str, Any]
    finish_reason: str

    @property
    def has_tool_calls(self) -> bool:
        """Whether the model asked for at least one tool call."""
        return bool(self.message.get("tool_calls"))

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        """The tool calls of the answer (``[]`` when the key is absent, as in 0.2)."""
        calls: list[dict[str, Any]] = self.message.get("tool_calls", [])
        return calls

    @property
    def content(self) -> str | None:
        """The text of the answer, if any."""
        return self.message.get("content")

    @classmethod
    def from_completion(cls, body: Any) -> CompletionsResult:
        """Read a trainer's 200 answer; a wrong shape is a ``TrainerProtocolError``."""
        if not isinstance(body, dict):
            raise TrainerProtocolError(
                f"trainer answered 200 with a JSON {type(body).__name__}, not an object"
            )
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices:
            raise TrainerProtocolError("trainer answered 200 without 'choices'")
        choice = choices[0]
        if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
            raise TrainerProtocolError("trainer answered 200 without 'choices[0].message'")
        usage = body.get("usage")
        token_ids = body.get("token_ids")
        logprobs = body.get("logprobs")
        return cls(
            message=choice["message"],
            token_ids=token_ids if isinstance(token_ids, list) else [],
            logprobs=logprobs if isinstance(logprobs, list) else [],
            usage=usage if isinstance(usage, dict) else {},
            finish_reason=choice.get("finish_reason") or "stop",
        )


#: Our earlier names of the chat result.
ChatResult = CompletionsResult
LLMResult = CompletionsResult


@runtime_checkable
class LLMClientProtocol(Protocol):
    """What a context needs from its LLM client (a fake one in unit tests)."""

    async def chat_completions(
        self, messages: list[dict[str, Any]], **kwargs: Any
    ) -> CompletionsResult:
        """Ask the policy model for the next message given the whole history."""
        ...

    def get_metrics(self) -> RolloutMetrics:
        """The client's counters: LLM latency, calls and tokens so far."""
        ...


# ---- the result -------------------------------------------------------------------------------


@dataclass
class RolloutResult:
    """What ``run`` returns: the outcome the server reports in the completion callback.

    ``status`` is ``"COMPLETED"`` or ``"ERROR"``; anything else is reported as an ERROR.
    """

    status: str
    final_messages: list[dict[str, Any]]
    finish_reason: str
    error_message: str | None = None
    metrics: RolloutMetrics | None = None
    reward: float | None = None


# ---- the context ------------------------------------------------------------------------------

_SAFE_FILE_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$")


def debug_file_name(rollout_id: str) -> str:
    """The ``log_event`` file of a rollout: ``<id>.jsonl``, or a path-safe form of the id.

    An id that could escape the folder (``../x``, ``a/b``) or is not a plain name gets the
    trace writer's safe stem instead (0.2 used the raw id).
    """
    if _SAFE_FILE_NAME.match(rollout_id) and rollout_id not in (".", ".."):
        return f"{rollout_id}.jsonl"
    from server_core.trace import safe_file_stem

    return f"{safe_file_stem(rollout_id)}.jsonl"


@dataclass
class RolloutContext:
    """Everything ``run`` needs for one rollout: the request, its tools and the LLM client.

    ``tools`` is the list ``get_tools`` returned, unchanged. Tool calls are counted with
    ``record_tool_call`` (or by ``execute_tool_calls(..., ctx=ctx)``); ``log_event`` writes to
    the debug directory when one is set, and reaches trace logs and the workbench.
    """

    request: RolloutRequest
    tools: list[Any]
    llm: LLMClientProtocol
    _start_time: float = field(default=0.0, repr=False)
    _tool_latency_ms: float = field(default=0.0, repr=False)
    _num_tool_calls: int = field(default=0, repr=False)
    _debug_dir: str | None = field(default=None, repr=False)
    #: The server's event stream for this rollout (hooks); None outside a server.
    _events: RolloutEvents | None = field(default=None, repr=False, compare=False)

    @property
    def rollout_id(self) -> str:
        """The trainer's id of this rollout."""
        return self.request.rollout_id

    @property
    def debug_enabled(self) -> bool:
        """Whether ``log_event`` writes to a debug directory."""
        return self._debug_dir is not None

    async def chat(self, messages: list[dict[str, Any]], **kwargs: Any) -> CompletionsResult:
        """Ask the policy model for the next message, given the whole history so far.

        ``kwargs`` are OpenAI chat parameters (``tools``, ``temperature``, ``max_tokens``,
        ``seed``...). Under the server they go to the trainer on top of the request's
        ``completion_params``. Raises an ``LLMCallError`` subclass when the call fails.
        """
        return await self.llm.chat_completions(messages, **kwargs)

    def complete(
        self,
        final_messages: list[dict[str, Any]],
        finish_reason: str = "stop",
        reward: float | None = None,
    ) -> RolloutResult:
        """The successful result of this rollout: the final trajectory and optional reward."""
        return RolloutResult(
            status="COMPLETED",
            final_messages=final_messages,
            finish_reason=finish_reason,
            error_message=None,
            metrics=self._build_metrics(),
            reward=reward,
        )

    def error(
        self, error_message: str, final_messages: list[dict[str, Any]] | None = None
    ) -> RolloutResult:
        """A failed result. Served, an ERROR without messages carries the trajectory reached."""
        return RolloutResult(
            status="ERROR",
            final_messages=final_messages or [],
            finish_reason="error",
            error_message=error_message,
            metrics=self._build_metrics(),
            reward=None,
        )

    def record_tool_call(
        self,
        latency_ms: float = 0.0,
        *,
        name: str | None = None,
        arguments: Any = None,
        result: Any = None,
        error: str | None = None,
    ) -> None:
        """Count one tool call (the keyword details are optional, for traces and the workbench)."""
        self._num_tool_calls += 1
        self._tool_latency_ms += latency_ms
        events = self._events
        if events is not None and events.active:
            data = {
                "name": name,
                "latency_ms": latency_ms,
                "arguments": arguments,
                "result": result,
                "error": error,
            }
            events.spawn("tool_call", {k: v for k, v in data.items() if v is not None})

    def log_event(self, event_type: str, **data: Any) -> None:
        """Record an agent event: a line in the debug file, and an event for observers."""
        if self._debug_dir is not None:
            self._write_debug_line(event_type, data)
        events = self._events
        if events is not None and events.active:
            events.spawn("log_event", {"event": event_type, **data})

    def _write_debug_line(self, event_type: str, data: dict[str, Any]) -> None:
        line = {"event": event_type, "rollout_id": self.rollout_id, **data}
        try:
            os.makedirs(self._debug_dir, exist_ok=True)  # type: ignore[arg-type]
            path = os.path.join(self._debug_dir, debug_file_name(self.rollout_id))  # type: ignore[arg-type]
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(line, default=str) + "\n")
        except OSError as exc:  # debugging output must never fail a rollout
            logger.warning("could not write debug event %r: %s", event_type, exc)

    def _build_metrics(self) -> RolloutMetrics:
        """The metrics of a result built now: the client's LLM counters plus the tool counts."""
        llm = self.llm.get_metrics()
        started = self._start_time
        return RolloutMetrics(
            total_latency_ms=(time.monotonic() - started) * 1000 if started > 0 else 0.0,
            llm_latency_ms=llm.llm_latency_ms,
            tool_latency_ms=self._tool_latency_ms,
            num_llm_calls=llm.num_llm_calls,
            num_tool_calls=self._num_tool_calls,
            prompt_tokens=llm.prompt_tokens,
            response_tokens=llm.response_tokens,
            max_context_tokens=0,
        )

    @property
    def metrics(self) -> RolloutMetrics:
        """The rollout's metrics so far (built on each read)."""
        return self._build_metrics()

    def elapsed_ms(self) -> float:
        """Wall-clock milliseconds since this rollout started (0 when never started)."""
        return (time.monotonic() - self._start_time) * 1000 if self._start_time > 0 else 0.0


# ---- the agent ----------------------------------------------------------------------------------


class RolloutAgentLoop(ABC):
    """Base class of an agent: subclass it, set ``name``, implement ``get_tools`` and ``run``."""

    #: Unique name of the agent, reported by ``/health`` and at start-up (required).
    name: str

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # As in 0.2: checked for every subclass when the class is defined.
        if not getattr(cls, "name", None):
            raise TypeError(f"Agent loop class {cls.__name__} must define a 'name' class attribute")

    @abstractmethod
    def get_tools(
        self, request: RolloutRequest
    ) -> list[OpenAIFunctionToolSchema] | list[dict[str, Any]]:
        """The OpenAI function tools offered for ``request`` (dicts or the 0.2 tool models)."""

    @abstractmethod
    async def run(self, ctx: RolloutContext) -> RolloutResult:
        """Run the agent loop; end with ``return ctx.complete(messages)`` or ``ctx.error(...)``."""
