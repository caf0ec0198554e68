"""Command start to first row started, against an OpenAI-compatible server on loopback.

    uv run python benchmarks/bench_first_row.py [--runs 5] [--litellm-runs 1]

Each run spawns a fresh ``osmosis test -m sample_project.server:agent_loop -d
sample_project/test_data.jsonl --model calc --base-url URL --limit 1`` (the sample agent, a
real loopback HTTP server as the model; the tests' ``loopback_openai``). "First row started" is
the moment the server receives row 0's first chat call (after the run's probe), on the same
clock as the spawn. Bar: under 2 s. For contrast, the same run through litellm
(``--model litellm:openai/calc``), which imports litellm first, and through ``uv run``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from loopback_openai import LoopbackOpenAI  # noqa: E402

BAR_S = 2.0


def one_run(command: list[str], model: str) -> tuple[float, float, float]:
    """(probe received, first row's first call, exit) in seconds after the spawn."""
    with LoopbackOpenAI() as server, tempfile.TemporaryDirectory(prefix="bench_first_row-") as runs:
        argv = [
            *command,
            "test",
            "-m",
            "sample_project.server:agent_loop",
            "-d",
            "sample_project/test_data.jsonl",
            "--model",
            model,
            "--base-url",
            server.base_url,
            "--model-api-key",
            "sk-bench",  # litellm's OpenAI client refuses to send a request without one
            "--runs-dir",
            runs,
            "--limit",
            "1",
        ]
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        env.pop("OPENAI_API_KEY", None)
        started = time.perf_counter()
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, env=env)
        ended = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr.decode()}")
        # The probe asks "Reply with OK." without tools; a row's calls carry the agent's tools.
        probes = [r.at for r in server.received if not r.body.get("tools")]
        rows = [r.at for r in server.received if r.body.get("tools")]
        return probes[0] - started, rows[0] - started, ended


def measure(name: str, command: list[str], model: str, runs: int) -> list[str]:
    results = [one_run(command, model) for _ in range(runs)]
    firsts = [r[1] for r in results]
    median = statistics.median(firsts)
    return [
        f"| {name} | {runs} | {statistics.median(r[0] for r in results):.2f} | "
        f"{', '.join(f'{t:.2f}' for t in firsts)} | {median:.2f} | "
        f"{statistics.median(r[2] for r in results):.2f} | "
        f"{'PASS' if median < BAR_S else 'over the bar'} |"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--litellm-runs", type=int, default=1, help="0 to skip (each ~10 s)")
    args = parser.parse_args()
    cli = Path(sys.executable).parent / "osmosis"
    if not cli.exists():
        raise SystemExit(f"{cli} not found: run inside the project's environment (uv run ...)")
    lines = measure("`osmosis test --model calc --base-url URL`", [str(cli)], "calc", args.runs)
    uv = shutil.which("uv")
    if uv:
        lines += measure(
            "`uv run osmosis test --model calc --base-url URL`",
            [uv, "run", "--frozen", "osmosis"],
            "calc",
            args.runs,
        )
    if args.litellm_runs:
        lines += measure(
            "`osmosis test --model litellm:openai/calc --base-url URL` (through litellm)",
            [str(cli)],
            "litellm:openai/calc",
            args.litellm_runs,
        )
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(
        "| command | runs | probe received s (median) | first row started s | median s "
        f"| exit s (median) | bar < {BAR_S:g} s |"
    )
    print("|---|---:|---:|---|---:|---:|---|")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
