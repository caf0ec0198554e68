"""The message index (line API) and the helpers that describe messages.

The widget tests run ``MessageList`` in a small app with 10,000 messages: only visible rows
are rendered, the cursor and scrolling follow the keys, tool results carry their tool's name.
"""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console
from textual.app import App, ComposeResult
from textual.cache import LRUCache
from textual.geometry import Region
from textual.widgets import ContentSwitcher, Static

from osmosis_workbench.tui.widgets import MessageDetail, MessageList
from osmosis_workbench.tui.widgets.message_format import (
    answer_tokens,
    compact_json,
    editable_to_message,
    first_line,
    format_ms,
    format_reward,
    message_to_editable,
    tool_label,
    tool_names_by_call_id,
)


def tool_call(call_id: str, name: str, arguments: dict) -> dict:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


def trajectory(turns: int) -> list[dict]:
    """A long calculator trajectory: per turn an answer calling add, and its result."""
    messages: list[dict] = [
        {"role": "system", "content": "You are a calculator."},
        {"role": "user", "content": "Add everything up.\nSecond line."},
    ]
    for turn in range(turns):
        messages.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [tool_call(f"c{turn}", "add", {"a": turn, "b": 1})],
            }
        )
        messages.append({"role": "tool", "tool_call_id": f"c{turn}", "content": str(turn + 1)})
    return messages


class ListApp(App[None]):
    """The list and the detail pane, wired as the debugger wires them."""

    def __init__(self, messages: list[dict]) -> None:
        super().__init__()
        self.messages = messages

    def compose(self) -> ComposeResult:
        yield MessageList()
        yield MessageDetail()

    def on_mount(self) -> None:
        listing = self.query_one(MessageList)
        listing.link_detail(self.query_one(MessageDetail))
        listing.set_messages(self.messages, follow=False)
        listing.focus()


def plain(renderable: object, width: int = 120) -> str:
    """What a renderable reads as, without styles."""
    console = Console(width=width, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.file.getvalue()


def visible_text(widget: MessageList) -> list[str]:
    region = widget.scrollable_content_region
    return [strip.text for strip in widget.render_lines(Region(0, 0, region.width, region.height))]


# ---- helpers ----------------------------------------------------------------------------------


def test_first_line_skips_blank_lines_and_summarises_bare_tool_calls() -> None:
    assert first_line({"content": "\n\n  Hello\nworld"}) == "Hello"
    assert first_line({"content": [{"type": "text", "text": "part one"}]}) == "part one"
    call = {"content": None, "tool_calls": [tool_call("x", "add", {"a": 1, "b": 2})]}
    assert first_line(call) == "add(a=1, b=2)"


def test_tool_results_are_labelled_with_the_tool_that_produced_them() -> None:
    messages = trajectory(2)
    names = tool_names_by_call_id(messages)
    assert tool_label(messages[3], names) == "add"
    assert tool_label(messages[2], names) == "→add"
    assert tool_label({"role": "tool", "tool_call_id": "zzz", "name": "lookup"}, names) == "lookup"


def test_answer_tokens_are_keyed_by_the_answers_position_in_the_history() -> None:
    class Exchange:
        def __init__(self, count: int, tokens: int) -> None:
            self.request = {"messages": [{}] * count}
            self.usage = {"completion_tokens": tokens}

    assert answer_tokens([Exchange(2, 30), Exchange(4, 7)]) == {2: 30, 4: 7}


def test_an_edited_answer_round_trips_with_arguments_as_objects() -> None:
    original = {
        "role": "assistant",
        "content": None,
        "reasoning_content": "think",
        "tool_calls": [tool_call("c1", "add", {"a": 17, "b": 25})],
    }
    text = message_to_editable(original)
    assert json.loads(text)["tool_calls"][0]["arguments"] == {"a": 17, "b": 25}
    edited = editable_to_message(text.replace("17", "1"), original)
    assert json.loads(edited["tool_calls"][0]["function"]["arguments"]) == {"a": 1, "b": 25}
    assert edited["tool_calls"][0]["id"] == "c1"
    assert edited["reasoning_content"] == "think"  # fields the dialog does not show are kept


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"content": 3}', "content must be a string"),
        ('{"content": null}', "needs content or at least one tool call"),
        ('{"content": "x", "tool_calls": [{"arguments": {}}]}', 'tool call 1 needs a "name"'),
        ('{"content": "x", "role": "user"}', "unknown keys"),
    ],
)
def test_a_bad_edit_is_refused_with_what_to_fix(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        editable_to_message(text, {"role": "assistant", "content": "a"})


def test_compact_json_keeps_small_objects_on_one_line() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
        "required": ["a", "b"],
        "description": "x" * 80,
    }
    lines = compact_json(schema).splitlines()
    assert '  "properties": {"a": {"type": "number"}, "b": {"type": "number"}},' in lines
    assert json.loads(compact_json(schema)) == schema


