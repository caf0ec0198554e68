"""``osmosis validate``: every way an agent loop can be wrong is reported, precisely."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

import server_core.rollouts
from osmosis_workbench.commands.validate_cmd import add_validate_parser
from server_core import RolloutAgentLoop
from server_core.protocol import drop_nulls
from server_core.validate import (
    ValidationReport,
    ValidationResult,
    avalidate_agent_loop,
    validate_agent_loop,
    validate_reference,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE = "sample_project.server:agent_loop"

# ---- helpers -----------------------------------------------------------------------------------


def make_tool(name: str = "add", parameters: Any = None, **function: Any) -> dict[str, Any]:
    """An OpenAI function tool; two required numbers unless ``parameters`` is given."""
    if parameters is None:
        parameters = {
            "type": "object",
            "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
            "required": ["a", "b"],
        }
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": f"{name} a and b",
            "parameters": parameters,
            **function,
        },
    }


def make_agent(tools: Any = None, *, name: Any = "tester") -> RolloutAgentLoop:
    """An agent returning ``tools`` (default: one valid tool) from get_tools."""
    returned = [make_tool()] if tools is None else tools

    class Agent(RolloutAgentLoop):
        name = "agent"

        def get_tools(self, request: Any) -> Any:
            return returned

        async def run(self, ctx: Any) -> Any:
            return ctx.complete([])

    Agent.name = name
    return Agent()


@pytest.fixture
def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write a throwaway module under tmp_path (importable, uniquely named); returns its name."""
    monkeypatch.syspath_prepend(str(tmp_path))
    written: list[str] = []

    def write(source: str) -> str:
        name = f"validate_agent_{uuid.uuid4().hex[:12]}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        written.append(name)
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)


AGENT_MODULE = """
from server_core import RolloutAgentLoop

class Agent(RolloutAgentLoop):
    name = "from_module"

    def get_tools(self, request):
        return []

    async def run(self, ctx):
        return ctx.complete([])

agent_loop = Agent()
number = 3
"""


def run_cli(*argv: str) -> int:
    """Parse ``osmosis validate ...`` with a throwaway parser and run its handler."""
    parser = argparse.ArgumentParser(prog="osmosis")
    add_validate_parser(parser.add_subparsers())
    args = parser.parse_args(["validate", *argv])
    return args.handler(args)


# ---- the sample project ------------------------------------------------------------------------


def test_sample_project_passes() -> None:
    report = validate_reference(SAMPLE, search_path=REPO_ROOT)
    assert report.ok, report.errors
    assert report.agent_name == "calculator"
    assert report.tool_names == ["add", "subtract", "multiply", "divide"]
    assert report.warnings == []


# ---- loading -----------------------------------------------------------------------------------


def messages(report: ValidationResult) -> list[str]:
    return [error.message for error in report.errors]


def codes(report: ValidationResult) -> list[str]:
    return [error.code for error in report.errors]


def test_bad_format() -> None:
    report = validate_reference("server")
    assert messages(report) == [
        'Import string "server" must be in format "<module>:<attribute>", e.g. "server:agent_loop".'
    ]
    assert codes(report) == ["LOAD_FAILED"]
    assert not report.ok and report.agent_name is None and report.tool_names == []


def test_missing_module(tmp_path: Path) -> None:
    module = f"no_such_module_{uuid.uuid4().hex[:8]}"
    report = validate_reference(f"{module}:agent_loop", search_path=tmp_path)
    assert messages(report) == [
        f'Could not import module "{module}" (looked in {tmp_path.resolve()} and on sys.path); '
        "run from the folder that holds it or give its dotted path."
    ]


def test_missing_attribute(write_module) -> None:
    module = write_module(AGENT_MODULE)
    report = validate_reference(f"{module}:agent")
    assert messages(report) == [f'Attribute "agent" not found in module "{module}".']


def test_class_instead_of_instance(write_module) -> None:
    module = write_module(AGENT_MODULE)
    report = validate_reference(f"{module}:Agent")
    assert messages(report) == [
        f'"{module}:Agent" is the class Agent; export an instance, e.g. agent_loop = Agent()'
    ]


def test_wrong_type(write_module) -> None:
    module = write_module(AGENT_MODULE)
    report = validate_reference(f"{module}:number")
    assert messages(report) == [
        f'"{module}:number" is a int, not a RolloutAgentLoop instance; point -m at the agent '
        "loop object (e.g. server:agent_loop)."
    ]


