"""Reading a dataset file of any supported format: rows streamed, counted, or loaded whole."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path

from osmosis_workbench.engine.datasets.csv_file import count_csv_rows, csv_items
from osmosis_workbench.engine.datasets.files import check_path, open_checked
from osmosis_workbench.engine.datasets.json_file import json_items, load_json_array
from osmosis_workbench.engine.datasets.jsonl_file import count_jsonl_rows, jsonl_items
from osmosis_workbench.engine.datasets.parquet_file import count_parquet_rows, parquet_items
from osmosis_workbench.engine.datasets.rows import DatasetError, DatasetRow, RowError
from osmosis_workbench.engine.datasets.selection import Picker, RowSelection


def iter_dataset(
    path: str | Path, selection: RowSelection | None = None
) -> Iterator[DatasetRow | RowError]:
    """Stream the selected rows of a dataset file, a :class:`RowError` for each bad row.

    Whole-file problems (missing file, unknown format, required columns missing from the CSV
    header or Parquet schema, a .json that is not an array) raise :class:`DatasetError` from this
    call itself, before any row is read; an I/O failure part-way through (a CSV that is not UTF-8,
    a corrupt Parquet page) raises it from the iteration.
    """
    file, suffix = check_path(path)
    picker = Picker(selection or RowSelection())
    if suffix == ".jsonl":
        open_checked(file, "rb").close()  # fail now, not at the first next(), if unreadable
        return jsonl_items(file, picker)
    if suffix == ".json":
        return json_items(load_json_array(file), picker)
    if suffix == ".csv":
        return csv_items(file, picker)
    return parquet_items(file, picker)


async def aiter_dataset(
    path: str | Path, selection: RowSelection | None = None, chunk_size: int = 512
) -> AsyncGenerator[DatasetRow | RowError, None]:
    """Async :func:`iter_dataset`: rows are read ``chunk_size`` at a time in a worker thread, so
    the event loop never waits on file or Parquet I/O."""
    if chunk_size < 1:
        raise ValueError(f"bad chunk_size {chunk_size!r}: use 1 or more")
    items = await asyncio.to_thread(iter_dataset, path, selection)
    # The lock lets the cleanup below wait for a chunk still being read in a thread (after a
    # cancellation) instead of closing a generator that is running ("generator already executing").
    lock = threading.Lock()

    def take() -> list[DatasetRow | RowError]:
        with lock:
            return [item for _, item in zip(range(chunk_size), items, strict=False)]

    def close() -> None:
        with lock:
            getattr(items, "close", lambda: None)()  # every reader returns a generator

    try:
        while True:
            chunk = await asyncio.to_thread(take)
            for item in chunk:
                yield item
            if len(chunk) < chunk_size:
                return
    finally:
        await asyncio.to_thread(close)


def count_rows(path: str | Path) -> int | None:
    """Best-effort number of data rows in the file (good and bad), for progress bars.

    Parquet reads only the footer; JSONL counts non-blank lines; CSV and JSON have to read the
    file. Returns None when the file cannot be counted; :func:`iter_dataset` reports why.
    """
    try:
        file, suffix = check_path(path)
        if suffix == ".parquet":
            return count_parquet_rows(file)
        if suffix == ".jsonl":
            return count_jsonl_rows(file)
        if suffix == ".json":
            return len(load_json_array(file))
        return count_csv_rows(file)
    except (DatasetError, OSError, ValueError):
        return None


def load_rows(
    path: str | Path, selection: RowSelection | None = None
) -> tuple[list[DatasetRow], list[RowError]]:
    """Read the selected rows into memory: (good rows, bad rows). For small files and tables."""
    rows: list[DatasetRow] = []
    errors: list[RowError] = []
    for item in iter_dataset(path, selection):
        if isinstance(item, DatasetRow):
            rows.append(item)
        else:
            errors.append(item)
    return rows, errors
