"""The message history: a one-line-per-message index (line API) and a detail pane.

``MessageList`` follows toolong's design: the messages live outside the widget, ``render_line``
draws only the rows on screen, each row's ``Strip`` is kept in an LRU, and ``virtual_size``
comes from the message count. One widget per message (a ``ListView``) takes seconds per key
at a few thousand messages; this stays flat at 10,000 (see ``benchmarks/bench_tui_scroll.py``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any, ClassVar

from rich.cells import cell_len, set_cell_size
from rich.console import RenderableType
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from osmosis_workbench.tui.widgets.message_format import (
    estimate_tokens,
    first_line,
    format_tokens,
    tool_label,
    tool_names_by_call_id,
)
from osmosis_workbench.tui.widgets.rollout_views import render_message

#: Width of the role column ("assistant" is the longest role).
_ROLE_WIDTH = 9
#: Width of the token column, right-aligned.
_TOKENS_WIDTH = 7
#: The styled parts of a row (component classes ``message-list--<part>``).
_ROW_PARTS = (
    "index",
    "system",
    "user",
    "assistant",
    "tool",
    "tool-name",
    "tokens",
    "pending",
    "match",
    "marked",
)
#: Rows kept drawn: three screens at 200x60, for one-row scrolls and paging back and forth.
_LINE_CACHE_ROWS = 192


class MessageList(ScrollView, can_focus=True):
    """One line per message: index, role, tool name, first line, tokens; a cursor selects."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "message-list--cursor",
        "message-list--index",
        "message-list--system",
        "message-list--user",
        "message-list--assistant",
        "message-list--tool",
        "message-list--tool-name",
        "message-list--tokens",
        "message-list--pending",
        "message-list--match",
        "message-list--marked",
        "message-list--track",
        "message-list--thumb",
    }

    # No Textual scrollbar: it draws all 60 of its rows again on every scroll, a third of a
    # page-down's frame at 200x60. The last column shows the position instead (the track and
    # its thumb, drawn with the rows), and a click on it jumps there.
    DEFAULT_CSS = """
    MessageList {
        overflow-x: hidden;
        scrollbar-size-vertical: 0;
        background: $surface;
        & > .message-list--track { background: $scrollbar-background; }
        & > .message-list--thumb { background: $scrollbar; }
        & > .message-list--cursor { background: $boost; text-style: bold; }
        &:focus > .message-list--cursor { background: $accent 35%; }
        & > .message-list--index { color: $text-muted; }
        & > .message-list--system { color: $text-muted; text-style: bold; }
        & > .message-list--user { color: $success; text-style: bold; }
        & > .message-list--assistant { color: $primary; text-style: bold; }
        & > .message-list--tool { color: $warning; text-style: bold; }
        & > .message-list--tool-name { color: $secondary; }
        & > .message-list--tokens { color: $text-muted; }
        & > .message-list--pending { color: $warning; text-style: italic; }
        & > .message-list--match { color: $text; background: $warning 45%; }
        & > .message-list--marked { color: $error; text-style: bold; }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor_up", "Up", show=False, id="messages.cursor_up"),
        Binding("down,j", "cursor_down", "Down", show=False, id="messages.cursor_down"),
        Binding("pageup", "page_up", "Page up", show=False, id="messages.page_up"),
        Binding("pagedown", "page_down", "Page down", show=False, id="messages.page_down"),
        Binding("home,g", "first", "First", show=False, id="messages.first"),
        Binding("end,G", "last", "Last", show=False, id="messages.last"),
        Binding("enter", "select", "Open message", show=False, id="messages.select"),
    ]

    class Highlighted(Message):
        """The cursor moved to the message at ``index``."""

        def __init__(self, message_list: MessageList, index: int) -> None:
            super().__init__()
            self.message_list = message_list
            self.index = index

        def can_replace(self, message: Message) -> bool:
            # Held-down keys queue many moves: only the latest one needs a detail render.
            return isinstance(message, MessageList.Highlighted) and (
                message.message_list is self.message_list
            )

    class Selected(Message):
        """The message at ``index`` was chosen (enter or click)."""

        def __init__(self, message_list: MessageList, index: int) -> None:
            super().__init__()
            self.message_list = message_list
            self.index = index

    def __init__(
        self, *, name: str | None = None, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._messages: Sequence[Mapping[str, Any]] = ()
        self._tool_names: dict[str, str] = {}
        self._exact_tokens: Mapping[int, int] = {}
        self._pending: int | None = None
        #: A message singled out with a note in the tokens column (the first difference).
        self._marked: tuple[int, str] | None = None
        #: The search: its pattern and the messages it matches (highlighted).
        self._pattern: re.Pattern[str] | None = None
        self._matches: Collection[int] = frozenset()
        self._detail: MessageDetail | None = None
        # Rows drawn with the pane's style, keyed by (index, width, position column shown): a
        # one-row scroll draws one new row, a resize the visible rows. Small on purpose: every
        # cached row is ~25 objects the garbage collector walks, and at 2,048 rows its full
        # passes took 60 ms (a late key).
        self._line_cache: LRUCache[tuple[int, int, bool], Strip] = LRUCache(
            maxsize=_LINE_CACHE_ROWS
        )
        self.cursor = 0
        # Set at the start of each render pass (see render_lines).
        self._pass_width = 0
        self._pass_base = Style()
        # What the cached rows were drawn with: the pane's style and its parts' styles.
        self._pass_theme: tuple[Style, dict[str, Style], Style, Style] | None = None
        self._pass_row: dict[str, Style] = {}
        self._pass_cursor: dict[str, Style] = {}
        # The position column's two cells (track, thumb), or None without one.
        self._pass_track: tuple[Segment, Segment] | None = None
        self._pass_thumb = range(0)

    # ---- data ---------------------------------------------------------------------------------

    def link_detail(self, detail: MessageDetail) -> None:
        """Show the cursor's message in ``detail``, drawn in the same frame as the cursor.

        (A ``Highlighted`` handler would draw it a frame or two later: the message bubbles
        through each container's queue first, ~40 ms a key on a busy machine.)
        """
        self._detail = detail

    def _show_in_detail(self) -> None:
        detail = self._detail
        if detail is None:
            return
        if not self._messages:
            detail.clear()
            return
        index = self.cursor
        detail.show(
            self._messages[index],
            index=index,
            tool_name=self.tool_name(index),
            tokens=self.tokens_text(index),
            pending=index == self._pending,
        )

    @property
    def messages(self) -> Sequence[Mapping[str, Any]]:
        """The messages shown (kept by reference, never copied)."""
        return self._messages

    @property
    def count(self) -> int:
        """How many messages there are."""
        return len(self._messages)

    def tool_name(self, index: int) -> str:
        """The tool column of message ``index`` (a result's tool, or an answer's calls)."""
        return tool_label(self._messages[index], self._tool_names)

    def tokens_text(self, index: int) -> str:
        """Tokens of message ``index``: the model's count for answers, else an estimate."""
        exact = self._exact_tokens.get(index)
        if exact is not None:
            return format_tokens(exact, True)
        return format_tokens(estimate_tokens(self._messages[index]), False)

    def set_search(self, pattern: re.Pattern[str] | None, matches: Collection[int]) -> None:
        """Highlight the messages a search matches (``pattern``: their text too); None: none."""
        self._pattern = pattern
        self._matches = matches if isinstance(matches, set | frozenset) else set(matches)
        self._line_cache.clear()
        self.refresh()

    def set_messages(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        exact_tokens: Mapping[int, int] | None = None,
        pending_index: int | None = None,
        marked: tuple[int, str] | None = None,
        follow: bool = True,
    ) -> None:
        """Show ``messages``; with ``follow`` a cursor on the last message stays on the last.

        ``marked``: (index, note) of a message to single out (the first one that differs).
        """
        # Following the end is what a user watching a running rollout wants; a user who
        # scrolled up to read stays where they are.
        was_at_end = self.cursor >= len(self._messages) - 1
        self._messages = messages
        self._tool_names = tool_names_by_call_id(messages)
        self._exact_tokens = exact_tokens or {}
        self._pending = pending_index
        self._marked = marked
        self._line_cache.clear()
        self.virtual_size = Size(0, len(messages))
        last = max(0, len(messages) - 1)
        self.cursor = last if follow and was_at_end else min(self.cursor, last)
        self._scroll_cursor_into_view()
        self.refresh()
        self._show_in_detail()
        self.post_message(self.Highlighted(self, self.cursor))

    # ---- rendering ----------------------------------------------------------------------------

    def render_lines(self, crop: Region) -> list[Strip]:
        """Draw the rows in ``crop``; styles are looked up once per pass, not once per row."""
        # ``rich_style`` walks the ancestors for the background: ~0.5 ms a call here, which
        # was most of a scroll's cost when done for each of 60 rows.
        base = self.rich_style
        parts = {name: self._style(name) for name in _ROW_PARTS}
        track, thumb = (
            self.get_component_rich_style(f"message-list--{name}") for name in ("track", "thumb")
        )
        if (base, parts, track, thumb) != self._pass_theme:
            # A new theme: the cached rows have the old colours. Each part's full style on a
            # plain row ("" is the text): segments get it directly, where
            # ``Strip.apply_style`` would copy each row.
            self._pass_theme = (base, parts, track, thumb)
            self._line_cache.clear()
            self._pass_row = {"": base, **{name: base + style for name, style in parts.items()}}
        # The cursor row's styles change with the focus: looked up on every pass.
        cursor = base + self.get_component_rich_style("message-list--cursor")
        self._pass_cursor = {"": cursor, **{name: cursor + style for name, style in parts.items()}}
        self._pass_base = base
        region = self.scrollable_content_region
        count = len(self._messages)
        # The position column: only when the messages do not fit.
        gutter = 1 if count > region.height > 0 and region.width > 1 else 0
        self._pass_width = region.width - gutter
        if gutter:
            size = max(1, region.height * region.height // count)
            top = (region.height - size) * self.scroll_offset.y // max(1, count - region.height)
            self._pass_thumb = range(top, top + size)
            self._pass_track = (Segment(" ", track), Segment(" ", thumb))
        else:
            self._pass_track = None
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        """Draw screen row ``y``: only visible rows are ever rendered."""
        index = self.scroll_offset.y + y
        width, track = self._pass_width, self._pass_track
        if index >= len(self._messages) or width <= 0:
            return Strip.blank(width + (track is not None), self._pass_base)
        if index == self.cursor:
            # Drawn afresh: caching it would keep a second copy of a row that moves each key.
            strip = self._render_message_line(index, width, self._pass_cursor)
            if track is None:
                return strip
            return Strip([*strip, track[y in self._pass_thumb]], width + 1)
        # Cached with the position column's track cell: a frame reuses the rows as they are.
        key = (index, width, track is not None)
        cached = self._line_cache.get(key)
        if cached is not None:
            strip = cached
        else:
            strip = self._render_message_line(index, width, self._pass_row)
            if track is not None:
                strip = Strip([*strip, track[0]], width + 1)
            self._line_cache[key] = strip
        if track is not None and y in self._pass_thumb:
            return Strip([*list(strip)[:-1], track[1]], width + 1)
        return strip

    def _style(self, name: str) -> Style:
        # Foreground and text style only: the row background comes from render_line.
        style = self.get_component_rich_style(f"message-list--{name}", partial=True)
        return Style(
            color=style.color,
            bgcolor=style.bgcolor,  # only the search's match sets one
            bold=style.bold,
            italic=style.italic,
        )

    def _render_message_line(self, index: int, width: int, styles: Mapping[str, Style]) -> Strip:
        """Row ``index`` at ``width`` cells, with ``styles`` by part (see render_lines)."""
        message = self._messages[index]
        role = str(message.get("role") or "?")
        index_width = max(3, len(str(len(self._messages) - 1)))
        # The tool column shrinks on narrow panes so the first line keeps some room.
        tool_width = 0 if width < 40 else 10 if width < 70 else 14
        pending = index == self._pending
        marked = self._marked is not None and index == self._marked[0]
        if pending:
            tokens, flag = "⏸ pending", "pending"
        elif marked and self._marked is not None:
            tokens, flag = self._marked[1], "marked"
        else:
            tokens, flag = self.tokens_text(index), ""
        matched = index in self._matches
        segments = [
            Segment(f"{index:>{index_width}}", styles["match" if matched else "index"]),
            Segment(" ", styles["index"]),
            Segment(set_cell_size(role, _ROLE_WIDTH) + " ", styles.get(role, styles["index"])),
        ]
        used = index_width + 1 + _ROLE_WIDTH + 1
        if tool_width:
            label = tool_label(message, self._tool_names)
            segments.append(Segment(set_cell_size(label, tool_width) + " ", styles["tool-name"]))
            used += tool_width + 1
        tokens_cells = cell_len(tokens)
        tokens_width = max(_TOKENS_WIDTH, tokens_cells) + 1
        text_width = max(0, width - used - tokens_width)
        text = set_cell_size(first_line(message), text_width)
        text_style = styles[flag]
        if matched and self._pattern is not None:
            segments.extend(_highlighted(text, self._pattern, text_style, styles["match"]))
        else:
            segments.append(Segment(text, text_style))
        segments.append(
            Segment(
                " " * (tokens_width - tokens_cells) + tokens,
                styles[flag or "tokens"],
            )
        )
        return Strip(segments, used + text_width + tokens_width).adjust_cell_length(width)

    # ---- cursor -------------------------------------------------------------------------------

    def move_cursor(self, index: int) -> None:
        """Put the cursor on message ``index`` (clamped) and keep it on screen."""
        if not self._messages:
            return
        index = max(0, min(index, len(self._messages) - 1))
        if index == self.cursor:
            return  # no frame for a key that changes nothing (home at the top)
        old, self.cursor = self.cursor, index
        # Only the two changed rows are drawn again (unless the view scrolls).
        self.refresh_line(old)
        self.refresh_line(index)
        self._scroll_cursor_into_view()
        self._show_in_detail()
        self.post_message(self.Highlighted(self, index))

    def on_resize(self) -> None:
        # Messages given while the list was hidden (no size yet) scrolled nowhere: the
        # cursor may be on the last of 10,000 rows while the view shows the first.
        self._scroll_cursor_into_view()

    def _scroll_cursor_into_view(self) -> None:
        top = self.scroll_offset.y
        height = max(1, self.scrollable_content_region.height)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + height:
            self.scroll_to(y=self.cursor - height + 1, animate=False, immediate=True)

    def _page(self) -> int:
        # One row of overlap, so the reader keeps their place across pages.
        return max(1, self.scrollable_content_region.height - 1)

    def action_cursor_up(self) -> None:
        """Previous message."""
        self.move_cursor(self.cursor - 1)

    def action_cursor_down(self) -> None:
        """Next message."""
        self.move_cursor(self.cursor + 1)

    def action_page_up(self) -> None:
        """One screen up."""
        self.move_cursor(self.cursor - self._page())

    def action_page_down(self) -> None:
        """One screen down."""
        self.move_cursor(self.cursor + self._page())

    def action_first(self) -> None:
        """The first message."""
        self.move_cursor(0)

    def action_last(self) -> None:
        """The last message."""
        self.move_cursor(len(self._messages) - 1)

    def action_select(self) -> None:
        """Open the message under the cursor."""
        if self._messages:
            self.post_message(self.Selected(self, self.cursor))

    def on_click(self, event: events.Click) -> None:
        """A click selects the row under the pointer; on the position column, jumps there."""
        offset = event.get_content_offset(self)
        if offset is None or not self._messages:
            return
        region = self.scrollable_content_region
        if self._pass_track is not None and offset.x >= region.width - 1:
            share = offset.y / max(1, region.height - 1)
            self.move_cursor(round(share * (len(self._messages) - 1)))
            return
        index = self.scroll_offset.y + offset.y
        if 0 <= index < len(self._messages):
            self.move_cursor(index)
            self.post_message(self.Selected(self, index))


class MessageDetail(ScrollView, can_focus=True):
    """The selected message in full: markdown content, pretty JSON, labelled tool results.

    Also a line-API view: the message is rendered to lines once when shown (and again on a
    resize). A ``Static`` in a scrolling container measured, laid out and rendered the screen
    again for each cursor move: about 40 ms a key at 200x60 here.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {"message-detail--match", "message-detail--current"}

    DEFAULT_CSS = """
    MessageDetail {
        background: $surface;
        overflow-x: hidden;
        & > .message-detail--match { background: $warning 45%; }
        & > .message-detail--current { background: $accent; color: $text; text-style: bold; }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "scroll_up", "Up", show=False),
        Binding("down,j", "scroll_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown,space", "page_down", "Page down", show=False),
        Binding("home,g", "scroll_home", "Top", show=False),
        Binding("end,G", "scroll_end", "Bottom", show=False),
    ]

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.index: int | None = None
        #: Whether message text is rendered as markdown (else as written).
        self.markdown = False
        #: What ``show`` was last given, to draw it again (markdown on or off).
        self._shown: tuple[Mapping[str, Any], int, str, str, bool] | None = None
        self._renderable: RenderableType = Text("Select a message to see it whole.")
        self._strips: list[Strip] = []
        self._rendered_width = -1
        self._pass_base = Style()
        #: The search shown: its pattern, each match as (line, start, end), the current one.
        self._pattern: re.Pattern[str] | None = None
        self.hits: list[tuple[int, int, int]] = []
        self.current_hit: int | None = None
        self._hit_lines: dict[int, list[int]] = {}  # line -> its hits' positions in ``hits``

    @property
    def plain_text(self) -> str:
        """What the pane shows, as text (for tests and copying)."""
        return "\n".join(strip.text.rstrip() for strip in self._strips)

    def show(
        self,
        message: Mapping[str, Any],
        *,
        index: int,
        tool_name: str,
        tokens: str,
        pending: bool = False,
    ) -> None:
        """Render ``message`` (number ``index``) and scroll back to its top."""
        # The pane's title stays "Message": the first line names the message, and a new
        # title would redraw the whole pane, where only the rows that differ are drawn again.
        self.index = index
        self._shown = (message, index, tool_name, tokens, pending)
        self._draw_shown()

    def set_markdown(self, markdown: bool) -> None:
        """Render message text as markdown, or as written; the shown message follows."""
        self.markdown = markdown
        self._draw_shown()

    def _draw_shown(self) -> None:
        if self._shown is None:
            return
        message, index, tool_name, tokens, pending = self._shown
        self._set_renderable(
            render_message(
                message,
                index=index,
                tool_name=tool_name,
                tokens=tokens,
                pending=pending,
                markdown=self.markdown,
            )
        )

    def clear(self, text: str = "No messages yet.") -> None:
        """Show a hint instead of a message."""
        self.index = None
        self._shown = None
        self._set_renderable(Text(text))

    def _set_renderable(self, renderable: RenderableType) -> None:
        old_strips, old_width, old_size = self._strips, self._rendered_width, self.virtual_size
        self._renderable = renderable
        self._rendered_width = -1
        self._render_strips()
        if (
            self.scroll_offset.y == 0
            and self._rendered_width > 0
            and self._rendered_width == old_width
            and self.virtual_size == old_size
            and self._pattern is None  # highlighted rows may differ where the text does not
        ):
            self._refresh_changed_rows(old_strips)
        else:
            self.scroll_to(0, 0, animate=False, immediate=True)
            self.refresh()

    def _refresh_changed_rows(self, old_strips: list[Strip]) -> None:
        """Redraw only the rows that differ from ``old_strips`` (the view is at the top).

        Most messages fill a few rows of a 60-row pane: the blank rows below them stay as
        they are (the pane's share of a key at 200x60 went from 6 ms to 1 ms).
        """
        new_strips = self._strips
        rows = min(self.scrollable_content_region.height, max(len(old_strips), len(new_strips)))
        changed = [
            y >= len(old_strips) or y >= len(new_strips) or old_strips[y] != new_strips[y]
            for y in range(rows)
        ]
        start: int | None = None
        for y, differs in enumerate([*changed, False]):
            if differs and start is None:
                start = y
            elif not differs and start is not None:
                self.refresh_lines(start, y - start)
                start = None

    def _render_strips(self) -> None:
        width = self.scrollable_content_region.width
        if width <= 0 or width == self._rendered_width:
            return
        console = self.app.console
        lines = console.render_lines(
            self._renderable, console.options.update_width(width), pad=False
        )
        self._strips = [Strip(line).adjust_cell_length(width) for line in lines]
        self._rendered_width = width
        self._update_virtual_size()
        self._find_hits()

    def _update_virtual_size(self) -> None:
        # Never less than the pane: moving between messages that fit then leaves the size
        # alone, and a changed virtual size would lay out (and redraw) the whole screen.
        height = max(len(self._strips), self.scrollable_content_region.height)
        self.virtual_size = Size(self._rendered_width, height)

    def on_resize(self) -> None:
        self._render_strips()
        self._update_virtual_size()

    def render_lines(self, crop: Region) -> list[Strip]:
        """Draw the rows in ``crop`` (the message is rendered first if the width changed)."""
        self._render_strips()
        self._pass_base = self.rich_style
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        """Draw screen row ``y`` from the rendered lines."""
        index = self.scroll_offset.y + y
        if 0 <= index < len(self._strips):
            if index in self._hit_lines:
                return self._highlighted_line(index).apply_style(self._pass_base)
            # The same Strip objects each pass: apply_style is cached on them.
            return self._strips[index].apply_style(self._pass_base)
        return Strip.blank(self._rendered_width, self._pass_base)

    # ---- search -------------------------------------------------------------------------------

    def set_search(self, pattern: re.Pattern[str] | None) -> None:
        """Highlight what ``pattern`` matches in the shown message (``None``: nothing)."""
        self._pattern = pattern
        self._find_hits()
        self.refresh()

    def _find_hits(self) -> None:
        """Every match of the pattern in the rendered lines (a new message starts at none)."""
        self.hits, self.current_hit, self._hit_lines = [], None, {}
        pattern = self._pattern
        if pattern is None:
            return
        for line, strip in enumerate(self._strips):
            for found in pattern.finditer(strip.text):
                if found.end() > found.start():
                    self._hit_lines.setdefault(line, []).append(len(self.hits))
                    self.hits.append((line, found.start(), found.end()))

    def step_hit(self, forward: bool = True) -> int | None:
        """Go to the next (or previous) match, wrapping; its position in ``hits``."""
        if not self.hits:
            return None
        old = self.current_hit
        if old is None:
            # The first step goes to the first match at or below the top of the view.
            top = self.scroll_offset.y
            after = [n for n, hit in enumerate(self.hits) if hit[0] >= top]
            new = (after[0] if after else 0) if forward else (after[0] - 1 if after else -1)
        else:
            new = old + (1 if forward else -1)
        self.current_hit = new % len(self.hits)
        line = self.hits[self.current_hit][0]
        if old is not None:
            self.refresh_line(self.hits[old][0] - self.scroll_offset.y)
        height = self.scrollable_content_region.height
        if not self.scroll_offset.y <= line < self.scroll_offset.y + height:
            self.scroll_to(y=max(0, line - height // 3), animate=False, immediate=True)
        self.refresh_line(line - self.scroll_offset.y)
        return self.current_hit

    def _highlighted_line(self, line: int) -> Strip:
        """Rendered line ``line`` with its matches (and the current one) restyled."""
        match = self.get_component_rich_style("message-detail--match", partial=True)
        current = self.get_component_rich_style("message-detail--current", partial=True)
        spans = [(self.hits[n][1], self.hits[n][2], n) for n in self._hit_lines[line]]
        segments: list[Segment] = []
        offset = 0  # characters of the line before the segment
        for segment in self._strips[line]:
            text, style = segment.text, segment.style or Style()
            cuts = {0, len(text)}
            for start, end, _n in spans:
                for cut in (start - offset, end - offset):
                    if 0 < cut < len(text):
                        cuts.add(cut)
            bounds = sorted(cuts)
            for left, right in itertools.pairwise(bounds):
                at = offset + left
                hit = next((n for start, end, n in spans if start <= at < end), None)
                if hit is None:
                    segments.append(Segment(text[left:right], style))
                else:
                    extra = current if hit == self.current_hit else match
                    segments.append(Segment(text[left:right], style + extra))
            offset += len(text)
        return Strip(segments, self._strips[line].cell_length)


def _highlighted(text: str, pattern: re.Pattern[str], style: Style, match: Style) -> list[Segment]:
    """``text`` as segments, the parts ``pattern`` matches in ``match``'s style."""
    segments: list[Segment] = []
    position = 0
    for found in pattern.finditer(text):
        start, end = found.span()
        if start == end:
            continue  # a regex that matches nothing (``a*``) has nothing to show
        if start > position:
            segments.append(Segment(text[position:start], style))
        segments.append(Segment(text[start:end], style + match))
        position = end
    if position < len(text) or not segments:
        segments.append(Segment(text[position:], style))
    return segments
