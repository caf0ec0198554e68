"""Dataset rows for rollouts: read .jsonl, .json, .parquet and .csv files one row at a time.

Every data row has a ``system_prompt``, a ``user_prompt`` and a ``ground_truth`` (column names
matched in any letter case); other columns travel along as JSON-safe ``metadata``. A bad row is
yielded as a :class:`RowError` (row index, line number, what is wrong and how to fix it) and the
rows after it keep coming; a file that cannot be read at all raises :class:`DatasetError`.

Files are streamed: JSONL and CSV line by line, Parquet one record batch at a time, so a
million-row file starts yielding at once and is read in bounded memory. Row selection
(offset / limit / explicit rows) skips unwanted rows without building Python objects for them.

One module per format (``jsonl_file``, ``json_file``, ``csv_file``, ``parquet_file``); ``rows``
turns one record into a row or a row error, ``selection`` says which rows are read, ``reader``
picks the format. Headless: never imports textual or litellm; pyarrow only for Parquet files.
"""

from osmosis_workbench.engine.datasets.files import SUPPORTED_SUFFIXES
from osmosis_workbench.engine.datasets.reader import (
    aiter_dataset,
    count_rows,
    iter_dataset,
    load_rows,
)
from osmosis_workbench.engine.datasets.rows import (
    REQUIRED_COLUMNS,
    DatasetError,
    DatasetRow,
    RowError,
)
from osmosis_workbench.engine.datasets.selection import RowSelection, parse_row_spec

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
