"""SDK-0.2-API.md §8: the validator (ValidationError, ValidationResult, validate_agent_loop)."""

from __future__ import annotations

import dataclasses
import inspect
import types
import warnings

import pytest

from server_core import (
    AgentLoopValidationError,
    OpenAIFunctionSchema,
    OpenAIFunctionToolSchema,
    RolloutAgentLoop,
    RolloutRequest,
    ValidationError,
    ValidationResult,
    validate_agent_loop,
)

GOOD_TOOL = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add",
        "parameters": {"type": "object", "properties": {}, "required": []},
    },
}


def make_agent(tools=None, name="agent", get_tools=None, run=None):
    """A RolloutAgentLoop instance whose get_tools/run/name come from the test."""

    async def default_run(self, ctx):
        raise AssertionError("the validator must never call run")

    def default_get_tools(self, request):
        return list(tools) if tools is not None else []

    cls = type(
        "TestAgent",
        (RolloutAgentLoop,),
        {
            "name": "test-agent",
            "get_tools": get_tools or default_get_tools,
            "run": run or default_run,
        },
    )
    agent = cls()
    agent.name = name  # per-instance, so any value can be tried
    return agent


def codes(items) -> list[str]:
    return [e.code for e in items]


def by_code(items, code):
    return next(e for e in items if e.code == code)


# ---- ValidationError / ValidationResult ------------------------------------------------------


def test_validation_error_dataclass():
    assert [f.name for f in dataclasses.fields(ValidationError)] == [
        "code",
        "message",
        "field",
        "details",
    ]
    err = ValidationError("MISSING_NAME", "no name")
    assert (err.field, err.details) == (None, None)


def test_validation_error_str_forms():
    assert str(ValidationError("EMPTY_NAME", "bad", "name")) == "[EMPTY_NAME] name: bad"
    assert str(ValidationError(code="X", message="plain")) == "[X] plain"


def test_validation_result_fields_and_bool():
    names = [f.name for f in dataclasses.fields(ValidationResult)]
    assert names == ["valid", "errors", "warnings", "agent_name", "tool_count"]
    ok = ValidationResult(valid=True)
    assert (ok.errors, ok.warnings, ok.agent_name, ok.tool_count) == ([], [], None, 0)
    assert bool(ok) is True
    assert bool(ValidationResult(False)) is False
    with pytest.raises(TypeError):
        ValidationResult()  # type: ignore[call-arg]


def test_raise_if_invalid():
    assert ValidationResult(valid=True).raise_if_invalid() is None
    errors = [ValidationError("EMPTY_NAME", "bad", "name"), ValidationError("X", "other")]
    result = ValidationResult(valid=False, errors=errors)
    with pytest.raises(AgentLoopValidationError, match=r"2 error\(s\)") as info:
        result.raise_if_invalid()
    assert str(info.value) == (
        "Agent loop validation failed with 2 error(s):\n  - [EMPTY_NAME] name: bad\n  - [X] other"
    )
    assert info.value.errors == errors
    one = ValidationResult(valid=False, errors=[errors[0]])
    with pytest.raises(AgentLoopValidationError, match=r"1 error\(s\)"):
        one.raise_if_invalid()


# ---- validate_agent_loop --------------------------------------------------------------------


def test_request_is_keyword_only():
    param = inspect.signature(validate_agent_loop).parameters["request"]
    assert param.kind is inspect.Parameter.KEYWORD_ONLY and param.default is None
    agent = make_agent([GOOD_TOOL])
    with pytest.raises(TypeError):
        validate_agent_loop(agent, None)  # type: ignore[misc]


def test_valid_agent():
    result = validate_agent_loop(make_agent([GOOD_TOOL]))
    assert isinstance(result, ValidationResult)
    assert result.valid is True and result
    assert result.errors == [] and result.warnings == []
    assert result.agent_name == "agent"
    assert result.tool_count == 1


