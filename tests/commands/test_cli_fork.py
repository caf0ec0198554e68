"""``osmosis fork``: a journaled rollout of an ``osmosis test`` run, run again from one of its
LLM calls, as a user runs it (the sample agent and its cassette, offline)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sample_runs import FAILS_ROW_3, run_sample

from osmosis_workbench.cli import main
from osmosis_workbench.engine.journal import FORKS_FILE, JOURNAL_FILE, read_forks
from osmosis_workbench.engine.runs import list_run_dirs


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs folder with one run of the sample whose reward function fails row 3."""
    runs = tmp_path_factory.mktemp("fork") / "runs"
    assert run_sample(runs, "--reward", FAILS_ROW_3) == 1
    return runs


def fork(runs: Path, *args: str) -> int:
    return main(["fork", "last", "--runs-dir", str(runs), *args])


def test_a_hand_written_answer_forks_a_passing_rollout_into_a_failing_one(runs: Path, capsys):
    [run] = list_run_dirs(runs)
    journal = (run / JOURNAL_FILE).read_bytes()
    # Row 2 of the sample takes three LLM calls: multiply, subtract, answer.
    code = fork(runs, "--row", "2", "--at", "3", "--answer", "The answer is 51.", "--json")
    document = json.loads(capsys.readouterr().out)
    assert code == document["exit_code"] == 1
    assert document["change"] == "regressed"
    assert document["forked_at"] == 3 and document["prefix_divergences"] == []
    difference = document["first_difference"]
    assert difference["fields"] == ["content"]
    assert difference["b"]["content"] == "The answer is 51."
    assert document["forks_journal"] == str(run / FORKS_FILE)
    [entry] = read_forks(run)
    assert entry.fork is not None and entry.fork.parent == document["parent"]
    assert (entry.row, entry.attempt, entry.fork.forked_at) == (2, 0, 3)
    assert (run / JOURNAL_FILE).read_bytes() == journal  # the run itself is untouched


def test_the_same_model_gives_the_same_trajectory_scored_as_the_run_scores(runs: Path, capsys):
    assert fork(runs, "--row", "3", "--at", "2") == 1  # the run's reward fails row 3
    out = capsys.readouterr().out
    assert "Fork of row 3" in out and "at LLM call 2, 1 replayed" in out
    assert "change: same" in out and "the trajectories are the same" in out
    assert f"Journaled in {list_run_dirs(runs)[0] / FORKS_FILE}" in out


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--row", "2", "--at", "9"], "it made 3 LLM calls; pick 1 to 3"),
        (["--row", "99", "--at", "1"], "no journaled rollout of row 99"),
        (["--row", "2", "--at", "1", "--answer", "{oops"], "--answer starts like a JSON"),
        (["--row", "2", "--at", "1", "--answer", "{}"], "not one a model could give"),
    ],
)
def test_what_cannot_be_forked_is_named_with_its_fix(runs: Path, capsys, args, error):
    assert fork(runs, *args) == 2
    assert error in capsys.readouterr().err
