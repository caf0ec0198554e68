"""Dataset rows for rollouts: read .jsonl, .json, .parquet and .csv files one row at a time.

Every data row has a ``system_prompt``, a ``user_prompt`` and a ``ground_truth`` (column names
matched in any letter case); other columns travel along as JSON-safe ``metadata``. A bad row is
yielded as a :class:`RowError` (row index, line number, what is wrong and how to fix it) and the
rows after it keep coming; a file that cannot be read at all raises :class:`DatasetError`.

Files are streamed: JSONL and CSV line by line, Parquet one record batch at a time, so a
million-row file starts yielding at once and is read in bounded memory. Row selection
(offset / limit / explicit rows) skips unwanted rows without building Python objects for them.

Headless: never imports textual or litellm. pyarrow is imported only when a Parquet file is read
and pandas never (see ``_import_parquet``).
"""

from __future__ import annotations

import array
import asyncio
import base64
import bisect
import csv
import datetime as dt
import functools
import json
import math
import re
import threading
from collections.abc import AsyncIterator, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

__all__ = [
    "REQUIRED_COLUMNS",
    "SUPPORTED_SUFFIXES",
    "DatasetError",
    "DatasetRow",
    "RowError",
    "RowSelection",
    "aiter_dataset",
    "count_rows",
    "iter_dataset",
    "load_rows",
    "parse_row_spec",
]

REQUIRED_COLUMNS: tuple[str, ...] = ("system_prompt", "user_prompt", "ground_truth")
SUPPORTED_SUFFIXES: tuple[str, ...] = (".jsonl", ".json", ".parquet", ".csv")

_NEEDS = "each row needs system_prompt, user_prompt, ground_truth"
# Rows per Parquet record batch: small enough that the first row arrives quickly and memory stays
# flat, large enough that per-batch overhead is noise (see benchmarks/bench_datasets.py).
_PARQUET_BATCH_ROWS = 2048
# A --rows spec expands to a tuple of ints; refuse specs that would expand to gigabytes.
_MAX_SPEC_ROWS = 10_000_000
# pandas writes its index as a column with this name; it is not user data.
_PANDAS_INDEX_COLUMN = re.compile(r"__index_level_\d+__")


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


@dataclass(frozen=True, slots=True)
class RowSelection:
    """Which rows to read: ``rows`` picks 0-based row indexes, ``offset`` skips the first rows,
    ``limit`` caps how many rows (good or bad) are yielded after that filtering.

    ``rows`` takes any collection of ints (e.g. :func:`parse_row_spec`'s tuple) and is stored as a
    frozenset.
    """

    offset: int = 0
    limit: int | None = None
    rows: Collection[int] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.offset, bool) or not isinstance(self.offset, int) or self.offset < 0:
            raise ValueError(f"bad offset {self.offset!r}: use 0 or a positive whole number")
        if self.limit is not None and (
            isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 0
        ):
            raise ValueError(f"bad limit {self.limit!r}: use a positive whole number or None")
        if self.rows is not None:
            rows = frozenset(self.rows)  # accepts any iterable, e.g. parse_row_spec's tuple
            bad = [r for r in rows if isinstance(r, bool) or not isinstance(r, int) or r < 0]
            if bad:
                raise ValueError(f"bad row index {bad[0]!r}: row indexes are whole numbers >= 0")
            # frozen dataclass: normalising in __post_init__ needs object.__setattr__
            object.__setattr__(self, "rows", rows)

    def selected_count(self, total: int) -> int:
        """How many rows this selection yields from a file of ``total`` rows (for progress bars)."""
        if self.rows is not None:
            count = sum(1 for r in self.rows if self.offset <= r < total)
        else:
            count = max(0, total - self.offset)
        return count if self.limit is None else min(count, self.limit)


_SPEC_ITEM = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", re.ASCII)


def parse_row_spec(spec: str) -> tuple[int, ...]:
    """Parse a ``--rows`` value such as ``"3,7,10-20"`` (ranges inclusive) into sorted, unique
    0-based row indexes."""
    usage = "use numbers and ranges like 3,7,10-20"
    rows: set[int] = set()
    for item in spec.split(","):
        match = _SPEC_ITEM.fullmatch(item)
        if match is None:
            raise ValueError(f"bad --rows value {spec!r}: {usage}")
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) is not None else start
        if end < start:
            raise ValueError(
                f"bad --rows value {spec!r}: range {start}-{end} runs backwards; {usage}"
            )
        if len(rows) + (end - start + 1) > _MAX_SPEC_ROWS:
            raise ValueError(
                f"bad --rows value {spec!r}: selects more than {_MAX_SPEC_ROWS:,} rows; "
                "use --offset and --limit for large spans"
            )
        rows.update(range(start, end + 1))
    return tuple(sorted(rows))


