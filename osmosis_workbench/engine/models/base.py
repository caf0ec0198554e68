"""What every model backend shares: the reply, the error, the backend protocol.

A model backend answers the local trainer's ``POST /v1/chat/completions``: it takes the JSON
body the rollout server sent and returns an OpenAI chat completion. The trainer only ever
sees ``ModelReply`` and ``ModelError``, whichever backend (live, replay, scripted) is behind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

#: The failure kinds a backend reports; the trainer and the UI switch on these.
ErrorKind = Literal[
    "authentication",
    "rate_limit",
    "context_window",
    "timeout",
    "unknown_model",
    "server_error",
    "bad_request",
    "replay_miss",
    "connection",
]

ERROR_KINDS: tuple[str, ...] = ErrorKind.__args__  # type: ignore[attr-defined]

#: Body keys that belong to the protocol or to one particular run, not to the model's input:
#: they are never sent to a provider as sampling params, nor part of a cassette key. The local
#: trainer puts the rollout request's ``metadata`` (``row_index``, ``ground_truth``) in every
#: body it hands a backend, so backends that answer per dataset row know the row.
PROTOCOL_KEYS = frozenset(
    {"model", "rollout_id", "logprobs", "stream", "api_key", "user", "metadata"}
)


class ModelError(Exception):
    """A model backend failure, one clear line.

    ``message`` names what happened and the fix. ``retryable`` says the same call may
    succeed later; ``systemic`` says every further call will fail the same way (bad key,
    unknown model), so a batch should stop early instead of failing row after row.
    ``retry_after_s`` is the wait the provider asked for, when it named one.
    """

    def __init__(
        self,
        kind: ErrorKind | str,
        message: str,
        *,
        retryable: bool = False,
        systemic: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown ModelError kind {kind!r}; expected one of {ERROR_KINDS}")
        # One line, always: the message lands in a table cell and a log pane.
        message = " ".join(message.split())
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retryable = retryable
        self.systemic = systemic
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return (
            f"ModelError({self.kind!r}, {self.message!r}, retryable={self.retryable}, "
            f"systemic={self.systemic})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only flags would otherwise be lost by pickle/copy (Exception's default).
        return (_rebuild_model_error, (type(self), self.kind, self.message, self.__dict__))


def _rebuild_model_error(
    cls: type[ModelError], kind: str, message: str, state: dict[str, Any]
) -> ModelError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    err.kind, err.message = kind, message
    return err


@dataclass
class ModelReply:
    """One answer of a backend: an OpenAI chat completion plus what it cost and took.

    ``completion`` has ``id``, ``object``, ``created``, ``model``, ``choices`` and ``usage``,
    and top-level ``token_ids`` / ``logprobs`` only when the backend has them.
    """

    completion: dict[str, Any]
    cost_usd: float | None = None
    latency_ms: float = 0.0
    #: Of ``latency_ms``, the time a person took to write the answer (``--model human``):
    #: theirs, not the rollout's (the debugger leaves it out of durations, as a pause).
    person_ms: float = 0.0


@runtime_checkable
class ModelBackend(Protocol):
    """Answers chat callbacks; see ``create_backend`` for the ones the workbench ships."""

    #: Shown to the user, e.g. "openai/gpt-4o-mini" or "replay:sample_project/cassette.jsonl".
    name: str

    async def complete(self, body: dict[str, Any]) -> ModelReply:
        """Answer one chat-callback body ("messages", "tools", sampling params, ...)."""
        ...

    async def aclose(self) -> None:
        """Release connections and files; the backend is not used afterwards."""
        ...


@runtime_checkable
class LiveBackend(ModelBackend, Protocol):
    """A backend that calls a model over the network, so a run can check it before row 0."""

    async def probe(self) -> None:
        """One tiny call; raises ``ModelError`` (``systemic`` when no call can succeed)."""
        ...


#: The chat body a probe sends: the smallest request every chat model answers.
PROBE_BODY: dict[str, Any] = {
    "messages": [{"role": "user", "content": "Reply with OK."}],
    "max_tokens": 5,
}


def clean_completion(data: dict[str, Any]) -> dict[str, Any]:
    """A provider's chat completion as the protocol sends it: no null noise, a finish reason."""
    data = dict(data)
    data.setdefault("object", "chat.completion")
    choices = []
    for choice in data.get("choices") or []:
        choice = {k: v for k, v in choice.items() if v is not None}
        message = choice.get("message")
        if isinstance(message, dict):
            # "content": null is meaningful (a pure tool call); other nulls are not.
            choice["message"] = {
                k: v for k, v in message.items() if v is not None or k == "content"
            }
        if choice.get("finish_reason") is None:
            choice["finish_reason"] = "stop"
        choices.append(choice)
    data["choices"] = choices
    usage = data.get("usage")
    if isinstance(usage, dict):
        data["usage"] = {k: v for k, v in usage.items() if v is not None}
    return {k: v for k, v in data.items() if v is not None}


def read_user_file(
    path: Path, what: str, missing_fix: str, error: Callable[[str], Exception]
) -> str:
    """The UTF-8 text of a file the user named (a cassette, a script); ``error(message)``
    naming the file, and the fix when it is missing, if it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{what} {path} not found: {missing_fix}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{what} {path} is not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc}") from None


_Found = TypeVar("_Found")


def find_backend(backend: Any, kind: type[_Found]) -> _Found | None:
    """The backend of type ``kind`` that ``backend`` is, or wraps (a recorder's ``inner``)."""
    while backend is not None:
        if isinstance(backend, kind):
            return backend
        backend = getattr(backend, "inner", None)
    return None
