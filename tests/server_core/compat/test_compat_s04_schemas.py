"""SDK-0.2-API.md §4: schemas (aliases, tool models, status/metrics, requests and responses)."""

from __future__ import annotations

import enum
import math
from typing import Any

import pydantic
import pytest

from server_core import (
    DEFAULT_MAX_METADATA_SIZE_BYTES,
    CompletionsChoice,
    CompletionsRequest,
    CompletionsResponse,
    CompletionUsage,
    InitResponse,
    MessageDict,
    OpenAIFunctionCallSchema,
    OpenAIFunctionParametersSchema,
    OpenAIFunctionParsedSchema,
    OpenAIFunctionPropertySchema,
    OpenAIFunctionSchema,
    OpenAIFunctionToolCall,
    OpenAIFunctionToolSchema,
    RolloutMetrics,
    RolloutRequest,
    RolloutResponse,
    RolloutStatus,
    SamplingParamsDict,
    ToolResponse,
    get_max_metadata_size_bytes,
    set_max_metadata_size_bytes,
)


def _error_types(exc: pydantic.ValidationError) -> set[str]:
    return {e["type"] for e in exc.errors()}


@pytest.fixture
def metadata_limit():
    """Restore the process-wide metadata limit after a test changes it."""
    before = get_max_metadata_size_bytes()
    yield
    set_max_metadata_size_bytes(before)


# ---- §4.1 ----------------------------------------------------------------------------------


def test_type_aliases_are_plain_dicts():
    from typing import Dict  # noqa: UP035

    assert MessageDict == Dict[str, Any]  # noqa: UP006
    assert SamplingParamsDict == Dict[str, Any]  # noqa: UP006


def test_default_metadata_limit():
    assert DEFAULT_MAX_METADATA_SIZE_BYTES == 1048576
    assert get_max_metadata_size_bytes() == 1048576


def test_set_max_metadata_size_bytes(metadata_limit):
    assert set_max_metadata_size_bytes(2048) is None
    assert get_max_metadata_size_bytes() == 2048


@pytest.mark.parametrize("size", [0, -1])
def test_set_max_metadata_size_rejects_non_positive(metadata_limit, size):
    with pytest.raises(ValueError, match="must be positive"):
        set_max_metadata_size_bytes(size)
    with pytest.raises(ValueError, match="max_metadata_size_bytes must be positive"):
        set_max_metadata_size_bytes(size)


# ---- §4.2 tool definition models ------------------------------------------------------------


def _tool(**prop):
    return OpenAIFunctionToolSchema(
        type="function",
        function=OpenAIFunctionSchema(
            name="add",
            description="Add two numbers",
            parameters=OpenAIFunctionParametersSchema(
                type="object",
                properties={"a": OpenAIFunctionPropertySchema(type="number", description="A")},
                required=["a"],
            ),
        ),
    )


def test_property_schema_fields():
    prop = OpenAIFunctionPropertySchema(type="string")
    assert (prop.type, prop.description, prop.enum) == ("string", None, None)
    full = OpenAIFunctionPropertySchema(type="string", description="d", enum=["a", "b"])
    assert full.enum == ["a", "b"]
    assert list(OpenAIFunctionPropertySchema.model_fields) == ["type", "description", "enum"]


def test_property_schema_requires_a_string_type():
    with pytest.raises(pydantic.ValidationError) as info:
        OpenAIFunctionPropertySchema(description="no type")
    assert "missing" in _error_types(info.value)
    with pytest.raises(pydantic.ValidationError):
        OpenAIFunctionPropertySchema.model_validate({"type": ["string", "null"]})


def test_property_schema_rejects_non_string_enums():
    with pytest.raises(pydantic.ValidationError) as info:
        OpenAIFunctionPropertySchema.model_validate({"type": "integer", "enum": [1, 2]})
    assert "string_type" in _error_types(info.value)


def test_property_schema_drops_other_keys():
    prop = OpenAIFunctionPropertySchema.model_validate(
        {"type": "array", "items": {"type": "string"}, "default": [], "minimum": 1}
    )
    assert prop.model_dump() == {"type": "array", "description": None, "enum": None}