def iter_dataset(
    path: str | Path, selection: RowSelection | None = None
) -> Iterator[DatasetRow | RowError]:
    """Stream the selected rows of a dataset file, a :class:`RowError` for each bad row.

    Whole-file problems (missing file, unknown format, required columns missing from the CSV
    header or Parquet schema, a .json that is not an array) raise :class:`DatasetError` from this
    call itself, before any row is read; an I/O failure part-way through (a CSV that is not UTF-8,
    a corrupt Parquet page) raises it from the iteration.
    """
    file, suffix = _check_path(path)
    picker = _Picker(selection or RowSelection())
    if suffix == ".jsonl":
        _open_checked(file, "rb").close()  # fail now, not at the first next(), if unreadable
        return _jsonl_items(file, picker)
    if suffix == ".json":
        return _json_items(_load_json_array(file), picker)
    if suffix == ".csv":
        return _csv_items(file, picker)
    return _parquet_items(file, picker)


async def aiter_dataset(
    path: str | Path, selection: RowSelection | None = None, chunk_size: int = 512
) -> AsyncIterator[DatasetRow | RowError]:
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
        file, suffix = _check_path(path)
        if suffix == ".parquet":
            with _open_parquet(file) as parquet:
                return parquet.metadata.num_rows
        if suffix == ".jsonl":
            with _open_checked(file, "rb") as fh:
                return sum(1 for raw in fh if not raw.isspace())
        if suffix == ".json":
            return len(_load_json_array(file))
        _allow_long_csv_fields()
        with _open_checked(file, "r") as fh:
            records = csv.reader(fh)
            count = sum(1 for record in records if not _blank_record(record))
            return max(0, count - 1)  # the header is not a data row
    except (DatasetError, OSError, ValueError, csv.Error):
        return None


def load_rows(
    path: str | Path, selection: RowSelection | None = None
) -> tuple[list[DatasetRow], list[RowError]]:
    """Read the selected rows into memory: (good rows, bad rows). For small files and tables."""
    rows: list[DatasetRow] = []
    errors: list[RowError] = []
    for item in iter_dataset(path, selection):
        (rows if isinstance(item, DatasetRow) else errors).append(item)
    return rows, errors


# --- selection -----------------------------------------------------------------------------------


class _Picker:
    """A selection resolved to a closed window of row indexes, so readers can skip cheaply and
    stop as soon as the last wanted row is passed."""

    __slots__ = ("first", "last", "rows", "row_set")

    def __init__(self, selection: RowSelection) -> None:
        self.rows: list[int] | None = None
        self.row_set: frozenset[int] | None = None
        self.first = selection.offset
        self.last: int | None = None  # None: read to the end of the file
        if selection.rows is not None:
            # The limit counts selected rows, so it becomes "stop after the limit-th wanted row".
            rows = sorted(r for r in selection.rows if r >= selection.offset)
            if selection.limit is not None:
                rows = rows[: selection.limit]
            self.rows, self.row_set = rows, frozenset(rows)
            self.first = rows[0] if rows else 0
            self.last = rows[-1] if rows else -1
        elif selection.limit is not None:
            self.last = selection.offset + selection.limit - 1

    def wants(self, index: int) -> bool:
        """Whether the row at ``index`` is selected (assumes ``index <= last`` was checked)."""
        return index >= self.first and (self.row_set is None or index in self.row_set)

    def past_end(self, index: int) -> bool:
        """Whether no row at or after ``index`` is selected, so reading can stop."""
        return self.last is not None and index > self.last

    def wanted_in(self, start: int, end: int) -> list[int] | range:
        """The selected row indexes in ``[start, end)``."""
        if self.rows is not None:
            return self.rows[
                bisect.bisect_left(self.rows, start) : bisect.bisect_left(self.rows, end)
            ]
        stop = end if self.last is None else min(end, self.last + 1)
        return range(max(start, self.first), max(stop, start))