def test_module_whose_import_raises(write_module) -> None:
    module = write_module('raise RuntimeError("no API key configured")\n')
    report = validate_reference(f"{module}:agent_loop")
    assert messages(report) == [
        f'Importing module "{module}" raised RuntimeError: no API key configured'
    ]


def test_module_importing_a_missing_dependency(write_module) -> None:
    module = write_module("import not_installed_dependency_xyz\n")
    report = validate_reference(f"{module}:agent_loop")
    assert messages(report) == [
        f'Module "{module}" was found but importing it failed: it imports '
        '"not_installed_dependency_xyz", which is not installed or not on the path.'
    ]


def test_a_module_agent_passes(write_module) -> None:
    report = validate_reference(f"{write_module(AGENT_MODULE)}:agent_loop")
    assert report == ValidationReport(valid=True, agent_name="from_module", tool_count=0)


def test_not_an_agent_object() -> None:
    report = validate_agent_loop(object())
    assert codes(report) == ["MISSING_NAME", "GET_TOOLS_EXCEPTION", "MISSING_RUN_METHOD"]


# ---- name and run ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "   "])
def test_empty_name(name: str) -> None:
    report = validate_agent_loop(make_agent(name=name))
    assert [str(e) for e in report.errors] == [
        "[EMPTY_NAME] name: 'name' cannot be empty or whitespace only"
    ]


def test_name_of_wrong_type() -> None:
    report = validate_agent_loop(make_agent(name=5))
    assert [str(e) for e in report.errors] == [
        "[INVALID_NAME_TYPE] name: 'name' must be a string, got int"
    ]
    assert report.agent_name is None


class SyncRun(RolloutAgentLoop):
    name = "sync"

    def get_tools(self, request: Any) -> list:
        return []

    def run(self, ctx: Any) -> Any:  # type: ignore[override]
        return ctx.complete([])


class SyncRunReturningCoroutine(SyncRun):
    def run(self, ctx: Any) -> Any:  # type: ignore[override]
        return self._run(ctx)

    async def _run(self, ctx: Any) -> Any:
        return ctx.complete([])


@pytest.mark.parametrize("agent_cls", [SyncRun, SyncRunReturningCoroutine])
def test_sync_run(agent_cls: type[RolloutAgentLoop]) -> None:
    report = validate_agent_loop(agent_cls())
    assert [str(e) for e in report.errors] == [
        "[RUN_NOT_ASYNC] run: 'run' method must be an async function (async def)"
    ]


def test_run_without_ctx_argument() -> None:
    class NoCtx(SyncRun):
        async def run(self) -> Any:  # type: ignore[override]
            return None

    report = validate_agent_loop(NoCtx())
    assert messages(report) == [
        "run() must take the rollout context as its one argument: `async def run(self, ctx)`"
    ]


# ---- get_tools ---------------------------------------------------------------------------------


def test_get_tools_raises() -> None:
    class Broken(SyncRun):
        async def run(self, ctx: Any) -> Any:
            return ctx.complete([])

        def get_tools(self, request: Any) -> list:
            raise ValueError("no tools today")

    report = validate_agent_loop(Broken())
    assert messages(report) == ["get_tools() raised an exception: ValueError: no tools today"]
    assert report.errors[0].details == {
        "exception_type": "ValueError",
        "exception_message": "no tools today",
    }


def test_get_tools_is_called_with_a_sample_request() -> None:
    seen: list[Any] = []

    class Recording(SyncRun):
        async def run(self, ctx: Any) -> Any:
            return ctx.complete([])

        def get_tools(self, request: Any) -> list:
            seen.append(request)
            return []

    assert validate_agent_loop(Recording()).valid
    first = seen[0]
    assert first.rollout_id == "validation-test-rollout"
    assert first.server_url == "http://localhost:8080"
    assert first.messages == [{"role": "user", "content": "Hello"}]
    assert first.metadata == {"_validation": True}


