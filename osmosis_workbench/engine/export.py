"""Exporting a run's rollouts for other tools: ATIF trajectories, OpenAI chat JSONL, Parquet.

Each finished rollout is a ``JournalEntry``; this module turns one into
- an ATIF trajectory (``atif_trajectory``): the Agent Trajectory Interchange Format of the
  Harbor project (RFC 0001), version ``ATIF_VERSION``, what NeMo Gym and the Osmosis 0.3 line
  read; one document per rollout, written one per line;
- an OpenAI chat fine-tuning example (``openai_example``): ``{"messages", "tools"}`` with the
  assistant's tool calls kept, by default for the rollouts that passed;
- a flat record (``rollout_record``): one typed row per rollout, for Parquet and pandas.

``export_run`` streams a run's journal through one of them (``journal.iter_latest``): memory
stays bounded whatever the run's size, and the file appears only when complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from osmosis_workbench import __version__
from osmosis_workbench.engine.journal import JournalEntry, iter_latest
from osmosis_workbench.engine.runs import RunInfo

#: The ATIF version written (Harbor's current one; ``schema_version`` of every trajectory).
ATIF_VERSION = "ATIF-v1.8"

#: Rollouts per Parquet row group: bounds the memory a Parquet export holds at once.
_PARQUET_BATCH = 1000


class ExportFormat(StrEnum):
    """What ``osmosis export --format`` writes."""

    ATIF = "atif"
    OPENAI_JSONL = "openai-jsonl"
    PARQUET = "parquet"

    @property
    def suffix(self) -> str:
        """The file name ending of this format's default output."""
        return {"atif": ".atif.jsonl", "openai-jsonl": ".openai.jsonl", "parquet": ".parquet"}[
            self.value
        ]


# ---- messages ----------------------------------------------------------------------------------


