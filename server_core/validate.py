"""Validating an agent loop before it is served or trained against.

``validate_agent_loop(agent)`` is osmosis-ai 0.2's check, with its result object, error codes
and messages, plus ours on top: each dict tool's ``parameters`` checked with a real JSON Schema
validator, unique tool names, OpenAI's naming rules. ``avalidate_agent_loop`` (what
``osmosis validate`` runs) also awaits an async ``get_tools`` and sends the tools through a
real ``create_app`` init in process, so nothing the trainer needs is lost on the way.

Never raises for a bad agent and never runs ``run``; no printing here.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from server_core.errors import AgentLoopValidationError
from server_core.protocol import RolloutRequest, drop_nulls, tool_as_dict
from server_core.tool_schemas import OpenAIFunctionToolSchema

#: Trainer URL of the sample rollout; requests to it are answered in-process, never sent.
_SAMPLE_SERVER_URL = "http://localhost:8080"

#: The request ``get_tools`` sees during validation (0.2's mock, value for value).
_SAMPLE_INIT: dict[str, Any] = {
    "rollout_id": "validation-test-rollout",
    "server_url": _SAMPLE_SERVER_URL,
    "messages": [{"role": "user", "content": "Hello"}],
    "completion_params": {"temperature": 1.0, "max_tokens": 512},
    "metadata": {"_validation": True},
}

#: How long an async ``get_tools`` may take (the server's default limit).
_GET_TOOLS_TIMEOUT_S = 30.0

#: How long the sample rollout may take to report its cancellation before it is abandoned.
_SETTLE_TIMEOUT_S = 5.0

#: Function names OpenAI accepts; other trainers may be laxer, so a mismatch is a warning.
_OPENAI_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

#: Differences reported per tool before the rest are summarised.
_MAX_DIFFERENCES = 5


@dataclass
class ValidationError:
    """One problem (or warning) found in an agent loop; ``str()`` is ``[CODE] field: message``."""

    code: str
    message: str
    field: str | None = None
    details: dict[str, Any] | None = None

    def __str__(self) -> str:
        if self.field:
            return f"[{self.code}] {self.field}: {self.message}"
        return f"[{self.code}] {self.message}"


@dataclass
class ValidationResult:
    """What validation found: ``valid`` when there are no errors (warnings do not count)."""

    valid: bool
    errors: list[ValidationError] = field(default_factory=list)
    warnings: list[ValidationError] = field(default_factory=list)
    agent_name: str | None = None
    tool_count: int = 0

    def __bool__(self) -> bool:
        return self.valid

    def raise_if_invalid(self) -> None:
        """Raise ``AgentLoopValidationError`` listing every error, unless valid."""
        if self.valid:
            return
        lines = "\n".join(f"  - {error}" for error in self.errors)
        raise AgentLoopValidationError(
            f"Agent loop validation failed with {len(self.errors)} error(s):\n{lines}",
            errors=self.errors,
        )


@dataclass
class ValidationReport(ValidationResult):
    """``osmosis validate``'s result: a ``ValidationResult`` that also names the tools."""

    tool_names: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the agent can be served as it is."""
        return self.valid

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (``osmosis validate --json``)."""
        return {
            "valid": self.valid,
            "agent_name": self.agent_name,
            "tool_count": self.tool_count,
            "tools": list(self.tool_names),
            "errors": [_error_dict(e) for e in self.errors],
            "warnings": [_error_dict(e) for e in self.warnings],
        }


def _error_dict(error: ValidationError) -> dict[str, Any]:
    return {"code": error.code, "field": error.field, "message": error.message}


class _Findings:
    """Errors and warnings as they are found."""

    def __init__(self) -> None:
        self.errors: list[ValidationError] = []
        self.warnings: list[ValidationError] = []

    def error(self, code: str, message: str, where: str | None = None, **details: Any) -> None:
        self.errors.append(ValidationError(code, message, where, details or None))

    def warn(self, code: str, message: str, where: str | None = None) -> None:
        self.warnings.append(ValidationError(code, message, where))


def sample_request() -> RolloutRequest:
    """The RolloutRequest ``get_tools`` is called with during validation."""
    return RolloutRequest.model_validate(_SAMPLE_INIT)


# ---- the entry points -----------------------------------------------------------------------


