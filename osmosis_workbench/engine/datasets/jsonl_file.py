"""JSONL datasets: one JSON object per line, streamed line by line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from osmosis_workbench.engine.datasets.files import open_checked
from osmosis_workbench.engine.datasets.rows import DatasetRow, RowError, row_from_object, row_place
from osmosis_workbench.engine.datasets.selection import Picker


def jsonl_items(file: Path, picker: Picker) -> Iterator[DatasetRow | RowError]:
    index = -1
    # Binary lines: json.loads takes bytes, and a line that is not UTF-8 becomes that row's error
    # instead of a decode error that would end the whole file.
    with open_checked(file, "rb") as fh:
        for line, raw in enumerate(fh, start=1):
            if raw.isspace():  # blank lines are neither rows nor errors
                continue
            index += 1
            if picker.past_end(index):
                return
            if not picker.wants(index):
                continue  # skipped rows are never parsed
            try:
                obj = json.loads(raw)
            except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
                detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8 text"
                col = f" at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
                yield RowError(
                    index,
                    line,
                    f"{row_place(index, line)}: not valid JSON ({detail}{col}); "
                    "each line of a .jsonl file must be one complete JSON object",
                )
                continue
            yield row_from_object(index, line, obj)


def count_jsonl_rows(file: Path) -> int:
    """How many rows (non-blank lines) the file holds."""
    with open_checked(file, "rb") as fh:
        return sum(1 for raw in fh if not raw.isspace())