# --- shared row building ------------------------------------------------------------------------

_MISSING: Any = object()  # a required key absent from a JSON object (as opposed to null)


@dataclass(frozen=True, slots=True)
class _Columns:
    """Required column -> actual column name, the extra columns, and any case clash."""

    required: dict[str, str]
    extras: tuple[str, ...]
    clash: str | None

    def missing(self) -> list[str]:
        return [name for name in REQUIRED_COLUMNS if name not in self.required]


@functools.lru_cache(maxsize=256)  # JSONL rows nearly always share one key set: match it once
def _match_columns(names: tuple[str, ...]) -> _Columns:
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
    return _Columns(required, tuple(extras), clash)


def _where(index: int, line: int | None) -> str:
    return f"row {index}" if line is None else f"row {index} (line {line})"


def _kind(value: Any) -> str:
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
        if value is _MISSING
    ]
    if missing:
        listed = ", ".join(repr(name) for name in missing)
        return f"missing column{'s' if len(missing) > 1 else ''} {listed}; {_NEEDS}"
    # An empty or null system prompt is allowed: the rollout then starts without a system message.
    if system is not None and not isinstance(system, str):
        return (
            f"system_prompt must be a string, got {_kind(system)}; "
            "write it as text (an empty string means no system prompt)"
        )
    if user is None:
        return "user_prompt is null; give every row a non-empty user_prompt"
    if isinstance(user, str) and not user.strip():
        return "user_prompt is empty; give every row a non-empty user_prompt"
    if not isinstance(user, str):
        return f"user_prompt must be a string, got {_kind(user)}; write it as text"
    if truth is None or (isinstance(truth, float) and math.isnan(truth)):
        return "ground_truth is null; give every row a ground_truth (a string or a number)"
    if isinstance(truth, bool) or not isinstance(truth, str | int | float):
        return (
            f"ground_truth must be a string or a number, got {_kind(truth)}; "
            'write it as text (e.g. "true", or several answers as one JSON string) '
            "and put anything else in an extra column"
        )
    if isinstance(truth, float) and math.isinf(truth):
        return f"ground_truth is {truth}, not a finite number; use a finite number or text"
    if isinstance(truth, str) and not truth.strip():
        return "ground_truth is empty; give every row a ground_truth (a string or a number)"
    return None


