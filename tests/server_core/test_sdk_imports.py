"""The SDK stays light: importing server_core never imports textual, litellm or pandas."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import server_core

ROOT = Path(__file__).resolve().parents[2]

HEAVY = ("textual", "litellm", "pandas")

PUBLIC_API = [
    "RolloutAgentLoop",
    "RolloutContext",
    "RolloutResult",
    "RolloutRequest",
    "ChatResult",
    "create_app",
    "RolloutHooks",
    "TrainerClient",
    "TrainerClientConfig",
    "ServerLimits",
    "execute_tool_calls",
    "parse_tool_arguments",
    "tool_result_message",
    "reward_fn",
    "load_agent_loop",
    "import_from_string",
]


def test_import_server_core_does_not_import_heavy_packages():
    code = (
        "import sys\n"
        "import server_core, server_core.app, server_core.rollouts, server_core.trace\n"
        "import server_core.tools, server_core.rewards, server_core.loader, server_core.hooks\n"
        "app = server_core.create_app(type('A', (server_core.RolloutAgentLoop,), {\n"
        "    'name': 'a', 'get_tools': lambda self, r: [],\n"
        "    'run': lambda self, ctx: None})(), trace_dir=None)\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_public_api_names_are_exported():
    for name in PUBLIC_API:
        assert name in server_core.__all__, name
        assert getattr(server_core, name) is not None
    assert server_core.LLMResult is server_core.ChatResult  # the 0.2.x name still works
