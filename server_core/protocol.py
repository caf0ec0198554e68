"""Wire models of the Remote Rollout protocol v1 (docs/PROTOCOL.md), with the 0.2 SDK's names.

These are the bodies that cross HTTP between a trainer and a rollout server. Built from Python
they behave as in osmosis-ai 0.2; on the wire the server fixes 0.2's defects where the protocol
says "ours" (tools passed through losslessly, null fields omitted, trailing ``/`` of
``server_url`` ignored when calling back).
"""

from __future__ import annotations

import ipaddress
import json
import re
import threading
from enum import Enum
from typing import Annotated, Any, Dict, Literal  # noqa: UP035
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, Field, field_validator, model_validator

from server_core.tool_schemas import OpenAIFunctionToolSchema

MessageDict = Dict[str, Any]  # noqa: UP006 - typing.Dict, as in 0.2
"""One chat message as sent on the wire (``{"role": ..., "content": ...}``)."""

SamplingParamsDict = Dict[str, Any]  # noqa: UP006
"""Sampling parameters (``temperature``, ``top_p``, ``max_tokens``, ``stop``...)."""

ErrorCategory = Literal[
    "timeout", "llm_error", "agent_error", "tool_error", "cancelled", "protocol_error"
]

# ---- metadata size limit (process-wide, as in 0.2) -----------------------------------------

#: Largest serialised ``metadata`` a RolloutRequest may carry by default (1 MiB).
DEFAULT_MAX_METADATA_SIZE_BYTES = 1024 * 1024

_metadata_limit = DEFAULT_MAX_METADATA_SIZE_BYTES
_metadata_limit_lock = threading.Lock()


def get_max_metadata_size_bytes() -> int:
    """The largest serialised ``metadata`` a ``RolloutRequest`` may carry, in bytes."""
    with _metadata_limit_lock:
        return _metadata_limit


def set_max_metadata_size_bytes(size_bytes: int) -> None:
    """Change the process-wide ``metadata`` limit that ``RolloutRequest`` validation reads."""
    global _metadata_limit
    if size_bytes <= 0:
        raise ValueError("max_metadata_size_bytes must be positive")
    with _metadata_limit_lock:
        _metadata_limit = size_bytes


# ---- field rules ----------------------------------------------------------------------------


def _rollout_id_not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("rollout_id cannot be empty or whitespace only")
    return value


RolloutId = Annotated[
    str, Field(min_length=1, max_length=256), AfterValidator(_rollout_id_not_blank)
]

# Characters a URL or header value may not carry: whitespace, controls, and the backslash that
# some parsers read as "/" (urlsplit and the HTTP client would then disagree on the host).
_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f\\]")
_LABEL = r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?"
_HOST_NAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*\.?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_server_url(value: str) -> str:
    """Raise ``ValueError`` unless ``value`` is a trainer base URL the callbacks can use as is.

    Beyond 0.2's two checks (scheme, host), a URL whose host an HTTP client could read
    differently from this parser (credentials, backslashes, whitespace, odd host characters)
    or that carries a query or fragment is refused: callbacks would go somewhere else.
    """
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise ValueError("server_url must use http or https scheme")
    if not parts.netloc:
        raise ValueError("server_url must have a valid host")
    if _URL_FORBIDDEN.search(value):
        raise ValueError(
            "server_url must not contain whitespace, control characters or backslashes"
        )
    if "@" in parts.netloc:
        raise ValueError(
            "server_url must not carry credentials (user@host); the trainer's key goes in api_key"
        )
    if parts.query or parts.fragment or value.rstrip("/").endswith(("?", "#")):
        raise ValueError("server_url must be the trainer's base URL, without a query or fragment")
    host = parts.hostname or ""
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        raise ValueError("server_url has an invalid port") from None
    if not host:
        raise ValueError("server_url must have a valid host")
    if parts.netloc.startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"server_url host {host!r} is not a valid IPv6 address") from None
    elif not _HOST_NAME.match(host) or "%" in parts.netloc:
        raise ValueError(
            f"server_url host {host!r} is not a plain host name or IP address "
            "(letters, digits, '-', '_' and dots)"
        )
    return value


# ---- the init ---------------------------------------------------------------------------------


