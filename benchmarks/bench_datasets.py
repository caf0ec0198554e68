"""Benchmark: stream a 1,000,000-row Parquet dataset with osmosis_workbench.engine.datasets.

Run with `uv run python benchmarks/bench_datasets.py [--rows N]`. It writes the file in a temporary
directory, then, in a fresh child process per measurement (so import costs and peak memory are not
shared), reports the time to the first row, the total time, and the peak RSS growth while reading.
The bar: first row well under 2 s, memory bounded (independent of the number of rows).
"RSS +MB" is the highest resident-set size sampled while reading minus the size before reading;
"maxRSS +MB" is the growth of the process's ru_maxrss high-water mark over the same span.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# One measurement, run in a child process: prints a JSON line of figures.
_CHILD = r"""
import json, os, resource, sys, time
start = time.perf_counter()
from osmosis_workbench.engine.datasets import RowSelection, iter_dataset
import pyarrow.parquet as pq  # imported before the baseline so it counts the library, not the rows
path, offset, limit, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
selection = RowSelection(offset=offset, limit=None if limit == "none" else int(limit))
page = os.sysconf("SC_PAGE_SIZE")

def rss_mb():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * page / 2**20

base_rss = rss_mb()
base_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
high = base_rss
t0 = time.perf_counter()
first = None
count = 0
if mode == "whole-table":  # the contrast: what reading the table in one go costs
    rows = pq.read_table(path).to_pylist()
    first, count = time.perf_counter() - t0, len(rows)
    high = max(high, rss_mb())
else:
    for item in iter_dataset(path, selection):
        if first is None:
            first = time.perf_counter() - t0
        count += 1
        if count % 20_000 == 0:
            high = max(high, rss_mb())
total = time.perf_counter() - t0
high = max(high, rss_mb())
maxrss_delta = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_max) / 1024  # KiB
print(json.dumps({
    "count": count,
    "first_row_s": first,
    "first_row_cold_s": (t0 - start) + (first or 0.0),
    "total_s": total,
    "rss_delta_mb": high - base_rss,
    "maxrss_delta_mb": maxrss_delta,
}))
"""


def write_parquet(path: Path, rows: int, row_group_size: int | None) -> None:
    """A dataset like real ones: prompts, a numeric ground truth, two metadata columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    chunk = 100_000
    schema = pa.schema(
        [
            ("system_prompt", pa.string()),
            ("user_prompt", pa.string()),
            ("ground_truth", pa.int64()),
            ("difficulty", pa.string()),
            ("source_id", pa.int64()),
        ]
    )
    chunks = []
    for begin in range(0, rows, chunk):
        ids = range(begin, min(rows, begin + chunk))
        chunks.append(
            pa.Table.from_pydict(
                {
                    "system_prompt": ["You are a careful calculator. Answer with a number."]
                    * len(ids),
                    "user_prompt": [f"What is {i} + {i % 97}? Show your working." for i in ids],
                    "ground_truth": [i + i % 97 for i in ids],
                    "difficulty": [("easy", "medium", "hard")[i % 3] for i in ids],
                    "source_id": list(ids),
                },
                schema=schema,
            )
        )
    # One write: with pyarrow's default row_group_size (1Mi rows) the whole file is a single row
    # group, the worst case for streaming (what pandas.to_parquet / pq.write_table produce).
    kwargs = {} if row_group_size is None else {"row_group_size": row_group_size}
    pq.write_table(pa.concat_tables(chunks), path, **kwargs)


def measure(path: Path, offset: int, limit: int | None, mode: str = "stream") -> dict:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(offset), str(limit or "none"), mode],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    import pyarrow.parquet as pq

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cases = [
            ("1 row group (default)", None),
            ("row groups of 100k", 100_000),
        ]
        print(
            f"{'file':<22} {'selection':<26} {'rows read':>10} {'size MB':>8} {'1st row s':>10} "
            f"{'1st+import s':>12} {'total s':>8} {'rows/s':>10} {'RSS +MB':>8} {'maxRSS +MB':>10}"
        )
        for label, group_size in cases:
            path = Path(tmp) / f"data-{group_size}.parquet"
            t = time.perf_counter()
            write_parquet(path, args.rows, group_size)
            written = time.perf_counter() - t
            size_mb = path.stat().st_size / 2**20
            for sel_label, offset, limit, mode in [
                ("all rows", 0, None, "stream"),
                ("offset 900k limit 10", 900_000, 10, "stream"),
                ("pq.read_table (contrast)", 0, None, "whole-table"),
            ]:
                r = measure(path, offset, limit, mode)
                rate = r["count"] / r["total_s"] if r["total_s"] else float("inf")
                print(
                    f"{label:<22} {sel_label:<26} {r['count']:>10,} {size_mb:>8.1f} "
                    f"{r['first_row_s']:>10.3f} {r['first_row_cold_s']:>12.3f} "
                    f"{r['total_s']:>8.2f} {rate:>10,.0f} {r['rss_delta_mb']:>8.1f} "
                    f"{r['maxrss_delta_mb']:>10.1f}"
                )
            groups = pq.ParquetFile(path).metadata.num_row_groups
            print(f"  ({groups} row groups; writing {args.rows:,} rows took {written:.1f} s)")


if __name__ == "__main__":
    main()
