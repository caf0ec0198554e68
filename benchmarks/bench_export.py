"""Benchmark: export a synthetic 100,000-rollout run in each format, in bounded memory.

Run with `uv run python benchmarks/bench_export.py [--rollouts N]`. It writes a run directory
in a temporary folder (a journal of N calculator rollouts: system and user prompts, a tool
call, its result and the answer, four tools, per-call numbers; ~3.5 KB a line, as
`osmosis test` writes them), and a copy of its first tenth. Then each measurement runs
`python -m osmosis_workbench export RUN --format F -o OUT` (and `compare RUN RUN`) in a fresh
process and reports its wall time, its peak RSS (ru_maxrss from wait4) and the output's size.
Bounded memory shows as a peak that does not grow with the run: the 10 % run and the whole one
peak at about the same RSS, well under the journal's size; what grows is the journal's key
index (one offset per rollout). The two "floor" rows are the same interpreter doing nothing
but its imports: `osmosis --help`, and importing pyarrow (which the Parquet export loads).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from osmosis_workbench.engine.journal import JOURNAL_FILE, JournalEntry
from osmosis_workbench.engine.outcome import (
    LLMCallStats,
    OutcomeStatus,
    RolloutOutcome,
    Verdict,
)
from osmosis_workbench.engine.runs import RUN_FILE

_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": f"{name.capitalize()} two numbers",
            "parameters": {
                "type": "object",
                "properties": {
                    "a": {"type": "number", "description": "First number"},
                    "b": {"type": "number", "description": "Second number"},
                },
                "required": ["a", "b"],
                "additionalProperties": False,
            },
        },
    }
    for name in ("add", "subtract", "multiply", "divide")
]
_SYSTEM = (
    "You are a calculator assistant. Use the tools for every arithmetic step, then state the "
    "final answer as a number."
)


def template_line() -> dict:
    """One journal line as `osmosis test` writes it, for a two-call calculator rollout."""
    messages = [
        {"role": "system", "content": _SYSTEM},
        {"role": "user", "content": "What is 17 + 25? Show the steps and give the total."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_185a1ebeddd351c2f6feb7f2",
                    "type": "function",
                    "function": {"name": "add", "arguments": '{"a": 17, "b": 25}'},
                }
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "call_185a1ebeddd351c2f6feb7f2",
            "name": "add",
            "content": "42",
        },
        {"role": "assistant", "content": "17 + 25 = 42. The total is 42."},
    ]
    outcome = RolloutOutcome(
        rollout_id="bench-r0-a0-0",
        status=OutcomeStatus.COMPLETED,
        final_messages=messages,
        finish_reason="stop",
        reward=1.0,
        metrics={"num_llm_calls": 2, "num_tool_calls": 1, "prompt_tokens": 260},
        duration_ms=812.5,
        tokens=301,
        cost_usd=0.0000612,
        llm_calls=2,
        tools=_TOOLS,
        calls=[
            LLMCallStats(
                turn=1,
                prompt_tokens=120,
                completion_tokens=21,
                latency_ms=401.2,
                cost_usd=0.0000306,
            ),
            LLMCallStats(
                turn=2,
                prompt_tokens=140,
                completion_tokens=20,
                latency_ms=388.9,
                cost_usd=0.0000306,
            ),
        ],
    )
    request = {
        "rollout_id": "bench-r0-a0-0",
        "messages": messages[:2],
        "completion_params": {"temperature": 0.7},
        "metadata": {"ground_truth": "42", "row_index": 0, "difficulty": "easy"},
    }
    entry = JournalEntry(0, 0, Verdict.PASS, outcome, ground_truth="42", request=request)
    return entry.to_json()


def write_run(folder: Path, rollouts: int) -> Path:
    """A run directory of ``rollouts`` rollouts (every fifth one failed)."""
    folder.mkdir(parents=True)
    (folder / RUN_FILE).write_text(
        json.dumps({"module": "bench:agent", "model": "openai/gpt-4o-mini", "attempts": 1})
    )
    line = template_line()
    with open(folder / JOURNAL_FILE, "w", encoding="utf-8") as handle:
        for row in range(rollouts):
            failed = row % 5 == 4
            line.update(
                row=row,
                rollout_id=f"bench-r{row}-a0-{row}",
                reward=0.0 if failed else 1.0,
                verdict="fail" if failed else "pass",
                passed=not failed,
                ts=1_790_000_000.0 + row,
            )
            line["request"]["metadata"]["row_index"] = row
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    return folder


def measure(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one command in a fresh process."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"{' '.join(argv)} failed: {process.stderr.read().decode()}")
    return elapsed, usage.ru_maxrss / 1024


def size_mb(path: Path) -> float:
    return path.stat().st_size / 2**20 if path.exists() else 0.0


def shown_size(path: Path) -> str:
    mb = size_mb(path)
    return f"{mb:,.0f} MiB" if mb >= 10 else f"{mb:.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=100_000)
    args = parser.parse_args()
    tenth = max(1, args.rollouts // 10)
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        runs = {
            tenth: write_run(root / "small", tenth),
            args.rollouts: write_run(root / "big", args.rollouts),
        }
        journal_mb = size_mb(runs[args.rollouts] / JOURNAL_FILE)
        print(
            f"wrote {args.rollouts:,} rollouts ({journal_mb:,.0f} MiB journal) and {tenth:,} "
            f"in {time.perf_counter() - started:.1f}s"
        )
        cli = [sys.executable, "-m", "osmosis_workbench"]
        rows = []
        for what, argv in (
            ("floor: osmosis --help", [*cli, "--help"]),
            ("floor: import pyarrow.parquet", [sys.executable, "-c", "import pyarrow.parquet"]),
        ):
            seconds, peak = measure(argv)
            rows.append((what, "-", seconds, peak, "-"))
        for fmt, suffix in (
            ("atif", "atif.jsonl"),
            ("openai-jsonl", "openai.jsonl"),
            ("parquet", "parquet"),
        ):
            for count, run in runs.items():
                output = root / f"{count}.{suffix}"
                seconds, peak = measure(
                    [*cli, "export", str(run), "--format", fmt, "-o", str(output)]
                )
                rows.append(
                    (
                        f"export --format {fmt}",
                        f"{count:,}",
                        seconds,
                        peak,
                        shown_size(output),
                    )
                )
        for count, run in runs.items():
            seconds, peak = measure([*cli, "compare", str(run), str(run), "--json"])
            rows.append(("compare RUN RUN", f"{count:,}", seconds, peak, "-"))
    print(
        f"\nmachine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}\n"
    )
    print("| what | rollouts | time | peak RSS | output |")
    print("|---|---|---|---|---|")
    for what, count, seconds, peak, output in rows:
        print(f"| {what} | {count} | {seconds:.1f} s | {peak:,.0f} MiB | {output} |")


if __name__ == "__main__":
    main()
