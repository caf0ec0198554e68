"""`osmosis test` and `osmosis rescore` end to end: output, exit codes, run directories."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from osmosis_workbench.cli import main
from osmosis_workbench.engine.journal import JOURNAL_FILE, read_journal

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DATA = str(ROOT / "sample_project" / "test_data.jsonl")
SAMPLE_AGENT = "sample_project.server:agent_loop"

#: An agent that needs no model: it sleeps, then answers with the ground truth, except that
#: even rows fail (reward 0) until the marker file named by $MARKER exists.
NO_MODEL_AGENT = textwrap.dedent(
    """
    import asyncio, os
    from pathlib import Path
    from server_core import RolloutAgentLoop

    class Echo(RolloutAgentLoop):
        name = "echo"

        def get_tools(self, request):
            return []

        async def run(self, ctx):
            await asyncio.sleep(float(os.environ.get("ECHO_DELAY", "0")))
            row = ctx.request.metadata["row_index"]
            fixed = Path(os.environ.get("MARKER", "/nonexistent")).exists()
            reward = 1.0 if (row % 2 or fixed) else 0.0
            answer = {"role": "assistant", "content": str(ctx.request.metadata["ground_truth"])}
            return ctx.complete(list(ctx.request.messages) + [answer], reward=reward)

    agent_loop = Echo()
    """
)


@pytest.fixture
def echo_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder with the no-model agent, a 20-row dataset and an empty cassette."""
    (tmp_path / "echo_agent.py").write_text(NO_MODEL_AGENT)
    rows = [{"system_prompt": "", "user_prompt": f"q{i}", "ground_truth": i} for i in range(20)]
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "empty.jsonl").write_text(
        json.dumps({"osmosis_cassette": 1, "model": "none"}) + "\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("MARKER", str(tmp_path / "fixed"))
    return tmp_path


def echo_args(*extra: str) -> list[str]:
    return [
        "test",
        "-m",
        "echo_agent:agent_loop",
        "-d",
        "data.jsonl",
        "--model",
        "replay:empty.jsonl",
        "--runs-dir",
        "runs",
        *extra,
    ]


def test_sample_project_passes_every_row_offline(capsys, tmp_path: Path):
    out_file = tmp_path / "results.json"
    code = main(
        [
            "test",
            "-m",
            SAMPLE_AGENT,
            "-d",
            SAMPLE_DATA,
            "--runs-dir",
            str(tmp_path / "runs"),
            "-o",
            str(out_file),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Model: replay:" in out
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert len(lines) == 12
    assert all(": OK reward 1 (" in line and " tokens)" in line for line in lines)
    assert "Total: 12" in out and "Passed: 12" in out and "Failed: 0" in out
    assert "Reward mean: 1.000" in out and "pass@1: 1.000" in out
    results = json.loads(out_file.read_text())
    assert results["summary"]["passed"] == 12 and len(results["results"]) == 12
    # Rollout ids (and the trace files a server names after them) say what they are: the
    # dataset, a run nonce, the row and the attempt.
    ids = sorted(r["rollout_id"] for r in results["results"])
    assert all(re.fullmatch(r"test_data-[0-9a-f]{6}-r\d+-a0-\d+", i) for i in ids), ids


def test_rows_limit_and_offset_select_rows(capsys, tmp_path: Path):
    code = main(
        [
            "test",
            "-m",
            SAMPLE_AGENT,
            "-d",
            SAMPLE_DATA,
            "--rows",
            "2,5-6",
            "--runs-dir",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert sorted(
        int(line.split("Row ")[1].split(":")[0])
        for line in out.splitlines()
        if line.startswith("[")
    ) == [2, 5, 6]


def test_failures_and_bad_rows_exit_nonzero(echo_project: Path, capsys):
    with open("data.jsonl", "a") as handle:
        handle.write('{"system_prompt": "", "user_prompt": "", "ground_truth": 1}\n')
    code = main(echo_args("--limit", "21"))
    captured = capsys.readouterr()
    assert code == 1
    assert "Skipped bad row 20 (line 21)" in captured.err and "user_prompt" in captured.err
    assert "Passed: 10" in captured.out and "Failed: 10" in captured.out
    assert "Bad rows: 1" in captured.out
    assert "FAILED reward 0" in captured.out


def test_retry_failed_reruns_only_the_failures(echo_project: Path, capsys):
    assert main(echo_args()) == 1
    capsys.readouterr()
    (echo_project / "fixed").touch()
    code = main(echo_args("--retry-failed", "last"))
    out = capsys.readouterr().out
    assert code == 0, out
    rerun = sorted(
        int(line.split("Row ")[1].split(":")[0])
        for line in out.splitlines()
        if line.startswith("[")
    )
    assert rerun == list(range(0, 20, 2))
    assert "Passed: 20" in out


def test_rescore_recomputes_rewards_without_a_model(echo_project: Path, capsys):
    main(echo_args())
    capsys.readouterr()
    (echo_project / "scoring.py").write_text(
        "def half(solution_str, ground_truth, extra_info=None):\n"
        "    return 0.5 if solution_str == str(ground_truth) else 0\n"
    )
    code = main(
        [
            "rescore",
            "last",
            "--runs-dir",
            "runs",
            "--reward",
            "scoring:half",
            "--pass-threshold",
            "0.5",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Reward mean: 0.500" in out and "Passed: 20" in out


def start_echo_run(project: Path, *extra: str) -> subprocess.Popen:
    """``osmosis test`` of the echo agent in its own process, 0.15 s per rollout."""
    return subprocess.Popen(
        [sys.executable, "-m", "osmosis_workbench.cli", *echo_args(*extra)],
        cwd=project,
        env={**os.environ, "ECHO_DELAY": "0.15", "PYTHONPATH": f"{project}:{ROOT}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_journal_lines(runs: Path, count: int) -> Path:
    """The journal of the run in ``runs`` once it holds ``count`` lines (another process
    writes it: polled every 50 ms, for at most a minute)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = list(runs.glob(f"*/{JOURNAL_FILE}"))
        if found and len(found[0].read_text().splitlines()) >= count:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"the run never journaled {count} rollouts")


def test_resume_after_a_kill_runs_each_row_once(echo_project: Path, capsys):
    proc = start_echo_run(echo_project, "--concurrency", "1")
    try:
        journal = wait_for_journal_lines(echo_project / "runs", 3)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    done_before = len(read_journal(journal.parent))
    assert 3 <= done_before < 20
    (echo_project / "fixed").touch()
    code = main(echo_args("--resume", str(journal.parent)))
    out = capsys.readouterr().out
    ran_now = [line for line in out.splitlines() if line.startswith("[")]
    assert len(ran_now) == 20 - done_before
    lines = journal.read_text().splitlines()
    rows = [json.loads(line)["row"] for line in lines if line.strip()]
    assert sorted(rows) == list(range(20))  # every row exactly once
    assert "Total: 20" in out
    # Rows journaled before the kill kept their (failing) rewards: exit 1 unless all passed.
    assert code == (0 if all(r % 2 for r in rows[:done_before]) else 1)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["test", "-d", SAMPLE_DATA], "-m MODULE:ATTR"),
        (["test", "-m", SAMPLE_AGENT], "-d FILE"),
        (["test", "-m", SAMPLE_AGENT, "-d", "nope.jsonl"], "not found"),
        (["test", "-m", SAMPLE_AGENT, "-d", SAMPLE_DATA, "--rows", "3-a"], "--rows"),
        (
            ["test", "-m", SAMPLE_AGENT, "-d", SAMPLE_DATA, "--model", "replay:missing.jsonl"],
            "missing.jsonl",
        ),
        (
            ["test", "-m", SAMPLE_AGENT, "-d", SAMPLE_DATA, "--reward", "nomodule"],
            "<module>:<attribute>",
        ),
    ],
)
def test_usage_errors_name_the_fix(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))  # the sample agent, imported from elsewhere
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    # Nothing ran: no run is left behind for `--resume last` to pick up.
    assert not list(tmp_path.glob(".osmosis/runs/*"))


def test_no_model_anywhere_says_how_to_give_one(echo_project: Path, capsys):
    code = main(["test", "-m", "echo_agent:agent_loop", "-d", "data.jsonl"])
    assert code == 2
    assert "--model provider/name" in capsys.readouterr().err


def test_replay_divergence_names_the_row_and_the_message(tmp_path: Path, capsys):
    rows = [json.loads(line) for line in Path(SAMPLE_DATA).read_text().splitlines()]
    rows[1]["user_prompt"] = "What is 145 divided by 12?"  # the agent's data changed
    data = tmp_path / "changed.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows[:3]) + "\n")
    cassette = ROOT / "sample_project" / "cassette.jsonl"
    code = main(
        [
            "test",
            "-m",
            SAMPLE_AGENT,
            "-d",
            str(data),
            "--model",
            f"replay:{cassette}",
            "--runs-dir",
            str(tmp_path / "runs"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    [line] = [line for line in out.splitlines() if line.startswith("[") and "Row 1:" in line]
    assert "ERROR llm_error" in line
    assert "-r1-" in line  # the rollout id names the row
    assert "message 1 (role user) differs from the recording" in line
    assert "Passed: 2" in out


def run_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir())


def test_resume_after_a_torn_last_line_counts_every_entry_once(echo_project: Path, capsys):
    """A run killed mid-write leaves half a line: resume must not glue its next entry on."""
    assert main(echo_args("--limit", "5")) == 1
    [run] = run_dirs(echo_project / "runs")
    journal = run / JOURNAL_FILE
    lines = journal.read_bytes().splitlines(keepends=True)
    torn_row = json.loads(lines[-1])["row"]
    journal.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    capsys.readouterr()
    main(echo_args("--limit", "5", "--resume", "last"))
    out, err = capsys.readouterr()
    assert [line for line in out.splitlines() if line.startswith("[")] == [
        line for line in out.splitlines() if f"Row {torn_row}:" in line
    ]
    assert "torn" in err and "runs again" in err
    entries = read_journal(run)
    assert sorted(entries) == [(row, 0) for row in range(5)]
    assert all(json.loads(line) for line in journal.read_text().splitlines())
    assert "Total: 5" in out


def test_rescore_shows_why_a_reward_function_failed(echo_project: Path, capsys):
    assert main(echo_args("--limit", "2")) == 1
    # A module name of its own: another test's `scoring` may be imported already.
    (echo_project / "one_argument.py").write_text("def one(solution_str):\n    return 1.0\n")
    capsys.readouterr()
    code = main(["rescore", "last", "--runs-dir", "runs", "--reward", "one_argument:one"])
    out = capsys.readouterr().out
    assert code == 1
    rows = [line for line in out.splitlines() if line.startswith("Row ")]
    assert len(rows) == 2, out
    assert all("ERROR reward_error: reward function failed:" in line for line in rows), out
    assert all("takes 1 positional argument but 3 were given" in line for line in rows), out


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        (["--rows", "50"], "--rows 50 is past the end: data.jsonl has 20 rows (0-19)"),
        (["--offset", "100"], "--offset 100 skips every row: data.jsonl has 20 rows"),
        (["--limit", "0"], "--limit 0 selects no rows"),
        (["--rows", "2-3", "--offset", "5"], "--rows 2-3 are all below --offset 5"),
    ],
)
def test_a_selection_of_no_rows_says_why_and_runs_nothing(
    echo_project: Path, capsys, extra: list[str], complaint: str
):
    assert main(echo_args(*extra)) == 2
    captured = capsys.readouterr()
    assert complaint in captured.err, captured.err
    assert "Total: 0" not in captured.out
    assert not (echo_project / "runs").exists()  # no run directory for a run of nothing


def test_an_empty_dataset_says_so(echo_project: Path, capsys):
    (echo_project / "data.jsonl").write_text("\n")
    assert main(echo_args()) == 2
    assert "data.jsonl has no rows" in capsys.readouterr().err


def test_the_progress_counter_counts_only_rollouts_that_run(echo_project: Path, capsys):
    bad = {"system_prompt": "", "user_prompt": "", "ground_truth": 1}
    good = [{"system_prompt": "", "user_prompt": f"q{i}", "ground_truth": i} for i in (1, 3)]
    rows = [bad, good[0], bad, bad, good[1], bad, bad]
    (echo_project / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    main(echo_args())
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert sorted(line.split()[0] for line in lines) == ["[1/2]", "[2/2]"], lines


def test_resume_last_without_any_run_says_there_is_none(echo_project: Path, capsys):
    assert main(echo_args("--resume", "last")) == 2
    err = capsys.readouterr().err
    assert "no earlier run in runs" in err and "without --resume" in err


def test_the_repository_keeps_no_run_directories() -> None:
    """Runs hold one machine's paths: a fresh clone's `--resume last` must not find them."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(
        ["git", "ls-files", ".osmosis"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert tracked == ""
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", ".osmosis/runs/20260101-000000-data/run.json"], cwd=ROOT
    )
    assert ignored.returncode == 0


def test_resume_with_another_dataset_or_model_refuses_and_names_what_differs(
    echo_project: Path, capsys
):
    assert main(echo_args("--limit", "5")) == 1
    [run] = run_dirs(echo_project / "runs")
    before = (run / JOURNAL_FILE).read_text()
    other = [{"system_prompt": "", "user_prompt": f"o{i}", "ground_truth": i} for i in range(7)]
    (echo_project / "other.jsonl").write_text("\n".join(json.dumps(r) for r in other) + "\n")
    capsys.readouterr()
    argv = echo_args("--limit", "5", "--resume", "last")
    argv[argv.index("data.jsonl")] = "other.jsonl"
    assert main([*argv, "--n", "2"]) == 2
    err = capsys.readouterr().err
    assert run.name in err and "dataset" in err and "attempts: 1 -> 2" in err, err
    assert "--fresh" in err
    assert (run / JOURNAL_FILE).read_text() == before  # nothing was appended
    # The same file, edited since: its content no longer matches the run's.
    with open("data.jsonl", "a") as handle:
        handle.write(json.dumps({"system_prompt": "", "user_prompt": "new", "ground_truth": 0}))
    assert main(echo_args("--resume", "last")) == 2
    assert "dataset: its content changed" in capsys.readouterr().err


def test_fresh_starts_a_new_run_instead_of_resuming(echo_project: Path, capsys):
    assert main(echo_args("--limit", "3")) == 1
    capsys.readouterr()
    main(echo_args("--limit", "6", "--resume", "last", "--fresh"))
    out = capsys.readouterr().out
    first, second = run_dirs(echo_project / "runs")
    assert "Total: 6" in out and f"{second.name}\n" in out
    assert len(read_journal(first)) == 3 and len(read_journal(second)) == 6


def test_ctrl_c_prints_the_run_directory_and_the_command_that_resumes(echo_project: Path, capsys):
    proc = start_echo_run(echo_project, "--concurrency", "2")
    try:
        journal = wait_for_journal_lines(echo_project / "runs", 3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    run = journal.parent.relative_to(echo_project)
    assert f"Run directory: {run}" in err, err
    [command] = [line for line in err.splitlines() if line.startswith("Resume with: ")]
    argv = shlex.split(command.removeprefix("Resume with: "))
    assert argv[:4] == ["osmosis", "test", "--resume", str(run)], argv
    before = read_journal(journal.parent)
    done_before = len(before)
    assert f"{done_before} of 20 rollouts are in its journal" in err, err
    # The rollouts in flight at Ctrl+C were let go, not journaled as cancelled failures.
    assert all(entry.outcome.ok for entry in before.values())
    main(argv[1:])
    assert len(read_journal(journal.parent)) == 20  # every row, each once
    assert "Total: 20" in capsys.readouterr().out


def start_server(project: Path, port: int) -> subprocess.Popen:
    """``osmosis serve`` of the echo agent on ``port``, once its /health answers."""
    env = {**os.environ, "ECHO_DELAY": "0.05", "PYTHONPATH": f"{project}:{ROOT}"}
    env.pop("OSMOSIS_ROLLOUT_API_KEY", None)
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "osmosis_workbench.cli", "serve"),
            *("-m", "echo_agent:agent_loop", "--local", "-H", "127.0.0.1"),
            *("-p", str(port), "--no-validate"),
        ],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # poll /health every 50 ms until it answers
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, "osmosis serve exited"
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("osmosis serve did not answer /health in 30 s")


async def test_a_server_that_dies_mid_run_stops_the_run_and_leaves_the_rest_for_resume(
    echo_project: Path, capsys
):
    rows = [{"system_prompt": "", "user_prompt": f"q{i}", "ground_truth": i} for i in range(300)]
    (echo_project / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (echo_project / "fixed").touch()  # every row passes
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    argv = ["test", "--url", url, "-d", "data.jsonl", "--model", "replay:empty.jsonl"]
    argv += ["--runs-dir", "runs", "--concurrency", "8", "--rollout-timeout", "30"]
    server = start_server(echo_project, port)
    try:
        run = asyncio.create_task(asyncio.to_thread(main, argv))
        journal = await asyncio.to_thread(wait_for_journal_lines, echo_project / "runs", 20)
        server.kill()  # SIGKILL: no shutdown, no completions for what is in flight
        server.wait(10)
        killed = time.monotonic()
        code = await asyncio.wait_for(run, 60)
        stopped_in = time.monotonic() - killed
    finally:
        if server.poll() is None:
            server.kill()
    out = capsys.readouterr().out
    assert code == 3  # incomplete: the rest is left for --resume
    # About a second (three refusals over one); the rollout timeout would be 35 s.
    assert stopped_in < 10.0, f"took {stopped_in:.1f}s to notice"
    assert out.count("stopped answering") == 1, out
    results = [line for line in out.splitlines() if line.startswith("[")]
    assert all(": OK " in line for line in results), out  # no init_failed rows
    journaled = read_journal(journal.parent)
    assert 20 <= len(journaled) < 300
    assert all(entry.passed for entry in journaled.values())  # nothing marked failed
    assert f"Resume with: osmosis test --resume {journal.parent.relative_to(echo_project)}" in out
    server = start_server(echo_project, port)
    try:
        resume = ["test", "--resume", "last", "--runs-dir", "runs"]
        assert await asyncio.to_thread(main, resume) == 0
    finally:
        server.kill()
        server.wait(10)
    assert sorted(read_journal(journal.parent)) == [(row, 0) for row in range(300)]
