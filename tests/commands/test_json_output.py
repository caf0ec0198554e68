"""`--json` on `osmosis test` and `osmosis rescore`, errors as JSON, and the exit codes the
README promises (compare, validate, whoami and export have theirs beside their own tests)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sample_runs import ROOT, SAMPLE

from osmosis_workbench.cli import main
from osmosis_workbench.commands.output import ExitCode

#: The journal fields every rollout of a `--json` document has (its messages left out).
ROLLOUT_FIELDS = {
    "row",
    "attempt",
    "rollout_id",
    "status",
    "verdict",
    "passed",
    "reward",
    "ground_truth",
    "finish_reason",
    "error",
    "error_category",
    "traceback",
    "duration_ms",
    "tokens",
    "cost_usd",
    "llm_calls",
    "metrics",
    "violations",
    "ts",
}


def json_out(capsys: pytest.CaptureFixture) -> dict:
    """stdout, which must be one JSON document and nothing else."""
    return json.loads(capsys.readouterr().out)


def test_test_json_is_one_document_with_the_summary_and_every_rollout(tmp_path: Path, capsys):
    assert main(["test", *SAMPLE, "--runs-dir", str(tmp_path), "--json"]) == 0
    document = json_out(capsys)
    assert set(document) == {
        "run_dir",
        "model",
        "summary",
        "results",
        "bad_rows",
        "late_protocol_violations",
        "estimate",
        "resume_command",
        "exit_code",
    }
    assert document["exit_code"] == 0 and document["model"].startswith("replay:")
    assert document["summary"]["total"] == 12 and document["summary"]["passed"] == 12
    assert [r["row"] for r in document["results"]] == list(range(12))
    assert all(set(r) == ROLLOUT_FIELDS for r in document["results"])
    assert Path(document["run_dir"]).is_dir() and document["resume_command"] is None


def test_test_json_reports_usage_errors_as_json(tmp_path: Path, capsys):
    code = main(["test", "-m", "nowhere:agent", "-d", str(tmp_path / "missing.jsonl"), "--json"])
    assert code == 2
    document = json_out(capsys)
    assert set(document) == {"error", "exit_code"} and document["exit_code"] == 2
    assert "missing.jsonl" in document["error"]


def test_rescore_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    (tmp_path / "halves.py").write_text(
        "def half(solution_str, ground_truth, extra_info=None):\n    return 0.5\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    runs = str(tmp_path / "runs")
    assert main(["test", *SAMPLE, "--runs-dir", runs, "-q"]) == 0
    capsys.readouterr()
    assert main(["rescore", "last", "--runs-dir", runs, "--reward", "halves:half", "--json"]) == 1
    document = json_out(capsys)
    assert set(document) == {
        "run_dir",
        "rescored_journal",
        "summary",
        "results",
        "bad_rows",
        "exit_code",
    }
    assert document["exit_code"] == 1 and document["summary"]["reward_mean"] == 0.5
    assert all(r["reward"] == 0.5 and r["verdict"] == "fail" for r in document["results"])
    assert Path(document["rescored_journal"]).is_file()
    assert main(["rescore", "nope", "--runs-dir", runs, "--reward", "halves:half", "--json"]) == 2
    assert "no run directory 'nope'" in json_out(capsys)["error"]


def test_the_readme_lists_every_exit_code():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Exit codes and `--json`")[1].split("\n#")[0]
    codes = [int(code) for code in re.findall(r"^\| (\d+) \|", section, re.M)]
    assert codes == [int(code) for code in ExitCode]