def message_text(content: Any) -> str:
    """A message's content as text: strings as they are, text parts joined, others as JSON."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(part, dict) and part.get("type") == "text" for part in content
    ):
        return "".join(str(part.get("text") or "") for part in content)
    return json.dumps(content, ensure_ascii=False, default=str)


def tool_call_parts(call: Any) -> tuple[str | None, str | None, Any]:
    """(id, function name, arguments) of an OpenAI tool call; arguments parsed when JSON."""
    if not isinstance(call, dict):
        return None, None, None
    function = call.get("function")
    if not isinstance(function, dict):
        function = {}
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        with contextlib.suppress(ValueError):
            arguments = json.loads(arguments)
    return call.get("id"), function.get("name"), arguments


def count_tool_calls(messages: list[dict[str, Any]]) -> int:
    """How many tool calls the assistant messages of a trajectory make."""
    return sum(len(m.get("tool_calls") or ()) for m in messages if m.get("role") == "assistant")


# ---- ATIF --------------------------------------------------------------------------------------


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if value is not None}


def _atif_tool_call(call: Any, step_id: int, index: int) -> dict[str, Any]:
    call_id, name, arguments = tool_call_parts(call)
    tool_call: dict[str, Any] = {
        "tool_call_id": call_id or f"call-{step_id}-{index}",
        "function_name": name or "",
        "arguments": arguments if isinstance(arguments, dict) else {},
    }
    if arguments is not None and not isinstance(arguments, dict):
        # ATIF wants an object: arguments that are not one travel as they came.
        tool_call["extra"] = {"raw_arguments": arguments}
    return tool_call


def atif_trajectory(entry: JournalEntry, run: RunInfo) -> dict[str, Any] | None:
    """The rollout as an ATIF trajectory (``None``: it has no message to show).

    Messages become steps (system, user, agent); tool results become the observation of the
    agent step whose calls they answer; each agent step carries its LLM call's tokens and cost.
    How the rollout ended (reward, verdict, error) is under ``extra.osmosis``.
    """
    o = entry.outcome
    calls = {call.turn: call for call in o.calls}
    steps: list[dict[str, Any]] = []
    turn = 0
    for message in o.final_messages:
        role = message.get("role")
        if role == "tool":
            _observe(steps, message)
            continue
        step: dict[str, Any] = {"step_id": len(steps) + 1}
        if role == "assistant":
            turn += 1
            step["source"] = "agent"
            step["message"] = message_text(message.get("content"))
            if message.get("reasoning_content"):
                step["reasoning_content"] = str(message["reasoning_content"])
            tool_calls = [
                _atif_tool_call(call, step["step_id"], i)
                for i, call in enumerate(message.get("tool_calls") or ())
            ]
            if tool_calls:
                step["tool_calls"] = tool_calls
            stats = calls.get(turn)
            if stats is not None:
                metrics = _drop_none(
                    {
                        "prompt_tokens": stats.prompt_tokens,
                        "completion_tokens": stats.completion_tokens,
                        "cost_usd": stats.cost_usd,
                    }
                )
                if metrics:
                    step["metrics"] = metrics
        else:
            step["source"] = "user" if role == "user" else "system"
            step["message"] = message_text(message.get("content"))
            if role not in ("user", "system"):
                step["extra"] = {"role": role}
        steps.append(step)
    if not steps:
        return None
    prompt = [c.prompt_tokens for c in o.calls if c.prompt_tokens is not None]
    completion = [c.completion_tokens for c in o.calls if c.completion_tokens is not None]
    return _drop_none(
        {
            "schema_version": ATIF_VERSION,
            "session_id": o.rollout_id or None,
            "trajectory_id": f"{run.name}/row-{entry.row}/attempt-{entry.attempt}",
            "agent": _drop_none(
                {
                    "name": run.agent or "unknown",
                    "version": "unknown",
                    "model_name": run.model,
                    "tool_definitions": o.tools or None,
                    "extra": {"exported_by": f"osmosis-workbench {__version__}"},
                }
            ),
            "steps": steps,
            "final_metrics": _drop_none(
                {
                    "total_prompt_tokens": sum(prompt) if prompt else None,
                    "total_completion_tokens": sum(completion) if completion else None,
                    "total_cost_usd": o.cost_usd,
                    "total_steps": len(steps),
                }
            ),
            "extra": {"osmosis": _outcome_extra(entry, run)},
        }
    )


def _observe(steps: list[dict[str, Any]], message: dict[str, Any]) -> None:
    """Attach a tool result to the agent step whose call it answers."""
    result: dict[str, Any] = {"content": message_text(message.get("content"))}
    call_id = message.get("tool_call_id")
    owner = steps[-1] if steps and steps[-1]["source"] == "agent" else None
    if owner is None:
        # A tool result no agent step asked for: a system step reports it.
        owner = {"step_id": len(steps) + 1, "source": "system", "message": ""}
        steps.append(owner)
    called = {call["tool_call_id"] for call in owner.get("tool_calls") or ()}
    if call_id in called:
        result["source_call_id"] = call_id
    elif call_id or message.get("name"):
        result["extra"] = _drop_none({"tool_call_id": call_id, "name": message.get("name")})
    owner.setdefault("observation", {"results": []})["results"].append(result)


def _outcome_extra(entry: JournalEntry, run: RunInfo) -> dict[str, Any]:
    """How the rollout ended, in the journal's own words (its fields minus the trajectory)."""
    data = entry.to_json()
    for bulky in ("final_messages", "request", "tools", "calls", "traceback"):
        data.pop(bulky, None)
    return {"run": run.name, **data}


# ---- OpenAI chat JSONL -------------------------------------------------------------------------


def _openai_message(message: dict[str, Any]) -> dict[str, Any]:
    """A message in the OpenAI chat format's own keys (nothing a fine-tuning file rejects)."""
    role = message.get("role")
    content = message.get("content")
    if role == "assistant":
        out: dict[str, Any] = {"role": "assistant", "content": content}
        calls = []
        for call in message.get("tool_calls") or ():
            call_id, name, arguments = tool_call_parts(call)
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments if arguments is not None else {})
            calls.append(
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
            )
        if calls:
            out["tool_calls"] = calls
        elif content is None:
            out["content"] = ""
        return out
    if role == "tool":
        return {
            "role": "tool",
            "tool_call_id": message.get("tool_call_id") or "",
            "content": message_text(content),
        }
    out = {"role": role, "content": content if isinstance(content, list) else message_text(content)}
    if isinstance(message.get("name"), str):
        out["name"] = message["name"]
    return out