def test_parameters_schema_all_three_fields_required():
    assert list(OpenAIFunctionParametersSchema.model_fields) == ["type", "properties", "required"]
    for missing in ("type", "properties", "required"):
        data = {"type": "object", "properties": {}, "required": []}
        del data[missing]
        with pytest.raises(pydantic.ValidationError) as info:
            OpenAIFunctionParametersSchema.model_validate(data)
        assert "missing" in _error_types(info.value)
        assert missing in str(info.value)


def test_parameters_properties_become_property_models():
    params = OpenAIFunctionParametersSchema.model_validate(
        {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}
    )
    assert isinstance(params.properties["x"], OpenAIFunctionPropertySchema)


def test_function_schema_fields_and_defaults():
    assert list(OpenAIFunctionSchema.model_fields) == [
        "name",
        "description",
        "parameters",
        "strict",
    ]
    fn = OpenAIFunctionSchema(name="f", description="does f")
    assert fn.strict is False
    assert fn.parameters.model_dump() == {"type": "object", "properties": {}, "required": []}
    other = OpenAIFunctionSchema(name="g", description="does g")
    assert fn.parameters is not other.parameters  # a fresh default each time


def test_function_schema_requires_description():
    with pytest.raises(pydantic.ValidationError) as info:
        OpenAIFunctionSchema(name="f")
    assert "description" in str(info.value)
    assert "missing" in _error_types(info.value)


def test_function_schema_parameters_without_required_fail():
    with pytest.raises(pydantic.ValidationError):
        OpenAIFunctionSchema.model_validate(
            {"name": "f", "description": "d", "parameters": {"type": "object", "properties": {}}}
        )


def test_tool_schema_type_is_any_string_and_function_dict_is_converted():
    tool = OpenAIFunctionToolSchema(type="anything", function={"name": "f", "description": "d"})
    assert tool.type == "anything"
    assert isinstance(tool.function, OpenAIFunctionSchema)
    assert tool.function.name == "f"
    with pytest.raises(pydantic.ValidationError):
        OpenAIFunctionToolSchema(function={"name": "f", "description": "d"})


def test_tool_schema_model_dump_keeps_nulls():
    assert _tool().model_dump() == {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two numbers",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "number", "description": "A", "enum": None}},
                "required": ["a"],
            },
            "strict": False,
        },
    }


def test_tool_schema_model_dump_exclude_none():
    tool = OpenAIFunctionToolSchema(
        type="function",
        function={
            "name": "f",
            "description": "d",
            "parameters": {
                "type": "object",
                "properties": {"x": {"type": "string"}},
                "required": [],
            },
        },
    )
    dumped = tool.model_dump(exclude_none=True)
    assert dumped["function"]["parameters"]["properties"]["x"] == {"type": "string"}
    assert dumped["function"]["strict"] is False


def test_tool_models_are_mutable_pydantic_models_with_field_equality():
    assert isinstance(_tool(), pydantic.BaseModel)
    assert _tool() == _tool()
    tool = _tool()
    tool.type = "other"  # not frozen
    assert tool.type == "other"


def test_tool_schema_validates_dicts_and_ignores_unknown_keys():
    tool = OpenAIFunctionToolSchema.model_validate(
        {
            "type": "function",
            "extra": 1,
            "function": {"name": "f", "description": "d", "unknown": True},
        }
    )
    assert "extra" not in tool.model_dump()
    assert "unknown" not in tool.model_dump()["function"]


# ---- §4.3 tool call models ------------------------------------------------------------------


def test_parsed_and_call_schemas():
    parsed = OpenAIFunctionParsedSchema(name="add", arguments='{"a": 1}')
    assert (parsed.name, parsed.arguments) == ("add", '{"a": 1}')
    call, has_error = OpenAIFunctionCallSchema.from_openai_function_parsed_schema(parsed)
    assert isinstance(call, OpenAIFunctionCallSchema)
    assert (call.name, call.arguments, has_error) == ("add", {"a": 1}, False)


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '"text"', "null"])
def test_call_schema_decode_errors_give_empty_arguments(raw):
    parsed = OpenAIFunctionParsedSchema(name="f", arguments=raw)
    call, has_error = OpenAIFunctionCallSchema.from_openai_function_parsed_schema(parsed)
    assert call.arguments == {}
    assert has_error is True
    assert call.name == "f"


