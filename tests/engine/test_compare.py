"""`osmosis compare`: rows matched by row and attempt, regressions first, paired statistics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from loopback_openai import LoopbackOpenAI
from sample_runs import FAILS_ROW_3, run_sample

from osmosis_workbench.cli import main
from osmosis_workbench.engine.compare import (
    Change,
    compare_runs,
    first_difference,
    paired_bootstrap,
)
from osmosis_workbench.engine.journal import JOURNAL_FILE, JournalEntry
from osmosis_workbench.engine.outcome import OutcomeStatus, RolloutOutcome, Verdict
from osmosis_workbench.engine.runs import list_run_dirs, resolve_run_dir


@pytest.fixture
def two_runs(tmp_path: Path, capsys) -> Path:
    """Two runs of the sample: the second with a reward function that fails row 3."""
    runs = tmp_path / "runs"
    assert run_sample(runs) == 0
    assert run_sample(runs, "--reward", FAILS_ROW_3) == 1
    capsys.readouterr()
    return runs


def test_compare_names_the_regressed_row_with_its_deltas(two_runs: Path, capsys):
    code = main(["compare", "last~1", "last", "--runs-dir", str(two_runs)])
    out = capsys.readouterr().out
    assert code == 1, out  # a regression
    assert "12 rollouts in both runs: 1 regressed, 0 improved, 11 same." in out
    regressed = out.split("Regressed")[1].splitlines()[1]
    assert regressed.split() == ["row", "3", "PASS", "1", "->", "FAIL", "0", "reward", "-1"]
    assert "pass rate" in out and "-0.083" in out
    # Comparing the other way round: an improvement, exit 0.
    assert main(["compare", "last", "last~1", "--runs-dir", str(two_runs)]) == 0
    assert "Improved" in capsys.readouterr().out


def test_compare_json_shape(two_runs: Path, capsys):
    code = main(["compare", "last~1", "last", "--runs-dir", str(two_runs), "--json"])
    document = json.loads(capsys.readouterr().out)
    assert code == 1 and document["exit_code"] == 1
    assert set(document) == {
        "a",
        "b",
        "matched",
        "counts",
        "k",
        "metrics",
        "bootstrap",
        "rows",
        "errored_only_in_a",
        "errored_only_in_b",
        "warnings",
        "exit_code",
    }
    assert document["matched"] == 12 and document["counts"]["regressed"] == 1
    [row] = document["rows"]
    assert row["row"] == 3 and row["change"] == "regressed" and row["reward_delta"] == -1.0
    assert row["a"]["verdict"] == "pass" and row["b"]["verdict"] == "fail"
    pass_rate = document["metrics"]["pass_rate"]
    assert pass_rate["a"] == 1.0 and pass_rate["delta"] == pytest.approx(-1 / 12)
    low, high = pass_rate["ci95"]
    assert low <= pass_rate["delta"] <= high <= 0.0
    assert document["bootstrap"] == {"resamples": 2000, "seed": 0, "unit": "row"}
    # Seeded: the same runs give the same document.
    main(["compare", "last~1", "last", "--runs-dir", str(two_runs), "--json"])
    assert json.loads(capsys.readouterr().out) == document


def test_a_run_and_its_cassette_replay_show_no_difference(tmp_path: Path, capsys):
    cassette = tmp_path / "recorded.jsonl"
    runs = tmp_path / "runs"
    with LoopbackOpenAI() as server:
        live = ["--model", "calc", "--base-url", server.base_url, "--record", str(cassette)]
        assert run_sample(runs, *live) == 0
    assert run_sample(runs, "--model", f"replay:{cassette}") == 0
    capsys.readouterr()
    code = main(["compare", "last~1", "last", "--runs-dir", str(runs), "--json"])
    document = json.loads(capsys.readouterr().out)
    assert code == 0
    assert document["counts"]["same"] == 12 and document["rows"] == []
    assert all(m["delta"] == 0 for m in document["metrics"].values())
    # Message for message the same trajectories, not only the same scores.
    comparison = compare_runs(*list_run_dirs(runs), keep_same=True)
    assert [r.first_difference for r in comparison.rows] == [None] * 12


def entry(row: int, verdict: Verdict, reward: float | None, messages=(), attempt=0):
    status = OutcomeStatus.ERROR if verdict is Verdict.ERROR else OutcomeStatus.COMPLETED
    outcome = RolloutOutcome(
        rollout_id=f"r{row}-{attempt}",
        status=status,
        final_messages=list(messages),
        reward=reward,
        error="model failed" if status is OutcomeStatus.ERROR else None,
        error_category="llm_error" if status is OutcomeStatus.ERROR else None,
    )
    return JournalEntry(row=row, attempt=attempt, verdict=verdict, outcome=outcome)


def write_run(path: Path, entries: list[JournalEntry]) -> Path:
    path.mkdir(parents=True)
    lines = [json.dumps(e.to_json()) for e in entries]
    (path / JOURNAL_FILE).write_text("\n".join(lines) + "\n")
    return path


def test_changes_are_listed_regressions_first_and_errors_in_one_run_named(tmp_path: Path):
    said = [{"role": "assistant", "content": "4"}]
    other = [{"role": "assistant", "content": "four"}]
    a = write_run(
        tmp_path / "a",
        [
            entry(0, Verdict.FAIL, 0.0),
            entry(1, Verdict.PASS, 1.0),
            entry(2, Verdict.FAIL, 0.5),
            entry(3, Verdict.PASS, 1.0, said),
            entry(4, Verdict.FAIL, 0.0),
            entry(5, Verdict.PASS, 1.0),
        ],
    )
    b = write_run(
        tmp_path / "b",
        [
            entry(0, Verdict.PASS, 1.0),  # improved
            entry(1, Verdict.ERROR, None),  # regressed, and errored in B only
            entry(2, Verdict.FAIL, 0.25),  # worse
            entry(3, Verdict.PASS, 1.0, other),  # the same score, another trajectory
            entry(4, Verdict.FAIL, 0.0),  # same
            entry(6, Verdict.PASS, 1.0),  # only in B (and row 5 only in A)
        ],
    )
    c = compare_runs(a, b)
    assert [(r.row, r.change) for r in c.rows] == [
        (1, Change.REGRESSED),
        (0, Change.IMPROVED),
        (2, Change.WORSE),
        (3, Change.TRAJECTORY),
        (5, Change.ONLY_A),
        (6, Change.ONLY_B),
    ]
    assert c.rows[3].first_difference == 0
    assert [r.row for r in c.errored_only_in("b")] == [1] and c.errored_only_in("a") == []
    assert c.matched == 5 and c.counts[Change.SAME] == 1
    assert c.metrics["pass_rate"].rows == 5
    # Mean reward pairs only rows with a reward in both: rows 0, 2, 3, 4.
    assert c.metrics["reward_mean"].rows == 4
    assert c.metrics["reward_mean"].delta == pytest.approx((1.0 - 0.25) / 4)


def test_first_difference_ignores_call_ids_and_reads_arguments_as_values():
    def calls(call_id: str, arguments: str) -> dict:
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": "add", "arguments": arguments},
                }
            ],
        }

    a = [
        calls("call_1", '{"a": 1, "b": 2}'),
        {"role": "tool", "tool_call_id": "call_1", "content": "3"},
    ]
    b = [
        calls("call_x", '{"b": 2,  "a": 1}'),
        {"role": "tool", "tool_call_id": "call_x", "content": "3"},
    ]
    assert first_difference(a, b) is None
    b[1] = {**b[1], "content": "4"}
    difference = first_difference(a, b)
    assert difference is not None and (difference.index, difference.fields) == (1, ("content",))
    shorter = first_difference(a, a[:1])
    assert shorter is not None and shorter.index == 1 and shorter.b is None


def test_the_bootstrap_is_seeded_and_brackets_the_mean():
    differences = [0.0] * 37 + [-1.0] * 12 + [1.0]
    low, high = paired_bootstrap(differences, seed=0, resamples=2000)
    assert (low, high) == paired_bootstrap(differences, seed=0, resamples=2000)
    assert low < sum(differences) / len(differences) < high < 0.0
    assert paired_bootstrap([0.5, 0.5], seed=0, resamples=2000) == (0.5, 0.5)


def test_last_tilde_n_names_earlier_runs(tmp_path: Path):
    for name in ("20260101-000000-a", "20260102-000000-a", "20260103-000000-a"):
        write_run(tmp_path / name, [])
    assert resolve_run_dir("last", tmp_path).name == "20260103-000000-a"
    assert resolve_run_dir("last~2", tmp_path).name == "20260101-000000-a"
    with pytest.raises(FileNotFoundError, match=r"holds 3 runs: use last~2 at most"):
        resolve_run_dir("last~3", tmp_path)


def test_compare_of_an_unknown_run_says_how_to_name_one(tmp_path: Path, capsys):
    assert main(["compare", "last", "nope", "--runs-dir", str(tmp_path), "--json"]) == 2
    assert "no earlier run" in json.loads(capsys.readouterr().out)["error"]