def test_the_default_mock_request():
    seen = []

    def get_tools(self, request):
        seen.append(request)
        return []

    validate_agent_loop(make_agent(get_tools=get_tools))
    (req,) = seen
    assert isinstance(req, RolloutRequest)
    assert req.rollout_id == "validation-test-rollout"
    assert req.server_url == "http://localhost:8080"
    assert req.messages == [{"role": "user", "content": "Hello"}]
    assert req.completion_params == {"temperature": 1.0, "max_tokens": 512}
    assert req.metadata == {"_validation": True}
    assert (req.max_turns, req.max_tokens_total, req.api_key) == (10, 8192, None)


def test_a_given_request_is_used_and_get_tools_is_called_once():
    seen = []

    def get_tools(self, request):
        seen.append(request)
        return []

    custom = RolloutRequest(
        rollout_id="mine", server_url="http://x", messages=[], completion_params={}
    )
    validate_agent_loop(make_agent(get_tools=get_tools), request=custom)
    assert seen == [custom]


@pytest.mark.parametrize(
    ("name", "code", "message"),
    [
        (None, "MISSING_NAME", None),
        (5, "INVALID_NAME_TYPE", "'name' must be a string, got"),
        ("", "EMPTY_NAME", "'name' cannot be empty or whitespace only"),
        ("   ", "EMPTY_NAME", "'name' cannot be empty or whitespace only"),
    ],
)
def test_name_checks(name, code, message):
    result = validate_agent_loop(make_agent([], name=name))
    assert result.valid is False
    err = by_code(result.errors, code)
    assert err.field == "name"
    if message:
        assert message in err.message
    assert result.agent_name == (name if isinstance(name, str) else None)


def test_missing_name_attribute():
    agent = types.SimpleNamespace(get_tools=lambda request: [], run=_async_noop)
    result = validate_agent_loop(agent)
    assert "MISSING_NAME" in codes(result.errors)
    assert by_code(result.errors, "MISSING_NAME").field == "name"


async def _async_noop(ctx):  # pragma: no cover - never called
    raise AssertionError


def test_get_tools_exception():
    def get_tools(self, request):
        raise RuntimeError("boom")

    result = validate_agent_loop(make_agent(get_tools=get_tools))
    err = by_code(result.errors, "GET_TOOLS_EXCEPTION")
    assert err.field == "get_tools"
    assert err.message == "get_tools() raised an exception: RuntimeError: boom"
    assert err.details == {"exception_type": "RuntimeError", "exception_message": "boom"}


def test_get_tools_returns_none():
    result = validate_agent_loop(make_agent(get_tools=lambda self, r: None))
    err = by_code(result.errors, "GET_TOOLS_RETURNS_NONE")
    assert err.field == "get_tools"
    assert "get_tools() must return a list, got None" in err.message


def test_get_tools_returns_a_tuple():
    result = validate_agent_loop(make_agent(get_tools=lambda self, r: (GOOD_TOOL,)))
    err = by_code(result.errors, "GET_TOOLS_INVALID_TYPE")
    assert err.field == "get_tools"
    assert "must return a list, got tuple" in err.message


def test_async_get_tools_is_an_invalid_type():
    async def get_tools(self, request):
        return []

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the never-awaited coroutine
        result = validate_agent_loop(make_agent(get_tools=get_tools))
    assert "GET_TOOLS_INVALID_TYPE" in codes(result.errors)
    assert result.valid is False


def test_model_tools_pass_without_inspection():
    tool = OpenAIFunctionToolSchema(
        type="function", function=OpenAIFunctionSchema(name="f", description="d")
    )
    result = validate_agent_loop(make_agent([tool]))
    assert result.valid and result.tool_count == 1 and result.warnings == []


