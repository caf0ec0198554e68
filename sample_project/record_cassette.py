"""Writes ``cassette.jsonl``: the recorded model answers the sample runs with, offline.

No model is reachable where this project is built, so the "model" here is a hand-written
script that solves each dataset question step by step with the calculator's tools. It runs the
real pipeline (local trainer, embedded server, the agent) with ``--record``'s recorder, so the
cassette is exactly what recording a live model writes. Rerun it after changing the agent:

    uv run python sample_project/record_cassette.py
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: Per question: the tool calls of each turn (several in one turn run in parallel), then the
#: final answer.
PLANS: dict[str, tuple[list[list[tuple[str, float, float]]], str]] = {
    "What is 17 + 25?": ([[("add", 17, 25)]], "17 + 25 = 42."),
    "What is 144 divided by 12?": ([[("divide", 144, 12)]], "144 divided by 12 is 12."),
    "Compute 7 times 8, then subtract 6.": (
        [[("multiply", 7, 8)], [("subtract", 56, 6)]],
        "7 times 8 is 56; minus 6 gives 50.",
    ),
    "A shop sells pens at 3 dollars each. How much do 15 pens cost after a 5 dollar discount?": (
        [[("multiply", 3, 15)], [("subtract", 45, 5)]],
        "15 pens cost 45 dollars; after the discount they cost 40.",
    ),
    "What is (12 + 8) * 3?": ([[("add", 12, 8)], [("multiply", 20, 3)]], "(12 + 8) * 3 = 60."),
    "Subtract 19 from 100.": ([[("subtract", 100, 19)]], "100 - 19 = 81."),
    "What is 9 * 9 + 9 * 9?": (
        [[("multiply", 9, 9), ("multiply", 9, 9)], [("add", 81, 81)]],
        "81 + 81 = 162.",
    ),
    "Divide 1000 by 8, then add 75.": (
        [[("divide", 1000, 8)], [("add", 125, 75)]],
        "1000 / 8 = 125, plus 75 is 200.",
    ),
    "What is 2.5 times 4?": ([[("multiply", 2.5, 4)]], "2.5 times 4 is 10."),
    "A train travels 60 km per hour for 3 hours and then 45 km more. How far does it go in "
    "total?": ([[("multiply", 60, 3)], [("add", 180, 45)]], "The train travels 225 km."),
    "What is 81 divided by 9, times 7, minus 3?": (
        [[("divide", 81, 9)], [("multiply", 9, 7)], [("subtract", 63, 3)]],
        "81 / 9 = 9, times 7 is 63, minus 3 is 60.",
    ),
    "What is 5 - 12?": ([[("subtract", 5, 12)]], "5 - 12 = -7."),
}


def scripted_calculator(body: dict) -> dict:
    """The next answer for a conversation: the plan's next tool calls, or its final answer."""
    messages = body["messages"]
    question = next(m["content"] for m in messages if m["role"] == "user")
    turns, answer = PLANS[question]
    done = sum(1 for m in messages if m["role"] == "assistant")
    if done < len(turns):
        return {
            "tool_calls": [{"name": n, "arguments": {"a": a, "b": b}} for n, a, b in turns[done]]
        }
    return {"content": answer}


async def main() -> None:
    from osmosis_workbench.engine.batch import BatchOptions, BatchRunner
    from osmosis_workbench.engine.embedded import EmbeddedRolloutServer
    from osmosis_workbench.engine.models import RecordingBackend, ScriptedBackend
    from osmosis_workbench.engine.trainer import LocalTrainer
    from sample_project.server import agent_loop

    cassette = HERE / "cassette.jsonl"
    cassette.unlink(missing_ok=True)
    backend = RecordingBackend(
        ScriptedBackend(scripted_calculator, name="scripted-calculator"), cassette
    )
    trainer = LocalTrainer(backend)
    async with EmbeddedRolloutServer(agent_loop, trainer) as server:
        runner = BatchRunner(
            trainer, [server.target], BatchOptions(dataset=HERE / "test_data.jsonl", concurrency=1)
        )
        results = await runner.run()
    await trainer.aclose()
    rewards = [r.outcome.reward for r in results]
    print(json.dumps({"rows": len(results), "rewards": rewards, "cassette": str(cassette)}))


if __name__ == "__main__":
    asyncio.run(main())
