"""Tests for osmosis_workbench.engine.datasets: formats, bad rows, whole-file errors, selection."""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.json as pj
import pyarrow.parquet as pq
import pytest

from osmosis_workbench.engine.datasets import (
    DatasetError,
    DatasetRow,
    RowError,
    RowSelection,
    aiter_dataset,
    count_rows,
    iter_dataset,
    load_rows,
    parquet_file,
    parse_row_spec,
    values,
)

GOOD = {"system_prompt": "You add.", "user_prompt": "2+2?", "ground_truth": "4"}


def write_jsonl(path: Path, lines: list[object | str]) -> Path:
    """Objects are dumped as JSON; strings are written verbatim (blank or broken lines)."""
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return path


def write_parquet(
    path: Path,
    columns: dict[str, list],
    types: dict[str, pa.DataType] | None = None,
    **write_options: object,
) -> Path:
    """Write columns of JSON values as Parquet, cast to ``types`` where given ("NaN"/"inf" strings
    cast to float64 become NaN/inf).

    Goes through pyarrow's JSON reader because pa.array() and pa.table() import pandas (about
    2 s here) the first time they run, which would double this file's run time."""
    size = len(next(iter(columns.values())))
    source = path.with_suffix(".source.jsonl")
    rows = ({name: values[i] for name, values in columns.items()} for i in range(size))
    source.write_text("\n".join(json.dumps(row) for row in rows), encoding="utf-8")
    table = pj.read_json(source)
    types = types or {}
    schema = pa.schema([pa.field(f.name, types.get(f.name, f.type)) for f in table.schema])
    pq.write_table(table.cast(schema), path, **write_options)
    return path


def indexes(items) -> list[int]:
    return [item.index for item in items]


# --- formats -------------------------------------------------------------------------------------


def test_jsonl_rows_with_line_numbers_metadata_and_blank_lines_skipped(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [GOOD, "", "   ", {**GOOD, "user_prompt": "3+3?", "ground_truth": 6, "tag": "b"}],
    )
    first, second = iter_dataset(path)
    assert first == DatasetRow(0, 1, "You add.", "2+2?", "4", {})
    assert (second.index, second.line, second.ground_truth, second.metadata) == (
        1,
        4,
        6,
        {"tag": "b"},
    )
    assert second.messages() == [
        {"role": "system", "content": "You add."},
        {"role": "user", "content": "3+3?"},
    ]


def test_json_array_rows_have_no_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps([GOOD, {**GOOD, "extra": [1, {"k": None}]}]), encoding="utf-8")
    rows, errors = load_rows(path)
    assert errors == []
    assert [(r.index, r.line) for r in rows] == [(0, None), (1, None)]
    assert rows[1].metadata == {"extra": [1, {"k": None}]}


def test_csv_rows_keep_text_and_count_lines_of_quoted_newlines(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "d.csv",
        [
            ["system_prompt", "user_prompt", "ground_truth", "source"],
            ["", "line one\nline two", "4", "a"],
            [],
            ["sys", "q", "4.0", "b"],
        ],
    )
    first, second = iter_dataset(path)
    assert (first.index, first.line, first.user_prompt, first.metadata) == (
        0,
        2,
        "line one\nline two",
        {"source": "a"},
    )
    # line 4 is the blank record, so the second data row starts on line 5
    assert (second.index, second.line, second.ground_truth) == (1, 5, "4.0")
    assert first.messages() == [{"role": "user", "content": "line one\nline two"}]