@pytest.mark.parametrize(
    ("tool", "code", "field"),
    [
        ({"function": GOOD_TOOL["function"]}, "MISSING_TOOL_TYPE", "tools[0]"),
        ({"type": "function"}, "MISSING_FUNCTION", "tools[0]"),
        ({"type": "function", "function": "add"}, "INVALID_FUNCTION_TYPE", "tools[0].function"),
        (
            {"type": "function", "function": {"description": "d"}},
            "MISSING_FUNCTION_NAME",
            "tools[0].function.name",
        ),
        (
            {"type": "function", "function": {"name": "", "description": "d"}},
            "INVALID_FUNCTION_NAME",
            "tools[0].function.name",
        ),
        (
            {"type": "function", "function": {"name": 5, "description": "d"}},
            "INVALID_FUNCTION_NAME",
            "tools[0].function.name",
        ),
        (
            {"type": "function", "function": {"name": "f", "description": "d", "parameters": []}},
            "INVALID_PARAMETERS_TYPE",
            "tools[0].function.parameters",
        ),
    ],
)
def test_dict_tool_errors(tool, code, field):
    result = validate_agent_loop(make_agent([tool]))
    assert result.valid is False
    err = by_code(result.errors, code)
    assert err.field == field
    assert result.tool_count == 1


@pytest.mark.parametrize(
    ("tool", "code", "field"),
    [
        (
            {"type": "retrieval", "function": GOOD_TOOL["function"]},
            "UNKNOWN_TOOL_TYPE",
            "tools[0].type",
        ),
        (
            {"type": "function", "function": {"name": "f"}},
            "MISSING_FUNCTION_DESCRIPTION",
            "tools[0].function.description",
        ),
        (
            {
                "type": "function",
                "function": {"name": "f", "description": "d", "parameters": {"type": "array"}},
            },
            "PARAMETERS_TYPE_NOT_OBJECT",
            "tools[0].function.parameters.type",
        ),
    ],
)
def test_dict_tool_warnings_never_invalidate(tool, code, field):
    result = validate_agent_loop(make_agent([tool]))
    assert result.valid is True
    warn = by_code(result.warnings, code)
    assert warn.field == field


def test_tool_index_in_the_field():
    result = validate_agent_loop(make_agent([GOOD_TOOL, {"type": "function"}]))
    assert by_code(result.errors, "MISSING_FUNCTION").field == "tools[1]"
    assert result.tool_count == 2


def test_other_tool_objects_are_errors():
    result = validate_agent_loop(make_agent([42]))
    err = by_code(result.errors, "INVALID_TOOL_TYPE")
    assert "Tool must be OpenAIFunctionToolSchema or dict, got int" in err.message


def test_dict_checks_do_not_catch_what_init_response_would_reject():
    tool = {
        "type": "function",
        "function": {
            "name": "pick",
            "description": "Pick a number",
            "parameters": {
                "type": "object",
                "properties": {"n": {"type": "integer", "enum": [1, 2]}},
            },
        },
    }
    result = validate_agent_loop(make_agent([tool]))
    assert result.valid is True


def test_run_not_async():
    def run(self, ctx):  # pragma: no cover - never called
        raise AssertionError

    result = validate_agent_loop(make_agent([], run=run))
    err = by_code(result.errors, "RUN_NOT_ASYNC")
    assert err.field == "run"
    assert err.message == "'run' method must be an async function (async def)"


def test_run_missing_or_not_callable():
    missing = types.SimpleNamespace(name="duck", get_tools=lambda request: [])
    err = by_code(validate_agent_loop(missing).errors, "MISSING_RUN_METHOD")
    assert err.field == "run"
    not_callable = types.SimpleNamespace(name="duck", get_tools=lambda request: [], run=5)
    err = by_code(validate_agent_loop(not_callable).errors, "RUN_NOT_CALLABLE")
    assert err.field == "run"


def test_validator_never_raises_for_a_broken_agent():
    result = validate_agent_loop(types.SimpleNamespace())
    assert result.valid is False
    assert {"MISSING_NAME", "MISSING_RUN_METHOD"} <= set(codes(result.errors))
