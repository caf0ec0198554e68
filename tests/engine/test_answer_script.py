"""``--model script:FILE``: answers per dataset row and turn, through the real protocol."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from osmosis_workbench.cli import main
from osmosis_workbench.engine.models import ScriptError, load_answer_script

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ["-m", "sample_project.server:agent_loop", "-d", "sample_project/test_data.jsonl"]

#: The sample's rows 0 ("What is 17 + 25?") and 1 ("What is 144 divided by 12?").
ROW_0 = {
    "row": 0,
    "turns": [{"tool_calls": [{"name": "add", "arguments": {"a": 17, "b": 25}}]}, "42."],
}
ROW_1 = {
    "row": 1,
    "turns": [{"tool_calls": [{"name": "divide", "arguments": {"a": 144, "b": 12}}]}, "It is 12."],
}


def write_jsonl(path: Path, *items: object) -> Path:
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    return path


def run(script: Path, *extra: str, runs: Path) -> int:
    return main(["test", *SAMPLE, "--model", f"script:{script}", "--runs-dir", str(runs), *extra])


@pytest.fixture(autouse=True)
def in_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def test_a_jsonl_script_answers_each_row_and_turn(tmp_path, capsys):
    script = write_jsonl(tmp_path / "answers.jsonl", ROW_0, ROW_1)
    assert run(script, "--rows", "0,1", "--n", "2", runs=tmp_path) == 0
    out = capsys.readouterr().out
    assert "Passed: 4" in out and f"Model: script:{script}" in out


def test_a_yaml_script_and_a_default_row(tmp_path, capsys):
    script = tmp_path / "answers.yaml"
    script.write_text(
        "- row: 0\n"
        "  turns:\n"
        "    - tool_calls:\n"
        "        - name: add\n"
        "          arguments: {a: 17, b: 25}\n"
        "    - content: The sum is 42.\n"
        '- row: "*"\n'
        "  turns: [I cannot tell.]\n"
    )
    assert run(script, "--rows", "0,3", runs=tmp_path) == 1  # row 3 answers wrongly: reward 0
    out = capsys.readouterr().out
    assert "Row 0: OK reward 1" in out and "Row 3: FAILED reward 0" in out


def test_running_out_names_the_row_and_the_turn(tmp_path, capsys):
    script = write_jsonl(tmp_path / "short.jsonl", {"row": 0, "turns": ROW_0["turns"][:1]})
    assert run(script, "--rows", "0", runs=tmp_path) == 1
    out = capsys.readouterr().out
    assert (
        f"script {script} ran out for row 0: the agent asked for turn 1 but the row has 1 turn "
        "(turn 0); add an answer to its turns"
    ) in out


def test_a_row_the_script_does_not_cover_is_named(tmp_path, capsys):
    script = write_jsonl(tmp_path / "answers.jsonl", ROW_0)
    assert run(script, "--rows", "0,2", runs=tmp_path) == 1
    out = capsys.readouterr().out
    assert "Row 0: OK" in out
    assert f"script {script} has no answers for row 2 (turn 0): add a line" in out
    assert "(rows listed: 0)" in out


def test_a_recorded_script_run_replays(tmp_path, capsys):
    script = write_jsonl(tmp_path / "answers.jsonl", ROW_0, ROW_1)
    cassette = tmp_path / "cassette.jsonl"
    assert run(script, "--rows", "0,1", "--record", str(cassette), runs=tmp_path) == 0
    replay = ["test", *SAMPLE, "--model", f"replay:{cassette}", "--rows", "0,1"]
    assert main([*replay, "--runs-dir", str(tmp_path)]) == 0
    assert "Passed: 2" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{"row": 0, "turns": ["a"]}\nnot json\n', "line 2 is not valid JSON"),
        ('{"row": 0, "turns": []}\n', 'line 1 (row 0): "turns" must be a non-empty list'),
        ('{"row": -1, "turns": ["a"]}\n', '"row" must be a 0-based dataset row number or "*"'),
        ('{"row": 0, "answers": ["a"]}\n', 'line 1: expected {"row": N, "turns"'),
        ('{"row": 0, "turns": [{"text": "a"}]}\n', "row 0 turn 0: unknown keys ['text']"),
        (
            '{"row": 0, "turns": ["a", {"tool_calls": [{"name": "f", "arguments": "x"}]}]}\n',
            'row 0 turn 1: tool call 0 (f): "arguments" must be an object',
        ),
        (
            '{"row": 1, "turns": ["a"]}\n{"row": 1, "turns": ["b"]}\n',
            "row 1 is already given at line 1",
        ),
        ("\n", "has no rows"),
    ],
)
def test_a_bad_script_is_refused_naming_the_line(tmp_path, text, says):
    script = tmp_path / "bad.jsonl"
    script.write_text(text)
    with pytest.raises(ScriptError) as info:
        load_answer_script(script)
    assert says in str(info.value) and str(script) in str(info.value)


def test_a_bad_script_stops_the_run_before_any_row(tmp_path, capsys):
    missing = tmp_path / "nope.jsonl"
    assert run(missing, runs=tmp_path) == 2
    err = capsys.readouterr().err
    assert f"script {missing} not found" in err


@pytest.mark.parametrize("fence", ["jsonl", "yaml"])
def test_the_readme_examples_load_and_answer_the_sample(fence, tmp_path, capsys):
    readme = (ROOT / "README.md").read_text()
    [example] = re.findall(rf"```{fence}\n(.*?)```", readme, re.DOTALL)
    script = tmp_path / f"answers.{fence}"
    script.write_text(example)
    load_answer_script(script)
    assert run(script, "--rows", "0", runs=tmp_path) == 0
    assert "Row 0: OK reward 1" in capsys.readouterr().out