def validate_agent_loop(
    agent_loop: Any, *, request: RolloutRequest | None = None
) -> ValidationResult:
    """Check ``agent_loop``'s name, ``get_tools`` (called once) and ``run``, as 0.2 does.

    ``get_tools`` is called synchronously: an ``async def get_tools`` gives
    ``GET_TOOLS_INVALID_TYPE`` here (``avalidate_agent_loop`` awaits it instead).
    """
    found = _Findings()
    name = _check_name(agent_loop, found)
    tools = _call_get_tools(agent_loop, request or sample_request(), found, awaited=None)
    return _finish(agent_loop, name, tools, found, ValidationResult)


async def avalidate_agent_loop(
    agent_loop: Any, *, request: RolloutRequest | None = None
) -> ValidationReport:
    """``validate_agent_loop`` from async code, plus the init round trip through a real server.

    An async ``get_tools`` is awaited (the server supports it). Leaves no task behind.
    """
    found = _Findings()
    name = _check_name(agent_loop, found)
    request = request or sample_request()
    awaited: list[Any] = []
    tools = _call_get_tools(agent_loop, request, found, awaited=awaited)
    if awaited:
        tools = await _await_tools(awaited[0], found)
    report = _finish(agent_loop, name, tools, found, ValidationReport)
    assert isinstance(report, ValidationReport)
    if isinstance(tools, list):
        report.tool_names = _tool_names(tools)
        if report.valid:
            await _check_init_round_trip(agent_loop, tools, found)
            report.errors, report.valid = found.errors, not found.errors
    return report


def validate_reference(ref: str, *, search_path: str | Path | None = None) -> ValidationReport:
    """Load the agent loop named by ``module:attr`` and validate it (sync code only).

    A reference that cannot be loaded gives one ``LOAD_FAILED`` error: the loader's
    message, which already names the input and the fix.
    """
    from server_core.loader import ImportFromStringError, load_agent_loop

    try:
        agent = load_agent_loop(ref, search_path=search_path)
    except ImportFromStringError as exc:
        return ValidationReport(valid=False, errors=[ValidationError("LOAD_FAILED", str(exc))])
    return asyncio.run(avalidate_agent_loop(agent))


def _finish(
    agent: Any, name: str | None, tools: Any, found: _Findings, kind: type[ValidationResult]
) -> ValidationResult:
    tool_count = 0
    if isinstance(tools, list):
        tool_count = len(tools)
        _check_tools(tools, found)
    _check_run(agent, found)
    return kind(
        valid=not found.errors,
        errors=found.errors,
        warnings=found.warnings,
        agent_name=name,
        tool_count=tool_count,
    )


# ---- name and run ------------------------------------------------------------------------------


def _check_name(agent: Any, found: _Findings) -> str | None:
    name = getattr(agent, "name", None)
    if name is None:
        found.error("MISSING_NAME", "Agent loop must have a 'name' attribute", "name")
        return None
    if not isinstance(name, str):
        found.error(
            "INVALID_NAME_TYPE", f"'name' must be a string, got {type(name).__name__}", "name"
        )
        return None
    if not name.strip():
        found.error("EMPTY_NAME", "'name' cannot be empty or whitespace only", "name")
    return name


def _check_run(agent: Any, found: _Findings) -> None:
    if not hasattr(agent, "run"):
        found.error("MISSING_RUN_METHOD", "Agent loop must have a 'run' method", "run")
        return
    run = agent.run
    if not callable(run):
        found.error("RUN_NOT_CALLABLE", "'run' must be callable", "run")
        return
    # A plain def would block every other rollout on the loop until it returns.
    if not asyncio.iscoroutinefunction(run):
        found.error("RUN_NOT_ASYNC", "'run' method must be an async function (async def)", "run")
        return
    try:
        inspect.signature(run).bind(object())
    except TypeError:
        found.error(
            "RUN_BAD_SIGNATURE",
            "run() must take the rollout context as its one argument: `async def run(self, ctx)`",
            "run",
        )
    except ValueError:  # no signature to inspect (a builtin); nothing to say
        pass


# ---- get_tools ---------------------------------------------------------------------------------


