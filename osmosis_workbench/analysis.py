"""Runs as pandas DataFrames, for notebooks: one row per run, per rollout, or per message.

```python
from osmosis_workbench.analysis import messages_df, rollouts_df, runs_df

runs_df()                      # every run under .osmosis/runs
rollouts_df("last", "last~1")  # the rollouts of the two newest runs
messages_df("last")            # every message of every rollout of the newest run
```

A run is named as on the command line: its directory, its name under ``runs_dir``, ``last``,
``last~1``... pandas is imported when a function is called (importing this module costs
nothing); it comes with ``osmosis-workbench[workbench]``. The columns come from the journal
entries through ``engine.export.rollout_record``, the same record the Parquet export writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from osmosis_workbench.engine.export import message_text, rollout_record, tool_call_parts
from osmosis_workbench.engine.journal import JournalEntry, iter_latest
from osmosis_workbench.engine.runs import DEFAULT_RUNS_DIR, RunInfo, list_run_dirs, resolve_run_dir
from osmosis_workbench.engine.summary import summarize
from osmosis_workbench.extras import require

if TYPE_CHECKING:
    import pandas as pd

RunRef = str | Path

#: Columns whose few distinct values are better held as pandas categories.
_CATEGORIES = ("run", "status", "verdict", "error_category", "finish_reason", "model")
#: Counts that may be unknown (a model that reports no usage): nullable integers.
_COUNTS = ("tokens", "prompt_tokens", "completion_tokens", "turns", "tool_calls")
#: The columns of ``runs_df``.
_RUN_COLUMNS = [
    "run",
    "run_dir",
    "started",
    "agent",
    "model",
    "dataset",
    "attempts",
    "reward_fn",
    "pass_threshold",
    "rollouts",
    "passed",
    "errors",
    "pass_rate",
    "reward_mean",
    "pass_at_k",
    "tokens",
    "cost_usd",
    "latency_p50_ms",
    "latency_p95_ms",
]
#: The columns of ``rollouts_df`` before the dataset row's own.
_RECORD_COLUMNS = [
    "run",
    "row",
    "attempt",
    "rollout_id",
    "status",
    "verdict",
    "passed",
    "reward",
    "error_category",
    "error",
    "finish_reason",
    "latency_ms",
    "tokens",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "turns",
    "tool_calls",
    "model",
    "ground_truth",
    "system_prompt",
    "user_prompt",
    "metrics",
    "finished_at",
]
#: The columns of ``messages_df``.
_MESSAGE_COLUMNS = [
    "run",
    "row",
    "attempt",
    "index",
    "role",
    "content",
    "turn",
    "tool_calls",
    "tool_names",
    "tool_call_id",
    "name",
    "prompt_tokens",
    "completion_tokens",
    "passed",
    "reward",
]


def _pandas() -> Any:
    # ~0.4 s of imports: only when a frame is asked for.
    return require("pandas", "osmosis_workbench.analysis")


def _runs(runs: Iterable[RunRef], runs_dir: RunRef) -> list[Path]:
    """The run directories named (every run under ``runs_dir`` when none is)."""
    named = list(runs)
    if not named:
        return list_run_dirs(runs_dir)
    return [resolve_run_dir(ref, runs_dir) for ref in named]


def _entries(runs: list[Path]) -> Iterator[tuple[RunInfo, JournalEntry]]:
    for run_dir in runs:
        info = RunInfo.read(run_dir)
        for entry in iter_latest(run_dir):
            yield info, entry


def runs_df(runs_dir: RunRef = DEFAULT_RUNS_DIR) -> pd.DataFrame:
    """One row per run under ``runs_dir``, oldest first: what ran and how it went."""
    pd = _pandas()
    records = []
    for run_dir in list_run_dirs(runs_dir):
        info = RunInfo.read(run_dir)
        entries = [e.without_trajectory() for e in iter_latest(run_dir)]
        s = summarize(entries, bad_rows=0, duration_s=0.0, k=info.attempts)
        records.append(
            {
                "run": info.name,
                "run_dir": str(run_dir),
                "started": info.started,
                "agent": info.agent,
                "model": info.model,
                "dataset": info.dataset,
                "attempts": info.attempts,
                "reward_fn": info.reward,
                "pass_threshold": info.pass_threshold,
                "rollouts": s.total,
                "passed": s.passed,
                "errors": sum(1 for e in entries if not e.outcome.ok),
                "pass_rate": s.passed / s.total if s.total else None,
                "reward_mean": s.reward_mean,
                "pass_at_k": s.pass_at_k,
                "tokens": s.total_tokens,
                "cost_usd": s.cost_usd,
                "latency_p50_ms": s.latency_p50_ms,
                "latency_p95_ms": s.latency_p95_ms,
            }
        )
    frame = pd.DataFrame.from_records(records, columns=_RUN_COLUMNS)
    frame["started"] = pd.to_datetime(frame["started"], errors="coerce")
    for column in ("attempts", "rollouts", "passed", "errors", "tokens"):
        frame[column] = frame[column].astype("Int64")
    for column in ("pass_threshold", "pass_rate", "reward_mean", "pass_at_k", "cost_usd"):
        frame[column] = frame[column].astype("Float64")
    return frame


def rollouts_df(*runs: RunRef, runs_dir: RunRef = DEFAULT_RUNS_DIR) -> pd.DataFrame:
    """One row per rollout of ``runs`` (every run when none is named), in (row, attempt) order.

    Columns: run, row, attempt, rollout_id, status, verdict, passed, reward, error_category,
    error, finish_reason, latency_ms, tokens, prompt_tokens, completion_tokens, cost_usd,
    turns, tool_calls, model, ground_truth, system_prompt, user_prompt, metrics (a dict),
    finished_at, then the dataset row's other columns (``row_`` in front of a name taken).
    """
    pd = _pandas()
    records = []
    for info, entry in _entries(_runs(runs, runs_dir)):
        record = rollout_record(entry, info, messages=False)
        for name, value in record.pop("row_fields").items():
            record[name if name not in record else f"row_{name}"] = value
        records.append(record)
    frame = pd.DataFrame.from_records(records, columns=_rollout_columns(records))
    frame["row"] = frame["row"].astype("int64")
    frame["attempt"] = frame["attempt"].astype("int64")
    frame["passed"] = frame["passed"].astype("bool")
    frame["reward"] = frame["reward"].astype("Float64")
    frame["latency_ms"] = frame["latency_ms"].astype("float64")
    frame["cost_usd"] = frame["cost_usd"].astype("Float64")
    for column in _COUNTS:
        frame[column] = frame[column].astype("Int64")
    for column in _CATEGORIES:
        frame[column] = frame[column].astype("category")
    frame["finished_at"] = pd.to_datetime(frame["finished_at"], utc=True)
    return frame


def _rollout_columns(records: list[dict[str, Any]]) -> list[str]:
    """The record's columns, then every row field any rollout has, in first-seen order."""
    columns = list(_RECORD_COLUMNS)
    seen = set(columns)
    for record in records:
        for name in record:
            if name not in seen:
                seen.add(name)
                columns.append(name)
    return columns


