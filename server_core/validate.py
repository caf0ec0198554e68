"""``osmosis validate``: check an agent loop before it is served or trained against.

Headless: no printing here. ``validate_agent_loop`` returns a ``ValidationReport`` listing every
problem (the agent would fail or misbehave when served) and warning (it works, but probably not
as meant). The tools are checked twice: as the agent returns them, and as they come back in the
init response of a real ``create_app`` server, so nothing the trainer needs is lost on the way.
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

from server_core.agent import RolloutAgentLoop
from server_core.app import create_app
from server_core.loader import ImportFromStringError, load_agent_loop
from server_core.protocol import RolloutRequest, drop_nulls, validate_tool
from server_core.rollouts import ServerLimits
from server_core.trainer_client import TrainerClient

#: Trainer URL of the sample rollout; requests to it are answered in-process, never sent.
_SAMPLE_SERVER_URL = "http://localhost:0"

#: The init every check uses: one short user message and no sampling parameters.
_SAMPLE_INIT: dict[str, Any] = {
    "rollout_id": "validate",
    "server_url": _SAMPLE_SERVER_URL,
    "messages": [{"role": "user", "content": "hello"}],
    "completion_params": {},
}

#: How long an async ``get_tools`` may take (the server's default limit).
_GET_TOOLS_TIMEOUT_S = ServerLimits.get_tools_timeout_s

#: How long the sample rollout may take to report its cancellation before it is abandoned.
_SETTLE_TIMEOUT_S = 5.0

#: Function names OpenAI accepts; other trainers may be laxer, so a mismatch is a warning.
_OPENAI_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

#: Differences reported per tool before the rest are summarised.
_MAX_DIFFERENCES = 5


@dataclass
class ValidationReport:
    """Outcome of validating one agent loop: ``ok`` when there are no problems."""

    name: str | None = None
    tool_names: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the agent can be served as it is (warnings do not count)."""
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (``osmosis validate --json``)."""
        return {
            "ok": self.ok,
            "name": self.name,
            "tools": list(self.tool_names),
            "problems": list(self.problems),
            "warnings": list(self.warnings),
        }


def sample_request() -> RolloutRequest:
    """The RolloutRequest ``get_tools`` is called with during validation."""
    return RolloutRequest.model_validate(_SAMPLE_INIT)


def validate_reference(ref: str, *, search_path: str | Path | None = None) -> ValidationReport:
    """Load the agent loop named by ``module:attr`` and validate it.

    A reference that cannot be loaded gives a report with a single problem: the loader's
    message, unchanged (it already names the input and the fix).
    """
    try:
        agent = load_agent_loop(ref, search_path=search_path)
    except ImportFromStringError as exc:
        return ValidationReport(problems=[str(exc)])
    return validate_agent_loop(agent)


def validate_agent_loop(agent: Any) -> ValidationReport:
    """Validate ``agent`` from sync code (runs its own event loop).

    Inside a running loop use ``await avalidate_agent_loop(agent)`` instead.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(avalidate_agent_loop(agent))
    raise RuntimeError(
        "validate_agent_loop() was called inside a running event loop; "
        "use `await avalidate_agent_loop(agent)` there"
    )


async def avalidate_agent_loop(agent: Any) -> ValidationReport:
    """Validate ``agent``: its name, ``run``, ``get_tools`` and the tools' trip through init.

    Never runs the agent's ``run`` and never touches the network; leaves no task behind.
    """
    report = ValidationReport()
    if not isinstance(agent, RolloutAgentLoop):
        report.problems.append(_not_an_agent(agent))
        return report
    _check_name(agent, report)
    _check_run(agent, report)
    tools = await _call_get_tools(agent, report)
    if tools is None:
        return report
    report.tool_names = [
        t["function"]["name"]
        for t in tools
        if isinstance(t, dict)
        and isinstance(t.get("function"), dict)
        and isinstance(t["function"].get("name"), str)
        and t["function"]["name"].strip()
    ]
    shape_ok = _check_tools(tools, report)
    # A tool of the wrong shape makes init fail with the same complaint: only a list the
    # server accepts is worth sending through it.
    if shape_ok:
        await _check_init_round_trip(agent, tools, report)
    return report


# ---- name and run ------------------------------------------------------------------------------