def _call_get_tools(
    agent: Any, request: RolloutRequest, found: _Findings, *, awaited: list[Any] | None
) -> Any:
    """``get_tools``' list, or None after recording why not. With ``awaited`` (a list), an
    awaitable answer is handed back in it for the caller to await instead of refused."""
    where = "get_tools"
    try:
        tools = agent.get_tools(request)
    except Exception as exc:
        found.error(
            "GET_TOOLS_EXCEPTION",
            f"get_tools() raised an exception: {type(exc).__name__}: {exc}",
            where,
            exception_type=type(exc).__name__,
            exception_message=str(exc),
        )
        return None
    if inspect.isawaitable(tools) and awaited is not None:
        awaited.append(tools)
        return None
    return _tools_list(tools, found)


async def _await_tools(pending: Any, found: _Findings) -> Any:
    try:
        tools = await asyncio.wait_for(pending, _GET_TOOLS_TIMEOUT_S)
    except TimeoutError:
        found.error(
            "GET_TOOLS_TIMEOUT",
            f"get_tools() did not return within {_GET_TOOLS_TIMEOUT_S:g}s",
            "get_tools",
        )
        return None
    except Exception as exc:
        found.error(
            "GET_TOOLS_EXCEPTION",
            f"get_tools() raised an exception: {type(exc).__name__}: {exc}",
            "get_tools",
            exception_type=type(exc).__name__,
            exception_message=str(exc),
        )
        return None
    return _tools_list(tools, found)


def _tools_list(tools: Any, found: _Findings) -> list[Any] | None:
    if tools is None:
        found.error(
            "GET_TOOLS_RETURNS_NONE",
            "get_tools() must return a list, got None (did it forget to `return`?)",
            "get_tools",
        )
        return None
    if not isinstance(tools, list):
        if inspect.iscoroutine(tools):
            tools.close()  # never awaited: close it rather than leave a warning behind
        found.error(
            "GET_TOOLS_INVALID_TYPE",
            f"get_tools() must return a list, got {type(tools).__name__}",
            "get_tools",
        )
        return None
    return tools


def _tool_names(tools: list[Any]) -> list[str]:
    names = []
    for tool in tools:
        data = tool_as_dict(tool)
        function = data.get("function") if isinstance(data, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str) and name.strip():
            names.append(name)
    return names


def _check_tools(tools: list[Any], found: _Findings) -> None:
    """0.2's checks of each tool, then ours (schemas, names) on the tools that passed them."""
    names: Counter[str] = Counter()
    for index, tool in enumerate(tools):
        if isinstance(tool, OpenAIFunctionToolSchema):
            names[tool.function.name] += 1  # a model is valid by construction
            continue
        if not isinstance(tool, dict):
            found.error(
                "INVALID_TOOL_TYPE",
                f"Tool must be OpenAIFunctionToolSchema or dict, got {type(tool).__name__}",
                f"tools[{index}]",
            )
            continue
        if _check_tool_dict(index, tool, found):
            names[tool["function"]["name"]] += 1
            _check_tool_extras(index, tool, found)
    duplicates = [name for name, count in names.items() if count > 1]
    if duplicates:
        found.error(
            "DUPLICATE_TOOL_NAME",
            "tool names must be unique; used more than once: "
            + ", ".join(repr(name) for name in duplicates),
            "tools",
        )


def _check_tool_dict(index: int, tool: dict[str, Any], found: _Findings) -> bool:
    """0.2's dict checks; True when the tool has a usable function name and parameters."""
    at = f"tools[{index}]"
    ok = True
    if "type" not in tool:
        found.error("MISSING_TOOL_TYPE", "Tool must have a 'type' field", at)
        ok = False
    elif tool["type"] != "function":
        found.warn(
            "UNKNOWN_TOOL_TYPE", f"Tool type is {tool['type']!r}, expected 'function'", f"{at}.type"
        )
    if "function" not in tool:
        found.error("MISSING_FUNCTION", "Tool must have a 'function' field", at)
        return False
    function = tool["function"]
    if not isinstance(function, dict):
        found.error(
            "INVALID_FUNCTION_TYPE",
            f"'function' must be a dict, got {type(function).__name__}",
            f"{at}.function",
        )
        return False
    if "name" not in function:
        found.error("MISSING_FUNCTION_NAME", "Function must have a 'name'", f"{at}.function.name")
        return False
    if not isinstance(function["name"], str) or not function["name"]:
        found.error(
            "INVALID_FUNCTION_NAME",
            "Function name must be a non-empty string",
            f"{at}.function.name",
        )
        return False
    if not function.get("description"):
        found.warn(
            "MISSING_FUNCTION_DESCRIPTION",
            "Function has no description; the model sees only its name",
            f"{at}.function.description",
        )
    parameters = function.get("parameters")
    if parameters is not None:
        if not isinstance(parameters, dict):
            found.error(
                "INVALID_PARAMETERS_TYPE",
                f"'parameters' must be a dict, got {type(parameters).__name__}",
                f"{at}.function.parameters",
            )
            return False
        if parameters.get("type") != "object":
            found.warn(
                "PARAMETERS_TYPE_NOT_OBJECT",
                f"Parameters type is {parameters.get('type')!r}, expected 'object'",
                f"{at}.function.parameters.type",
            )
    return ok