def test_tool_call_model():
    call = OpenAIFunctionToolCall(id="c1", function={"name": "f", "arguments": {"x": 1}})
    assert call.type == "function"
    assert call.function.arguments == {"x": 1}
    with pytest.raises(pydantic.ValidationError) as info:
        OpenAIFunctionToolCall(id="c1", type="tool", function={"name": "f", "arguments": {}})
    assert "literal_error" in _error_types(info.value)


def test_tool_response():
    empty = ToolResponse()
    assert (empty.text, empty.image, empty.video) == (None, None, None)
    assert empty.is_empty() is True
    assert empty.is_text_only() is False
    text = ToolResponse(text="hi")
    assert text.is_text_only() is True and text.is_empty() is False
    mixed = ToolResponse(text="hi", image=["img"])
    assert mixed.is_text_only() is False and mixed.is_empty() is False
    assert ToolResponse(text="", image=[], video=[]).is_empty() is True


def test_tool_response_rejects_non_list_media():
    with pytest.raises(pydantic.ValidationError, match="image must be a list, but got"):
        ToolResponse(image="not-a-list")
    with pytest.raises(pydantic.ValidationError, match="video must be a list, but got"):
        ToolResponse(video={"a": 1})


# ---- §4.4 RolloutStatus and RolloutMetrics --------------------------------------------------


def test_rollout_status_is_a_str_enum_but_not_strenum():
    assert issubclass(RolloutStatus, str) and issubclass(RolloutStatus, enum.Enum)
    assert [m.value for m in RolloutStatus] == ["COMPLETED", "ERROR"]
    assert RolloutStatus.COMPLETED == "COMPLETED"
    assert RolloutStatus("ERROR") is RolloutStatus.ERROR
    assert str(RolloutStatus.COMPLETED) == "RolloutStatus.COMPLETED"
    assert f"{RolloutStatus.ERROR}" == "RolloutStatus.ERROR"


@pytest.mark.parametrize("bad", ["DONE", "completed", "error"])
def test_rollout_status_rejects_other_values(bad):
    with pytest.raises(ValueError):
        RolloutStatus(bad)


def test_rollout_metrics_defaults_and_types():
    m = RolloutMetrics()
    floats = ["total_latency_ms", "llm_latency_ms", "tool_latency_ms"]
    ints = [
        "num_llm_calls",
        "num_tool_calls",
        "prompt_tokens",
        "response_tokens",
        "max_context_tokens",
    ]
    assert list(RolloutMetrics.model_fields) == floats + ints
    for name in floats:
        assert getattr(m, name) == 0 and isinstance(getattr(m, name), float)
    for name in ints:
        assert getattr(m, name) == 0 and isinstance(getattr(m, name), int)


def test_rollout_metrics_ignores_extra_and_rejects_fractional_ints():
    m = RolloutMetrics(num_llm_calls=2, unknown=5)
    assert not hasattr(m, "unknown")
    with pytest.raises(pydantic.ValidationError) as info:
        RolloutMetrics(num_llm_calls=1.5)
    assert "int_from_float" in _error_types(info.value)


# ---- §4.5 RolloutRequest --------------------------------------------------------------------


def _req(**fields):
    data = {
        "rollout_id": "r-1",
        "server_url": "http://trainer:8000",
        "messages": [{"role": "user", "content": "hi"}],
        "completion_params": {},
    }
    data.update(fields)
    return RolloutRequest(**data)


def test_request_defaults_and_dump_order():
    req = _req()
    assert req.model_dump() == {
        "rollout_id": "r-1",
        "server_url": "http://trainer:8000",
        "messages": [{"role": "user", "content": "hi"}],
        "completion_params": {},
        "tool_server_url": None,
        "max_turns": 10,
        "max_tokens_total": 8192,
        "metadata": {},
        "api_key": None,
        "idempotency_key": None,
    }
    assert list(req.model_dump()) == [
        "rollout_id",
        "server_url",
        "messages",
        "completion_params",
        "tool_server_url",
        "max_turns",
        "max_tokens_total",
        "metadata",
        "api_key",
        "idempotency_key",
    ]


