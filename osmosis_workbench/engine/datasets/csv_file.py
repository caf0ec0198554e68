"""CSV datasets: a header line, then one record per row (quoted fields may span lines)."""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from pathlib import Path

from osmosis_workbench.engine.datasets.files import open_checked
from osmosis_workbench.engine.datasets.rows import (
    Columns,
    DatasetError,
    DatasetRow,
    RowError,
    check_header,
    make_row,
    row_place,
)
from osmosis_workbench.engine.datasets.selection import Picker


def blank_record(record: Sequence[str]) -> bool:
    return not record or (len(record) == 1 and not record[0].strip())


def allow_long_csv_fields() -> None:
    # The csv module refuses fields over 128 KiB by default; long prompts are normal here. The limit
    # is process-wide, so only ever raise it.
    if csv.field_size_limit() < 2**31 - 1:
        csv.field_size_limit(2**31 - 1)


def _csv_header(file: Path, records: Iterator[list[str]]) -> list[str]:
    for record in records:
        if not blank_record(record):
            return record
    raise DatasetError(
        f"{file} is empty; a CSV dataset starts with a header line naming "
        "system_prompt, user_prompt, ground_truth"
    )


def csv_items(file: Path, picker: Picker) -> Iterator[DatasetRow | RowError]:
    allow_long_csv_fields()
    # Check the header now so a bad file fails at the call, then stream from a fresh handle.
    with open_checked(file, "r") as fh:
        try:
            header = _csv_header(file, csv.reader(fh))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise DatasetError(
                f"{file}: cannot read the CSV header ({exc}); save it as UTF-8 CSV"
            ) from exc
    columns = check_header(file, header, "CSV header")
    return _csv_rows(file, header, columns, picker)


def _csv_rows(
    file: Path, header: list[str], columns: Columns, picker: Picker
) -> Iterator[DatasetRow | RowError]:
    width = len(header)
    position = {name.strip(): i for i, name in enumerate(header)}
    req = columns.required
    system_at = header.index(req["system_prompt"])
    user_at = header.index(req["user_prompt"])
    truth_at = header.index(req["ground_truth"])
    extras = [(name.strip(), position[name.strip()]) for name in columns.extras]
    with open_checked(file, "r") as fh:
        records = csv.reader(fh)
        _csv_header(file, records)
        index = -1
        lines_read = records.line_num
        while True:
            error: csv.Error | None = None
            try:
                record = next(records)
            except StopIteration:
                return
            except csv.Error as exc:
                record, error = [], exc
            except UnicodeDecodeError as exc:
                raise DatasetError(
                    f"{file} is not UTF-8 text after line {records.line_num}; re-save it as UTF-8"
                ) from exc
            # line_num counts physical lines, so a record with quoted newlines starts one past
            # where the previous record ended.
            line, lines_read = lines_read + 1, records.line_num
            if error is None and blank_record(record):
                continue
            index += 1
            if picker.past_end(index):
                return
            if not picker.wants(index):
                continue
            where = row_place(index, line)
            if error is not None:
                yield RowError(index, line, f"{where}: not valid CSV ({error}); check its quoting")
            elif len(record) != width:
                yield RowError(
                    index,
                    line,
                    f"{where}: has {len(record)} fields but the header has {width}; "
                    "quote values that contain commas or line breaks",
                )
            else:
                metadata = {name: record[at] for name, at in extras}
                yield make_row(
                    index, line, record[system_at], record[user_at], record[truth_at], metadata
                )


def count_csv_rows(file: Path) -> int | None:
    """How many data rows (non-blank records after the header) the file holds."""
    allow_long_csv_fields()
    try:
        with open_checked(file, "r") as fh:
            count = sum(1 for record in csv.reader(fh) if not blank_record(record))
    except csv.Error:
        return None
    return max(0, count - 1)  # the header is not a data row
