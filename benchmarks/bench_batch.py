"""Batch runner + embedded server throughput, in one process, as `osmosis test -m` runs them.

    uv run python benchmarks/bench_batch.py            # both cases
    uv run python benchmarks/bench_batch.py --quick    # smaller

Case 1, zero-latency model: rollouts/s of the batch runner driving the embedded server
(init -> one chat callback -> completion, every hop over HTTP semantics on ASGI), to compare
with bench_server.py's rollouts/s (bar: at least 80% of it).
Case 2, a model with 1 s latency, --concurrency 1000, 10,000 rows (bar: under 30 s).
The agent is bench_server.py's: one ctx.chat, then ctx.complete.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from osmosis_workbench.engine.batch import BatchRunner  # noqa: E402
from osmosis_workbench.engine.config import EngineConfig  # noqa: E402
from osmosis_workbench.engine.embedded import EmbeddedRolloutServer  # noqa: E402
from osmosis_workbench.engine.journal import JournalWriter  # noqa: E402
from osmosis_workbench.engine.models import ScriptedBackend  # noqa: E402
from osmosis_workbench.engine.trainer import LocalTrainer  # noqa: E402
from server_core import RolloutAgentLoop, RolloutContext  # noqa: E402

TOOLS = [{"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}}}]


class OneCallAgent(RolloutAgentLoop):
    """The benchmark agent: one LLM call, then complete (same exchange as bench_server)."""

    name = "bench"

    def get_tools(self, request: Any) -> list[dict]:
        return TOOLS

    async def run(self, ctx: RolloutContext) -> Any:
        messages = list(ctx.request.messages)
        answer = await ctx.chat(messages)
        return ctx.complete([*messages, answer.message], reward=1.0)


def write_dataset(path: Path, rows: int) -> Path:
    with open(path, "w") as handle:
        for i in range(rows):
            handle.write(
                json.dumps({"system_prompt": "s", "user_prompt": f"q{i}", "ground_truth": i}) + "\n"
            )
    return path


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run_case(rows: int, concurrency: int, latency_s: float, folder: Path) -> dict:
    data = write_dataset(folder / f"data-{rows}.jsonl", rows)
    backend = ScriptedBackend(lambda body: {"content": "ok"}, latency_s=latency_s, keep_calls=False)
    trainer = LocalTrainer(backend)
    journal = JournalWriter(folder / f"journal-{rows}-{concurrency}.jsonl")
    cpu0 = time.process_time()
    async with EmbeddedRolloutServer(OneCallAgent(), trainer) as server:
        runner = BatchRunner(
            trainer,
            [server.target],
            EngineConfig(dataset=str(data), concurrency=concurrency),
            journal=journal,
        )
        started = time.perf_counter()
        results = await runner.run()
        wall = time.perf_counter() - started
    await asyncio.to_thread(journal.close)
    cpu = time.process_time() - cpu0
    passed = sum(r.passed for r in results)
    return {
        "rows": rows,
        "concurrency": concurrency,
        "latency_s": latency_s,
        "wall_s": wall,
        "rollouts_per_s": len(results) / wall,
        "passed": passed,
        "cpu_ms_per_rollout": cpu * 1000 / max(1, len(results)),
        "peak_rss_mb": rss_mb(),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        loop_name = "uvloop"
    except ImportError:  # pragma: no cover
        loop_name = "asyncio"
    cases = [(2000 if args.quick else 5000, c, 0.0) for c in (16, 128, 1024)]
    cases.append((2000 if args.quick else 10_000, 1000, 1.0))
    rows_out = []
    with tempfile.TemporaryDirectory() as tmp:
        for rows, concurrency, latency in cases:
            rows_out.append(await run_case(rows, concurrency, latency, Path(tmp)))
    print(
        f"\nbatch runner + embedded server, one process ({loop_name}, Python "
        f"{sys.version.split()[0]})"
    )
    header = (
        "rows",
        "concurrency",
        "model latency",
        "wall s",
        "rollouts/s",
        "passed",
        "CPU ms/rollout",
        "peak RSS MB",
    )
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for r in rows_out:
        print(
            f"{r['rows']} | {r['concurrency']} | {r['latency_s']:g} s | {r['wall_s']:.2f} | "
            f"{r['rollouts_per_s']:.0f} | {r['passed']} | {r['cpu_ms_per_rollout']:.2f} | "
            f"{r['peak_rss_mb']:.0f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
