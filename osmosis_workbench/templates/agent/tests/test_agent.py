"""The agent through the real rollout protocol (local trainer -> server -> agent), offline."""

from __future__ import annotations

from pathlib import Path

import pytest
from rewards import compute_reward
from tools import count_letter, word_length

from osmosis_workbench.cli import main

PROJECT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("model", [None, "script:answers.jsonl"])
def test_every_row_passes_offline(model, tmp_path, monkeypatch):
    """With the recorded cassette (the default), then with the hand-written answers."""
    monkeypatch.chdir(PROJECT)
    args = ["test", "-m", "server:agent_loop", "-d", "test_data.jsonl", "--runs-dir", str(tmp_path)]
    if model:
        args += ["--model", model]
    assert main(args) == 0


def test_tools():
    assert count_letter("Strawberry", "R") == 3
    assert word_length("horse") == 5


def test_reward_reads_the_last_number():
    assert compute_reward("Cat has 3 and horse has 5: 8 letters together.", "8") == 1.0
    assert compute_reward("I think 7.", "8") == 0.0
