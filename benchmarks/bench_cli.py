"""Wall time of two CLI commands, each run in a fresh process, as a user types them.

    uv run python benchmarks/bench_cli.py [--help-runs 5] [--test-runs 3]

- ``osmosis --help`` (bar: under 0.5 s), median of 5;
- ``osmosis test -m sample_project.server:agent_loop -d sample_project/test_data.jsonl`` with
  ``--runs-dir`` in a temporary directory (bar: under 3 s), median of 3. The sample replays its
  cassette, so no model is called.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr.decode()[-2000:]}"
        )
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--help-runs", type=int, default=5)
    parser.add_argument("--test-runs", type=int, default=3)
    args = parser.parse_args()
    cli = Path(sys.executable).parent / "osmosis"
    if not cli.exists():
        raise SystemExit(f"{cli} not found: run inside the project's environment (uv run ...)")
    rows = [("osmosis --help", [timed([str(cli), "--help"]) for _ in range(args.help_runs)], 0.5)]
    test_times = []
    for _ in range(args.test_runs):
        with tempfile.TemporaryDirectory(prefix="bench_cli-") as runs:
            test_times.append(
                timed(
                    [
                        str(cli),
                        "test",
                        "-m",
                        "sample_project.server:agent_loop",
                        "-d",
                        "sample_project/test_data.jsonl",
                        "--runs-dir",
                        runs,
                    ]
                )
            )
    rows.append(
        (
            "osmosis test -m sample_project.server:agent_loop -d sample_project/test_data.jsonl",
            test_times,
            3.0,
        )
    )
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print("| command | runs s | median s | bar | verdict |")
    print("|---|---|---:|---:|---|")
    for name, times, bar in rows:
        median = statistics.median(times)
        runs = ", ".join(f"{t:.2f}" for t in times)
        print(
            f"| `{name}` | {runs} | {median:.2f} | < {bar:g} s | "
            f"{'PASS' if median < bar else 'FAIL'} |"
        )


if __name__ == "__main__":
    main()