def _make_row(
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
        truth = _jsonable(truth)
        return _make_row(index, line, system, user, truth, metadata)
    problem = _row_problem(system, user, truth)
    if problem is not None:
        return RowError(index, line, f"{_where(index, line)}: {problem}")
    return DatasetRow(index, line, system or "", user, truth, metadata)


def _row_from_object(index: int, line: int | None, obj: Any) -> DatasetRow | RowError:
    """Build a row from one parsed JSON value (a JSONL line or a .json array element)."""
    if not isinstance(obj, dict):
        return RowError(
            index,
            line,
            f"{_where(index, line)}: expected a JSON object, got {_kind(obj)}; write each row as "
            '{"system_prompt": ..., "user_prompt": ..., "ground_truth": ...}',
        )
    columns = _match_columns(tuple(obj))
    if columns.clash is not None:
        return RowError(index, line, f"{_where(index, line)}: {columns.clash}")
    req = columns.required
    system = obj[req["system_prompt"]] if "system_prompt" in req else _MISSING
    user = obj[req["user_prompt"]] if "user_prompt" in req else _MISSING
    truth = obj[req["ground_truth"]] if "ground_truth" in req else _MISSING
    metadata = {name: _jsonable(obj[name]) for name in columns.extras}
    return _make_row(index, line, system, user, truth, metadata)


_PLAIN_TYPES = frozenset({str, int, bool, type(None)})


def _jsonable(value: Any) -> Any:
    """A JSON-serialisable copy of a metadata value: NaN/inf -> None, dates -> ISO strings,
    numpy/pyarrow scalars -> Python values, bytes -> text."""
    if type(value) in _PLAIN_TYPES:  # the common case, checked first because it is hot
        return value
    if isinstance(value, float):  # also numpy.float64, a float subclass
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool | int):  # int subclasses such as IntEnum
        return int(value) if not isinstance(value, bool) else bool(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(raw).decode("ascii")
    as_py = getattr(value, "as_py", None)  # a pyarrow Scalar
    if callable(as_py):
        return _jsonable(as_py())
    tolist = getattr(value, "tolist", None)  # a numpy scalar or array
    if callable(tolist):
        return _jsonable(tolist())
    return str(value)  # e.g. uuid.UUID from a Parquet extension type


# --- paths ---------------------------------------------------------------------------------------


def _check_path(path: str | Path) -> tuple[Path, str]:
    file = Path(path).expanduser()
    suffix = file.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DatasetError(
            f"unsupported dataset format {suffix or '(no extension)'!r} for {file}; "
            "use a .jsonl, .json, .parquet or .csv file"
        )
    if not file.exists():
        raise DatasetError(
            f"dataset file not found: {file}; check the path "
            f"(relative paths start from {Path.cwd()})"
        )
    if file.is_dir():
        raise DatasetError(f"dataset path is a directory: {file}; pass the data file inside it")
    return file, suffix


def _open_checked(file: Path, mode: str) -> Any:
    try:
        if "b" in mode:
            return open(file, mode)  # the caller closes it
        # utf-8-sig: spreadsheet exports often start with a byte-order mark
        return open(file, mode, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise DatasetError(f"cannot read dataset {file}: {exc.strerror or exc}") from exc


# --- JSONL ---------------------------------------------------------------------------------------


def _jsonl_items(file: Path, picker: _Picker) -> Iterator[DatasetRow | RowError]:
    index = -1
    # Binary lines: json.loads takes bytes, and a line that is not UTF-8 becomes that row's error
    # instead of a decode error that would end the whole file.
    with _open_checked(file, "rb") as fh:
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
                    f"{_where(index, line)}: not valid JSON ({detail}{col}); "
                    "each line of a .jsonl file must be one complete JSON object",
                )
                continue
            yield _row_from_object(index, line, obj)


# --- JSON ----------------------------------------------------------------------------------------


def _load_json_array(file: Path) -> list[Any]:
    """The whole .json document, which must be an array of row objects."""
    with _open_checked(file, "rb") as fh:
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
            f"{file} holds {_kind(data)}{keys}, not an array; a .json dataset must be a top-level "
            "array of row objects: wrap the rows in [...] or write one object per line as .jsonl"
        )
    return data


def _json_items(data: list[Any], picker: _Picker) -> Iterator[DatasetRow | RowError]:
    end = len(data) if picker.last is None else min(len(data), picker.last + 1)
    for index in picker.wanted_in(0, end):
        yield _row_from_object(index, None, data[index])


# --- CSV -----------------------------------------------------------------------------------------


def _blank_record(record: Sequence[str]) -> bool:
    return not record or (len(record) == 1 and not record[0].strip())


def _allow_long_csv_fields() -> None:
    # The csv module refuses fields over 128 KiB by default; long prompts are normal here. The limit
    # is process-wide, so only ever raise it.
    if csv.field_size_limit() < 2**31 - 1:
        csv.field_size_limit(2**31 - 1)


def _csv_header(file: Path, records: Iterator[list[str]]) -> list[str]:
    for record in records:
        if not _blank_record(record):
            return record
    raise DatasetError(
        f"{file} is empty; a CSV dataset starts with a header line naming "
        "system_prompt, user_prompt, ground_truth"
    )


def _check_header(file: Path, names: Sequence[str], what: str) -> _Columns:
    """Match a whole file's column names; raise if a required column is missing or doubled."""
    columns = _match_columns(tuple(names))
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


def _csv_items(file: Path, picker: _Picker) -> Iterator[DatasetRow | RowError]:
    _allow_long_csv_fields()
    # Check the header now so a bad file fails at the call, then stream from a fresh handle.
    with _open_checked(file, "r") as fh:
        try:
            header = _csv_header(file, csv.reader(fh))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise DatasetError(
                f"{file}: cannot read the CSV header ({exc}); save it as UTF-8 CSV"
            ) from exc
    columns = _check_header(file, header, "CSV header")
    return _csv_rows(file, header, columns, picker)