class RolloutRequest(BaseModel):
    """Body of ``POST /v1/rollout/init``: one rollout the trainer asks for."""

    rollout_id: RolloutId
    server_url: str
    messages: list[MessageDict]
    completion_params: SamplingParamsDict
    tool_server_url: str | None = None
    max_turns: int = 10
    max_tokens_total: int = 8192
    metadata: dict[str, Any] = Field(default_factory=dict)
    api_key: str | None = None
    idempotency_key: str | None = None

    @field_validator("server_url")
    @classmethod
    def _server_url_is_usable(cls, value: str) -> str:
        return check_server_url(value)

    @field_validator("api_key")
    @classmethod
    def _api_key_fits_a_header(cls, value: str | None) -> str | None:
        # A key with a control character cannot go in an Authorization header: every
        # callback would fail after the 202. Refuse it at init instead.
        if value is not None and _CONTROL.search(value):
            raise ValueError(
                "api_key must not contain control characters (it is sent in an HTTP header)"
            )
        return value

    @model_validator(mode="after")
    def _metadata_fits(self) -> RolloutRequest:
        # A model-level check (as in 0.2): its error has no field location.
        if self.metadata:
            try:
                encoded = json.dumps(self.metadata).encode("utf-8")
            except (TypeError, ValueError) as exc:
                raise ValueError(f"metadata must be JSON serializable: {exc}") from None
            limit = get_max_metadata_size_bytes()
            if len(encoded) > limit:
                raise ValueError(
                    f"metadata size exceeds maximum allowed size of {limit // (1024 * 1024)}MB"
                )
        return self

    @property
    def dedup_key(self) -> str:
        """The key init requests are deduplicated by (idempotency_key, else rollout_id)."""
        return self.idempotency_key or self.rollout_id

    @property
    def trainer_url(self) -> str:
        """``server_url`` without its trailing ``/``: the base the callback paths go under."""
        return self.server_url.rstrip("/")


class InitResponse(BaseModel):
    """202 body of ``POST /v1/rollout/init`` as a model (the server sends tools losslessly)."""

    rollout_id: str
    tools: list[OpenAIFunctionToolSchema] = Field(default_factory=list)


# ---- the result ------------------------------------------------------------------------------


class RolloutStatus(str, Enum):  # noqa: UP042 - not StrEnum: str() is "RolloutStatus.X" in 0.2
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


class RolloutResponse(BaseModel):
    """Body of ``POST {server_url}/v1/rollout/completed``: the result of one rollout."""

    rollout_id: str
    status: RolloutStatus
    final_messages: list[MessageDict] = Field(default_factory=list)
    finish_reason: str | None = None
    error_message: str | None = None
    reward: float | None = None
    metrics: RolloutMetrics | None = None
    extra_fields: dict[str, Any] = Field(default_factory=dict)

    def wire(self) -> dict[str, Any]:
        """The JSON body as sent: null fields omitted."""
        return self.model_dump(mode="json", exclude_none=True)


#: Our earlier name of the completion body.
CompletedRequest = RolloutResponse


# ---- the chat callback ------------------------------------------------------------------------


class CompletionsRequest(BaseModel):
    """Body of ``POST {server_url}/v1/chat/completions`` as the 0.2 client builds it."""

    model: str = "default"
    messages: list[MessageDict]
    rollout_id: RolloutId
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 512
    stop: list[str] | None = None
    logprobs: bool = True


class CompletionsChoice(BaseModel):
    """One choice of a chat completion."""

    index: int = 0
    message: MessageDict
    finish_reason: str = "stop"


class CompletionUsage(BaseModel):
    """Token counts of a chat completion."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class CompletionsResponse(BaseModel):
    """A trainer's 200 answer to the chat callback (OpenAI shape plus token ids)."""

    id: str
    object: str = "chat.completion"
    created: int
    model: str = "default"
    choices: list[CompletionsChoice]
    usage: CompletionUsage | None = None
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    prompt_token_ids: list[int] | None = None


# ---- tools as sent at init (ours: lossless) ---------------------------------------------------


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
        return [*problems, "a tool needs a 'function' object"]
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


def tool_as_dict(tool: Any) -> Any:
    """A tool as JSON-ready data: a pydantic tool model is dumped without its null fields."""
    if isinstance(tool, BaseModel):
        return tool.model_dump(mode="json", exclude_none=True)
    return tool


def normalize_tools(tools: Any) -> list[dict[str, Any]]:
    """Check the tools an agent returned and give the list sent in the init response.

    Accepts dicts and the 0.2 pydantic tool models. Raises ``InvalidToolsError`` (a
    ``ValueError``) naming every problem. Tools are passed through losslessly apart from
    null-valued keys; a missing ``type`` is filled in as ``"function"``.
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
        tool = tool_as_dict(tool)
        found = validate_tool(tool)
        problems.extend(f"tool {index}: {p}" for p in found)
        if not found:
            out.append({"type": "function", **drop_nulls(tool)})
    if problems:
        raise InvalidToolsError("; ".join(problems))
    return out
