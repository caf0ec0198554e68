"""Exceptions a rollout can end with, each tied to the ``error_category`` the trainer sees."""

from __future__ import annotations


class RolloutError(Exception):
    """Base of the errors that end a rollout; ``category`` goes to ``extra_fields``."""

    category = "agent_error"


class LLMCallError(RolloutError):
    """The trainer's chat endpoint failed (after retries) or refused the request."""

    category = "llm_error"

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class TrainerProtocolError(RolloutError):
    """The trainer answered, but not in the shape PROTOCOL.md requires."""

    category = "protocol_error"


class ToolExecutionError(RolloutError):
    """A tool failed in a way the agent chose not to hand back to the model."""

    category = "tool_error"


class RolloutCancelled(RolloutError):
    """The rollout was cancelled (cancel endpoint, user abort, or server shutdown)."""

    category = "cancelled"


class RolloutTimeout(RolloutError):
    """The rollout ran past its wall-clock deadline."""

    category = "timeout"


def error_category(exc: BaseException) -> str:
    """The protocol's ``error_category`` for an exception that ended a rollout."""
    if isinstance(exc, RolloutError):
        return exc.category
    return "agent_error"