def _not_an_agent(obj: Any) -> str:
    if isinstance(obj, type) and issubclass(obj, RolloutAgentLoop):
        return f"got the class {obj.__name__}; pass an instance, e.g. {obj.__name__}()"
    return f"got a {type(obj).__name__}, not a RolloutAgentLoop instance"


def _check_name(agent: RolloutAgentLoop, report: ValidationReport) -> None:
    name = getattr(agent, "name", None)
    if not isinstance(name, str):
        report.problems.append(
            f"name must be a string, got {type(name).__name__}; "
            'set `name = "my_agent"` on the class'
        )
    elif not name.strip():
        report.problems.append(
            'name is empty; set `name = "my_agent"` on the class (trainers and /health show it)'
        )
    else:
        report.name = name


def _check_run(agent: RolloutAgentLoop, report: ValidationReport) -> None:
    run = getattr(agent, "run", None)
    if not callable(run):
        report.problems.append("run must be a method: `async def run(self, ctx)`")
        return
    if getattr(type(agent), "run", None) is RolloutAgentLoop.run:
        report.problems.append("run() is not implemented; define `async def run(self, ctx)`")
        return
    # A plain def returning a coroutine also counts as wrong: the server awaits run(ctx) on
    # the loop, so a sync body would block every other rollout until it returns.
    if not inspect.iscoroutinefunction(run):
        report.problems.append("run() must be declared `async def run(self, ctx)`")
        return
    try:
        inspect.signature(run).bind(object())
    except TypeError:
        report.problems.append(
            "run() must take the rollout context as its one argument: `async def run(self, ctx)`"
        )
    except ValueError:  # no signature to inspect (a builtin); nothing to say
        pass


# ---- get_tools ---------------------------------------------------------------------------------


async def _call_get_tools(agent: RolloutAgentLoop, report: ValidationReport) -> list | None:
    """``get_tools``' answer for the sample request, or None after recording why not."""
    get_tools = getattr(agent, "get_tools", None)
    if not callable(get_tools):
        report.problems.append(
            "get_tools must be a method: `def get_tools(self, request) -> list[dict]`"
        )
        return None
    if getattr(type(agent), "get_tools", None) is RolloutAgentLoop.get_tools:
        report.problems.append(
            "get_tools() is not implemented; define `def get_tools(self, request)` "
            "returning the tools (or [])"
        )
        return None
    try:
        tools = get_tools(sample_request())
        if inspect.isawaitable(tools):  # the server awaits an async get_tools too
            tools = await asyncio.wait_for(tools, _GET_TOOLS_TIMEOUT_S)
    except TimeoutError:
        report.problems.append(f"get_tools() did not return within {_GET_TOOLS_TIMEOUT_S:g}s")
        return None
    except Exception as exc:
        report.problems.append(f"get_tools() raised {type(exc).__name__}: {exc}")
        return None
    if isinstance(tools, tuple):
        report.warnings.append("get_tools() returned a tuple; return a list")
        tools = list(tools)
    if not isinstance(tools, list):
        report.problems.append(
            f"get_tools() must return a list of tools, got {type(tools).__name__}"
            + ("; did it forget to `return`?" if tools is None else "")
        )
        return None
    for index, tool in enumerate(tools):
        if hasattr(tool, "model_dump"):  # a pydantic tool model from 0.2.x: the server dumps it
            report.warnings.append(
                f"tool {index} is a {type(tool).__name__} model; return plain dicts "
                "(null fields are dropped when it is sent)"
            )
            tools[index] = tool.model_dump(exclude_none=True)
    return tools


def _label(index: int, tool: Any) -> str:
    """How a tool is named in messages: by its function name when it has one."""
    if isinstance(tool, dict) and isinstance(tool.get("function"), dict):
        name = tool["function"].get("name")
        if isinstance(name, str) and name.strip():
            return f"tool {name!r}"
    return f"tool {index}"


