"""``--model script:FILE``: the model's answers written down per dataset row and turn.

For CI and for designing an agent before any model is reachable. A JSONL file holds one
object per dataset row (a YAML file, ``.yaml``/``.yml``, holds a list of the same objects)::

    {"row": 0, "turns": [{"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}, "5"]}
    {"row": 1, "turns": ["I don't know."]}
    {"row": "*", "turns": ["The default answer for every row not listed."]}

``row`` is the 0-based dataset row (or ``"*"`` for every row not listed). ``turns`` lists the
answers of the rollout's model calls in order: turn N answers the call whose conversation
already holds N assistant messages. An answer is a string (the text) or an object with
``content`` and/or ``tool_calls`` (each ``{"name", "arguments"}``, arguments an object) and
optionally ``finish_reason``. Every attempt of a row (``--n``) gets the same answers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from osmosis_workbench.engine.models.base import ModelError, read_user_file
from osmosis_workbench.engine.models.scripted import ScriptedBackend

#: The keys an answer object may have.
ANSWER_KEYS = frozenset({"content", "tool_calls", "finish_reason"})
#: The ``row`` of the answers that apply to every row not listed.
ANY_ROW = "*"


class ScriptError(ValueError):
    """A script file that cannot be used; the message names the file, the line and the fix."""


class AnswerScript:
    """The parsed answers of a script file, per dataset row."""

    def __init__(self, path: Path, rows: dict[int | str, list[Any]]) -> None:
        self.path = path
        self.rows = rows

    def reply_for(self, body: dict[str, Any]) -> dict[str, Any]:
        """The compact reply for one chat body: its row's answer for its turn."""
        row = (body.get("metadata") or {}).get("row_index")
        rollout = body.get("rollout_id")
        if not isinstance(row, int):
            raise ModelError(
                "replay_miss",
                f"script {self.path}: rollout {rollout!r} is not a dataset row (no row_index in "
                "its metadata); run it from a dataset with -d",
            )
        turn = sum(1 for m in body.get("messages") or () if m.get("role") == "assistant")
        turns = self.rows.get(row, self.rows.get(ANY_ROW))
        if turns is None:
            listed = ", ".join(str(r) for r in sorted(r for r in self.rows if r != ANY_ROW))
            raise ModelError(
                "replay_miss",
                f"script {self.path} has no answers for row {row} (turn {turn}): add a line "
                f'{{"row": {row}, "turns": [...]}} or a {{"row": "*", ...}} default '
                f"(rows listed: {listed or 'none'})",
            )
        if turn >= len(turns):
            has = (
                "1 turn (turn 0)" if len(turns) == 1 else f"{len(turns)} turns (0-{len(turns) - 1})"
            )
            raise ModelError(
                "replay_miss",
                f"script {self.path} ran out for row {row}: the agent asked for turn {turn} "
                f"but the row has {has}; add an answer to its turns",
            )
        answer = turns[turn]
        return {"content": answer} if isinstance(answer, str) else answer


def load_answer_script(path: str | Path) -> AnswerScript:
    """Read and check a script file (blocking, small); ``ScriptError`` names what is wrong."""
    path = Path(path)
    fix = "write one (see the README, 'Answer scripts') or check the path"
    text = read_user_file(path, "script", fix, ScriptError)
    if path.suffix.lower() in (".yaml", ".yml"):
        items = _yaml_items(path, text)
    else:
        items = _jsonl_items(path, text)
    rows: dict[int | str, list[Any]] = {}
    seen_at: dict[int | str, str] = {}
    for where, item in items:
        row, turns = _check_item(path, where, item)
        if row in rows:
            raise ScriptError(f"{path} {where}: row {row} is already given at {seen_at[row]}")
        rows[row], seen_at[row] = turns, where
    if not rows:
        raise ScriptError(f"script {path} has no rows: add one line per dataset row")
    return AnswerScript(path, rows)


def script_backend(path: str | Path) -> ScriptedBackend:
    """A backend answering from the script file at ``path`` (read now)."""
    script = load_answer_script(path)
    return ScriptedBackend(script.reply_for, name=f"script:{path}", keep_calls=False)


def _jsonl_items(path: Path, text: str) -> list[tuple[str, Any]]:
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("//"):
            continue
        try:
            items.append((f"line {number}", json.loads(line)))
        except ValueError as exc:
            raise ScriptError(f"{path} line {number} is not valid JSON: {exc}") from None
    return items


def _yaml_items(path: Path, text: str) -> list[tuple[str, Any]]:
    try:
        import yaml  # PyYAML comes with uvicorn[standard]; only YAML scripts need it
    except ImportError:
        raise ScriptError(
            f"{path}: reading YAML needs PyYAML (pip install pyyaml), or write the script as JSONL"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScriptError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, list):
        raise ScriptError(f"{path}: a YAML script is a list of {{row, turns}} items")
    return [(f"item {i}", item) for i, item in enumerate(data)]


def _check_item(path: Path, where: str, item: Any) -> tuple[int | str, list[Any]]:
    at = f"{path} {where}"
    if not isinstance(item, dict) or set(item) - {"row", "turns"} or "turns" not in item:
        raise ScriptError(f'{at}: expected {{"row": N, "turns": [ANSWER, ...]}}, got {item!r}')
    row = item.get("row")
    if not (row == ANY_ROW or (isinstance(row, int) and not isinstance(row, bool) and row >= 0)):
        raise ScriptError(f'{at}: "row" must be a 0-based dataset row number or "*", got {row!r}')
    turns = item["turns"]
    if not isinstance(turns, list) or not turns:
        raise ScriptError(f'{at} (row {row}): "turns" must be a non-empty list of answers')
    for turn, answer in enumerate(turns):
        problem = _answer_problem(answer)
        if problem:
            raise ScriptError(f"{at}: row {row} turn {turn}: {problem}")
    return row, turns


def _answer_problem(answer: Any) -> str | None:
    if isinstance(answer, str):
        return None
    if not isinstance(answer, dict):
        return f"an answer is a string or an object, got {answer!r}"
    unknown = set(answer) - ANSWER_KEYS
    if unknown:
        return f"unknown keys {sorted(unknown)} (an answer has {sorted(ANSWER_KEYS)})"
    calls = answer.get("tool_calls")
    if answer.get("content") is None and not calls:
        return 'an answer needs "content" or "tool_calls"'
    if calls is None:
        return None
    if not isinstance(calls, list):
        return '"tool_calls" must be a list of {"name", "arguments"}'
    for i, call in enumerate(calls):
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            return f'tool call {i} needs a "name" string, got {call!r}'
        if set(call) - {"name", "arguments", "id"}:
            return f'tool call {i} has keys other than "name", "arguments" and "id"'
        if not isinstance(call.get("arguments", {}), dict):
            return f'tool call {i} ({call["name"]}): "arguments" must be an object'
    return None
