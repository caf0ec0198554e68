"""Which rows of a dataset to read: offset, limit, explicit rows, and why a selection is empty."""

from __future__ import annotations

import bisect
import re
from collections.abc import Collection
from dataclasses import dataclass

_MAX_SPEC_ROWS = 10_000_000


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

    def why_empty(self, total: int, dataset: str) -> str | None:
        """Why this selection picks no row of ``dataset`` (``total`` rows), with the fix.

        ``None`` when it picks at least one.
        """
        if total == 0:
            return (
                f"{dataset} has no rows: add rows with system_prompt, user_prompt and "
                "ground_truth (for .jsonl, one JSON object per line)"
            )
        if self.selected_count(total) > 0:
            return None
        if self.limit == 0:
            return "--limit 0 selects no rows: give --limit 1 or more, or leave it out"
        has = f"{dataset} has {total} rows (0-{total - 1})"
        if self.rows is not None:
            asked = format_row_spec(self.rows)
            if not self.rows:
                return "no rows were asked for: pick some"
            if all(r < self.offset for r in self.rows):
                return (
                    f"--rows {asked} are all below --offset {self.offset}: "
                    "drop --offset (--rows alone picks the rows)"
                )
            return f"--rows {asked} is past the end: {has}; pick rows from 0 to {total - 1}"
        return f"--offset {self.offset} skips every row: {has}; use an offset below {total}"


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


def format_row_spec(rows: Collection[int], most: int = 6) -> str:
    """Row indexes written as ``parse_row_spec`` reads them (``3,7,10-20``), cut after ``most``
    ranges."""
    ranges: list[list[int]] = []
    for row in sorted(rows):
        if ranges and row == ranges[-1][1] + 1:
            ranges[-1][1] = row
        else:
            ranges.append([row, row])
    parts = [str(first) if first == last else f"{first}-{last}" for first, last in ranges[:most]]
    return ",".join(parts) + (",..." if len(ranges) > most else "")


class Picker:
    """A selection resolved to a closed window of row indexes, so readers can skip cheaply and
    stop as soon as the last wanted row is passed."""

    __slots__ = ("first", "last", "row_set", "rows")

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
