"""A line-API table for thousands of rows that change while a batch runs.

Textual's ``DataTable`` re-renders every visible cell whenever any cell changes (its render
cache is keyed on a global update count): measured here, a 300-row batch spent 3 of its 5 s
redrawing cells. ``RowTable`` follows toolong instead: the rows' data stays with the owner, who
gives a ``cells(key)`` function; the table keeps only the keys and a version per row.
``render_line`` builds the cells of visible rows only, and each row's ``Strip`` is cached under
its version, so ``touch(key)`` (the row changed) costs a counter increment and one line's
redraw, and marking a thousand rows costs nothing until they scroll into view.
The header stays on the first line; the cursor selects whole rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

Justify = Literal["left", "right", "center"]
#: A cell: plain text (never parsed as markup) or a styled ``Text``.
Cell = str | Text


@dataclass(frozen=True)
class Column:
    """A column: ``width`` 0 takes the room the fixed columns leave (at least ``min_width``)."""

    key: str
    label: str
    width: int = 0
    justify: Justify = "left"
    min_width: int = 8


class RowTable(ScrollView, can_focus=True):
    """Rows of cells under a header; a row cursor; one cached strip per row."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor_up", "Up", show=False, id="table.cursor_up"),
        Binding("down", "cursor_down", "Down", show=False, id="table.cursor_down"),
        Binding("pageup", "page_up", "Page up", show=False, id="table.page_up"),
        Binding("pagedown", "page_down", "Page down", show=False, id="table.page_down"),
        Binding("home", "first", "First", show=False, id="table.first"),
        Binding("end", "last", "Last", show=False, id="table.last"),
        Binding("enter", "select", "Open", show=False, id="table.select"),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "row-table--header",
        "row-table--cursor",
        "row-table--odd",
    }

    DEFAULT_CSS = """
    RowTable {
        background: $surface;
        overflow-x: hidden;
        overflow-y: auto;
    }
    RowTable > .row-table--header {
        text-style: bold;
        background: $panel;
        color: $text;
    }
    RowTable > .row-table--cursor {
        background: $secondary 30%;
    }
    RowTable:focus > .row-table--cursor {
        background: $accent 50%;
    }
    RowTable > .row-table--odd {
        background: $boost;
    }
    """

    cursor_row: reactive[int] = reactive(0, always_update=True, repaint=False)

    class RowHighlighted(Message):
        """The cursor moved to the row with ``key`` (``None``: the table is empty)."""

        def __init__(self, table: RowTable, key: str | None) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> RowTable:
            """The table that posted this."""
            return self.table

    class RowSelected(Message):
        """Enter (or a click on the cursor row) on the row with ``key``."""

        def __init__(self, table: RowTable, key: str) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> RowTable:
            """The table that posted this."""
            return self.table

    def __init__(
        self,
        columns: list[Column],
        cells: Callable[[str], Sequence[Cell]],
        *,
        empty_text: str = "",
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.columns = columns
        #: Builds the cells of one row from the owner's data (called for visible rows only).
        self.cells = cells
        #: Shown (dimmed) under the header while the table has no rows.
        self.empty_text = empty_text
        self._keys: list[str] = []
        self._position: dict[str, int] = {}
        self._versions: dict[str, int] = {}
        self._strips: LRUCache[tuple, Strip] = LRUCache(1024)
        self._widths: list[int] = []

    # ---- data --------------------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        """How many rows the table has."""
        return len(self._keys)

    @property
    def keys(self) -> list[str]:
        """The row keys, top to bottom."""
        return list(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._position

    def cell_text(self, key: str, column: str) -> str:
        """The plain text of one cell (for tests and copying)."""
        index = next(i for i, c in enumerate(self.columns) if c.key == column)
        cell = self.cells(key)[index]
        return cell.plain if isinstance(cell, Text) else str(cell)

    def add_rows(self, keys: list[str]) -> None:
        """Append rows (each key must be new)."""
        for key in keys:
            if key in self._position:
                raise KeyError(f"row {key!r} is already in the table")
            self._position[key] = len(self._keys)
            self._keys.append(key)
            self._versions[key] = 0
        self._resize()
        self.refresh()
        if len(self._keys) == len(keys):  # the first rows: put the cursor on the first
            self.cursor_row = 0

    def add_row(self, key: str) -> None:
        """Append one row."""
        self.add_rows([key])

    def touch(self, key: str) -> None:
        """Row ``key`` changed: its line is rebuilt when next drawn (now, if visible)."""
        self._versions[key] += 1
        self.refresh_line(self._position[key] + 1)  # +1: the header line

    def touch_all(self) -> None:
        """Every row changed (one repaint, whatever the row count)."""
        self._strips.clear()
        self.refresh()

    def remove_row(self, key: str) -> None:
        """Remove row ``key`` (the rows below move up)."""
        position = self._position.pop(key)
        del self._keys[position]
        del self._versions[key]
        for index in range(position, len(self._keys)):
            self._position[self._keys[index]] = index
        self._resize()
        self.cursor_row = min(self.cursor_row, max(0, len(self._keys) - 1))
        self.refresh()

    def clear(self) -> None:
        """Remove every row."""
        self._keys.clear()
        self._position.clear()
        self._versions.clear()
        self._strips.clear()
        self._resize()
        self.cursor_row = 0
        self.refresh()

    def _resize(self) -> None:
        # One line more than the rows: the header, so the last row can scroll into view.
        self.virtual_size = Size(self.size.width, len(self._keys) + 1)

    # ---- the cursor --------------------------------------------------------------------------

    @property
    def cursor_key(self) -> str | None:
        """The key of the row under the cursor."""
        if not self._keys:
            return None
        return self._keys[min(self.cursor_row, len(self._keys) - 1)]

    def move_cursor(self, key: str) -> None:
        """Put the cursor on row ``key``."""
        self.cursor_row = self._position[key]

    def validate_cursor_row(self, row: int) -> int:
        return max(0, min(row, len(self._keys) - 1)) if self._keys else 0

    def watch_cursor_row(self, old: int, new: int) -> None:
        self.refresh_line(old + 1)
        self.refresh_line(new + 1)
        self._scroll_cursor_into_view()
        self.post_message(self.RowHighlighted(self, self.cursor_key))

    @property
    def _visible_rows(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def _scroll_cursor_into_view(self) -> None:
        top = round(self.scroll_offset.y)
        row = self.cursor_row
        if row < top:
            self.scroll_to(y=row, animate=False, immediate=True)
        elif row >= top + self._visible_rows:
            self.scroll_to(y=row - self._visible_rows + 1, animate=False, immediate=True)

    def action_cursor_up(self) -> None:
        """Move the cursor up a row."""
        self.cursor_row -= 1

    def action_cursor_down(self) -> None:
        """Move the cursor down a row."""
        self.cursor_row += 1

    def action_page_up(self) -> None:
        """Move the cursor up a page."""
        self.cursor_row -= self._visible_rows

    def action_page_down(self) -> None:
        """Move the cursor down a page."""
        self.cursor_row += self._visible_rows

    def action_first(self) -> None:
        """Move the cursor to the first row."""
        self.cursor_row = 0

    def action_last(self) -> None:
        """Move the cursor to the last row."""
        self.cursor_row = len(self._keys) - 1

    def action_select(self) -> None:
        """Post ``RowSelected`` for the cursor row."""
        key = self.cursor_key
        if key is not None:
            self.post_message(self.RowSelected(self, key))

    def on_click(self, event: events.Click) -> None:
        """A click moves the cursor; a click on the cursor row selects it."""
        if event.y == 0:
            return  # the header
        # Screen line y shows the row y - 1 below the first visible one (the header is line 0).
        row = round(self.scroll_offset.y) + event.y - 1
        if 0 <= row < len(self._keys):
            if row == self.cursor_row:
                self.action_select()
            self.cursor_row = row

    # ---- drawing -----------------------------------------------------------------------------

    def on_resize(self) -> None:
        """Recompute the flexible column's width (the strips are keyed by width)."""
        self._widths = []
        self._resize()

    def column_widths(self, width: int) -> list[int]:
        """Each column's width for a table ``width`` cells wide (one space between columns)."""
        if not self._widths or sum(self._widths) + len(self._widths) - 1 != width:
            fixed = sum(c.width for c in self.columns) + len(self.columns) - 1
            flexible = [c for c in self.columns if not c.width]
            room = max(0, width - fixed)
            share = room // len(flexible) if flexible else 0
            self._widths = [c.width or max(c.min_width, share) for c in self.columns]
        return self._widths

    def _line_text(self, cells: Sequence[Cell], widths: list[int]) -> Text:
        line = Text(no_wrap=True, end="")
        for index, (column, cell, width) in enumerate(
            zip(self.columns, cells, widths, strict=True)
        ):
            if index:
                line.append(" ")
            # A copy: truncate and align change the Text, and the owner may keep its cells.
            text = cell.copy() if isinstance(cell, Text) else Text(str(cell))
            text.truncate(width, overflow="ellipsis")
            text.align(column.justify, width)
            line.append_text(text)
        return line

    def render_line(self, y: int) -> Strip:
        """Line ``y`` of the widget: the header, or the row scrolled to that line."""
        width = self.scrollable_content_region.width
        widths = self.column_widths(width)
        if y == 0:
            return self._header_strip(widths, width)
        position = round(self.scroll_offset.y) + y - 1
        if position >= len(self._keys):
            if y == 1 and not self._keys and self.empty_text:
                hint = Text(" " + self.empty_text, style="dim italic", no_wrap=True)
                return self._strip(hint, self.rich_style, width)
            return Strip.blank(width, self.rich_style)
        key = self._keys[position]
        cursor = position == self.cursor_row
        # Everything a line's look depends on: a changed row, a resize, the cursor moving,
        # a row moving up (its stripe) and focus (the cursor's colour) each miss the cache.
        cache_key = (key, self._versions[key], width, cursor, position % 2, self.has_focus)
        strip = self._strips.get(cache_key)
        if strip is None:
            line = self._line_text(self.cells(key), widths)
            base = self.rich_style
            if cursor:
                base += self.get_component_rich_style("row-table--cursor")
            elif position % 2:
                base += self.get_component_rich_style("row-table--odd")
            strip = self._strip(line, base, width)
            self._strips[cache_key] = strip
        return strip

    def _header_strip(self, widths: list[int], width: int) -> Strip:
        line = self._line_text([Text(c.label) for c in self.columns], widths)
        style = self.rich_style + self.get_component_rich_style("row-table--header")
        return self._strip(line, style, width)

    def _strip(self, line: Text, base: Style, width: int) -> Strip:
        # The row's own styles (status colours) sit on top of the background style.
        segments = [
            Segment(text, base + style if style else base, control)
            for text, style, control in line.render(self.app.console)
        ]
        return Strip(segments).crop_extend(0, width, base)

    def notify_style_update(self) -> None:
        """A theme or focus change restyles every row."""
        super().notify_style_update()
        self._strips.clear()

    def on_focus(self) -> None:
        """The cursor row's colour depends on focus."""
        self.refresh_line(self.cursor_row + 1)

    def on_blur(self) -> None:
        """The cursor row's colour depends on focus."""
        self.refresh_line(self.cursor_row + 1)
