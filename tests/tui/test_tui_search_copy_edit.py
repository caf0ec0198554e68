"""Reading long trajectories and getting things out of them: search (/), the dataset filter,
copy (y), $EDITOR (v, ctrl+o) and export (x, X).

Search and copy run on a finished 400-message trajectory shown in the debugger; the editor
and export on the sample agent's row 0, stepped with a scripted calculator model. The editor
is a small Python script named by ``$EDITOR``; copies are read where the app writes them
(the terminal driver) and from the notice that says how they went.
"""

from __future__ import annotations

import base64
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from tui_driver import driving

from osmosis_workbench.engine.config import EngineConfig
from osmosis_workbench.engine.models import ScriptedBackend
from osmosis_workbench.engine.outcome import RolloutOutcome
from osmosis_workbench.tui.app import WorkbenchApp, make_app
from osmosis_workbench.tui.widgets import EditResponseDialog

ROOT = Path(__file__).resolve().parents[2]
DATASET = str(ROOT / "sample_project" / "test_data.jsonl")


def calculator_model(body: dict[str, Any]) -> dict[str, Any]:
    """Calls add(17, 25) first; once a tool answered, states its result."""
    last = body["messages"][-1]
    if last["role"] == "tool":
        return {"content": f"The answer is {last['content']}."}
    return {"tool_calls": [{"name": "add", "arguments": {"a": 17, "b": 25}}]}


def app_for(row: int | None = 0) -> WorkbenchApp:
    config = EngineConfig(
        module="sample_project.server:agent_loop",
        dataset=DATASET,
        model="scripted",
        search_path=str(ROOT),
    )
    return make_app(config, row=row, backend=ScriptedBackend(calculator_model))