@pytest.mark.parametrize(
    ("returned", "code"),
    [({"add": make_tool()}, "GET_TOOLS_INVALID_TYPE"), (None, "GET_TOOLS_RETURNS_NONE")],
)
def test_get_tools_not_a_list(returned: Any, code: str) -> None:
    class NotAList(SyncRun):
        async def run(self, ctx: Any) -> Any:
            return ctx.complete([])

        def get_tools(self, request: Any) -> Any:
            return returned

    assert codes(validate_agent_loop(NotAList())) == [code]


class AsyncTools(SyncRun):
    async def run(self, ctx: Any) -> Any:
        return ctx.complete([])

    async def get_tools(self, request: Any) -> list:  # type: ignore[override]
        return [make_tool("lookup")]


async def test_async_get_tools_is_accepted_where_it_can_be_awaited() -> None:
    report = await avalidate_agent_loop(AsyncTools())
    assert report.ok, report.errors
    assert report.tool_names == ["lookup"]


def test_async_get_tools_is_refused_by_the_sync_check_as_in_0_2() -> None:
    assert codes(validate_agent_loop(AsyncTools())) == ["GET_TOOLS_INVALID_TYPE"]


# ---- tools -------------------------------------------------------------------------------------


def test_tool_without_function_name() -> None:
    tool = {"type": "function", "function": {"description": "nameless", "parameters": {}}}
    report = validate_agent_loop(make_agent([make_tool("add"), tool]))
    assert [str(e) for e in report.errors] == [
        "[MISSING_FUNCTION_NAME] tools[1].function.name: Function must have a 'name'"
    ]


def test_invalid_json_schema_is_caught_by_a_real_validator() -> None:
    parameters = {"type": "object", "properties": {"a": {"type": "nmber"}}}
    report = validate_agent_loop(make_agent([make_tool("add", parameters)]))
    assert messages(report) == [
        "tool 'add': parameters is not valid JSON Schema at properties.a.type: "
        "'nmber' is not valid under any of the given schemas"
    ]
    assert codes(report) == ["INVALID_PARAMETERS_SCHEMA"]


def test_invalid_top_level_type() -> None:
    report = validate_agent_loop(make_agent([make_tool("add", {"type": "nmber"})]))
    assert messages(report) == [
        "tool 'add': parameters is not valid JSON Schema at type: "
        "'nmber' is not valid under any of the given schemas"
    ]


def test_duplicate_names() -> None:
    tools = [make_tool("add"), make_tool("sub"), make_tool("add")]
    report = validate_agent_loop(make_agent(tools))
    assert messages(report) == ["tool names must be unique; used more than once: 'add'"]


def test_parameters_not_an_object_schema_is_a_warning() -> None:
    report = validate_agent_loop(make_agent([make_tool("add", {"type": "array"})]))
    assert report.valid
    assert [str(w) for w in report.warnings] == [
        "[PARAMETERS_TYPE_NOT_OBJECT] tools[0].function.parameters.type: "
        "Parameters type is 'array', expected 'object'"
    ]


def test_schema_conventions_are_warnings() -> None:
    parameters = {"properties": {"a": {"type": "number"}}, "required": ["a", "b"]}
    report = validate_agent_loop(make_agent([make_tool("add", parameters)]))
    assert report.valid
    assert [w.code for w in report.warnings] == [
        "PARAMETERS_TYPE_NOT_OBJECT",
        "REQUIRED_NOT_IN_PROPERTIES",
    ]
    assert report.warnings[1].message == "tool 'add': required names not in properties: b"


RICH_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "values": {"type": "array", "items": {"type": "number"}, "minItems": 1},
        "options": {
            "type": "object",
            "properties": {
                "precision": {"type": "integer", "default": 2, "minimum": 0},
                "round": {"type": "boolean", "default": True},
            },
        },
        "base": {"enum": [2, 8, 10, 16], "default": 10},
        "mode": {"anyOf": [{"type": "string", "enum": ["sum", "mean"]}, {"type": "null"}]},
        "scale": {"type": "number", "default": 1.0, "description": None},
    },
    "required": ["values"],
    "additionalProperties": False,
}


async def test_rich_schema_passes_and_survives_unchanged() -> None:
    report = await avalidate_agent_loop(make_agent([make_tool("aggregate", RICH_PARAMETERS)]))
    assert report.ok, report.errors
    assert report.warnings == []
    assert report.tool_names == ["aggregate"]


