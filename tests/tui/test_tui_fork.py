"""Forks in the debugger (F, d): a rollout run again from one of its LLM calls, beside it.

The sample calculator agent runs in the embedded server; its model is the script the sample's
cassette was recorded with (row 2: multiply, subtract, then the answer: three LLM calls). A
fork is a real rollout through the protocol: its calls before the fork point are answered from
the parent's record, the fork point and after by the model picked in the fork dialog, or by
an answer written in the answer editor.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sample_runs import run_sample
from textual.widgets import Checkbox, Input, Static, TextArea
from tui_driver import driving, plain

from osmosis_workbench.engine.config import EngineConfig
from osmosis_workbench.engine.fork import ForkSession
from osmosis_workbench.engine.journal import read_forks
from osmosis_workbench.engine.models import ScriptedBackend
from osmosis_workbench.engine.runs import list_run_dirs
from osmosis_workbench.tui.app import WorkbenchApp, make_app
from osmosis_workbench.tui.debugger import DebuggerScreen
from osmosis_workbench.tui.runs_screen import RunsScreen
from osmosis_workbench.tui.widgets import EditResponseDialog
from osmosis_workbench.tui.widgets.fork_dialog import ForkDialog
from sample_project.record_cassette import scripted_calculator

ROOT = Path(__file__).resolve().parents[2]
DATASET = str(ROOT / "sample_project" / "test_data.jsonl")
CASSETTE = f"replay:{ROOT / 'sample_project' / 'cassette.jsonl'}"
#: "Compute 7 times 8, then subtract 6.": three LLM calls.
ROW = 2


def fork_app(row: int | None = ROW, **fields: Any) -> WorkbenchApp:
    """The sample agent, row ``row`` stepped; the sample's scripted calculator as the model
    (or ``model``, without a given backend)."""
    values: dict[str, Any] = {
        "module": "sample_project.server:agent_loop",
        "dataset": DATASET,
        "model": "scripted",
        "search_path": str(ROOT),
    }
    values.update(fields)
    backend = ScriptedBackend(scripted_calculator) if values["model"] == "scripted" else None
    return make_app(EngineConfig(**values), row=row, backend=backend, watch_agent=False)


def status(debugger: DebuggerScreen) -> str:
    return plain(debugger.query_one("#status", Static).content)


async def finished_parent(run: Any) -> DebuggerScreen:
    """Row 2 stepped to its end (c), its history shown (m)."""
    debugger = run.app.debugger
    await run.press("c", "m")
    assert debugger.state == "finished" and len(debugger.session.exchanges) == 3
    return debugger


async def fork_dialog(run: Any, at: int | None = None) -> ForkDialog:
    """F pressed: the fork dialog (on call ``at`` if given)."""
    await run.press("F")
    dialog = run.app.screen
    assert isinstance(dialog, ForkDialog), dialog
    if at is not None:
        dialog.call_input.value = str(at)
    return dialog


# ---- the same model ----------------------------------------------------------------------------


async def test_a_fork_with_the_same_model_replays_the_parents_history_exactly():
    async with driving(fork_app()) as run:
        debugger = await finished_parent(run)
        parent = debugger.session
        parent_messages = list(parent.messages)
        # The cursor on call 2's answer: F proposes that call.
        call_2 = parent.exchanges[1].request_size
        debugger.message_list.move_cursor(call_2)
        dialog = await fork_dialog(run)
        assert dialog.call_input.value == "2"
        await run.press("enter")  # the first source: the same model
        fork = debugger.session
        assert isinstance(fork, ForkSession) and fork is not parent
        # It pauses first at the fork point, the model's new answer held.
        assert debugger.state == "paused" and debugger.paused.turn == 2
        assert "fork of row 2 at call 2" in status(debugger)
        # The replayed prefix is the parent's, message for message.
        assert fork.messages[:call_2] == parent_messages[:call_2]
        assert fork.exchanges[0].request["messages"] == parent.exchanges[0].request["messages"]
        assert fork.exchanges[1].request["messages"] == parent_messages[:call_2]
        await run.press("d")
        view = debugger.fork_view
        assert debugger.current_view == "fork-view"
        assert view.list("a").messages == parent_messages
        assert view.difference is None  # so far: the fork has not run past call 2 yet
        assert "the same so far" in view.list("b").border_title
        # No difference yet: both cursors on the fork point, the fork's held answer.
        assert view.list("a").cursor == view.list("b").cursor == call_2
        await run.press("c")  # released from the side-by-side; it stays on screen
        assert debugger.state == "finished" and debugger.current_view == "fork-view"
        assert fork.outcome.final_messages == parent_messages
        assert view.difference is None and view.list("b").messages == parent_messages
        assert any("the same as its parent" in n.message for n in run.notes())
        # The fork's journal entry is kept (x exports it), linked to its parent.
        assert debugger.outcome_entry is fork.entry
        assert fork.entry.fork.parent == parent.rollout_id and fork.entry.fork.forked_at == 2
        await run.press("escape")
        assert debugger.current_view == "result-view"


async def test_a_hand_written_answer_is_where_the_fork_parts_from_its_parent():
    async with driving(fork_app()) as run:
        debugger = await finished_parent(run)
        parent_messages = list(debugger.session.messages)
        at_answer = debugger.session.exchanges[2].request_size
        await fork_dialog(run, at=3)
        await run.press("down", "enter")  # a hand-written answer
        editor = run.app.screen
        assert isinstance(editor, EditResponseDialog)
        assert "LLM call 3 of the fork" in editor.title_text
        assert (
            json.loads(editor.query_one(TextArea).text)["content"] == parent_messages[-1]["content"]
        )  # the parent's answer, to start from
        editor.query_one(TextArea).text = '{"content": "The answer is 51."}'
        await run.press("ctrl+s")
        assert debugger.state == "paused" and debugger.paused.turn == 3
        assert debugger.paused.message["content"] == "The answer is 51."
        await run.press("c", "d")
        view = debugger.fork_view
        assert view.difference is not None and view.difference.index == at_answer
        assert view.difference.fields == ("content",)
        assert debugger.session.messages[:at_answer] == parent_messages[:at_answer]
        # The side by side opens on the first difference, marked there.
        assert view.list("a").cursor == view.list("b").cursor == at_answer
        assert f"≠ from message {at_answer}" in view.list("b").border_title
        assert debugger.outcome.reward == 0.0


# ---- a run's rollout ---------------------------------------------------------------------------


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run of the sample (its cassette) in ./.osmosis/runs."""
    runs = tmp_path / ".osmosis" / "runs"
    run_sample(runs)
    [found] = list_run_dirs(runs)
    return found