def messages_df(*runs: RunRef, runs_dir: RunRef = DEFAULT_RUNS_DIR) -> pd.DataFrame:
    """One row per message of every rollout of ``runs`` (every run when none is named).

    Columns: run, row, attempt, index (its position in the trajectory), role, content (as
    text), turn (the LLM call an assistant message answers, from 1), tool_calls (how many),
    tool_names, tool_call_id and name (of a tool result), prompt_tokens, completion_tokens
    (of the assistant message's LLM call), passed and reward (of its rollout).
    """
    pd = _pandas()
    records = []
    for info, entry in _entries(_runs(runs, runs_dir)):
        calls = {call.turn: call for call in entry.outcome.calls}
        turn = 0
        for index, message in enumerate(entry.outcome.final_messages):
            role = message.get("role")
            stats = None
            if role == "assistant":
                turn += 1
                stats = calls.get(turn)
            tool_names = [tool_call_parts(c)[1] for c in message.get("tool_calls") or ()]
            records.append(
                {
                    "run": info.name,
                    "row": entry.row,
                    "attempt": entry.attempt,
                    "index": index,
                    "role": role,
                    "content": message_text(message.get("content")),
                    "turn": turn if role == "assistant" else None,
                    "tool_calls": len(tool_names),
                    "tool_names": ",".join(n or "" for n in tool_names) or None,
                    "tool_call_id": message.get("tool_call_id"),
                    "name": message.get("name"),
                    "prompt_tokens": stats.prompt_tokens if stats else None,
                    "completion_tokens": stats.completion_tokens if stats else None,
                    "passed": entry.passed,
                    "reward": entry.outcome.reward,
                }
            )
    frame = pd.DataFrame.from_records(records, columns=_MESSAGE_COLUMNS)
    for column in ("row", "attempt", "index", "tool_calls"):
        frame[column] = frame[column].astype("int64")
    for column in ("turn", "prompt_tokens", "completion_tokens"):
        frame[column] = frame[column].astype("Int64")
    frame["passed"] = frame["passed"].astype("bool")
    frame["reward"] = frame["reward"].astype("Float64")
    for column in ("run", "role"):
        frame[column] = frame[column].astype("category")
    return frame