@pytest.mark.parametrize("missing", ["rollout_id", "server_url", "messages", "completion_params"])
def test_request_required_fields(missing):
    data = {
        "rollout_id": "r-1",
        "server_url": "http://trainer:8000",
        "messages": [],
        "completion_params": {},
    }
    del data[missing]
    with pytest.raises(pydantic.ValidationError) as info:
        RolloutRequest(**data)
    assert "missing" in _error_types(info.value)


def test_request_ignores_unknown_fields():
    req = RolloutRequest.model_validate(
        {
            "rollout_id": "r",
            "server_url": "http://t",
            "messages": [],
            "completion_params": {},
            "surprise": 1,
        }
    )
    assert "surprise" not in req.model_dump()


def test_rollout_id_length_rules():
    with pytest.raises(pydantic.ValidationError) as info:
        _req(rollout_id="")
    assert "string_too_short" in _error_types(info.value)
    with pytest.raises(pydantic.ValidationError) as info:
        _req(rollout_id="x" * 257)
    assert "string_too_long" in _error_types(info.value)
    assert _req(rollout_id="x" * 256).rollout_id == "x" * 256


def test_rollout_id_whitespace_only():
    with pytest.raises(
        pydantic.ValidationError, match="rollout_id cannot be empty or whitespace only"
    ):
        _req(rollout_id="   ")


def test_rollout_id_allows_any_characters():
    assert _req(rollout_id="../weird id/é").rollout_id == "../weird id/é"


@pytest.mark.parametrize("url", ["ftp://trainer", "trainer:8000", "file:///tmp/x"])
def test_server_url_scheme(url):
    with pytest.raises(pydantic.ValidationError, match="server_url must use http or https scheme"):
        _req(server_url=url)


def test_server_url_needs_a_host():
    with pytest.raises(pydantic.ValidationError, match="server_url must have a valid host"):
        _req(server_url="http://")


def test_server_url_is_stored_as_given():
    assert _req(server_url="https://trainer.example/prefix/").server_url == (
        "https://trainer.example/prefix/"
    )


def test_metadata_over_the_limit(metadata_limit):
    set_max_metadata_size_bytes(100)
    with pytest.raises(pydantic.ValidationError, match="exceeds maximum") as info:
        _req(metadata={"blob": "x" * 200})
    assert "metadata size exceeds maximum allowed size of 0MB" in str(info.value)
    # A model-level check: no field location.
    assert info.value.errors()[0]["loc"] == ()


def test_metadata_limit_default_message():
    with pytest.raises(
        pydantic.ValidationError, match="metadata size exceeds maximum allowed size of 1MB"
    ):
        _req(metadata={"blob": "x" * (1048576 + 10)})


def test_metadata_limit_follows_set_max(metadata_limit):
    big = {"blob": "x" * 5000}
    set_max_metadata_size_bytes(10_000)
    assert _req(metadata=big).metadata == big
    set_max_metadata_size_bytes(1000)
    with pytest.raises(pydantic.ValidationError):
        _req(metadata=big)


def test_metadata_must_be_json_serializable():
    with pytest.raises(pydantic.ValidationError, match="metadata must be JSON serializable"):
        _req(metadata={"when": object()})


def test_metadata_nan_is_accepted():
    req = _req(metadata={"score": float("nan")})
    assert math.isnan(req.metadata["score"])


def test_metadata_ground_truth_and_completion_params():
    req = _req(metadata={"ground_truth": "42"}, completion_params={"temperature": 0.2})
    assert req.metadata.get("ground_truth") == "42"
    assert req.completion_params == {"temperature": 0.2}


# ---- §4.6 InitResponse and RolloutResponse --------------------------------------------------