def test_csv_with_byte_order_mark_and_spaced_header(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffSystem_Prompt, USER_PROMPT ,Ground_Truth\ns,u,7\n".encode())
    (row,) = iter_dataset(path)
    assert (row.system_prompt, row.user_prompt, row.ground_truth) == ("s", "u", "7")


def test_parquet_rows_numeric_truth_and_json_safe_metadata(tmp_path: Path) -> None:
    path = write_parquet(
        tmp_path / "d.parquet",
        {
            "System_Prompt": ["s", None],
            "User_Prompt": ["u0", "u1"],
            "Ground_Truth": [4.0, 2.5],
            "when": [1_700_000_000_123_456_789, None],
            "local": [1_700_000_000_123_456_789, None],
            "far": [400_000_000_000, 0],  # seconds: year 14645, past what datetime can hold
            "day": ["2024-01-02", None],
            "score": ["NaN", "1.5"],
            "price": ["2.50", "3"],
            "blob": ["bytes", "text"],
            "nested": [{"a": 1, "b": [1.0, None]}, None],
        },
        types={
            "when": pa.timestamp("ns", tz="UTC"),
            "local": pa.timestamp("ns", tz="+01:00"),
            "far": pa.timestamp("s"),
            "day": pa.date32(),
            "score": pa.float64(),
            "price": pa.decimal128(5, 2),
            "blob": pa.binary(),
        },
    )
    pandas_was_loaded = "pandas" in sys.modules
    first, second = iter_dataset(path)
    assert [r.metadata for r in iter_dataset(path, RowSelection(rows={1}))] == [second.metadata]
    # pyarrow turns ns timestamps into pandas objects (importing pandas, seconds) unless cast first
    assert pandas_was_loaded or "pandas" not in sys.modules
    assert (first.line, first.ground_truth, first.ground_truth_text) == (None, 4.0, "4")
    assert second.ground_truth_text == "2.5"
    assert second.system_prompt == "" and second.messages() == [{"role": "user", "content": "u1"}]
    assert first.metadata == {
        "when": "2023-11-14T22:13:20.123456+00:00",
        "local": "2023-11-14T23:13:20.123456+01:00",
        "far": "14645-06-30 15:06:40.000",  # Arrow's text (Parquet stores seconds as ms)
        "day": "2024-01-02",
        "score": None,
        "price": 2.5,
        "blob": "bytes",
        "nested": {"a": 1, "b": [1.0, None]},
    }
    assert second.metadata == {
        "when": None,
        "local": None,
        "far": "1970-01-01T00:00:00",
        "day": None,
        "score": 1.5,
        "price": 3,
        "blob": "text",
        "nested": None,
    }
    json.dumps([first.metadata, second.metadata], allow_nan=False)


def test_parquet_decimal_ground_truth_is_a_number(tmp_path: Path) -> None:
    path = write_parquet(
        tmp_path / "d.parquet",
        {"system_prompt": ["s", "s"], "user_prompt": ["u", "u"], "ground_truth": ["4.00", "0.5"]},
        types={"ground_truth": pa.decimal128(5, 2)},
    )
    assert [(r.ground_truth, r.ground_truth_text) for r in iter_dataset(path)] == [
        (4, "4"),
        (0.5, "0.5"),
    ]


def test_metadata_values_that_json_cannot_hold_are_converted() -> None:
    """Values only reachable from numpy/pyarrow objects (the readers never produce them from
    JSON or CSV): each becomes a plain JSON value."""
    to_json = values.jsonable
    assert to_json(np.int64(3)) == 3 and type(to_json(np.int64(3))) is int
    assert to_json(np.float32(float("nan"))) is None
    assert to_json(np.array([1.5, 2])) == [1.5, 2.0]
    assert to_json(b"\xff\x00") == "base64:/wA="
    assert to_json(Decimal("NaN")) is None
    assert to_json(dt.timedelta(seconds=90)) == 90.0
    assert to_json({1: (dt.time(1, 2), {3})}) == {"1": ["01:02:00", [3]]}
    assert to_json(float("-inf")) is None


def test_module_import_is_light_and_headless() -> None:
    """Importing the module pulls in neither pyarrow (about 0.5 s) nor pandas, textual or litellm;
    parquet reading imports pyarrow when needed (ns timestamps never reach pandas: see the
    microsecond timestamp in the metadata test above)."""
    code = (
        "import sys, osmosis_workbench.engine.datasets\n"
        "heavy = ('pyarrow', 'pandas', 'numpy', 'textual', 'litellm')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_columns_match_in_any_case(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [{"SYSTEM_PROMPT": "s", "User_Prompt": "u", "ground_TRUTH": 3, "Note": "kept as written"}],
    )
    (row,) = iter_dataset(path)
    assert (row.system_prompt, row.user_prompt, row.ground_truth) == ("s", "u", 3)
    assert row.metadata == {"Note": "kept as written"}


def test_ground_truth_text() -> None:
    def text(truth: object) -> str:
        return DatasetRow(0, None, "", "u", truth, {}).ground_truth_text

    assert [text(4), text(4.0), text(-0.0), text(2.5), text("x")] == ["4", "4", "0", "2.5", "x"]


# --- bad rows ------------------------------------------------------------------------------------


def test_jsonl_bad_rows_are_reported_and_good_rows_keep_coming(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [
            GOOD,  # row 0, line 1
            '{"system_prompt": "s", "user_prompt": ',  # row 1, line 2: broken JSON
            "[1, 2]",  # row 2, line 3: not an object
            {"system_prompt": "s", "ground_truth": "4"},  # row 3, line 4
            "",  # line 5: blank, not a row
            {**GOOD, "user_prompt": "  "},  # row 4, line 6
            {**GOOD, "ground_truth": None},  # row 5, line 7
            {**GOOD, "ground_truth": True},  # row 6, line 8
            {**GOOD, "ground_truth": ["4", "four"]},  # row 7, line 9
            {**GOOD, "user_prompt": 5},  # row 8, line 10
            {**GOOD, "USER_PROMPT": "again"},  # row 9, line 11: two user_prompt columns
            {"user_prompt": "u"},  # row 10, line 12
            {**GOOD, "system_prompt": ""},  # row 11, line 13: empty system prompt is fine
        ],
    )
    with path.open("ab") as fh:
        fh.write(b'{"user_prompt": "\xff"}\n')  # row 12, line 14: not UTF-8
        fh.write(json.dumps(GOOD).encode() + b"\n")  # row 13, line 15
    items = list(iter_dataset(path))
    good = [item for item in items if isinstance(item, DatasetRow)]
    bad = {item.index: item for item in items if isinstance(item, RowError)}
    assert [(r.index, r.line) for r in good] == [(0, 1), (11, 13), (13, 15)]
    assert good[1].messages() == [{"role": "user", "content": "2+2?"}]
    assert {i: e.line for i, e in bad.items()} == {
        1: 2, 2: 3, 3: 4, 4: 6, 5: 7, 6: 8, 7: 9, 8: 10, 9: 11, 10: 12, 12: 14,
    }  # fmt: skip
    assert bad[3].message == (
        "row 3 (line 4): missing column 'user_prompt'; "
        "each row needs system_prompt, user_prompt, ground_truth"
    )
    assert str(bad[3]) == bad[3].message
    assert bad[1].message.startswith("row 1 (line 2): not valid JSON (")
    assert "one complete JSON object" in bad[1].message
    assert "expected a JSON object, got a list" in bad[2].message
    assert "user_prompt is empty" in bad[4].message
    assert "ground_truth is null" in bad[5].message
    assert "ground_truth must be a string or a number, got a boolean" in bad[6].message
    assert "got a list" in bad[7].message
    assert "user_prompt must be a string, got a number" in bad[8].message
    assert "'user_prompt' and 'USER_PROMPT'" in bad[9].message
    assert "missing columns 'system_prompt', 'ground_truth'" in bad[10].message
    assert "not UTF-8" in bad[12].message


def test_csv_bad_rows(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "d.csv",
        [
            ["system_prompt", "user_prompt", "ground_truth"],
            ["s", "u", "4"],
            ["s", "only two fields"],
            ["s", "", "4"],
            ["s", "u", " "],
            ["s", "u", "4", "extra"],
            ["", "u", "5"],
        ],
    )
    items = list(iter_dataset(path))
    assert [(type(i).__name__, i.index, i.line) for i in items] == [
        ("DatasetRow", 0, 2),
        ("RowError", 1, 3),
        ("RowError", 2, 4),
        ("RowError", 3, 5),
        ("RowError", 4, 6),
        ("DatasetRow", 5, 7),
    ]
    assert items[1].message.startswith("row 1 (line 3): has 2 fields but the header has 3;")
    assert "user_prompt is empty" in items[2].message
    assert "ground_truth is empty" in items[3].message


def test_parquet_bad_rows_have_no_line_numbers(tmp_path: Path) -> None:
    path = write_parquet(
        tmp_path / "d.parquet",
        {
            "system_prompt": ["s", "s", "s", "s"],
            "user_prompt": ["u", None, "u", "u"],
            "ground_truth": ["1", "2", "NaN", "inf"],
        },
        types={"ground_truth": pa.float64()},
    )
    items = list(iter_dataset(path))
    assert isinstance(items[0], DatasetRow)
    assert [(i.index, i.line) for i in items[1:]] == [(1, None), (2, None), (3, None)]
    assert items[1].message == "row 1: user_prompt is null; give every row a non-empty user_prompt"
    assert items[2].message.startswith("row 2: ground_truth is null")
    assert "not a finite number" in items[3].message


def test_json_array_element_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps([GOOD, "oops", GOOD]), encoding="utf-8")
    rows, errors = load_rows(path)
    assert indexes(rows) == [0, 2]
    assert errors == [
        RowError(
            1,
            None,
            "row 1: expected a JSON object, got a string; write each row as "
            '{"system_prompt": ..., "user_prompt": ..., "ground_truth": ...}',
        )
    ]