def _check_tool_extras(index: int, tool: dict[str, Any], found: _Findings) -> None:
    """Ours: what a trainer would choke on that 0.2 let through."""
    at = f"tools[{index}]"
    function = tool["function"]
    label = f"tool {function['name']!r}"
    try:
        json.dumps(tool, allow_nan=False)
    except (TypeError, ValueError) as exc:
        found.error("TOOL_NOT_SERIALIZABLE", f"{label} is not JSON-serialisable: {exc}", at)
        return
    if not _OPENAI_TOOL_NAME.match(function["name"]):
        found.warn(
            "TOOL_NAME_NOT_OPENAI",
            f"{label}: OpenAI function names use only letters, digits, _ and - "
            "(at most 64); some trainers reject others",
            f"{at}.function.name",
        )
    strict = function.get("strict")
    if strict is not None and not isinstance(strict, bool):
        found.error(
            "INVALID_STRICT",
            f"{label}: 'strict' must be true or false, got {strict!r}",
            f"{at}.function.strict",
        )
    parameters = function.get("parameters")
    if isinstance(parameters, dict):
        # Checked as sent: the server drops null-valued keys before the trainer sees them.
        _check_parameters(label, f"{at}.function.parameters", drop_nulls(parameters), found)


def _check_parameters(label: str, at: str, schema: dict[str, Any], found: _Findings) -> None:
    """Check ``parameters`` with a real JSON Schema meta-validator."""
    # Deferred: jsonschema (with referencing and rpds) costs ~170 ms to import, paid only here.
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import Draft202012Validator, validator_for

    declared = schema.get("$schema")
    validator_cls: Any = Draft202012Validator
    if isinstance(declared, str):
        validator_cls = validator_for(schema, default=None)
        if validator_cls is None:
            found.warn(
                "UNKNOWN_SCHEMA_DIALECT",
                f"{label}: parameters declares an unknown $schema {declared!r}; "
                "checked as Draft 2020-12",
                at,
            )
            validator_cls = Draft202012Validator
    try:
        validator_cls.check_schema(schema)
    except SchemaError as exc:
        where = _json_path(exc.absolute_path)
        found.error(
            "INVALID_PARAMETERS_SCHEMA",
            f"{label}: parameters is not valid JSON Schema{f' at {where}' if where else ''}: "
            f"{exc.message}",
            at,
        )
        return
    except Exception as exc:  # e.g. a $schema the library cannot load
        found.error(
            "INVALID_PARAMETERS_SCHEMA",
            f"{label}: parameters could not be checked as JSON Schema: {type(exc).__name__}: {exc}",
            at,
        )
        return
    required = schema.get("required")
    properties = schema.get("properties")
    if isinstance(required, list):
        known = properties if isinstance(properties, dict) else {}
        missing = [r for r in required if isinstance(r, str) and r not in known]
        if missing:
            found.warn(
                "REQUIRED_NOT_IN_PROPERTIES",
                f"{label}: required names not in properties: " + ", ".join(missing),
                at,
            )