def test_init_response_defaults_and_dict_tools():
    assert InitResponse(rollout_id="x").tools == []
    assert InitResponse(rollout_id="").rollout_id == ""  # no length rule
    resp = InitResponse(
        rollout_id="x",
        tools=[{"type": "function", "function": {"name": "f", "description": "d", "extra": 1}}],
    )
    assert isinstance(resp.tools[0], OpenAIFunctionToolSchema)
    assert resp.tools[0].function.name == "f"
    assert "extra" not in resp.model_dump()["tools"][0]["function"]


def test_init_response_rejects_an_invalid_dict_tool():
    with pytest.raises(pydantic.ValidationError):
        InitResponse(rollout_id="x", tools=[{"type": "function", "function": {"name": "f"}}])


def test_rollout_response_fields_and_defaults():
    resp = RolloutResponse(rollout_id="r", status="COMPLETED")
    assert resp.status is RolloutStatus.COMPLETED
    assert resp.final_messages == []
    assert resp.finish_reason is None
    assert resp.error_message is None
    assert resp.reward is None
    assert resp.metrics is None
    assert resp.extra_fields == {}
    assert list(RolloutResponse.model_fields) == [
        "rollout_id",
        "status",
        "final_messages",
        "finish_reason",
        "error_message",
        "reward",
        "metrics",
        "extra_fields",
    ]


def test_rollout_response_rejects_a_bad_status():
    with pytest.raises(pydantic.ValidationError):
        RolloutResponse(rollout_id="r", status="DONE")


def test_rollout_response_dumps():
    resp = RolloutResponse(rollout_id="r", status="ERROR")
    assert resp.model_dump()["status"] is RolloutStatus.ERROR
    assert resp.model_dump(mode="json", exclude_none=True) == {
        "rollout_id": "r",
        "status": "ERROR",
        "final_messages": [],
        "extra_fields": {},
    }
    full = RolloutResponse(
        rollout_id="r",
        status="COMPLETED",
        finish_reason="stop",
        reward=1.0,
        metrics=RolloutMetrics(num_llm_calls=1),
    ).model_dump(mode="json", exclude_none=True)
    assert full["finish_reason"] == "stop" and full["reward"] == 1.0
    assert full["metrics"]["num_llm_calls"] == 1


# ---- §4.7 completions models ----------------------------------------------------------------


def test_completions_request_defaults():
    req = CompletionsRequest(messages=[{"role": "user", "content": "x"}], rollout_id="r")
    assert list(CompletionsRequest.model_fields) == [
        "model",
        "messages",
        "rollout_id",
        "temperature",
        "top_p",
        "max_tokens",
        "stop",
        "logprobs",
    ]
    assert req.model == "default"
    assert (req.temperature, req.top_p, req.max_tokens) == (1.0, 1.0, 512)
    assert req.stop is None
    assert req.logprobs is True


def test_completions_request_rules():
    with pytest.raises(pydantic.ValidationError):
        CompletionsRequest(messages=[], rollout_id="r", stop="END")
    assert CompletionsRequest(messages=[], rollout_id="r", stop=["END"]).stop == ["END"]
    with pytest.raises(pydantic.ValidationError, match="rollout_id cannot be empty"):
        CompletionsRequest(messages=[], rollout_id="  ")
    with pytest.raises(pydantic.ValidationError) as info:
        CompletionsRequest(messages=[], rollout_id="")
    assert "string_too_short" in _error_types(info.value)
    with pytest.raises(pydantic.ValidationError) as info:
        CompletionsRequest(rollout_id="r")
    assert "missing" in _error_types(info.value)
    extra = CompletionsRequest.model_validate({"messages": [], "rollout_id": "r", "seed": 1})
    assert "seed" not in extra.model_dump()


def test_completions_choice_usage_response_defaults():
    choice = CompletionsChoice(message={"role": "assistant", "content": "x"})
    assert (choice.index, choice.finish_reason) == (0, "stop")
    usage = CompletionUsage()
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (0, 0, 0)
    resp = CompletionsResponse(id="r", created=1, choices=[choice])
    assert resp.object == "chat.completion"
    assert resp.model == "default"
    assert resp.usage is None
    assert (resp.token_ids, resp.logprobs, resp.prompt_token_ids) == (None, None, None)
    with pytest.raises(pydantic.ValidationError):
        CompletionsResponse(id="r", choices=[choice])  # created is required