# --- whole-file errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("missing.jsonl", None, "dataset file not found"),
        ("data.txt", "x", "unsupported dataset format '.txt'"),
        ("noext", "x", "unsupported dataset format '(no extension)'"),
        ("d.csv", "", "is empty; a CSV dataset starts with a header line"),
        ("d.csv", "system_prompt,prompt,ground_truth\ns,u,4\n", "has no column 'user_prompt'"),
        ("d.csv", "user_prompt,User_Prompt,system_prompt,ground_truth\n", "both mean user_prompt"),
        ("d.json", '{"data": []}', "holds an object with keys 'data', not an array"),
        ("d.json", "[1, 2", "is not valid JSON"),
        ("d.json", '{"a": 1}\n{"a": 2}\n', "one object per line is the .jsonl format"),
        ("d.parquet", "not parquet", "cannot read"),
    ],
)
def test_unreadable_files_raise_at_the_call(
    tmp_path: Path, name: str, content: str | None, expected: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError, match=re.escape(expected)) as caught:
        iter_dataset(path)  # raises before any iteration
    assert str(path) in str(caught.value)


def test_directory_and_parquet_schema_errors(tmp_path: Path) -> None:
    folder = tmp_path / "rows.jsonl"
    folder.mkdir()
    with pytest.raises(DatasetError, match="is a directory"):
        iter_dataset(folder)
    path = write_parquet(tmp_path / "d.parquet", {"system_prompt": ["s"], "user_prompt": ["u"]})
    with pytest.raises(DatasetError) as caught:
        iter_dataset(path)
    message = str(caught.value)
    assert "Parquet schema has no column 'ground_truth'" in message
    assert "columns: 'system_prompt', 'user_prompt'" in message and str(path) in message