def _json_path(parts: Any) -> str:
    """``properties.a.items[0]`` from a sequence of keys and indexes."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


# ---- the init round trip -----------------------------------------------------------------------


def _refuse_model_calls(request: httpx.Request) -> httpx.Response:
    """The in-process trainer: no model behind it, completions acknowledged."""
    if request.url.path.endswith("/v1/rollout/completed"):
        return httpx.Response(200, json={})
    if request.url.path.endswith("/v1/chat/completions"):
        return httpx.Response(400, json={"detail": "osmosis validate: no model behind this check"})
    return httpx.Response(404, json={"detail": "osmosis validate: not a trainer endpoint"})


async def _check_init_round_trip(agent: Any, tools: list[Any], found: _Findings) -> None:
    """POST the sample init to ``create_app(agent)`` in process; compare the tools it answers."""
    from server_core.app import create_app
    from server_core.rollouts import ServerLimits
    from server_core.trainer_client import TrainerClient

    trainer = httpx.MockTransport(_refuse_model_calls)
    # The mount serves the sample's trainer URL; the default transport catches anything else,
    # so no callback can leave the process.
    client = TrainerClient(transport=trainer, mounts={_SAMPLE_SERVER_URL: trainer})
    # No rollout slot at all: the accepted rollout waits in the queue until it is cancelled,
    # so the agent's run() is never called and nothing it does can reach a real trainer.
    limits = ServerLimits(
        max_concurrent=0,
        drain_timeout_s=_SETTLE_TIMEOUT_S,
        final_delivery_timeout_s=_SETTLE_TIMEOUT_S,
    )
    app = create_app(agent, client=client, limits=limits)
    manager = app.state.rollouts
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://validate",
        ) as http:
            response = await http.post("/v1/rollout/init", json=_SAMPLE_INIT)
        # The rollout task was created during the request but has not taken a step; cancelled
        # before its first step it would end without the manager noticing, so let it start.
        await asyncio.sleep(0)
        manager.cancel(_SAMPLE_INIT["rollout_id"], "osmosis validate: init checked, not run")
    finally:
        await manager.shutdown()  # waits for the cancelled rollout, closes the client
        leftover = [r.task for r in manager.in_flight() if r.task is not None]
        for task in leftover:
            task.cancel()
        if leftover:
            await asyncio.wait(leftover, timeout=_SETTLE_TIMEOUT_S)

    if response.status_code != 202:
        found.error(
            "INIT_FAILED",
            f"init answered HTTP {response.status_code} with the tools get_tools() returned: "
            f"{_detail(response)}",
            "get_tools",
        )
        return
    sent = response.json().get("tools")
    if not isinstance(sent, list) or len(sent) != len(tools):
        found.error(
            "INIT_TOOLS_LOST",
            f"the init response carries {len(sent) if isinstance(sent, list) else 'no'} tools; "
            f"get_tools() returned {len(tools)}",
            "get_tools",
        )
        return
    for index, (tool, got) in enumerate(zip(tools, sent, strict=True)):
        # What the trainer should see: the tool as written, minus null-valued keys, with the
        # default "type" filled in, in its JSON form (tuples are lists on the wire).
        expected = json.loads(json.dumps({"type": "function", **drop_nulls(tool_as_dict(tool))}))
        differences = _differences(expected, got, "")
        if not differences:
            continue
        shown = differences[:_MAX_DIFFERENCES]
        more = len(differences) - len(shown)
        found.error(
            "INIT_TOOL_CHANGED",
            "does not survive the init response unchanged: "
            + "; ".join(shown)
            + (f"; and {more} more" if more else ""),
            f"tools[{index}]",
        )


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail) if detail is not None else response.text[:300]


def _differences(expected: Any, got: Any, path: str) -> list[str]:
    """Every place ``got`` differs from ``expected``, as "<path> was lost/added/changed ..."."""
    where = path or "the tool"
    if isinstance(expected, dict) and isinstance(got, dict):
        out: list[str] = []
        for key, value in expected.items():
            sub = f"{path}.{key}" if path else key
            if key not in got:
                out.append(f"{sub} was lost")
            else:
                out.extend(_differences(value, got[key], sub))
        out.extend(
            f"{f'{path}.{key}' if path else key} was added" for key in got if key not in expected
        )
        return out
    if isinstance(expected, list) and isinstance(got, list):
        out = []
        for i, (a, b) in enumerate(zip(expected, got, strict=False)):
            out.extend(_differences(a, b, f"{path}[{i}]"))
        out.extend(f"{path}[{i}] was lost" for i in range(len(got), len(expected)))
        out.extend(f"{path}[{i}] was added" for i in range(len(expected), len(got)))
        return out
    # Strict types: True == 1 and 1 == 1.0 in Python, but not on the trainer's side.
    if type(expected) is not type(got) or expected != got:
        return [f"{where} changed from {json.dumps(expected)} to {json.dumps(got)}"]
    return []
