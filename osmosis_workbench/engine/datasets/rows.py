"""Dataset rows: the good row, the bad row, and how one record's values become either.

Every data row has a ``system_prompt``, a ``user_prompt`` and a ``ground_truth`` (column names
matched in any letter case); other columns travel along as JSON-safe ``metadata``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from osmosis_workbench.engine.datasets.values import jsonable

REQUIRED_COLUMNS: tuple[str, ...] = ("system_prompt", "user_prompt", "ground_truth")
_NEEDS = "each row needs system_prompt, user_prompt, ground_truth"


class DatasetError(Exception):
    """A dataset file that cannot be read at all; the message names the file and the fix."""


@dataclass(frozen=True, slots=True)
class DatasetRow:
    """One good data row, ready to become a rollout request."""

    index: int  # 0-based data row number in the file
    line: int | None  # 1-based line number for jsonl/csv rows, else None
    system_prompt: str
    user_prompt: str
    ground_truth: Any  # str | int | float as in the file
    metadata: dict[str, Any] = field(default_factory=dict)  # extra columns, JSON-safe

    @property
    def ground_truth_text(self) -> str:
        """The ground truth as text; integral floats lose their ".0" (4.0 -> "4")."""
        truth = self.ground_truth
        if isinstance(truth, float) and truth.is_integer():
            return str(int(truth))
        return str(truth)

    def messages(self) -> list[dict[str, Any]]:
        """The opening chat messages: a system message (only if there is a system prompt), then
        the user message."""
        messages: list[dict[str, Any]] = []
        if self.system_prompt.strip():
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": self.user_prompt})
        return messages


@dataclass(frozen=True, slots=True)
class RowError:
    """A row that could not be used; ``message`` says which row, what is wrong and the fix."""

    index: int  # 0-based data row number in the file
    line: int | None  # 1-based line number for jsonl/csv rows, else None
    message: str

    def __str__(self) -> str:
        return self.message


MISSING: Any = object()  # a required key absent from a JSON object (as opposed to null)


@dataclass(frozen=True, slots=True)
class Columns:
    """Required column -> actual column name, the extra columns, and any case clash."""

    required: dict[str, str]
    extras: tuple[str, ...]
    clash: str | None

    def missing(self) -> list[str]:
        """The required columns no name matched."""
        return [name for name in REQUIRED_COLUMNS if name not in self.required]


@functools.lru_cache(maxsize=256)  # JSONL rows nearly always share one key set: match it once
def match_columns(names: tuple[str, ...]) -> Columns:
    """Match a record's column names to the required columns (any letter case)."""
    required: dict[str, str] = {}
    extras: list[str] = []
    clash = None
    for name in names:
        key = name.strip().lower()
        if key in REQUIRED_COLUMNS:
            if key in required and clash is None:
                clash = (
                    f"columns {required[key]!r} and {name!r} both mean {key}; keep only one of them"
                )
            required.setdefault(key, name)
        else:
            extras.append(name)
    return Columns(required, tuple(extras), clash)


def row_place(index: int, line: int | None) -> str:
    """How error messages name a row: ``row 3`` or ``row 3 (line 4)``."""
    return f"row {index}" if line is None else f"row {index} (line {line})"


def kind_of(value: Any) -> str:
    """A value's JSON kind, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def _row_problem(system: Any, user: Any, truth: Any) -> str | None:
    """What is wrong with a row's required values, with the fix; None if they are usable."""
    missing = [
        name
        for name, value in zip(REQUIRED_COLUMNS, (system, user, truth), strict=True)
        if value is MISSING
    ]
    if missing:
        listed = ", ".join(repr(name) for name in missing)
        return f"missing column{'s' if len(missing) > 1 else ''} {listed}; {_NEEDS}"
    # An empty or null system prompt is allowed: the rollout then starts without a system message.
    if system is not None and not isinstance(system, str):
        return (
            f"system_prompt must be a string, got {kind_of(system)}; "
            "write it as text (an empty string means no system prompt)"
        )
    if user is None:
        return "user_prompt is null; give every row a non-empty user_prompt"
    if isinstance(user, str) and not user.strip():
        return "user_prompt is empty; give every row a non-empty user_prompt"
    if not isinstance(user, str):
        return f"user_prompt must be a string, got {kind_of(user)}; write it as text"
    if truth is None or (isinstance(truth, float) and math.isnan(truth)):
        return "ground_truth is null; give every row a ground_truth (a string or a number)"
    if isinstance(truth, bool) or not isinstance(truth, str | int | float):
        return (
            f"ground_truth must be a string or a number, got {kind_of(truth)}; "
            'write it as text (e.g. "true", or several answers as one JSON string) '
            "and put anything else in an extra column"
        )
    if isinstance(truth, float) and math.isinf(truth):
        return f"ground_truth is {truth}, not a finite number; use a finite number or text"
    if isinstance(truth, str) and not truth.strip():
        return "ground_truth is empty; give every row a ground_truth (a string or a number)"
    return None


def make_row(
    index: int, line: int | None, system: Any, user: Any, truth: Any, metadata: dict[str, Any]
) -> DatasetRow | RowError:
    # Fast path for the usual good row (exact type checks, no error bookkeeping): row building is
    # most of the cost of reading a large file.
    if type(user) is str and (system is None or type(system) is str) and user.strip():
        kind = type(truth)
        if (
            kind is int
            or (kind is str and truth.strip())
            or (kind is float and math.isfinite(truth))
        ):
            return DatasetRow(index, line, system or "", user, truth, metadata)
    if isinstance(truth, Decimal) and truth.is_finite():  # a Parquet decimal column
        truth = jsonable(truth)
        return make_row(index, line, system, user, truth, metadata)
    problem = _row_problem(system, user, truth)
    if problem is not None:
        return RowError(index, line, f"{row_place(index, line)}: {problem}")
    return DatasetRow(index, line, system or "", user, truth, metadata)


def row_from_object(index: int, line: int | None, obj: Any) -> DatasetRow | RowError:
    """Build a row from one parsed JSON value (a JSONL line or a .json array element)."""
    if not isinstance(obj, dict):
        return RowError(
            index,
            line,
            f"{row_place(index, line)}: expected a JSON object, got {kind_of(obj)}; "
            'write each row as {"system_prompt": ..., "user_prompt": ..., "ground_truth": ...}',
        )
    columns = match_columns(tuple(obj))
    if columns.clash is not None:
        return RowError(index, line, f"{row_place(index, line)}: {columns.clash}")
    req = columns.required
    system = obj[req["system_prompt"]] if "system_prompt" in req else MISSING
    user = obj[req["user_prompt"]] if "user_prompt" in req else MISSING
    truth = obj[req["ground_truth"]] if "ground_truth" in req else MISSING
    metadata = {name: jsonable(obj[name]) for name in columns.extras}
    return make_row(index, line, system, user, truth, metadata)


def check_header(file: Path, names: Sequence[str], what: str) -> Columns:
    """Match a whole file's column names; raise if a required column is missing or doubled."""
    columns = match_columns(tuple(names))
    missing = columns.missing()
    if missing:
        listed = ", ".join(repr(name) for name in missing)
        shown = ", ".join(repr(name) for name in names[:20]) or "none"
        raise DatasetError(
            f"{file}: the {what} has no column {listed} (columns: {shown}); "
            f"{_NEEDS} (any letter case)"
        )
    if columns.clash is not None:
        raise DatasetError(f"{file}: {columns.clash}")
    return columns
