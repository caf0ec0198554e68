"""The README stays true: its two commands exist as written, and its agent snippet runs."""

from __future__ import annotations

import re
import types
from pathlib import Path

from osmosis_workbench.engine.embedded import EmbeddedRolloutServer
from osmosis_workbench.engine.models import ScriptedBackend
from osmosis_workbench.engine.trainer import LocalTrainer

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_the_two_commands_are_there():
    commands = re.findall(r"^uv run .*$", README.split("## Commands")[0], re.MULTILINE)
    assert len(commands) == 2, commands
    assert commands[1] == "uv run pytest"
    assert "-m sample_project.server:agent_loop" in commands[0]
    assert "-d sample_project/test_data.jsonl" in commands[0]


async def test_the_agent_snippet_runs_over_the_protocol():
    [snippet] = [
        s for s in re.findall(r"```python\n(.*?)```", README, re.DOTALL) if "RolloutAgentLoop" in s
    ]
    module = types.ModuleType("readme_agent")
    exec(compile(snippet, "README.md", "exec"), module.__dict__)
    backend = ScriptedBackend(
        [
            {"tool_calls": [{"name": "word_count", "arguments": {"text": "one two three"}}]},
            {"content": "3"},
        ]
    )
    trainer = LocalTrainer(backend)
    async with EmbeddedRolloutServer(module.agent_loop, trainer) as server:
        run = trainer.open_run(
            {
                "messages": [{"role": "user", "content": "How many words: one two three?"}],
                "completion_params": {},
                "metadata": {"ground_truth": 3},
            }
        )
        outcome = await trainer.drive(run, server.target, timeout_s=10)
    assert outcome.status == "COMPLETED", outcome.error
    assert outcome.reward == 1.0
    assert outcome.final_messages[2] == {
        "role": "tool",
        "tool_call_id": outcome.final_messages[1]["tool_calls"][0]["id"],
        "name": "word_count",
        "content": "3",
    }
