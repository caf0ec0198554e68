"""Dataset paths: the supported formats, and opening a file with an error that names the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from osmosis_workbench.engine.datasets.rows import DatasetError

SUPPORTED_SUFFIXES: tuple[str, ...] = (".jsonl", ".json", ".parquet", ".csv")


def check_path(path: str | Path) -> tuple[Path, str]:
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


def open_checked(file: Path, mode: str) -> Any:
    try:
        if "b" in mode:
            return open(file, mode)  # the caller closes it
        # utf-8-sig: spreadsheet exports often start with a byte-order mark
        return open(file, mode, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise DatasetError(f"cannot read dataset {file}: {exc.strerror or exc}") from exc