def _csv_rows(
    file: Path, header: list[str], columns: _Columns, picker: _Picker
) -> Iterator[DatasetRow | RowError]:
    width = len(header)
    position = {name.strip(): i for i, name in enumerate(header)}
    req = columns.required
    system_at = header.index(req["system_prompt"])
    user_at = header.index(req["user_prompt"])
    truth_at = header.index(req["ground_truth"])
    extras = [(name.strip(), position[name.strip()]) for name in columns.extras]
    with _open_checked(file, "r") as fh:
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
            if error is None and _blank_record(record):
                continue
            index += 1
            if picker.past_end(index):
                return
            if not picker.wants(index):
                continue
            where = _where(index, line)
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
                yield _make_row(
                    index, line, record[system_at], record[user_at], record[truth_at], metadata
                )


# --- Parquet -------------------------------------------------------------------------------------


def _import_parquet() -> Any:
    # Deferred: `import pyarrow.parquet` costs about 0.5 s (measured with -X importtime on the dev
    # box) and most runs read JSONL. pandas (about 2.6 s) is never imported: rows come from
    # pyarrow's own to_pylist, with timestamps cast first so it never asks pandas (see _plain_type).
    import pyarrow.parquet as pq

    return pq


def _open_parquet(file: Path) -> pq.ParquetFile:
    pq = _import_parquet()
    import pyarrow as pa

    try:
        # Stream each column chunk through a 1 MiB buffer instead of loading whole row groups:
        # writers put up to 1Mi rows in one row group by default. Measured on a 3M-row single row
        # group: +80 MB RSS (vs +129 MB unbuffered) and faster (see benchmarks/bench_datasets.py).
        return pq.ParquetFile(file, pre_buffer=False, buffer_size=1 << 20)
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(
            f"cannot read {file} as Parquet ({exc}); check it is a Parquet file"
        ) from exc


def _plain_type(dtype: pa.DataType) -> pa.DataType:
    """``dtype`` with every timestamp made tz-naive and ns timestamps/durations made us.

    pyarrow's to_pylist imports pandas (about 2.6 s) for ns values (to build pandas Timestamps)
    and for tz-aware timestamps (to resolve the zone); microsecond, tz-naive values come back as
    plain datetime/timedelta. Casting tz-aware to naive keeps the UTC instant; top-level columns
    get their zone back in _restore_zone, nested ones stay naive UTC.
    """
    import pyarrow as pa

    types = pa.types
    if types.is_timestamp(dtype) and (dtype.unit == "ns" or dtype.tz is not None):
        return pa.timestamp("us" if dtype.unit == "ns" else dtype.unit)
    if types.is_duration(dtype) and dtype.unit == "ns":
        return pa.duration("us")
    if types.is_struct(dtype):
        fields = [dtype.field(i) for i in range(dtype.num_fields)]
        return pa.struct([f.with_type(_plain_type(f.type)) for f in fields])
    if types.is_map(dtype):
        return pa.map_(dtype.key_field, dtype.item_field.with_type(_plain_type(dtype.item_type)))
    if types.is_large_list(dtype):
        return pa.large_list(dtype.value_field.with_type(_plain_type(dtype.value_type)))
    if types.is_fixed_size_list(dtype):
        return pa.list_(dtype.value_field.with_type(_plain_type(dtype.value_type)), dtype.list_size)
    if types.is_list(dtype):
        return pa.list_(dtype.value_field.with_type(_plain_type(dtype.value_type)))
    return dtype


_OFFSET_ZONE = re.compile(r"([+-])(\d\d):?(\d\d)")


def _zone(name: str) -> dt.tzinfo:
    """The tzinfo for an Arrow timezone string ("UTC", "Europe/Paris", "+01:00"); UTC if unknown."""
    match = _OFFSET_ZONE.fullmatch(name)
    if match:
        sign = -1 if match.group(1) == "-" else 1
        offset = dt.timedelta(hours=int(match.group(2)), minutes=int(match.group(3)))
        return dt.timezone(sign * offset)
    import zoneinfo

    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def _restore_zone(values: list[Any], zone: dt.tzinfo) -> list[Any]:
    """Naive UTC datetimes (see _plain_type) -> aware datetimes in the column's own zone."""
    utc = dt.UTC
    return [
        v.replace(tzinfo=utc).astimezone(zone) if isinstance(v, dt.datetime) else v for v in values
    ]


def _int64_array(values: list[int]) -> pa.Array:
    """An int64 Arrow array built from a buffer: ``pa.array(list)`` imports pandas (about 2 s) the
    first time it is called, to check whether the list is a pandas object."""
    import pyarrow as pa

    buffer = pa.py_buffer(array.array("q", values))
    return pa.Array.from_buffers(pa.int64(), len(values), [None, buffer])


