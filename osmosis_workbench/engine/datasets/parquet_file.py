"""Parquet datasets: streamed one record batch at a time, only the wanted rows made Python.

pyarrow is imported only when a Parquet file is read, and pandas never (see ``_import_parquet``).
"""

from __future__ import annotations

import array
import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from osmosis_workbench.engine.datasets.rows import (
    Columns,
    DatasetError,
    DatasetRow,
    RowError,
    check_header,
    make_row,
)
from osmosis_workbench.engine.datasets.selection import Picker
from osmosis_workbench.engine.datasets.values import jsonable

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

# Rows per Parquet record batch: small enough that the first row arrives quickly and memory stays
# flat, large enough that per-batch overhead is noise (see benchmarks/bench_datasets.py).
_PARQUET_BATCH_ROWS = 2048
# pandas writes its index as a column with this name; it is not user data.
_PANDAS_INDEX_COLUMN = re.compile(r"__index_level_\d+__")


def _import_parquet() -> Any:
    # Deferred: `import pyarrow.parquet` costs about 0.5 s (measured with -X importtime on the dev
    # box) and most runs read JSONL. pandas (about 2.6 s) is never imported: rows come from
    # pyarrow's own to_pylist, with timestamps cast first so it never asks pandas (see _plain_type).
    import pyarrow.parquet as pq

    return pq


def open_parquet(file: Path) -> pq.ParquetFile:
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


def parquet_items(file: Path, picker: Picker) -> Iterator[DatasetRow | RowError]:
    parquet = open_parquet(file)
    schema = parquet.schema_arrow
    try:
        columns = check_header(file, schema.names, "Parquet schema")
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


def _row_group_runs(parquet: pq.ParquetFile, picker: Picker) -> list[tuple[int, list[int]]]:
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
    columns: Columns,
    casts: dict[int, pa.DataType],
    zones: dict[int, dt.tzinfo],
    picker: Picker,
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
                        metadata = {name: jsonable(values[at][k]) for name, at in extras}
                        yield make_row(
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


def count_parquet_rows(file: Path) -> int:
    """How many rows the file holds (read from its footer only)."""
    with open_parquet(file) as parquet:
        return parquet.metadata.num_rows