def _check_tools(tools: list, report: ValidationReport) -> bool:
    """Check each tool's shape and schema; True when the server would accept the list."""
    shape_ok = True
    names: Counter[str] = Counter()
    for index, tool in enumerate(tools):
        found = validate_tool(tool)
        # Same wording as the server's init error, so the two are easy to match up.
        report.problems.extend(f"tool {index}: {p}" for p in found)
        if found:
            shape_ok = False
            continue
        label = _label(index, tool)
        function = tool["function"]
        name = function["name"]
        names[name] += 1
        if "type" not in tool:
            report.warnings.append(f'{label} has no "type"; "function" is assumed')
        if not _OPENAI_TOOL_NAME.match(name):
            report.warnings.append(
                f"{label}: OpenAI function names use only letters, digits, _ and - "
                "(at most 64); some trainers reject others"
            )
        if not function.get("description"):
            report.warnings.append(f"{label} has no description; the model sees only its name")
        strict = function.get("strict")
        if strict is not None and not isinstance(strict, bool):
            report.problems.append(f"{label}: 'strict' must be true or false, got {strict!r}")
        parameters = function.get("parameters")
        if parameters is not None:
            # Checked as sent: the server drops null-valued keys before the trainer sees them.
            _check_parameters(label, drop_nulls(parameters), report)
    duplicates = [name for name, count in names.items() if count > 1]
    if duplicates:
        report.problems.append(
            "tool names must be unique; used more than once: "
            + ", ".join(repr(name) for name in duplicates)
        )
    return shape_ok


def _check_parameters(label: str, schema: dict[str, Any], report: ValidationReport) -> None:
    """Check ``parameters`` with a real JSON Schema meta-validator, then OpenAI's conventions."""
    # Deferred: jsonschema (with referencing and rpds) costs ~170 ms to import, paid only here.
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import Draft202012Validator, validator_for

    declared = schema.get("$schema")
    if isinstance(declared, str):
        validator_cls = validator_for(schema, default=None)
        if validator_cls is None:
            report.warnings.append(
                f"{label}: parameters declares an unknown $schema {declared!r}; "
                "checked as Draft 2020-12"
            )
            validator_cls = Draft202012Validator
    else:  # absent, or not a string (the meta-schema itself then reports it)
        validator_cls = Draft202012Validator
    try:
        validator_cls.check_schema(schema)
    except SchemaError as exc:
        where = _json_path(exc.absolute_path)
        at = f" at {where}" if where else ""
        report.problems.append(f"{label}: parameters is not valid JSON Schema{at}: {exc.message}")
        return
    except Exception as exc:  # e.g. a $schema the library cannot load
        report.problems.append(
            f"{label}: parameters could not be checked as JSON Schema: {type(exc).__name__}: {exc}"
        )
        return

    kind = schema.get("type")
    if kind is None:
        report.warnings.append(
            f'{label}: parameters has no "type": "object" at the top; '
            "OpenAI expects an object schema"
        )
    elif kind != "object":
        report.problems.append(
            f'{label}: parameters must be an object schema ("type": "object"), '
            f'got "type": {json.dumps(kind)}'
        )
    required = schema.get("required")
    properties = schema.get("properties")
    if isinstance(required, list):
        known = properties if isinstance(properties, dict) else {}
        missing = [r for r in required if isinstance(r, str) and r not in known]
        if missing:
            report.warnings.append(
                f"{label}: required names not in properties: " + ", ".join(missing)
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


async def _check_init_round_trip(
    agent: RolloutAgentLoop, tools: list[dict[str, Any]], report: ValidationReport
) -> None:
    """POST the sample init to ``create_app(agent)`` in process; compare the tools it answers."""
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
        report.problems.append(
            f"init answered HTTP {response.status_code} with the tools get_tools() returned: "
            f"{_detail(response)}"
        )
        return
    sent = response.json().get("tools")
    if not isinstance(sent, list):
        report.problems.append("the init response has no 'tools' list")
        return
    if len(sent) != len(tools):
        report.problems.append(
            f"the init response carries {len(sent)} tools; get_tools() returned {len(tools)}"
        )
        return
    for index, (tool, got) in enumerate(zip(tools, sent, strict=True)):
        # What the trainer should see: the tool as written, minus null-valued keys, with the
        # default "type" filled in, in its JSON form (tuples are lists on the wire).
        expected = json.loads(json.dumps({"type": "function", **drop_nulls(tool)}))
        differences = _differences(expected, got, "")
        if not differences:
            continue
        label = _label(index, tool)
        shown = differences[:_MAX_DIFFERENCES]
        more = len(differences) - len(shown)
        report.problems.append(
            f"{label} does not survive the init response unchanged: "
            + "; ".join(shown)
            + (f"; and {more} more" if more else "")
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
