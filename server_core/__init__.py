"""server_core: the SDK a rollout server is written with.

An agent subclasses ``RolloutAgentLoop``; ``create_app(agent_loop)`` serves it over the Remote
Rollout protocol (shared/PROTOCOL.md). Importing this package never imports textual, litellm
or pandas.
"""

from server_core.agent import ChatResult, RolloutAgentLoop, RolloutContext, RolloutResult
from server_core.app import create_app
from server_core.errors import (
    LLMCallError,
    RolloutCancelled,
    RolloutError,
    ToolExecutionError,
    TrainerProtocolError,
)
from server_core.hooks import HookEvent, RolloutHooks
from server_core.loader import ImportFromStringError, import_from_string, load_agent_loop
from server_core.protocol import (
    CompletedRequest,
    InitResponse,
    RolloutMetrics,
    RolloutRequest,
    RolloutStatus,
    generate_api_key,
)
from server_core.rewards import reward_fn
from server_core.rollouts import ServerLimits
from server_core.tools import (
    execute_tool_calls,
    parse_tool_arguments,
    tool_result_message,
)
from server_core.trainer_client import TrainerClient, TrainerClientConfig

#: 0.2.x name of the chat result.
LLMResult = ChatResult

__all__ = [
    "ChatResult",
    "CompletedRequest",
    "HookEvent",
    "ImportFromStringError",
    "InitResponse",
    "LLMCallError",
    "LLMResult",
    "RolloutAgentLoop",
    "RolloutCancelled",
    "RolloutContext",
    "RolloutError",
    "RolloutHooks",
    "RolloutMetrics",
    "RolloutRequest",
    "RolloutResult",
    "RolloutStatus",
    "ServerLimits",
    "ToolExecutionError",
    "TrainerClient",
    "TrainerClientConfig",
    "TrainerProtocolError",
    "create_app",
    "execute_tool_calls",
    "generate_api_key",
    "import_from_string",
    "load_agent_loop",
    "parse_tool_arguments",
    "reward_fn",
    "tool_result_message",
]
