"""Wire models of the Remote Rollout protocol v1 (shared/PROTOCOL.md).

These are the bodies that cross HTTP between a trainer and a rollout server. They accept what
the Osmosis SDK 0.2.x put on the wire and fix its defects where PROTOCOL.md says "ours".
"""

from __future__ import annotations

import json
import secrets
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Largest serialised ``metadata`` a RolloutRequest may carry (PROTOCOL.md section 3).
MAX_METADATA_BYTES = 1024 * 1024

#: Prefix of generated rollout-server API keys.
API_KEY_PREFIX = "osm_rollout_"

ErrorCategory = Literal[
    "timeout", "llm_error", "agent_error", "tool_error", "cancelled", "protocol_error"
]


def generate_api_key() -> str:
    """A new rollout-server key: ``osm_rollout_`` + 32 random url-safe bytes."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


class RolloutRequest(BaseModel):
    """Body of ``POST /v1/rollout/init``: one rollout the trainer asks for."""

    model_config = ConfigDict(extra="ignore")

    rollout_id: str = Field(min_length=1, max_length=256)
    server_url: str
    messages: list[dict[str, Any]]
    completion_params: dict[str, Any]
    tool_server_url: str | None = None
    max_turns: int = 10
    max_tokens_total: int = 8192
    metadata: dict[str, Any] = Field(default_factory=dict)
    api_key: str | None = None
    idempotency_key: str | None = None

    @field_validator("rollout_id")
    @classmethod
    def _rollout_id_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("rollout_id must not be all whitespace")
        return value

    @field_validator("server_url")
    @classmethod
    def _server_url_is_http(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("server_url must be an http or https URL with a host")
        # A path prefix is kept; only the trailing slash goes.
        return value.rstrip("/")

    @field_validator("metadata")
    @classmethod
    def _metadata_is_small_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            size = len(json.dumps(value, allow_nan=False).encode())
        except (TypeError, ValueError) as exc:
            raise ValueError(f"metadata must be JSON-serialisable: {exc}") from None
        if size > MAX_METADATA_BYTES:
            raise ValueError(f"metadata is {size} bytes serialised; the limit is 1 MiB")
        return value

    @property
    def dedup_key(self) -> str:
        """The key init requests are deduplicated by (idempotency_key, else rollout_id)."""
        return self.idempotency_key or self.rollout_id


class InitResponse(BaseModel):
    """202 body of ``POST /v1/rollout/init``: the id and the agent's tools, passed through."""

    rollout_id: str
    tools: list[dict[str, Any]]


class RolloutStatus(StrEnum):
    """Final status reported in the completion callback."""

    COMPLETED = "COMPLETED"
    ERROR = "ERROR"


class RolloutMetrics(BaseModel):
    """Per-rollout numbers sent with the completion (all default 0)."""

    total_latency_ms: float = 0.0
    llm_latency_ms: float = 0.0
    tool_latency_ms: float = 0.0
    num_llm_calls: int = 0
    num_tool_calls: int = 0
    prompt_tokens: int = 0
    response_tokens: int = 0
    max_context_tokens: int = 0


class CompletedRequest(BaseModel):
    """Body of ``POST {server_url}/v1/rollout/completed``: the result of one rollout."""

    model_config = ConfigDict(extra="ignore")

    rollout_id: str
    status: RolloutStatus
    final_messages: list[dict[str, Any]] = Field(default_factory=list)
    finish_reason: str | None = None
    error_message: str | None = None
    reward: float | None = None
    metrics: RolloutMetrics = Field(default_factory=RolloutMetrics)
    extra_fields: dict[str, Any] = Field(default_factory=dict)

    def wire(self) -> dict[str, Any]:
        """The JSON body as sent: null fields omitted."""
        return self.model_dump(mode="json", exclude_none=True)


class InvalidToolsError(ValueError):
    """The tools an agent returned are not valid OpenAI function tools."""


def validate_tool(tool: Any) -> list[str]:
    """Problems that keep ``tool`` from being a valid OpenAI function tool (empty when valid).

    Only the shape is checked here; ``parameters`` is passed through as the JSON Schema the
    agent wrote (``osmosis validate`` also runs a JSON Schema meta-validator over it).
    """
    if not isinstance(tool, dict):
        return [f"a tool must be a dict, got {type(tool).__name__}"]
    problems: list[str] = []
    if tool.get("type") not in (None, "function"):  # a null type is dropped, then filled in
        problems.append(f"tool type must be 'function', got {tool.get('type')!r}")
    function = tool.get("function")
    if not isinstance(function, dict):
        return problems + ["a tool needs a 'function' object"]
    name = function.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append("a tool's 'function' needs a non-empty 'name'")
    description = function.get("description")
    if description is not None and not isinstance(description, str):
        problems.append(f"tool {name!r}: 'description' must be a string")
    parameters = function.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        problems.append(f"tool {name!r}: 'parameters' must be a JSON Schema object")
    try:
        json.dumps(tool, allow_nan=False)
    except (TypeError, ValueError) as exc:
        problems.append(f"tool {name!r} is not JSON-serialisable: {exc}")
    return problems


def drop_nulls(value: Any) -> Any:
    """``value`` with null-valued dict keys removed at every depth (0.2.x emitted "enum": null)."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def normalize_tools(tools: Any) -> list[dict[str, Any]]:
    """Check the tools an agent returned and give the list sent in InitResponse.

    Raises ``InvalidToolsError`` (a ``ValueError``) naming every problem. Tools are passed
    through losslessly apart from null-valued keys; a missing ``type`` is filled in as
    ``"function"``.
    """
    if tools is None:
        return []
    if isinstance(tools, tuple):
        tools = list(tools)
    if not isinstance(tools, list):
        raise InvalidToolsError(
            f"get_tools() must return a list of tools, got {type(tools).__name__}"
        )
    problems: list[str] = []
    out: list[dict[str, Any]] = []
    for index, tool in enumerate(tools):
        if hasattr(tool, "model_dump"):  # a pydantic tool model from an older SDK
            tool = tool.model_dump(exclude_none=True)
        found = validate_tool(tool)
        problems.extend(f"tool {index}: {p}" for p in found)
        if not found:
            out.append({"type": "function", **drop_nulls(tool)})
    if problems:
        raise InvalidToolsError("; ".join(problems))
    return out