# --- selection -----------------------------------------------------------------------------------


def expected_indexes(total: int, selection: RowSelection) -> list[int]:
    """The selection semantics, written the obvious way."""
    chosen = [
        i
        for i in range(total)
        if i >= selection.offset and (selection.rows is None or i in selection.rows)
    ]
    return chosen if selection.limit is None else chosen[: selection.limit]


SELECTIONS = [
    RowSelection(),
    RowSelection(offset=5),
    RowSelection(offset=6, limit=4),
    RowSelection(offset=13, limit=100),
    RowSelection(limit=0),
    RowSelection(offset=500),
    RowSelection(rows=frozenset({0, 6, 7, 20, 48, 49, 99})),
    RowSelection(offset=7, limit=2, rows=parse_row_spec("0-3,7,13-15,40")),
    RowSelection(rows=frozenset()),
]


def test_selection_on_parquet_across_row_groups_and_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    total = 50
    path = write_parquet(
        tmp_path / "d.parquet",
        {
            "system_prompt": ["s"] * total,
            "user_prompt": [f"u{i}" for i in range(total)],
            "ground_truth": list(range(total)),
        },
        row_group_size=7,  # row groups and batches of different sizes: boundaries never line up
    )
    monkeypatch.setattr(parquet_file, "_PARQUET_BATCH_ROWS", 3)
    assert pq.ParquetFile(path).metadata.num_row_groups == 8
    for selection in SELECTIONS:
        items = list(iter_dataset(path, selection))
        assert indexes(items) == expected_indexes(total, selection), selection
        # the row content belongs to its index, so no batch was mis-numbered
        assert all(item.ground_truth == item.index for item in items)


def test_selection_on_jsonl_csv_and_json(tmp_path: Path) -> None:
    total = 50
    objects = [{**GOOD, "ground_truth": i} for i in range(total)]
    jsonl = write_jsonl(tmp_path / "d.jsonl", [*objects[:10], "", *objects[10:]])
    array = tmp_path / "d.json"
    array.write_text(json.dumps(objects), encoding="utf-8")
    table = write_csv(
        tmp_path / "d.csv",
        [list(GOOD)]
        + [[o["system_prompt"], o["user_prompt"], str(i)] for i, o in enumerate(objects)],
    )
    for path in (jsonl, array, table):
        for selection in SELECTIONS:
            items = list(iter_dataset(path, selection))
            assert indexes(items) == expected_indexes(total, selection), (path.name, selection)
            assert all(str(item.ground_truth) == str(item.index) for item in items)
    # the blank line is not a row but still counts as a line
    assert [r.line for r in iter_dataset(jsonl, RowSelection(offset=9, limit=2))] == [10, 12]


