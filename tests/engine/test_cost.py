"""Cost before and during a run: `--estimate` from pilot rows, `--max-cost` that stops a run and
leaves it resumable. The model is a real OpenAI-compatible server on loopback that reports
token usage; prices come from litellm's price map as installed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from loopback_openai import LoopbackOpenAI
from sample_runs import SAMPLE

from osmosis_workbench.cli import main
from osmosis_workbench.engine.journal import read_journal
from osmosis_workbench.engine.pricing import price_of
from osmosis_workbench.engine.runs import list_run_dirs

#: A model litellm's price map has: the loopback server answers under its name.
PRICED_MODEL = "gpt-4o-mini"


@pytest.fixture
def server():
    with LoopbackOpenAI() as server:
        yield server


def live(server: LoopbackOpenAI, runs: Path, *extra: str) -> list[str]:
    model = ["--model", PRICED_MODEL, "--base-url", server.base_url, "--runs-dir", str(runs)]
    return ["test", *SAMPLE, *model, *extra]


def test_the_price_map_is_read_without_importing_litellm():
    import subprocess
    import sys

    probe = (
        "import sys; from osmosis_workbench.engine.pricing import price_of; "
        f"p = price_of('openai/{PRICED_MODEL}'); "
        "print(p.model, p.input_per_token > 0, 'litellm' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == [PRICED_MODEL, "True", "False"]
    assert price_of("Qwen/not-a-priced-model") is None


def test_estimate_runs_pilots_projects_the_run_and_leaves_the_rest_to_resume(
    server: LoopbackOpenAI, tmp_path: Path, capsys
):
    runs = tmp_path / "runs"
    assert main(live(server, runs, "--estimate", "2", "--json")) == 0
    document = json.loads(capsys.readouterr().out)
    estimate = document["estimate"]
    assert (estimate["pilots"], estimate["rollouts"], estimate["model"]) == (2, 12, PRICED_MODEL)
    [run] = list_run_dirs(runs)
    pilots = read_journal(run)
    assert sorted(pilots) == [(0, 0), (1, 0)]
    # Each pilot's cost is its tokens at the model's list price.
    price = price_of(PRICED_MODEL)
    assert price is not None
    for entry in pilots.values():
        expected = sum(
            price.cost(c.prompt_tokens, c.completion_tokens) for c in entry.outcome.calls
        )
        assert entry.outcome.cost_usd == pytest.approx(expected) and expected > 0
    costs = [e.outcome.cost_usd for e in pilots.values()]
    cost = estimate["cost_usd"]
    assert cost["low"] == pytest.approx(min(costs) * 12)
    assert cost["expected"] == pytest.approx(sum(costs) / 2 * 12)
    assert cost["high"] == pytest.approx(max(costs) * 12)
    tokens = estimate["tokens"]
    assert tokens["low"] <= tokens["expected"] <= tokens["high"]
    assert estimate["duration_s"]["expected"] > 0
    assert document["resume_command"].startswith(f"osmosis test --resume {run}")
    # The probe and the pilots' calls, no more.
    assert len(server.received) == 1 + sum(e.outcome.llm_calls for e in pilots.values())

    # The text form, then the rest of the run.
    assert main(live(server, runs, "--resume", "last")) == 0
    assert len(read_journal(run)) == 12


def test_estimate_prints_the_projection_as_ranges(server: LoopbackOpenAI, tmp_path: Path, capsys):
    assert main(live(server, tmp_path / "runs", "--estimate", "-q")) == 0
    out = capsys.readouterr().out
    assert f"Estimate for 12 rollouts of {PRICED_MODEL}, from 3 pilots:" in out
    assert "  Tokens: " in out and "  Cost: $" in out and "at --concurrency 8" in out
    assert "Run the rest with: osmosis test --resume " in out


def test_max_cost_stops_the_run_and_resume_finishes_it(
    server: LoopbackOpenAI, tmp_path: Path, capsys
):
    runs = tmp_path / "runs"
    code = main(live(server, runs, "--max-cost", "0.0001", "--concurrency", "1", "-q"))
    out = capsys.readouterr().out
    assert code == 3, out  # incomplete, resumable
    assert "reached --max-cost $0.0001" in out
    [run] = list_run_dirs(runs)
    first = read_journal(run)
    spent = sum(e.outcome.cost_usd or 0 for e in first.values())
    assert 1 <= len(first) < 12 and spent >= 0.0001
    # Without the last rollout it was under the cap: it stopped at the first one that reached it.
    assert spent - max(e.outcome.cost_usd or 0 for e in first.values()) < 0.0001
    assert "--max-cost USD" in out.split("Resume with: ")[1]  # a higher cap, please
    # The same cap again: refused, nothing run.
    assert main(live(server, runs, "--resume", "last", "--max-cost", "0.0001")) == 2
    assert "give a higher --max-cost to continue it" in capsys.readouterr().err
    assert read_journal(run) == first

    assert main(live(server, runs, "--resume", "last", "--max-cost", "1", "-q")) == 0
    journal = read_journal(run)
    assert sorted(journal) == [(row, 0) for row in range(12)]
    assert all(journal[key] == first[key] for key in first)  # the first part kept, not rerun


def test_max_cost_with_a_model_of_unknown_price_is_refused_before_any_row(
    server: LoopbackOpenAI, tmp_path: Path, capsys
):
    argv = ["test", *SAMPLE, "--model", "calc", "--base-url", server.base_url]
    argv += ["--runs-dir", str(tmp_path), "--max-cost", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--max-cost: the price of calc is unknown" in err
    assert len(server.received) == 1  # the probe only