def _column_values(column: pa.Array, cast: pa.DataType | None) -> list[Any]:
    """A column as Python values (cast by _plain_type first if needed)."""
    if cast is not None:
        column = column.cast(cast, safe=False)
    try:
        return column.to_pylist()
    except (OverflowError, ValueError):
        # Dates past year 9999 fit Arrow but not datetime: convert value by value (rare) so only
        # those values become Arrow's own text and the rest stay datetimes.
        return [_scalar_value(column, k) for k in range(len(column))]


def _scalar_value(column: pa.Array, k: int) -> Any:
    import pyarrow as pa

    try:
        return column[k].as_py()
    except (OverflowError, ValueError):
        try:
            return column.slice(k, 1).cast(pa.string())[0].as_py()
        except pa.ArrowException:
            return None


def _parquet_items(file: Path, picker: _Picker) -> Iterator[DatasetRow | RowError]:
    parquet = _open_parquet(file)
    schema = parquet.schema_arrow
    try:
        columns = _check_header(file, schema.names, "Parquet schema")
    except DatasetError:
        parquet.close()
        raise
    import pyarrow as pa

    casts: dict[int, pa.DataType] = {}
    zones: dict[int, dt.tzinfo] = {}
    for i, fld in enumerate(schema):
        target = _plain_type(fld.type)
        if target != fld.type:
            casts[i] = target
        if pa.types.is_timestamp(fld.type) and fld.type.tz is not None:
            zones[i] = _zone(fld.type.tz)
    return _parquet_rows(file, parquet, columns, casts, zones, picker)


def _row_group_runs(parquet: pq.ParquetFile, picker: _Picker) -> list[tuple[int, list[int]]]:
    """Runs of consecutive row groups that hold a wanted row, each with its first row index:
    row groups before the offset or after the last wanted row are never read."""
    runs: list[tuple[int, list[int]]] = []
    meta = parquet.metadata
    start = 0
    for group in range(meta.num_row_groups):
        end = start + meta.row_group(group).num_rows
        if picker.past_end(start):
            break
        if len(picker.wanted_in(start, end)) > 0:
            if runs and runs[-1][1][-1] == group - 1:
                runs[-1][1].append(group)
            else:
                runs.append((start, [group]))
        start = end
    return runs


def _parquet_rows(
    file: Path,
    parquet: pq.ParquetFile,
    columns: _Columns,
    casts: dict[int, pa.DataType],
    zones: dict[int, dt.tzinfo],
    picker: _Picker,
) -> Iterator[DatasetRow | RowError]:
    import pyarrow as pa

    names = parquet.schema_arrow.names
    position = {name: i for i, name in enumerate(names)}
    req = columns.required
    system_at = position[req["system_prompt"]]
    user_at = position[req["user_prompt"]]
    truth_at = position[req["ground_truth"]]
    extras = [
        (name, position[name])
        for name in columns.extras
        if not _PANDAS_INDEX_COLUMN.fullmatch(name)
    ]
    try:
        for first_index, groups in _row_group_runs(parquet, picker):
            start = first_index
            for batch in parquet.iter_batches(
                batch_size=_PARQUET_BATCH_ROWS, row_groups=groups, use_threads=True
            ):
                end = start + batch.num_rows
                wanted = picker.wanted_in(start, end)
                if len(wanted) > 0:
                    # Only the wanted rows of a batch become Python objects; skipped batches cost
                    # just their decode.
                    if isinstance(wanted, range):
                        part = batch.slice(wanted.start - start, len(wanted))
                    else:
                        part = batch.take(_int64_array([i - start for i in wanted]))
                    values = [
                        _column_values(part.column(i), casts.get(i))
                        for i in range(part.num_columns)
                    ]
                    for i, zone in zones.items():
                        values[i] = _restore_zone(values[i], zone)
                    for k, index in enumerate(wanted):
                        metadata = {name: _jsonable(values[at][k]) for name, at in extras}
                        yield _make_row(
                            index,
                            None,
                            values[system_at][k],
                            values[user_at][k],
                            values[truth_at][k],
                            metadata,
                        )
                start = end
                if picker.past_end(start):
                    return
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(
            f"cannot read {file} as Parquet ({exc}); the file may be damaged"
        ) from exc
    finally:
        parquet.close()