def test_limit_counts_bad_rows_and_skipped_rows_are_not_parsed(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", ["{broken", GOOD, "{broken", GOOD, GOOD])
    items = list(iter_dataset(path, RowSelection(offset=1, limit=2)))
    assert [(type(i).__name__, i.index) for i in items] == [("DatasetRow", 1), ("RowError", 2)]


def test_row_selection_validation_and_selected_count() -> None:
    assert RowSelection(rows=(3, 1, 3)).rows == frozenset({1, 3})
    for bad in ({"offset": -1}, {"limit": -2}, {"rows": [1, -1]}, {"offset": 1.5}):
        with pytest.raises(ValueError, match="bad"):
            RowSelection(**bad)
    assert RowSelection().selected_count(10) == 10
    assert RowSelection(offset=8, limit=5).selected_count(10) == 2
    assert RowSelection(offset=2, limit=1, rows={1, 3, 4, 30}).selected_count(10) == 1
    assert RowSelection(offset=20).selected_count(10) == 0


def test_parse_row_spec() -> None:
    assert parse_row_spec("3,7,10-12") == (3, 7, 10, 11, 12)
    assert parse_row_spec(" 9 , 2-3,3 ") == (2, 3, 9)
    assert parse_row_spec("0") == (0,)
    with pytest.raises(ValueError) as caught:
        parse_row_spec("3-a")
    assert str(caught.value) == "bad --rows value '3-a': use numbers and ranges like 3,7,10-20"
    for bad in ("", "1,,2", "-3", "1-2-3", "x", "1.5", "\u0663"):
        with pytest.raises(ValueError, match="use numbers and ranges like 3,7,10-20"):
            parse_row_spec(bad)
    with pytest.raises(ValueError, match="runs backwards"):
        parse_row_spec("20-10")
    with pytest.raises(ValueError, match="use --offset and --limit"):
        parse_row_spec("0-999999999")


# --- async, counting, convenience ----------------------------------------------------------------


async def test_aiter_dataset_matches_iter_dataset(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD] * 7 + ["[]"] + [GOOD] * 3)
    seen = [item async for item in aiter_dataset(path, chunk_size=3)]
    assert seen == list(iter_dataset(path))
    assert isinstance(seen[7], RowError)
    selected = [i.index async for i in aiter_dataset(path, RowSelection(offset=2, limit=4), 2)]
    assert selected == [2, 3, 4, 5]


async def test_aiter_dataset_errors_and_early_close(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        [item async for item in aiter_dataset(tmp_path / "missing.parquet")]
    with pytest.raises(ValueError, match="chunk_size"):
        [item async for item in aiter_dataset(tmp_path / "x.jsonl", chunk_size=0)]
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD] * 10)
    stream = aiter_dataset(path, chunk_size=4)
    assert (await anext(stream)).index == 0
    await stream.aclose()  # closes the file behind it without error


def test_count_rows(tmp_path: Path) -> None:
    jsonl = write_jsonl(tmp_path / "d.jsonl", [GOOD, "", "{broken", GOOD])
    table = write_csv(
        tmp_path / "d.csv", [list(GOOD), ["s", "multi\nline", "1"], [], ["s", "u", "2"]]
    )
    array = tmp_path / "d.json"
    array.write_text(json.dumps([GOOD] * 4), encoding="utf-8")
    parquet = write_parquet(tmp_path / "d.parquet", {k: [v] * 5 for k, v in GOOD.items()})
    assert [count_rows(p) for p in (jsonl, table, array, parquet)] == [3, 2, 4, 5]
    assert count_rows(tmp_path / "missing.jsonl") is None
    (tmp_path / "obj.json").write_text("{}", encoding="utf-8")
    assert count_rows(tmp_path / "obj.json") is None


def test_load_rows_splits_good_and_bad(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD, "7", GOOD])
    rows, errors = load_rows(path, RowSelection(offset=1))
    assert indexes(rows) == [2] and indexes(errors) == [1]