def long_outcome(count: int = 400) -> RolloutOutcome:
    """A finished trajectory of ``count`` messages: answers that call add, and results."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Add up, one call at a time."}]
    turn = 0
    while len(messages) < count:
        call = {
            "id": f"c{turn}",
            "type": "function",
            "function": {"name": "add", "arguments": json.dumps({"a": turn, "b": 1})},
        }
        messages.append({"role": "assistant", "content": f"Step {turn}.", "tool_calls": [call]})
        messages.append({"role": "tool", "tool_call_id": f"c{turn}", "content": str(turn + 1)})
        turn += 1
    return RolloutOutcome(
        rollout_id="long-1",
        status="COMPLETED",
        final_messages=messages[:count],
        finish_reason="stop",
        error=None,
        error_category=None,
        traceback=None,
        reward=1.0,
        metrics={},
        duration_ms=1.0,
        tokens=count,
        cost_usd=None,
        llm_calls=count // 2,
        tools=[],
        violations=[],
    )


def count_shown(run: Any) -> str:
    return str(run.app.screen.query_one("#search-count").render())


# ---- search ------------------------------------------------------------------------------------


async def test_search_counts_matches_and_steps_through_them_in_the_history():
    async with driving(app_for(row=None)) as run:
        run.app.show_outcome(long_outcome(), "long")
        await run.settle()
        debugger = run.app.debugger
        listing = debugger.message_list
        listing.move_cursor(0)
        await run.press("slash", *"step 1")  # typed: the count follows each key
        # "Step 1.", "Step 10." ... "Step 199.": 111 answers, the cursor on the first.
        assert count_shown(run) == "1 of 111 messages"
        assert listing.cursor == 3  # message 3 is "Step 1."
        await run.press("enter")
        assert (listing.cursor, count_shown(run)) == (21, "2 of 111 messages")  # Step 10.
        await run.press("up", "up")  # previous, then wrapped round to the last
        assert (listing.cursor, count_shown(run)) == (399, "111 of 111 messages")
        await run.press("down")
        assert listing.cursor == 3
        # The message pane highlights the match of the message shown.
        assert debugger.message_detail.hits and debugger.message_detail.index == 3
        await run.press("ctrl+r", "ctrl+u", *r"step 1\d\.", "down")  # a regex: Step 10-19
        assert count_shown(run).endswith("10 messages · regex")
        await run.press("ctrl+u", *"(", "down")
        assert "not a valid regex" in count_shown(run)
        await run.press("escape")  # closed: no highlights, back in the list
        assert not debugger.search_bar.is_open and listing.has_focus
        assert not debugger.message_detail.hits


async def test_search_in_the_message_pane_steps_through_its_lines():
    async with driving(app_for(row=None)) as run:
        outcome = long_outcome(6)
        outcome.final_messages[0]["content"] = "one two one\nthree one"
        run.app.show_outcome(outcome, "short")
        await run.settle()
        debugger = run.app.debugger
        debugger.message_list.move_cursor(0)
        await run.press("enter")  # the message, whole: its pane has the focus
        assert debugger.message_detail.has_focus
        await run.press("slash", *"one")
        assert count_shown(run) == "3 in message 0"
        await run.press("enter", "enter")
        assert count_shown(run) == "2 of 3 in message 0"


async def test_the_dataset_filter_keeps_rows_by_status_reward_and_text(tmp_path: Path):
    rows = [
        {"system_prompt": "Add.", "user_prompt": "What is 17 + 25?", "ground_truth": "42"},
        # fails: 42 said
        {"system_prompt": "Add.", "user_prompt": "What is 17 + 25, again?", "ground_truth": "41"},
        "{bad",
    ]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    config = EngineConfig(
        module="sample_project.server:agent_loop",
        dataset=str(data),
        model="scripted",
        search_path=str(ROOT),
    )
    app = make_app(config, backend=ScriptedBackend(calculator_model), watch_agent=False)
    async with driving(app) as run:
        await run.press("2", "r")
        screen = run.app.screen
        table = screen.table  # type: ignore[attr-defined]
        await run.press("slash", *"status:fail")
        assert table.keys == ["1"] and count_shown(run) == "1 of 3 rows"
        await run.press("ctrl+u", *"reward>=1")
        assert table.keys == ["0"]
        await run.press("ctrl+u", *"again")
        assert table.keys == ["1"]
        await run.press("ctrl+u", *"status:bad")
        assert table.keys == ["2"]
        await run.press("enter")  # done typing: on to the rows, the filter stays
        assert table.has_focus and table.keys == ["2"]
        await run.press("slash", "escape")  # closed: every row again
        assert table.keys == ["0", "1", "2"]


# ---- copy --------------------------------------------------------------------------------------


def osc52_payloads(written: list[str]) -> list[str]:
    """The texts the OSC 52 sequences written to the terminal carry (tmux form or not)."""
    return [
        base64.b64decode(found).decode()
        for found in re.findall(r"\x1b\x1b?\]52;c;([A-Za-z0-9+/=]*)\x07", "".join(written))
    ]


async def test_y_copies_the_selected_message_by_osc52_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
):
    async with driving(app_for(row=None)) as run:
        written: list[str] = []
        monkeypatch.setattr(run.app._driver, "write", written.append)
        run.app.show_outcome(long_outcome(10), "short")
        await run.settle()
        run.app.debugger.message_list.move_cursor(1)
        await run.press("y")
        (copied,) = osc52_payloads(written)
        assert json.loads(copied)["tool_calls"][0]["function"]["name"] == "add"
        note = run.notes()[-1]
        assert note.message.startswith("Copied message 1 (assistant)")
        assert "with OSC 52." in note.message and "allows OSC 52" in note.message
        # In tmux the sequence goes in tmux's passthrough form.
        monkeypatch.setenv("TMUX", "/tmp/tmux-1/default,1,0")
        written.clear()
        await run.press("y")
        assert written[0].startswith("\x1bPtmux;\x1b\x1b]52;c;") and written[0].endswith("\x1b\\")
        assert osc52_payloads(written) == [copied]
        assert "OSC 52 through tmux" in run.notes()[-1].message


async def test_tool_call_arguments_and_schemas_are_copied_from_the_palette(
    monkeypatch: pytest.MonkeyPatch,
):
    async with driving(app_for()) as run:
        written: list[str] = []
        monkeypatch.setattr(run.app._driver, "write", written.append)
        await run.press("t")  # the tools view: y copies them all; the palette each one
        await run.palette("schema add", pick="Copy the JSON Schema of tool add")
        schema = json.loads(osc52_payloads(written)[-1])
        assert schema["required"] == ["a", "b"]
        await run.press("t")  # back to the held answer
        await run.palette("arguments", pick="Copy the arguments of tool call 1 (add)")
        assert json.loads(osc52_payloads(written)[-1]) == {"a": 17, "b": 25}


# ---- $EDITOR -----------------------------------------------------------------------------------


@pytest.fixture
def editor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``$EDITOR``: a script that turns every 17 of the file into 18 (its log: what it saw)."""
    script = tmp_path / "editor.py"
    script.write_text(
        "import pathlib, sys\n"
        "path = pathlib.Path(sys.argv[1])\n"
        "text = path.read_text()\n"
        "pathlib.Path(__file__).with_suffix('.log').write_text(text)\n"
        "path.write_text(text.replace('17', '18'))\n"
    )
    monkeypatch.setenv("EDITOR", f"{sys.executable} {script}")
    monkeypatch.delenv("VISUAL", raising=False)
    return script.with_suffix(".log")


