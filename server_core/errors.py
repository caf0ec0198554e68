"""The SDK's exceptions: the 0.2 tree, with the errors that end a rollout placed inside it.

```
Exception
├── OsmosisRolloutError                 (RolloutError: the same class)
│   ├── LLMCallError                    the chat callback failed (ours)
│   │   ├── OsmosisTransportError
│   │   ├── OsmosisServerError          .status_code
│   │   ├── OsmosisValidationError      .status_code
│   │   └── OsmosisTimeoutError
│   ├── TrainerProtocolError            the trainer answered in the wrong shape (ours)
│   ├── AgentLoopNotFoundError          .name, .available
│   ├── ToolExecutionError              .tool_call_id, .tool_name
│   │   └── ToolArgumentError
│   ├── RolloutCancelled                (ours)
│   └── RolloutTimeout                  (ours)
├── AgentLoopValidationError            .errors
├── ServeError
│   └── ServerStartError                (ours, in server_core.serve)
└── PublicIPDetectionError
```

Each error that can end a rollout carries the ``error_category`` the trainer sees in the
completion's ``extra_fields`` (PROTOCOL.md section 5).
"""

from __future__ import annotations

from typing import Any


class OsmosisRolloutError(Exception):
    """Base of the rollout SDK's errors; ``category`` is what the trainer is told."""

    category = "agent_error"


#: Our name for the base class (same class).
RolloutError = OsmosisRolloutError


class LLMCallError(OsmosisRolloutError):
    """The trainer's chat endpoint failed (after retries) or refused the request."""

    category = "llm_error"

    def __init__(self, *args: Any, status_code: int | None = None) -> None:
        super().__init__(*args)
        self.status_code = status_code


class OsmosisTransportError(LLMCallError):
    """The chat callback failed below HTTP (refused, reset, DNS) after its retries."""


class OsmosisServerError(LLMCallError):
    """The trainer answered 5xx to every attempt."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message, status_code=status_code)


class OsmosisValidationError(LLMCallError):
    """The trainer refused the request (4xx): not retried."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message, status_code=status_code)


class OsmosisTimeoutError(LLMCallError):
    """The chat callback timed out on every attempt."""


class TrainerProtocolError(OsmosisRolloutError):
    """The trainer answered, but not in the shape PROTOCOL.md requires."""

    category = "protocol_error"


class AgentLoopNotFoundError(OsmosisRolloutError):
    """No agent loop of that name is registered (``get_agent_loop``)."""

    def __init__(self, name: str, available: list[str]) -> None:
        super().__init__(f"Agent loop '{name}' not found. Available: {available!r}")
        self.name = name
        self.available = available


class ToolExecutionError(OsmosisRolloutError):
    """A tool failed in a way the agent chose not to hand back to the model."""

    category = "tool_error"

    def __init__(self, message: str, tool_call_id: str = "", tool_name: str = "") -> None:
        super().__init__(message)
        self.tool_call_id = tool_call_id
        self.tool_name = tool_name


class ToolArgumentError(ToolExecutionError):
    """A tool call's arguments are not a JSON object."""


class RolloutCancelled(OsmosisRolloutError):
    """The rollout was cancelled (cancel endpoint, user abort, or server shutdown)."""

    category = "cancelled"


class RolloutTimeout(OsmosisRolloutError):
    """The rollout ran past its wall-clock deadline."""

    category = "timeout"


class AgentLoopValidationError(Exception):
    """``ValidationResult.raise_if_invalid()`` found errors; ``errors`` lists them."""

    def __init__(self, message: str, errors: list[Any] | None = None) -> None:
        super().__init__(message)
        self.errors = errors if errors is not None else []


class ServeError(Exception):
    """An agent loop cannot be served as asked (``serve_agent_loop``)."""


class PublicIPDetectionError(Exception):
    """No public IPv4 address could be found (``detect_public_ip``)."""


def error_category(exc: BaseException) -> str:
    """The protocol's ``error_category`` for an exception that ended a rollout."""
    if isinstance(exc, OsmosisRolloutError):
        return exc.category
    return "agent_error"