async def test_a_fork_of_a_runs_rollout_lands_in_its_forks_journal(run_dir: Path):
    async with driving(fork_app(row=None, model=CASSETTE)) as run:
        await run.palette("open run", pick=f"Open run: {run_dir.name}")
        screen = run.app.screen
        assert isinstance(screen, RunsScreen)
        screen.rollouts_table.move_cursor(f"{ROW}/0")
        await run.press("enter")
        debugger = run.app.debugger
        assert run.app.screen is debugger and debugger.state == "viewing"
        entry = debugger.outcome_entry
        assert entry is not None and entry.row == ROW
        await fork_dialog(run, at=2)
        await run.press("enter")
        assert debugger.state == "paused" and debugger.paused.turn == 2
        assert "fork of row 2 at call 2" in status(debugger)
        await run.press("c")
        assert debugger.state == "finished"
        assert debugger.session.outcome.final_messages == entry.outcome.final_messages
        [fork] = read_forks(run_dir)
        # Back on the runs screen: the run lists its fork; enter shows it beside its parent.
        await run.press("4")
        assert run.app.screen is screen and screen.current_view == "run-view"
        assert screen.rollouts_table.row_count == 13
        assert screen.rollouts_table.cursor_key == f"{ROW}/0"
        screen.rollouts_table.move_cursor("fork/0")
        await run.press("enter")
        assert screen.current_view == "pair-view"
        assert screen.pair[1].fork == fork.fork and screen.difference is None
        assert screen.pair[0].outcome.rollout_id == entry.outcome.rollout_id
        await run.press("escape")
        assert screen.current_view == "run-view"
    assert fork.fork is not None
    assert (fork.fork.parent, fork.fork.forked_at) == (entry.outcome.rollout_id, 2)
    assert (fork.row, fork.verdict.value) == (ROW, "pass")
    line = json.loads((run_dir / "forks.jsonl").read_text())
    assert line["parent"] == {"rollout_id": entry.outcome.rollout_id, "row": ROW, "attempt": 0}


# ---- what cannot be forked ---------------------------------------------------------------------


async def test_a_fork_that_cannot_start_says_why_and_the_app_goes_on():
    async with driving(fork_app()) as run:
        debugger = await finished_parent(run)
        parent = debugger.session
        dialog = await fork_dialog(run, at=9)
        await run.press("enter")
        # The dialog stays, the reason and the fix in it.
        assert run.app.screen is dialog
        error = plain(dialog.query_one("#fork-error", Static).content)
        assert "at LLM call 9: it made 3 LLM calls; pick 1 to 3" in error
        await run.press("escape")
        assert run.app.screen is debugger and debugger.session is parent
        # A model that cannot be built: a notice naming it, the parent still shown.
        dialog = await fork_dialog(run, at=2)
        typed = dialog.query_one("#fork-model", Input)
        typed.focus()
        typed.value = "script:nowhere.jsonl"  # (typed key by key: ~1.5 s more)
        await run.press("enter")
        [note] = run.notes("error")
        assert note.title == "Cannot fork" and "nowhere.jsonl" in note.message
        assert "Pick another model in the fork dialog" in note.message
        assert debugger.session is parent and debugger.state == "finished"
        # The app still works: the same model forks.
        await fork_dialog(run, at=2)
        await run.press("enter")
        assert debugger.paused.turn == 2 and debugger.follower.fork_parent is not None


