"""The workbench's plain parts, without an app: the settings file, copying, searching, filtering.

The app tests (test_tui_palette.py and the others) drive the same parts through keys; these
pin down the rules themselves: the file's format and errors, the OSC 52 bytes, smart case.
"""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from osmosis_workbench.tui.clipboard import (
    CopyResult,
    copy_with_tool,
    osc52_sequence,
    send_osc52,
)
from osmosis_workbench.tui.dataset_screen import RowFilter
from osmosis_workbench.tui.settings import load_settings, save_theme, settings_path
from osmosis_workbench.tui.text_search import MessageFinder, compile_query, next_match

# ---- the settings file ------------------------------------------------------------------------


def test_the_settings_file_is_at_the_xdg_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    assert settings_path() == tmp_path / "config" / "osmosis" / "workbench.toml"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert settings_path() == tmp_path / "home" / ".config" / "osmosis" / "workbench.toml"
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/dir")  # invalid by the spec: ignored
    assert settings_path() == tmp_path / "home" / ".config" / "osmosis" / "workbench.toml"


def test_theme_and_keymap_are_read_and_the_theme_is_written_in_place(tmp_path: Path):
    path = tmp_path / "workbench.toml"
    assert load_settings(path).theme is None  # no file: the defaults
    path.write_text(
        '# mine\ntheme = "nord"\n\n[keymap]\n"debugger.next" = "n, space"\n[later]\ntheme = 1\n'
    )
    settings = load_settings(path)
    assert (settings.theme, settings.keymap, settings.problems) == (
        "nord",
        {"debugger.next": "n,space"},
        [],
    )
    save_theme(path, "textual-light")
    # The top-level line changed; the comment and the table (its own "theme" key) did not.
    assert path.read_text() == (
        '# mine\ntheme = "textual-light"\n\n[keymap]\n"debugger.next" = "n, space"\n'
        "[later]\ntheme = 1\n"
    )
    fresh = tmp_path / "new" / "workbench.toml"
    save_theme(fresh, "ansi-dark")
    assert load_settings(fresh).theme == "ansi-dark"
    fresh.write_text('theme = "textual-ansi"\n')  # another Textual's name for it
    assert load_settings(fresh).theme == "ansi-dark"


def test_a_bad_settings_file_says_where_and_what_and_keeps_the_defaults(tmp_path: Path):
    path = tmp_path / "workbench.toml"
    path.write_text("theme = \n")
    (problem,) = load_settings(path).problems
    assert str(path) in problem and "not valid TOML" in problem
    path.write_text('theme = 3\nkeymap = "n"\n')
    settings = load_settings(path)
    assert settings.theme is None and settings.keymap == {}
    assert [p.split(": ", 1)[1].split(",")[0] for p in settings.problems] == [
        "theme must be a theme name",
        'keymap must be a table: [keymap] then lines like "debugger.next" = "n"',
    ]


# ---- copying ----------------------------------------------------------------------------------


def test_osc52_is_the_text_in_base64_and_tmux_gets_its_passthrough_form():
    text = "héllo {json}"
    encoded = base64.b64encode(text.encode()).decode()
    assert osc52_sequence(text) == f"\x1b]52;c;{encoded}\x07"
    # Every ESC of the inner sequence doubled, wrapped in DCS tmux; ... ST.
    assert osc52_sequence(text, tmux=True) == f"\x1bPtmux;\x1b\x1b]52;c;{encoded}\x07\x1b\\"


def fake_tool(folder: Path, name: str, script: str) -> None:
    tool = folder / name
    tool.write_text(f"#!/bin/sh\n{script}\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)


@pytest.mark.skipif(os.name != "posix", reason="shell scripts as clipboard tools")
def test_a_clipboard_tool_confirms_the_copy_and_its_failure_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.defpath}")
    monkeypatch.setenv("DISPLAY", ":0")
    fake_tool(bin_dir, "xclip", f'cat > "{tmp_path}/copied"')
    written: list[str] = []
    result = CopyResult()
    send_osc52("42", written.append, result)
    copy_with_tool("42", result)
    assert written == [osc52_sequence("42")]
    assert (tmp_path / "copied").read_text() == "42"
    assert result.describe("message 3", 2) == (
        "Copied message 3 (2 characters) with OSC 52 and xclip.",
        False,
    )
    fake_tool(bin_dir, "xclip", 'echo "Error: Can\'t open display: :0" >&2; exit 1')
    result = CopyResult()
    copy_with_tool("42", result)
    text, failed = result.describe("it", 2)
    assert failed and text == "Could not copy it: xclip failed: Error: Can't open display: :0"


def test_without_a_tool_the_notice_says_what_osc52_needs(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TMUX", "/tmp/tmux-1000/default,1,0")
    monkeypatch.setenv("PATH", "")
    result = CopyResult()
    send_osc52("x", [].append, result)
    copy_with_tool("x", result)
    text, failed = result.describe("it", 1)
    assert not failed
    assert text.startswith("Copied it (1 character) with OSC 52 through tmux.")
    assert "allow-passthrough" in text
    nothing = CopyResult()
    copy_with_tool("x", nothing)
    assert nothing.describe("it", 1)[1]  # no terminal, no tool: an error


# ---- searching and filtering -------------------------------------------------------------------


def test_queries_are_plain_text_with_smart_case_or_a_checked_regex():
    assert compile_query("") is None
    plain = compile_query("a.b")
    assert plain is not None and plain.search("A.B") and not plain.search("axb")
    cased = compile_query("Add")
    assert cased is not None and not cased.search("add(1)") and cased.search("Add")
    regex = compile_query(r"step \d+", regex=True)
    assert regex is not None and regex.search("Step 12")
    with pytest.raises(ValueError, match="not a valid regex"):
        compile_query("(unclosed", regex=True)


def test_the_finder_searches_text_tool_calls_and_grows_with_the_history():
    call = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": 7}'}}
    messages = [
        {"role": "user", "content": "find seven"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "7 is seven"},
    ]
    finder = MessageFinder()
    pattern = compile_query("seven")
    assert pattern is not None
    assert finder.find(messages, pattern) == [0, 2]
    lookup = compile_query("lookup")
    assert lookup is not None and finder.find(messages, lookup) == [1]
    messages.append({"role": "assistant", "content": "Seven."})  # the rollout went on
    assert finder.find(messages, pattern) == [0, 2, 3]
    assert next_match([0, 2, 3], 2) == 3 and next_match([0, 2, 3], 3) == 0
    assert next_match([0, 2, 3], 2, forward=False) == 0
    assert next_match([0, 2, 3], 0, forward=False) == 3 and next_match([], 1) is None


def test_row_filters_take_status_reward_and_text_terms():
    rule = RowFilter.parse("status:fail,error reward<0.5 Shop")
    assert rule.statuses == ("fail", "error") and rule.reward == ("<", 0.5)
    assert rule.pattern is not None and rule.pattern.pattern == "Shop"
    assert RowFilter.parse("").empty and not RowFilter.parse("reward>=1").empty
    with pytest.raises(ValueError):
        RowFilter.parse("[oops", regex=True)