def openai_example(entry: JournalEntry) -> dict[str, Any] | None:
    """The rollout as one OpenAI chat fine-tuning example (``None``: it has no messages)."""
    messages = entry.outcome.final_messages
    if not messages:
        return None
    example: dict[str, Any] = {"messages": [_openai_message(m) for m in messages]}
    tools = [t for t in entry.outcome.tools if isinstance(t, dict) and t.get("type") == "function"]
    if tools:
        example["tools"] = tools
    return example


# ---- flat records ------------------------------------------------------------------------------


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def row_fields(entry: JournalEntry) -> dict[str, Any]:
    """The dataset row's own columns beyond the prompts and the ground truth."""
    metadata = entry.request.get("metadata") or {}
    return {k: v for k, v in metadata.items() if k not in ("ground_truth", "row_index")}


def _prompt(entry: JournalEntry, role: str) -> str | None:
    for message in entry.request.get("messages") or ():
        if message.get("role") == role:
            return message_text(message.get("content"))
    return None


def rollout_record(entry: JournalEntry, run: RunInfo, *, messages: bool = True) -> dict[str, Any]:
    """One flat record of a rollout: a row of ``rollouts_df`` and of the Parquet table.

    ``ground_truth``, ``row_fields`` (the dataset row's other columns), ``metrics`` and
    ``messages`` keep their values here; the Parquet table holds them as JSON text.
    """
    o = entry.outcome
    prompt = [c.prompt_tokens for c in o.calls if c.prompt_tokens is not None]
    completion = [c.completion_tokens for c in o.calls if c.completion_tokens is not None]
    record = {
        "run": run.name,
        "row": entry.row,
        "attempt": entry.attempt,
        "rollout_id": o.rollout_id,
        "status": o.status.value,
        "verdict": entry.verdict.value,
        "passed": entry.passed,
        "reward": o.reward,
        "error_category": o.error_category,
        "error": o.error,
        "finish_reason": o.finish_reason,
        "latency_ms": o.duration_ms,
        "tokens": o.tokens,
        "prompt_tokens": sum(prompt) if prompt else None,
        "completion_tokens": sum(completion) if completion else None,
        "cost_usd": o.cost_usd,
        "turns": o.llm_calls,
        "tool_calls": count_tool_calls(o.final_messages),
        "model": run.model,
        "ground_truth": entry.ground_truth,
        "system_prompt": _prompt(entry, "system"),
        "user_prompt": _prompt(entry, "user"),
        "row_fields": row_fields(entry),
        "metrics": o.metrics,
        "finished_at": datetime.fromtimestamp(entry.ts, UTC),
    }
    if messages:
        record["messages"] = o.final_messages
    return record


#: The record's columns the Parquet table holds as JSON text (their values vary in type).
_JSON_COLUMNS = ("ground_truth", "row_fields", "metrics", "messages")


def _parquet_schema() -> Any:
    """The Parquet table's columns, typed (a record's keys, in order)."""
    import pyarrow as pa

    text, integer, real = pa.string(), pa.int64(), pa.float64()
    return pa.schema(
        [
            ("run", text),
            ("row", integer),
            ("attempt", integer),
            ("rollout_id", text),
            ("status", text),
            ("verdict", text),
            ("passed", pa.bool_()),
            ("reward", real),
            ("error_category", text),
            ("error", text),
            ("finish_reason", text),
            ("latency_ms", real),
            ("tokens", integer),
            ("prompt_tokens", integer),
            ("completion_tokens", integer),
            ("cost_usd", real),
            ("turns", integer),
            ("tool_calls", integer),
            ("model", text),
            ("ground_truth", text),
            ("system_prompt", text),
            ("user_prompt", text),
            ("row_fields", text),
            ("metrics", text),
            ("finished_at", pa.timestamp("ms", tz="UTC")),
            ("messages", text),
        ]
    )


# ---- whole runs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote."""

    path: str
    format: ExportFormat
    #: Rollouts written.
    written: int
    #: Rollouts left out by the filter (not passed, reward below ``min_reward``).
    filtered: int
    #: Rollouts without a message to export.
    empty: int

    def to_json(self) -> dict[str, Any]:
        """Its ``--json`` form."""
        return {
            "path": self.path,
            "format": self.format.value,
            "written": self.written,
            "filtered": self.filtered,
            "empty": self.empty,
        }


