"""SDK-0.2-API.md §5: the exception tree, constructors, attributes and messages."""

from __future__ import annotations

import pytest

from server_core import (
    AgentLoopNotFoundError,
    AgentLoopValidationError,
    OsmosisRolloutError,
    OsmosisServerError,
    OsmosisTimeoutError,
    OsmosisTransportError,
    OsmosisValidationError,
    PublicIPDetectionError,
    ServeError,
    ToolArgumentError,
    ToolExecutionError,
)

ROLLOUT_ERRORS = [
    OsmosisTransportError,
    OsmosisServerError,
    OsmosisValidationError,
    OsmosisTimeoutError,
    AgentLoopNotFoundError,
    ToolExecutionError,
    ToolArgumentError,
]


def test_osmosis_rollout_error_is_an_exception():
    assert issubclass(OsmosisRolloutError, Exception)


@pytest.mark.parametrize("cls", ROLLOUT_ERRORS)
def test_every_rollout_error_is_an_osmosis_rollout_error(cls):
    assert issubclass(cls, OsmosisRolloutError)


def test_tool_argument_error_is_a_tool_execution_error():
    assert issubclass(ToolArgumentError, ToolExecutionError)
    with pytest.raises(ToolExecutionError):
        raise ToolArgumentError("bad args")


@pytest.mark.parametrize("cls", [AgentLoopValidationError, ServeError, PublicIPDetectionError])
def test_plain_exceptions_outside_the_rollout_tree(cls):
    assert issubclass(cls, Exception)
    assert not issubclass(cls, OsmosisRolloutError)


@pytest.mark.parametrize(
    "build",
    [
        lambda m: OsmosisRolloutError(m),
        lambda m: OsmosisTransportError(m),
        lambda m: OsmosisServerError(m, 500),
        lambda m: OsmosisValidationError(m, 400),
        lambda m: OsmosisTimeoutError(m),
        lambda m: ToolExecutionError(m),
        lambda m: ToolArgumentError(m),
        lambda m: AgentLoopValidationError(m),
        lambda m: ServeError(m),
        lambda m: PublicIPDetectionError(m),
    ],
)
def test_one_message_gives_str_and_args(build):
    exc = build("something failed")
    assert str(exc) == "something failed"
    assert exc.args == ("something failed",)


@pytest.mark.parametrize("cls", [OsmosisServerError, OsmosisValidationError])
def test_status_code_is_required(cls):
    assert cls("m", 503).status_code == 503
    assert cls("m", status_code=404).status_code == 404
    assert cls(message="m", status_code=418).status_code == 418
    with pytest.raises(TypeError):
        cls("m")


def test_agent_loop_not_found_error():
    exc = AgentLoopNotFoundError("missing", ["a", "b"])
    assert exc.name == "missing"
    assert exc.available == ["a", "b"]
    assert str(exc) == "Agent loop 'missing' not found. Available: ['a', 'b']"
    empty = AgentLoopNotFoundError("x", [])
    assert "Available: []" in str(empty)
    assert isinstance(empty, OsmosisRolloutError)


def test_tool_execution_error_attributes():
    plain = ToolExecutionError("failed")
    assert (plain.tool_call_id, plain.tool_name) == ("", "")
    full = ToolExecutionError("failed", tool_call_id="c1", tool_name="add")
    assert (full.tool_call_id, full.tool_name) == ("c1", "add")
    positional = ToolExecutionError("failed", "c2", "sub")
    assert (positional.tool_call_id, positional.tool_name) == ("c2", "sub")
    assert str(full) == "failed"


def test_tool_argument_error_same_constructor():
    exc = ToolArgumentError("Invalid JSON arguments: x", tool_call_id="c9", tool_name="mul")
    assert (exc.tool_call_id, exc.tool_name) == ("c9", "mul")
    assert ToolArgumentError("m").tool_call_id == ""
    assert str(exc) == "Invalid JSON arguments: x"


def test_agent_loop_validation_error_errors():
    assert AgentLoopValidationError("m").errors == []
    assert AgentLoopValidationError("m", errors=None).errors == []
    errs = ["e1"]
    assert AgentLoopValidationError("m", errs).errors == ["e1"]
    assert AgentLoopValidationError("m", errors=errs).errors == ["e1"]


def test_every_rollout_error_can_be_caught_as_osmosis_rollout_error():
    for exc in [
        OsmosisTransportError("t"),
        OsmosisServerError("s", 500),
        OsmosisValidationError("v", 422),
        OsmosisTimeoutError("to"),
        AgentLoopNotFoundError("n", []),
        ToolExecutionError("te"),
        ToolArgumentError("ta"),
    ]:
        with pytest.raises(OsmosisRolloutError):
            raise exc