def test_durations_read_as_people_write_them() -> None:
    assert [format_ms(ms) for ms in (None, 12.4, 5600, 125_000)] == [
        "-",
        "12 ms",
        "5.6 s",
        "2 min 5 s",
    ]


def test_rewards_read_as_people_write_them() -> None:
    assert [format_reward(r) for r in (1.0, 0.5, 1 / 3, 0, None)] == [
        "1.0",
        "0.5",
        "0.3333",
        "0.0",
        "-",
    ]


# ---- the widget -------------------------------------------------------------------------------


async def test_ten_thousand_messages_render_only_the_visible_rows() -> None:
    messages = trajectory(4999)  # 2 + 2 * 4999 = 10,000 messages
    app = ListApp(messages)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        widget = app.query_one(MessageList)
        assert widget.count == 10_000
        assert widget.virtual_size.height == 10_000
        # Rows are rendered lazily: only what was on screen is in the cache.
        assert len(widget._line_cache) <= widget.scrollable_content_region.height
        rows = visible_text(widget)
        assert "system" in rows[0] and "You are a calculator." in rows[0]
        assert "Add everything up." in rows[1] and "Second line" not in rows[1]


async def test_keys_move_the_cursor_and_keep_it_on_screen() -> None:
    app = ListApp(trajectory(4999))
    async with app.run_test(size=(100, 30)) as pilot:
        widget = app.query_one(MessageList)
        height = widget.scrollable_content_region.height
        await pilot.press("down", "down")
        assert widget.cursor == 2
        await pilot.press("pagedown")
        assert widget.cursor == 2 + height - 1
        await pilot.press("end")
        await pilot.pause()
        assert widget.cursor == 9_999
        assert widget.scroll_offset.y == 10_000 - height
        assert "9999" in visible_text(widget)[-1]
        await pilot.press("home")
        await pilot.pause()
        assert (widget.cursor, widget.scroll_offset.y) == (0, 0)
        await pilot.press("up")  # clamped at the top
        assert widget.cursor == 0


async def test_the_line_cache_stays_bounded_while_scrolling_through_everything() -> None:
    app = ListApp(trajectory(4999))
    async with app.run_test(size=(100, 30)) as pilot:
        widget = app.query_one(MessageList)
        widget._line_cache = LRUCache(maxsize=32)  # small, so a few pages overflow it
        await pilot.press(*["pagedown"] * 10)
        await pilot.pause()
        assert widget.cursor > 100
        assert len(widget._line_cache) == 32
        assert str(widget.cursor) in "".join(visible_text(widget))


class HiddenListApp(App[None]):
    """The list in a view that is not shown yet, as the debugger's message view starts."""

    def compose(self) -> ComposeResult:
        with ContentSwitcher(initial="other"):
            yield Static("another view", id="other")
            yield MessageList(id="messages")


async def test_messages_given_to_a_hidden_list_show_the_cursor_once_it_appears() -> None:
    app = HiddenListApp()
    async with app.run_test(size=(100, 30)) as pilot:
        widget = app.query_one(MessageList)
        widget.set_messages(trajectory(4999))  # following the end: the cursor goes last
        await pilot.pause()
        app.query_one(ContentSwitcher).current = "messages"
        await pilot.pause()
        height = widget.scrollable_content_region.height
        assert widget.cursor == 9_999
        assert widget.scroll_offset.y == 10_000 - height
        assert "9999" in visible_text(widget)[-1]


def thumb_rows(widget: MessageList) -> list[int]:
    """The rows whose last cell is the position column's thumb."""
    region = widget.scrollable_content_region
    widget.render_lines(Region(0, 0, region.width, region.height))  # sets the pass's styles
    thumb = widget.get_component_rich_style("message-list--thumb")
    rows = [widget.render_line(y) for y in range(region.height)]
    assert all(row.cell_length == region.width for row in rows)
    return [y for y, row in enumerate(rows) if list(row)[-1].style == thumb]