async def test_a_fork_asked_for_without_the_dialog_says_why_it_cannot_start():
    async with driving(fork_app()) as run:
        debugger = await finished_parent(run)
        parent = debugger.session
        # A call out of range asked for directly: the engine's reason, as a notice.
        debugger.start_fork(debugger.fork_parent(), 7)
        await run.settle()
        assert "pick 1 to 3" in run.notes("error")[-1].message
        # A trajectory without its journal entry cannot be forked: F is not offered.
        run.app.show_outcome(parent.outcome, "shown alone")
        await run.settle()
        assert debugger.fork_calls() == 0
        debugger.ask_fork()
        await run.settle()
        assert "without its journal entry" in run.notes("error")[-1].message
        # The app still works: the row runs again.
        run.app.open_debugger(ROW)
        await run.settle()
        assert debugger.state == "paused" and debugger.paused.turn == 1


async def test_a_fork_of_the_paused_rollout_lets_the_parent_run_on_to_be_compared():
    async with driving(fork_app()) as run:
        debugger = run.app.debugger
        await run.press("n")
        parent = debugger.session
        assert debugger.paused.turn == 2
        dialog = await fork_dialog(run)
        assert dialog.call_input.value == "2"  # the held answer's call
        await run.press("enter")
        assert debugger.session is not parent and debugger.paused.turn == 2
        await run.settle()
        # The parent went on unpaused to its end, not aborted: the two compare whole.
        assert parent.finished and parent.outcome.reward == 1.0
        await run.press("c", "d")
        assert debugger.fork_view.difference is None
        assert debugger.fork_view.list("a").messages == parent.outcome.final_messages


# ---- palette and help --------------------------------------------------------------------------


async def test_the_palette_forks_from_each_llm_call_and_help_lists_the_keys():
    async with driving(fork_app()) as run:
        debugger = await finished_parent(run)
        listed = await run.palette_commands("fork from")
        assert [n for n in listed if n.startswith("Fork from")] == [
            "Fork from LLM call 1",
            "Fork from LLM call 2",
            "Fork from LLM call 3",
        ]
        await run.palette("fork from", pick="Fork from LLM call 1")
        dialog = run.app.screen
        assert isinstance(dialog, ForkDialog) and dialog.call_input.value == "1"
        await run.press("enter")
        assert debugger.paused.turn == 1 and debugger.follower.fork_parent is not None
        assert "Vs parent" in await run.palette_commands("parent")
        rows = dict(run.app.help_sections())["Step debugger"]
        keys = {key: text for key, text in rows}
        assert "[debugger.fork]" in keys["F"] and "[debugger.fork_view]" in keys["d"]


def test_a_fork_of_a_fork_is_named_by_its_calls_in_order():
    from osmosis_workbench.tui.debugger import fork_label

    first = fork_label("row 2", 3)
    assert first == "fork of row 2 at call 3"
    assert fork_label(first, 2) == "fork of row 2 at call 3, then 2"


def stamp_call_1(parent: Any) -> None:
    """The parent's record of call 1 as if its system prompt had carried a timestamp."""
    first = parent.exchanges[0].request
    system = first["messages"][0]
    first["messages"] = [
        {**system, "content": "12:00:01 " + system["content"]},
        *first["messages"][1:],
    ]


@pytest.mark.parametrize("ticked", [False, True])
async def test_the_dialog_can_replay_past_a_call_that_drifted_from_the_parents(ticked: bool):
    """A request before the fork point that differs from the parent's record (the agent does
    not send the timestamp again) stops the fork by default, naming the call; with the box
    ticked in the dialog, the fork replays on and notes it."""
    async with driving(fork_app()) as run:
        debugger = await finished_parent(run)
        parent = debugger.session
        stamp_call_1(parent)
        dialog = await fork_dialog(run, at=2)
        dialog.query_one("#fork-continue", Checkbox).value = ticked
        await run.press("enter")  # the same model
        fork = debugger.session
        assert isinstance(fork, ForkSession) and fork is not parent
        await run.press("c")
        if ticked:
            assert fork.outcome.status == "COMPLETED"
            (noted,) = fork.divergences
            assert noted.startswith("call 1:")
        else:
            assert fork.outcome.status == "ERROR"
            assert "replayed call 1 is not the parent's" in (fork.outcome.error or "")


async def test_P_goes_back_from_an_ended_fork_to_its_parent():
    async with driving(fork_app()) as run:
        debugger = await finished_parent(run)
        parent = debugger.session
        await fork_dialog(run, at=2)
        await run.press("enter")  # the same model: paused at call 2
        fork = debugger.session
        assert isinstance(fork, ForkSession)
        await run.press("P")  # not ended yet: it says how, and stays on the fork
        assert debugger.session is fork
        assert any("c runs it to its end" in n.message for n in run.notes("warning"))
        await run.press("c", "P")
        assert debugger.session is parent and debugger.state == "finished"
        assert debugger.outcome is not None and debugger.outcome.status == "COMPLETED"
        assert "row 2" in status(debugger) and "fork of" not in status(debugger)
        await run.press("P")  # the parent is not a fork: nothing to go back to
        assert debugger.session is parent
