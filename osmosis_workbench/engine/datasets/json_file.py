"""JSON datasets: one top-level array of row objects, parsed whole."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from osmosis_workbench.engine.datasets.files import open_checked
from osmosis_workbench.engine.datasets.rows import (
    DatasetError,
    DatasetRow,
    RowError,
    kind_of,
    row_from_object,
)
from osmosis_workbench.engine.datasets.selection import Picker


def load_json_array(file: Path) -> list[Any]:
    """The whole .json document, which must be an array of row objects."""
    with open_checked(file, "rb") as fh:
        raw = fh.read()
    try:
        data = json.loads(raw)  # one document: it has to be parsed whole anyway
    except json.JSONDecodeError as exc:
        hint = (
            " (one object per line is the .jsonl format: rename the file)"
            if exc.msg == "Extra data"
            else ""
        )
        raise DatasetError(
            f"{file} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            f"a .json dataset must be one array of row objects{hint}"
        ) from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{file} is not UTF-8 text; re-save it as UTF-8") from exc
    if not isinstance(data, list):
        keys = ""
        if isinstance(data, dict):
            keys = " with keys " + ", ".join(repr(k) for k in list(data)[:5])
        raise DatasetError(
            f"{file} holds {kind_of(data)}{keys}, not an array; a .json dataset must be a "
            "top-level array of row objects: wrap the rows in [...] or write one object per "
            "line as .jsonl"
        )
    return data


def json_items(data: list[Any], picker: Picker) -> Iterator[DatasetRow | RowError]:
    end = len(data) if picker.last is None else min(len(data), picker.last + 1)
    for index in picker.wanted_in(0, end):
        yield row_from_object(index, None, data[index])