def wanted(entry: JournalEntry, *, min_reward: float | None, passed_only: bool) -> bool:
    """Whether an export keeps this rollout: reward at least ``min_reward``, or passed."""
    if min_reward is not None:
        return (
            entry.outcome.ok
            and entry.outcome.reward is not None
            and (entry.outcome.reward >= min_reward)
        )
    return entry.passed or not passed_only


def export_run(
    run_dir: str | Path,
    fmt: ExportFormat,
    output: str | Path,
    *,
    min_reward: float | None = None,
    passed_only: bool | None = None,
) -> ExportResult:
    """Write a run's rollouts to ``output`` in ``fmt`` (``"-"``: stdout, for the JSONL formats).

    By default the OpenAI format keeps the rollouts that passed (fine-tuning data) and the
    others keep every rollout; ``min_reward`` keeps those whose reward is at least that.
    Blocking: call it from a thread in async code.
    """
    run = RunInfo.read(run_dir)
    if passed_only is None:
        passed_only = fmt is ExportFormat.OPENAI_JSONL
    counts = {"written": 0, "filtered": 0, "empty": 0}

    def selected() -> Iterator[JournalEntry]:
        for entry in iter_latest(run_dir):
            if wanted(entry, min_reward=min_reward, passed_only=passed_only):
                yield entry
            else:
                counts["filtered"] += 1

    if fmt is ExportFormat.PARQUET:
        if str(output) == "-":
            raise ValueError("Parquet is a binary file: give -o PATH, not -o -")
        with _replaced_atomically(output, binary=True) as handle:
            _write_parquet(selected(), run, handle, counts)
    else:
        convert: Callable[[JournalEntry], dict[str, Any] | None] = (
            (lambda entry: atif_trajectory(entry, run))
            if fmt is ExportFormat.ATIF
            else openai_example
        )
        with _replaced_atomically(output, binary=False) as handle:
            for entry in selected():
                document = convert(entry)
                if document is None:
                    counts["empty"] += 1
                    continue
                handle.write(json.dumps(document, ensure_ascii=False, default=str) + "\n")
                counts["written"] += 1
    return ExportResult(str(output), fmt, **counts)


def _write_parquet(
    entries: Iterator[JournalEntry], run: RunInfo, handle: IO[Any], counts: dict[str, int]
) -> None:
    from osmosis_workbench.extras import require

    require("pyarrow", "osmosis export --format parquet")
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _parquet_schema()
    with pq.ParquetWriter(handle, schema, compression="zstd") as writer:
        batch: list[dict[str, Any]] = []

        def flush() -> None:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            batch.clear()

        for entry in entries:
            record = rollout_record(entry, run)
            for column in _JSON_COLUMNS:
                record[column] = _as_text(record[column])
            batch.append(record)
            counts["written"] += 1
            if len(batch) >= _PARQUET_BATCH:
                flush()
        if batch or counts["written"] == 0:
            flush()


@contextlib.contextmanager
def _replaced_atomically(output: str | Path, *, binary: bool) -> Iterator[IO[Any]]:
    """A handle whose content becomes ``output`` only when the block ends without error."""
    if str(output) == "-":
        yield sys.stdout.buffer if binary else sys.stdout
        return
    target = Path(output)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        handle: IO[Any] = open(fd, "wb") if binary else open(fd, "w", encoding="utf-8")  # noqa: SIM115 - closed by the with below
        with handle:
            yield handle
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def write_rollout(entry: JournalEntry, run: RunInfo, path: str | Path, fmt: str = "atif") -> Path:
    """Write one rollout to ``path``: an ATIF trajectory (``"atif"``) or its journal JSON
    (``"json"``); what the workbench's export key calls."""
    document = atif_trajectory(entry, run) if fmt == "atif" else entry.to_json()
    if document is None:
        raise ValueError(f"row {entry.row} has no message to export")
    target = Path(path)
    with _replaced_atomically(target, binary=False) as handle:
        json.dump(document, handle, indent=2, ensure_ascii=False, default=str)
        handle.write("\n")
    return target