async def test_v_edits_the_held_answer_in_the_editor_and_releases_it(editor: Path):
    async with driving(app_for()) as run:
        debugger = run.app.debugger
        await run.press("v")
        assert '"a": 17' in editor.read_text()  # the answer as the e dialog shows it
        # Released as an edited answer: add(18, 25), whose result the model then states.
        assert debugger.paused is not None and debugger.paused.turn == 2
        assert debugger.paused.message["content"] == "The answer is 43."
        assert any("Edited answer of turn 1 released" in n.message for n in run.notes())


async def test_ctrl_o_in_the_edit_dialog_and_v_on_history(editor: Path):
    async with driving(app_for()) as run:
        await run.press("e", "ctrl+o")
        dialog = run.app.screen
        assert isinstance(dialog, EditResponseDialog)
        assert '"a": 18' in dialog.editor.text  # back in the dialog: ctrl+s releases it
        await run.press("ctrl+s")
        debugger = run.app.debugger
        assert debugger.paused is not None and debugger.paused.message["content"].endswith("43.")
        await run.press("m")
        debugger.message_list.move_cursor(1)  # the user's question: history, read only
        await run.press("v")
        (note,) = run.notes("warning")
        assert note.message.startswith("Message 1 is history the agent has seen")


async def test_without_an_editor_v_says_how_to_set_one(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("EDITOR", raising=False)
    monkeypatch.delenv("VISUAL", raising=False)
    async with driving(app_for()) as run:
        await run.press("v")
        assert "set $EDITOR" in str(run.app.screen.query_one("#edit-error").render())


# ---- export ------------------------------------------------------------------------------------


async def test_x_exports_the_finished_rollout_as_atif_and_X_as_journal_json():
    async with driving(app_for()) as run:
        await run.press("x")  # not finished yet: nothing to export
        assert not Path(".osmosis/exports").exists()
        await run.press("c", "x", "X")
        atif, journal = sorted(Path(".osmosis/exports").iterdir())
        trajectory = json.loads(atif.read_text())
        assert atif.name.endswith(".atif.json") and trajectory["schema_version"] == "ATIF-v1.8"
        assert trajectory["extra"]["osmosis"]["reward"] == 1.0  # row 0: 42 expected, 42 said
        entry = json.loads(journal.read_text())
        assert entry["row"] == 0 and entry["final_messages"][-1]["content"] == "The answer is 42."
        assert any(str(atif) in n.message for n in run.notes())