async def test_a_server_that_loses_schema_keys_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """What 0.2.x did to tools: drop ``items`` and ``anyOf`` on the way to the trainer."""
    real = server_core.rollouts.normalize_tools

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("items", "anyOf")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    monkeypatch.setattr(server_core.rollouts, "normalize_tools", lambda t: strip(real(t)))
    report = await avalidate_agent_loop(make_agent([make_tool("aggregate", RICH_PARAMETERS)]))
    assert [str(e) for e in report.errors] == [
        "[INIT_TOOL_CHANGED] tools[0]: does not survive the init response unchanged: "
        "function.parameters.properties.values.items was lost; "
        "function.parameters.properties.mode.anyOf was lost"
    ]


async def test_null_valued_keys_are_dropped_not_reported() -> None:
    tool = make_tool("add")
    tool["function"]["strict"] = None
    tool["function"]["parameters"]["properties"]["a"]["enum"] = None
    report = await avalidate_agent_loop(make_agent([tool]))
    assert report.ok, report.errors
    assert drop_nulls(tool) != tool  # the check above really had nulls to drop


async def test_validation_never_runs_the_agent_and_leaves_no_task() -> None:
    ran: list[bool] = []

    class Watched(SyncRun):
        def get_tools(self, request: Any) -> list:
            return [make_tool("add")]

        async def run(self, ctx: Any) -> Any:
            ran.append(True)
            await ctx.chat(ctx.request.messages)
            return ctx.complete([])

    report = await avalidate_agent_loop(Watched())
    assert report.ok, report.errors
    assert ran == []
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_the_0_2_check_works_inside_a_running_loop() -> None:
    assert validate_agent_loop(make_agent()).valid


# ---- the command -------------------------------------------------------------------------------


def test_cli_success(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(REPO_ROOT)
    assert run_cli("-m", SAMPLE) == 0
    assert capsys.readouterr().out == (
        "✓ Agent loop validated successfully\n"
        "  Name: calculator\n"
        "  Tools: 4 (add, subtract, multiply, divide)\n"
    )


def test_cli_failure_lists_every_problem(write_module, capsys: pytest.CaptureFixture) -> None:
    module = write_module(
        """
        from server_core import RolloutAgentLoop

        class Agent(RolloutAgentLoop):
            name = "agent"

            def get_tools(self, request):
                return [{"type": "function", "function": {"name": "x", "parameters": {}}}]

            def run(self, ctx):
                return ctx.complete([])

        agent_loop = Agent()
        agent_loop.name = ""
        """
    )
    assert run_cli("--module", f"{module}:agent_loop") == 1
    assert capsys.readouterr().out == (
        "✗ Agent loop validation failed\n"
        "  - name: 'name' cannot be empty or whitespace only [EMPTY_NAME]\n"
        "  - run: 'run' method must be an async function (async def) [RUN_NOT_ASYNC]\n"
        "  ! tools[0].function.description: Function has no description; the model sees only "
        "its name [MISSING_FUNCTION_DESCRIPTION]\n"
        "  ! tools[0].function.parameters.type: Parameters type is None, expected 'object' "
        "[PARAMETERS_TYPE_NOT_OBJECT]\n"
    )


def test_cli_load_error(capsys: pytest.CaptureFixture) -> None:
    assert run_cli("-m", "server") == 2  # an input error, as for every command
    assert capsys.readouterr().out == (
        "✗ Agent loop validation failed\n"
        '  - Import string "server" must be in format "<module>:<attribute>", '
        'e.g. "server:agent_loop". [LOAD_FAILED]\n'
    )


def test_cli_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(REPO_ROOT)
    assert run_cli("-m", SAMPLE, "--json") == 0
    assert json.loads(capsys.readouterr().out) == {
        "valid": True,
        "agent_name": "calculator",
        "tool_count": 4,
        "tools": ["add", "subtract", "multiply", "divide"],
        "errors": [],
        "warnings": [],
    }
    assert run_cli("-m", "server", "--json") == 2
    assert json.loads(capsys.readouterr().out)["valid"] is False


def test_cli_falls_back_to_ascii_marks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO_ROOT)
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    monkeypatch.setattr(sys, "stdout", stream)
    assert run_cli("-m", SAMPLE) == 0
    stream.flush()
    assert raw.getvalue().decode("ascii").splitlines()[0] == "OK Agent loop validated successfully"
