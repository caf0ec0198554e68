"""Forks (time travel): a rollout run again from one of its LLM calls, over the real protocol.

The rollout server is the real sample agent (or a small agent with a clock tool, for a
non-deterministic history); only the policy model is scripted.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from osmosis_workbench.engine.compare import Change
from osmosis_workbench.engine.config import EngineConfig
from osmosis_workbench.engine.embedded import EmbeddedRolloutServer
from osmosis_workbench.engine.fork import ForkError, ForkParent, ForkSession
from osmosis_workbench.engine.journal import (
    FORKS_FILE,
    JOURNAL_FILE,
    ForkOrigin,
    JournalEntry,
    read_forks,
)
from osmosis_workbench.engine.models import AnswerRequest, ScriptedBackend
from osmosis_workbench.engine.outcome import LLMCallStats, OutcomeStatus, RolloutOutcome, Verdict
from osmosis_workbench.engine.session import StepSession
from osmosis_workbench.engine.trainer import LocalTrainer, ServerTarget
from osmosis_workbench.engine.workspace import Workspace
from sample_project.server import agent_loop as calculator
from server_core import RolloutAgentLoop, RolloutContext

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DATA = str(ROOT / "sample_project" / "test_data.jsonl")
SAMPLE_AGENT = "sample_project.server:agent_loop"
#: Row 2 of the sample: "Compute 7 times 8, then subtract 6." (50).
ROW = 2
MULTIPLY = {"tool_calls": [{"name": "multiply", "arguments": {"a": 7, "b": 8}}]}
SUBTRACT = {"tool_calls": [{"name": "subtract", "arguments": {"a": 56, "b": 6}}]}
ADD = {"tool_calls": [{"name": "add", "arguments": {"a": 56, "b": 6}}]}


def by_turn(*turns: Any) -> ScriptedBackend:
    """A model that answers the N-th assistant turn of any conversation with ``turns[N]``."""

    def reply(body: dict[str, Any]) -> Any:
        return turns[sum(1 for m in body["messages"] if m.get("role") == "assistant")]

    return ScriptedBackend(reply)


def the_calculator() -> ScriptedBackend:
    """Row 2 solved in three calls: multiply, subtract, answer."""
    return by_turn(MULTIPLY, SUBTRACT, "The answer is 50.")


def request() -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": "Compute 7 times 8, then subtract 6."}],
        "completion_params": {},
        "metadata": {"ground_truth": "50", "row_index": ROW},
    }


async def finished(session: StepSession) -> StepSession:
    """``session`` run to its end without pausing."""
    session.gate.stepping = False
    await session.start()
    await session.finish()
    return session


async def run_fork(fork: ForkSession) -> RolloutOutcome:
    """Start ``fork``, release every answer it pauses at, and return its outcome."""
    await fork.start()
    while await fork.wait() is not None:
        fork.next()
    return await fork.finish()


@pytest.fixture
async def workspace() -> AsyncIterator[Workspace]:
    """The sample agent served in-process, its dataset loaded, the calculator as its model."""
    ws = Workspace(
        EngineConfig(module=SAMPLE_AGENT, dataset=SAMPLE_DATA, search_path=str(ROOT)),
        backend=the_calculator(),
    )
    await ws.open()
    await ws.load_dataset()
    yield ws
    await ws.aclose()


# ---- the replayed prefix -----------------------------------------------------------------------


async def test_a_fork_replays_the_parents_answers_and_rebuilds_its_history_exactly():
    model = the_calculator()
    trainer = LocalTrainer(model)
    async with EmbeddedRolloutServer(calculator, trainer) as server:
        parent = await finished(StepSession(trainer, server.target, request()))
        asked = len(model.calls)
        fork = ForkSession(trainer, server.target, ForkParent.from_session(parent), 3, model=model)
        await fork.start()
        paused = await fork.wait()
        # The first pause is the fork point: calls 1 and 2 came from the parent's record.
        assert paused is not None and paused.turn == 3
        assert len(model.calls) == asked + 1
        # Every call the agent made asked with the parent's history, message for message.
        for mine, theirs in zip(fork.exchanges, parent.exchanges, strict=True):
            assert mine.request["messages"] == theirs.request["messages"]
        fork.next()
        outcome = await fork.finish()
    assert outcome.status == OutcomeStatus.COMPLETED and outcome.reward == 1.0
    assert outcome.final_messages == parent.messages
    assert fork.first_difference() is None and fork.divergences == []
    # Replayed answers cost nothing and are no model's tokens.
    assert [c.prompt_tokens for c in outcome.calls][:2] == [0, 0]
    comparison = fork.compare()
    assert comparison is not None and comparison.change is Change.SAME
    assert fork.entry is not None
    assert fork.entry.fork == ForkOrigin(parent.rollout_id, 3)
    assert fork.entry.outcome.rollout_id.startswith(f"{parent.rollout_id}-fork3-")


async def test_another_model_continues_from_the_fork_point(workspace: Workspace, tmp_path: Path):
    # A script that gets the second step wrong: 56 + 6 instead of 56 - 6.
    script = tmp_path / "answers.jsonl"
    script.write_text(json.dumps({"row": ROW, "turns": [MULTIPLY, ADD, "The answer is 62."]}))
    parent = await finished(workspace.step(ROW))
    fork = workspace.fork(parent, 2, model=f"script:{script}")
    assert fork.model.name.endswith(f"script:{script}")
    outcome = await run_fork(fork)
    assert outcome.reward == 0.0
    comparison = fork.compare()
    assert comparison is not None and comparison.change is Change.REGRESSED
    difference = comparison.difference
    assert difference is not None
    # They part exactly where call 2's answer sits; everything before is the parent's.
    assert difference.index == parent.exchanges[1].request_size
    assert difference.fields == ("tool_calls",)
    assert outcome.final_messages[: difference.index] == parent.messages[: difference.index]
    assert comparison.to_json()["first_difference"]["index"] == difference.index


async def test_a_hand_written_answer_replaces_the_call_it_forks_at(workspace: Workspace):
    parent = await finished(workspace.step(ROW))
    fork = workspace.fork(parent, 3, answer="The answer is 51.")
    await fork.start()
    paused = await fork.wait()
    # The debugger shows the hand-written answer at the fork point, held like any answer.
    assert paused is not None and paused.turn == 3
    assert paused.message["content"] == "The answer is 51."
    fork.next()
    outcome = await fork.finish()
    assert outcome.reward == 0.0
    comparison = fork.compare()
    assert comparison is not None and comparison.change is Change.REGRESSED
    assert comparison.difference is not None and comparison.difference.fields == ("content",)
    assert comparison.difference.index == len(parent.messages) - 1


async def test_you_can_be_the_model_from_the_fork_point(workspace: Workspace):
    parent = await finished(workspace.step(ROW))
    fork = workspace.fork(parent, 3, model="human")
    await fork.start()
    request = await fork.wait()
    # Only the fork point waits for you: the calls before it were the parent's.
    assert isinstance(request, AnswerRequest) and request.turn == 2
    assert request.messages == parent.messages[: parent.exchanges[2].request_size]
    request.answer("The answer is 50.")
    assert await fork.wait() is None
    assert (await fork.finish()).reward == 1.0


async def test_a_fork_of_the_rollout_being_stepped_leaves_it_paused(workspace: Workspace):
    parent = workspace.step(ROW)
    await parent.start()
    await parent.wait()
    parent.next()
    held = await parent.wait()  # call 2's answer, not yet seen by the agent
    assert held is not None and held.turn == 2
    with pytest.raises(ForkError, match="it made 2 LLM calls; pick 1 to 2"):
        workspace.fork(parent, 3)
    fork = workspace.fork(parent, 2, answer=ADD)
    outcome = await run_fork(fork)
    answer = outcome.final_messages[parent.exchanges[1].request_size]
    assert answer["tool_calls"][0]["function"]["name"] == "add"
    # The parent is still held where it was, and runs on as it would have.
    assert parent.paused is held
    parent.continue_()
    assert (await parent.finish()).reward == 1.0


# ---- from the journal --------------------------------------------------------------------------


class Tidy(RolloutAgentLoop):
    """The calculator, except that it keeps each answer without its null fields."""

    name = "tidy"

    def get_tools(self, request: Any) -> list[dict[str, Any]]:
        return calculator.get_tools(request)

    async def run(self, ctx: RolloutContext) -> Any:
        messages = list(ctx.request.messages)
        while True:
            result = await ctx.chat(messages)
            messages.append({k: v for k, v in result.message.items() if v is not None})
            if not result.has_tool_calls:
                return ctx.complete(messages, reward=1.0)
            for call in result.tool_calls:
                args = json.loads(call["function"]["arguments"])
                messages.append(
                    {"role": "tool", "tool_call_id": call["id"], "content": str(args["a"] * 8)}
                )


async def test_a_fork_from_a_journal_entry_rebuilds_the_history_exactly():
    model = by_turn(MULTIPLY, "done")
    trainer = LocalTrainer(model)
    async with EmbeddedRolloutServer(Tidy(), trainer) as server:
        parent = await finished(StepSession(trainer, server.target, request()))
        entry = ForkParent.from_session(parent).journal_entry()
        assert entry is not None
        # The journal line, read back: what a run directory holds.
        journaled = JournalEntry.from_json(json.loads(entry.to_line()))
        calls = journaled.outcome.calls
        assert [c.request_size for c in calls] == [1, 3]
        # The agent dropped the tool call's null content: the answer it got is kept apart.
        assert calls[0].answer is not None and calls[0].answer["content"] is None
        assert calls[1].answer is None  # the trajectory holds it as sent
        fork = ForkSession(trainer, server.target, ForkParent.from_entry(journaled), 2, model=model)
        outcome = await run_fork(fork)
    assert outcome.final_messages == journaled.outcome.final_messages
    assert fork.divergences == []


def test_a_journal_from_before_call_positions_forks_by_its_assistant_messages():
    messages = [
        {"role": "user", "content": "7 * 8?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]},
        {"role": "tool", "tool_call_id": "c1", "content": "56"},
        {"role": "assistant", "content": "56"},
    ]
    old = JournalEntry(
        row=0,
        attempt=0,
        verdict=Verdict.PASS,
        outcome=RolloutOutcome(
            "old-1",
            OutcomeStatus.COMPLETED,
            messages,
            calls=[
                LLMCallStats(1, 5, 5, 1.0),
                LLMCallStats(2, 5, 5, 1.0, error="timed out"),
                LLMCallStats(3, 5, 5, 1.0),
            ],
        ),
        request={"rollout_id": "old-1", "messages": messages[:1], "server_url": "http://x"},
    )
    data = old.to_json()
    for call in data["calls"]:
        del call["request_size"], call["finish_reason"]
    parent = ForkParent.from_entry(JournalEntry.from_json(data))
    assert [(c.request_size, c.finish_reason) for c in parent.calls] == [
        (1, "tool_calls"),
        (3, None),  # it failed, and asked with the history its retry (call 3) got
        (3, "stop"),
    ]
    assert [c.message for c in parent.calls] == [messages[1], None, messages[3]]
    assert parent.request == {"messages": messages[:1]}  # the attempt's own fields dropped
    parent.check(2)
    with pytest.raises(ForkError, match=r"call 2 got no answer \(timed out\).+call 2 or earlier"):
        parent.check(3)
    with pytest.raises(ForkError, match="at LLM call 0: it made 3 LLM calls; pick 1 to 3"):
        parent.check(0)


async def test_a_fork_of_a_batch_rollout_lands_in_the_runs_fork_journal(tmp_path: Path):
    from sample_runs import run_sample

    assert await asyncio.to_thread(run_sample, tmp_path) == 0  # (it runs its own loop)
    [run] = [p for p in tmp_path.iterdir() if p.is_dir()]
    journal_before = (run / JOURNAL_FILE).read_bytes()
    parent = ForkParent.from_run(run, ROW)
    assert parent.run is not None and parent.run.run_dir == run
    ws = Workspace(EngineConfig(module=SAMPLE_AGENT, search_path=str(ROOT), model=parent.run.model))
    await ws.open()
    try:
        # The same model (the run's cassette): the fork is its parent again.
        same = ws.fork(parent, 2)
        assert (await run_fork(same)).final_messages == parent.trajectory
        other = ws.fork(parent, 3, answer="The answer is 51.")
        await run_fork(other)
    finally:
        await ws.aclose()
    forks = read_forks(run)
    assert [f.fork.forked_at for f in forks if f.fork] == [2, 3]
    assert [f.verdict for f in forks] == [Verdict.PASS, Verdict.FAIL]
    line = json.loads((run / FORKS_FILE).read_text().splitlines()[1])
    assert line["parent"] == {"rollout_id": parent.rollout_id, "row": ROW, "attempt": 0}
    assert line["forked_at"] == 3
    # The run itself is untouched: resume, rescore, compare and the summary read its journal.
    assert (run / JOURNAL_FILE).read_bytes() == journal_before
    comparison = other.compare()
    assert comparison is not None and comparison.change is Change.REGRESSED


# ---- a history that is not the parent's --------------------------------------------------------

NOW_TOOL = {
    "type": "function",
    "function": {
        "name": "now",
        "description": "The time",
        "parameters": {"type": "object", "properties": {}},
    },
}


class Clock(RolloutAgentLoop):
    """An agent whose tool answers differently each time: the same answers, another history."""

    name = "clock"
    ticks = itertools.count()

    def get_tools(self, request: Any) -> list[dict[str, Any]]:
        return [NOW_TOOL]

    async def run(self, ctx: RolloutContext) -> Any:
        messages = list(ctx.request.messages)
        while True:
            result = await ctx.chat(messages)
            messages.append(result.message)
            if not result.has_tool_calls:
                return ctx.complete(messages, reward=1.0)
            messages += [
                {"role": "tool", "tool_call_id": c["id"], "content": f"tick {next(self.ticks)}"}
                for c in result.tool_calls
            ]


@pytest.fixture
async def clock() -> AsyncIterator[tuple[LocalTrainer, ServerTarget, StepSession]]:
    """A finished rollout of the clock agent (three calls), and where to fork it."""
    now = {"tool_calls": [{"name": "now", "arguments": {}}]}
    trainer = LocalTrainer(by_turn(now, now, "later"))
    async with EmbeddedRolloutServer(Clock(), trainer) as server:
        parent = await finished(StepSession(trainer, server.target, request()))
        yield trainer, server.target, parent


async def test_a_replayed_call_whose_history_differs_stops_the_fork(clock):
    trainer, target, parent = clock
    # Call 1 asks with the prompt alone: forking there needs no replayed history.
    assert (
        await run_fork(
            ForkSession(trainer, target, ForkParent.from_session(parent), 1, model=trainer.backend)
        )
    ).ok
    fork = ForkSession(trainer, target, ForkParent.from_session(parent), 3, model=trainer.backend)
    outcome = await run_fork(fork)
    assert outcome.status == OutcomeStatus.ERROR
    assert outcome.error is not None
    assert "replayed call 2 is not the parent's" in outcome.error
    assert "message 2 (role tool) differs" in outcome.error
    assert "on_divergence='continue'" in outcome.error
    assert fork.entry is not None and fork.entry.fork is not None
    assert fork.entry.fork.divergences[0].startswith("call 2: message 2 (role tool)")


async def test_on_divergence_continue_replays_the_parents_answers_anyway(clock):
    trainer, target, parent = clock
    fork = ForkSession(
        trainer,
        target,
        ForkParent.from_session(parent),
        3,
        model=trainer.backend,
        on_divergence="continue",
    )
    outcome = await run_fork(fork)
    assert outcome.ok and len(outcome.calls) == 3
    assert [line.split(":")[0] for line in fork.divergences] == ["call 2"]
    # The parent's tool-call answer was replayed, with the fork's own tick as its result.
    assert outcome.final_messages[1] == parent.messages[1]
    assert outcome.final_messages[2]["content"] != parent.messages[2]["content"]
    assert fork.entry is not None
    assert fork.entry.to_json()["prefix_divergences"] == fork.divergences
