"""SDK-0.2-API.md §0.1: every one of the 85 public names is importable from ``server_core``."""

from __future__ import annotations

import dataclasses
import importlib
import subprocess
import sys

import pytest

#: The 76 names of ``osmosis_ai.rollout.__all__`` (every name of §2-§12), by section.
ROLLOUT_NAMES = [
    # §2 agent core
    "RolloutAgentLoop",
    "RolloutContext",
    "RolloutResult",
    # §3 LLM client layer
    "LLMClientProtocol",
    "CompletionsResult",
    "OsmosisLLMClient",
    # §4.1 aliases and metadata size
    "MessageDict",
    "SamplingParamsDict",
    "DEFAULT_MAX_METADATA_SIZE_BYTES",
    "get_max_metadata_size_bytes",
    "set_max_metadata_size_bytes",
    # §4.2 tool definition models
    "OpenAIFunctionPropertySchema",
    "OpenAIFunctionParametersSchema",
    "OpenAIFunctionSchema",
    "OpenAIFunctionToolSchema",
    # §4.3 tool call models
    "OpenAIFunctionParsedSchema",
    "OpenAIFunctionCallSchema",
    "OpenAIFunctionToolCall",
    "ToolResponse",
    # §4.4-§4.7
    "RolloutStatus",
    "RolloutMetrics",
    "RolloutRequest",
    "InitResponse",
    "RolloutResponse",
    "CompletionsRequest",
    "CompletionsChoice",
    "CompletionUsage",
    "CompletionsResponse",
    # §5 exceptions
    "OsmosisRolloutError",
    "OsmosisTransportError",
    "OsmosisServerError",
    "OsmosisValidationError",
    "OsmosisTimeoutError",
    "AgentLoopNotFoundError",
    "ToolExecutionError",
    "ToolArgumentError",
    "AgentLoopValidationError",
    "ServeError",
    "PublicIPDetectionError",
    # §6 tool helpers
    "create_tool_result",
    "create_tool_error_result",
    "serialize_tool_result",
    "parse_tool_arguments",
    "get_tool_call_info",
    "execute_tool_calls",
    # §7 message helpers
    "parse_tool_calls",
    "normalize_stop",
    "get_message_content",
    "get_message_role",
    "is_assistant_message",
    "is_tool_message",
    "is_user_message",
    "count_messages_by_role",
    # §8 validator
    "ValidationError",
    "ValidationResult",
    "validate_agent_loop",
    # §9 registry
    "AgentLoopRegistry",
    "register_agent_loop",
    "unregister_agent_loop",
    "get_agent_loop",
    "list_agent_loops",
    # §10 server
    "create_app",
    "serve_agent_loop",
    "validate_and_report",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    # §11 settings
    "RolloutClientSettings",
    "RolloutServerSettings",
    "RolloutSettings",
    "get_settings",
    "configure",
    "reset_settings",
    # §12 network
    "validate_ipv4",
    "is_valid_hostname_or_ip",
    "is_private_ip",
    "detect_public_ip",
]

#: §13: the reward decorators of the top-level ``osmosis_ai``.
REWARD_NAMES = ["osmosis_reward", "osmosis_rubric"]
#: §14: ``osmosis_ai.rollout.testing``.
TESTING_NAMES = [
    "create_mock_trainer_app",
    "RolloutCompletionTracker",
    "patch_httpx_for_mock_trainer",
    "fake_token_ids",
    "fake_prompt_token_ids",
]
#: §10.6: ``osmosis_ai.rollout.server`` only.
API_KEY_NAMES = ["generate_api_key", "validate_api_key"]

ALL_NAMES = ROLLOUT_NAMES + REWARD_NAMES + TESTING_NAMES + API_KEY_NAMES

#: The 19 rollout names ``osmosis_ai`` re-exports at its top level (§0.1).
TOP_LEVEL_REEXPORTS = [
    "RolloutAgentLoop",
    "RolloutContext",
    "RolloutResult",
    "OsmosisLLMClient",
    "CompletionsResult",
    "create_app",
    "register_agent_loop",
    "get_agent_loop",
    "list_agent_loops",
    "RolloutRequest",
    "RolloutResponse",
    "InitResponse",
    "OpenAIFunctionToolSchema",
    "RolloutMetrics",
    "OsmosisRolloutError",
    "OsmosisTransportError",
    "OsmosisServerError",
    "OsmosisValidationError",
    "OsmosisTimeoutError",
]


def test_the_spec_counts_85_names():
    assert len(ROLLOUT_NAMES) == 76
    assert len(set(ALL_NAMES)) == len(ALL_NAMES) == 85
    assert set(TOP_LEVEL_REEXPORTS) <= set(ROLLOUT_NAMES)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_name_is_importable_from_server_core(name):
    module = importlib.import_module("server_core")
    assert hasattr(module, name), f"from server_core import {name} fails"
    exec(f"from server_core import {name}", {})


def test_validation_error_is_the_validators_dataclass():
    """§0 name clash: ``ValidationError`` is §8's dataclass, not an exception nor pydantic's."""
    import pydantic

    from server_core import ValidationError

    assert dataclasses.is_dataclass(ValidationError)
    assert ValidationError is not pydantic.ValidationError
    assert not issubclass(ValidationError, BaseException)


def test_import_loads_no_heavy_packages():
    """Issue 9: ``import server_core`` still loads none of textual, litellm, pandas."""
    code = (
        "import sys, server_core\n"
        "print(','.join(m for m in ('textual', 'litellm', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == ""