async def test_the_last_column_shows_the_position_and_a_click_on_it_jumps() -> None:
    app = ListApp(trajectory(4999))
    async with app.run_test(size=(100, 30)) as pilot:
        widget = app.query_one(MessageList)
        region = widget.scrollable_content_region
        assert thumb_rows(widget) == [0]  # 10,000 rows in a short pane: a one-cell thumb
        await pilot.press("end")
        await pilot.pause()
        assert thumb_rows(widget) == [region.height - 1]
        # A click on the column's middle jumps to the middle of the history.
        await pilot.click(MessageList, offset=(region.width - 1, region.height // 2))
        await pilot.pause()
        assert abs(widget.cursor - 5_000) < 10_000 / region.height
        assert str(widget.cursor) in "".join(visible_text(widget))
        assert thumb_rows(widget) == [region.height // 2]


async def test_a_history_that_fits_has_no_position_column() -> None:
    app = ListApp(trajectory(3))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert thumb_rows(app.query_one(MessageList)) == []


def drawn_rows(widget: MessageDetail) -> list[str]:
    """The pane's rows as the screen gets them (through Textual's per-row cache)."""
    width, height = widget.size
    return [strip.text.strip() for strip in widget.render_lines(Region(0, 0, width, height))]


async def test_moving_between_messages_leaves_no_row_of_the_previous_one() -> None:
    # The pane redraws only the rows that differ: a row it missed would still show text of
    # the message before.
    long = {"role": "user", "content": "\n\n".join(f"paragraph {i}" for i in range(8))}
    short = {"role": "assistant", "content": "short answer"}
    app = ListApp([long, short, long, dict(long, content="paragraph 0")])
    async with app.run_test(size=(100, 60)) as pilot:
        detail = app.query_one(MessageDetail)
        await pilot.pause()
        assert detail.size.height > 20
        assert "paragraph 7" in drawn_rows(detail)
        await pilot.press("down")
        await pilot.pause()
        rows = drawn_rows(detail)
        assert "short answer" in rows and not any("paragraph" in row for row in rows)
        assert rows[0].startswith("#1 assistant")
        for index, expected in ((2, "paragraph 7"), (3, "paragraph 0")):
            await pilot.press("down")
            await pilot.pause()
            rows = drawn_rows(detail)
            assert rows[0].startswith(f"#{index} user") and expected in rows
        assert not any("paragraph 1" in row for row in rows)


async def test_the_detail_pane_shows_the_highlighted_message_with_its_tool() -> None:
    app = ListApp(trajectory(3))
    async with app.run_test(size=(120, 40)) as pilot:
        widget = app.query_one(MessageList)
        await pilot.press("down", "down", "down")  # message 3: the first tool result
        await pilot.pause()
        detail = app.query_one(MessageDetail)
        assert detail.index == 3
        assert "add" in visible_text(widget)[3]  # the tool column of the result's row
        assert "#3 tool result of add" in detail.plain_text
        assert "call id c0" in detail.plain_text


async def test_enter_and_click_select_a_message() -> None:
    seen: list[object] = []
    app = ListApp(trajectory(3))
    async with app.run_test(size=(100, 30), message_hook=seen.append) as pilot:
        await pilot.press("down", "enter")
        await pilot.click(MessageList, offset=(5, 4))
        await pilot.pause()
        # The hook sees a message at each node it bubbles through: count each once.
        selected = {id(m): m.index for m in seen if isinstance(m, MessageList.Selected)}
        assert list(selected.values()) == [1, 4]
        assert app.query_one(MessageList).cursor == 4


async def test_new_messages_keep_a_cursor_on_the_last_message_following() -> None:
    messages = trajectory(1)
    app = ListApp(messages)
    async with app.run_test(size=(100, 30)) as pilot:
        widget = app.query_one(MessageList)
        await pilot.press("end")
        widget.set_messages(trajectory(5), pending_index=11)
        await pilot.pause()
        assert widget.cursor == 11
        assert "pending" in visible_text(widget)[11]


def test_highlight_messages_for_one_list_replace_each_other() -> None:
    first, second = MessageList(), MessageList()
    a, b = MessageList.Highlighted(first, 1), MessageList.Highlighted(first, 2)
    assert b.can_replace(a)
    assert not MessageList.Highlighted(second, 3).can_replace(a)
