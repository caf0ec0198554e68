"""`osmosis_workbench.analysis`: runs, rollouts and messages as typed pandas DataFrames."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from sample_runs import FAILS_ROW_3, ROOT, run_sample

from osmosis_workbench.analysis import messages_df, rollouts_df, runs_df
from osmosis_workbench.engine.journal import JOURNAL_FILE, JournalEntry, read_journal
from osmosis_workbench.engine.outcome import (
    LLMCallStats,
    OutcomeStatus,
    RolloutOutcome,
    Verdict,
)
from osmosis_workbench.engine.runs import RUN_FILE

README = (ROOT / "README.md").read_text()


def synthetic_entry(row: int, attempt: int, rewrite: bool = False) -> JournalEntry:
    """A finished rollout: a user question, a tool call and its result, an answer.

    Every 7th row ends in an error; every 3rd fails; ``rewrite`` is a later try of the row.
    """
    error = row % 7 == 0
    reward = None if error else (0.0 if row % 3 == 0 else 1.0)
    if rewrite:
        reward = 0.5
    messages = [
        {"role": "user", "content": f"question {row}"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": f"c{row}",
                    "type": "function",
                    "function": {"name": "add", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": f"c{row}", "content": "2"},
        {"role": "assistant", "content": "2"},
    ]
    outcome = RolloutOutcome(
        rollout_id=f"r{row}-{attempt}",
        status=OutcomeStatus.ERROR if error else OutcomeStatus.COMPLETED,
        final_messages=messages,
        error="boom" if error else None,
        error_category="agent_error" if error else None,
        reward=reward,
        duration_ms=10.0 + row,
        tokens=30,
        cost_usd=0.001,
        llm_calls=2,
        calls=[
            LLMCallStats(turn=1, prompt_tokens=10, completion_tokens=5, latency_ms=1.0),
            LLMCallStats(turn=2, prompt_tokens=12, completion_tokens=3, latency_ms=1.0),
        ],
    )
    verdict = Verdict.ERROR if error else Verdict.PASS if reward and reward >= 1.0 else Verdict.FAIL
    request = {
        "messages": messages[:1],
        "metadata": {"ground_truth": "2", "row_index": row, "difficulty": row % 4},
    }
    return JournalEntry(row, attempt, verdict, outcome, ground_truth="2", request=request)


@pytest.fixture(scope="module")
def big_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2,000-row run (2,000 rollouts, 50 of them retried later in the journal)."""
    run = tmp_path_factory.mktemp("runs") / "20260101-000000-big"
    run.mkdir()
    (run / RUN_FILE).write_text(json.dumps({"model": "replay:x.jsonl", "attempts": 1}))
    with open(run / JOURNAL_FILE, "w") as handle:
        for row in range(2000):
            handle.write(json.dumps(synthetic_entry(row, 0).to_json()) + "\n")
        for row in range(0, 2000, 40):  # later lines supersede earlier ones
            handle.write(json.dumps(synthetic_entry(row, 0, rewrite=True).to_json()) + "\n")
    return run


def test_rollouts_df_of_a_2000_row_run_matches_its_journal(big_run: Path):
    journal = read_journal(big_run)
    df = rollouts_df(big_run)
    assert len(df) == len(journal) == 2000
    assert list(zip(df.row, df.attempt, strict=True)) == sorted(journal)
    expected = [journal[key].outcome.reward for key in sorted(journal)]
    assert [None if pd.isna(r) else r for r in df.reward] == expected
    assert int(df.passed.sum()) == sum(e.passed for e in journal.values())
    assert int((df.status == "ERROR").sum()) == sum(not e.outcome.ok for e in journal.values())
    assert df.reward[df.row == 40].item() == 0.5  # the later line won
    # Typed columns.
    assert str(df.reward.dtype) == "Float64" and str(df.tokens.dtype) == "Int64"
    assert df.passed.dtype == bool and str(df.verdict.dtype) == "category"
    assert set(df.error_category.dropna().unique()) == {"agent_error"}
    assert (df.turns == 2).all() and (df.tool_calls == 1).all()
    assert (df.prompt_tokens == 22).all() and df.cost_usd.sum() == pytest.approx(2.0)
    assert df.model.iloc[0] == "replay:x.jsonl" and df.difficulty.iloc[5] == 1  # a row field
    assert df.user_prompt.iloc[3] == "question 3"


def test_messages_df_has_one_row_per_message(big_run: Path):
    df = messages_df(big_run)
    assert len(df) == 2000 * 4
    assistant = df[df.role == "assistant"]
    assert list(assistant.turn.iloc[:2]) == [1, 2]
    assert list(assistant.prompt_tokens.iloc[:2]) == [10, 12]
    assert df[df.role == "tool"].tool_call_id.iloc[1] == "c1"
    assert assistant.tool_names.iloc[0] == "add" and int(df.tool_calls.sum()) == 2000


def test_runs_df_has_one_row_per_run(big_run: Path):
    df = runs_df(big_run.parent)
    [run] = df.to_dict("records")
    journal = read_journal(big_run)
    assert run["run"] == big_run.name and run["rollouts"] == 2000
    assert run["passed"] == sum(e.passed for e in journal.values())
    assert run["errors"] == sum(not e.outcome.ok for e in journal.values())


def test_importing_analysis_does_not_import_pandas():
    probe = "import sys, osmosis_workbench.analysis; print('pandas' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "False"


def test_the_readme_notebook_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    # Two runs of the sample in ./.osmosis/runs, the second failing row 3.
    runs = tmp_path / ".osmosis" / "runs"
    assert run_sample(runs) == 0
    assert run_sample(runs, "--rows", "0-5", "--reward", FAILS_ROW_3) == 1
    capsys.readouterr()
    [example] = re.findall(r"```python\n(from osmosis_workbench\.analysis.*?)```", README, re.S)
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert re.search(r"^pass\s+5$", out, re.M), out  # the verdicts of the newest run
    # The last print: row 3, which passed in the first run and fails in the second.
    assert re.search(r"^\d+\s+3\s+1\.0\s+0\.0$", out, re.M), out
