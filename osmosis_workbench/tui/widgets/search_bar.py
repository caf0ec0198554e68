"""A one-line search bar: type to search, enter for the next match, the count beside it.

The bar only reports what the user does (``Changed``, ``Step``, ``Closed``); its owner runs
the search and tells it the outcome (``show_count``). The debugger uses it for the message
history and the message pane, the dataset screen for its row filter.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Input, Label, Static


class _BarMessage(Message):
    """A message of one search bar (``@on(..., "#id")`` matches it by ``control``)."""

    def __init__(self, bar: SearchBar) -> None:
        super().__init__()
        self.bar = bar

    @property
    def control(self) -> SearchBar:
        """The bar that posted this."""
        return self.bar


class SearchBar(Horizontal):
    """``/ query  3 of 17 · regex``: hidden until opened; the owner does the searching."""

    DEFAULT_CSS = """
    SearchBar {
        display: none;
        height: 1;
        /* Over the last line above the key bar, on a layer of its own: opening and closing
           it moves no other widget, so the panes under it are not laid out and drawn again
           (a layout pass of the whole screen: 20-60 ms a key at 10,000 messages). */
        layer: search-bar;
        dock: bottom;
        offset-y: -1;
        background: $boost;
        &.-open { display: block; }
        & > Label { padding: 0 1; color: $accent; text-style: bold; }
        & > Input { width: 1fr; border: none; height: 1; padding: 0; background: $boost; }
        & > #search-count {
            /* A fixed share: a count that changes on every key never lays the bar out. */
            width: 40%;
            padding: 0 1;
            color: $text-muted;
            text-align: right;
            text-wrap: nowrap;
            text-overflow: ellipsis;
        }
        & > #search-count.-error { color: $error; }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        # enter itself comes as the Input's Submitted. Priority: the Input scrolls on up/down.
        Binding("down", "step(True)", "Next", key_display="⏎/↓", priority=True, id="search.next"),
        Binding(
            "shift+enter,up",
            "step(False)",
            "Previous",
            key_display="⇧⏎/↑",
            priority=True,
            id="search.previous",
        ),
        Binding("ctrl+r", "toggle_regex", "Regex", id="search.regex"),
        Binding("escape", "close", "Close", id="search.close"),
    ]

    class Changed(_BarMessage):
        """The query (or its mode) changed: search again."""

        def __init__(self, bar: SearchBar, query: str, regex: bool) -> None:
            super().__init__(bar)
            self.query, self.regex = query, regex

        def can_replace(self, message: Message) -> bool:
            # Fast typing queues several: only the last query needs a search.
            return isinstance(message, SearchBar.Changed) and message.bar is self.bar

    class Step(_BarMessage):
        """Go to the next match (``forward``) or the previous one."""

        def __init__(self, bar: SearchBar, forward: bool) -> None:
            super().__init__(bar)
            self.forward = forward

    class Closed(_BarMessage):
        """The bar was closed: forget the search."""

    def __init__(
        self,
        *,
        placeholder: str = "search",
        steps: bool = True,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.placeholder = placeholder
        #: Whether there are matches to step through (a filter has none: enter leaves the bar).
        self.steps = steps
        #: Whether the query is a regular expression (ctrl+r), else plain text.
        self.regex = False
        #: What is searched (the owner's tag, e.g. "messages" or "message").
        self.target = ""
        #: What had the focus when the bar opened (it gets it back when the bar closes).
        self._return_focus: Widget | None = None

    def compose(self) -> ComposeResult:
        yield Label("/")
        yield Input(placeholder=self.placeholder, compact=True, id="search-input")
        yield Static("", id="search-count")

    @property
    def input(self) -> Input:
        """Where the query is typed."""
        return self.query_one(Input)

    @property
    def query_text(self) -> str:
        """The query as typed."""
        return self.input.value

    @property
    def is_open(self) -> bool:
        """Whether the bar is shown."""
        return self.has_class("-open")

    def open(self, target: str, placeholder: str | None = None) -> None:
        """Show the bar for ``target`` and focus it (the last query stays, selected)."""
        self.target = target
        if placeholder is not None:
            self.input.placeholder = placeholder
        # Shown and focused in one frame (``focus()`` would wait a turn and draw twice).
        if not self.is_open:
            self._return_focus = self.screen.focused
        with self.app.batch_update():
            self.add_class("-open")
            self.screen.set_focus(self.input)
        self.input.select_all()
        if self.query_text:
            self.post_message(self.Changed(self, self.query_text, self.regex))

    def close(self) -> None:
        """Hide the bar, give the focus back to where it was, and tell the owner."""
        back = self._return_focus
        self._return_focus = None
        with self.app.batch_update():
            self.remove_class("-open")
            if back is not None and back.is_attached and back.display and back.focusable:
                self.screen.set_focus(back)
        self.post_message(self.Closed(self))

    def show_count(self, text: str, *, error: bool = False) -> None:
        """What the search found (``3 of 17``), or why it could not run."""
        label = Text(text)
        if self.regex:
            label.append(" · regex", style="bold")
        count = self.query_one("#search-count", Static)
        count.set_class(error, "-error")
        count.update(label, layout=False)  # its width is fixed

    @on(Input.Changed, "#search-input")
    def _typed(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(self.Changed(self, event.value, self.regex))

    @on(Input.Submitted, "#search-input")
    def _entered(self, event: Input.Submitted) -> None:
        event.stop()
        self.post_message(self.Step(self, True))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Next and previous only where there are matches to step through."""
        return self.steps or action != "step"

    def action_step(self, forward: bool) -> None:
        """The next (or previous) match."""
        self.post_message(self.Step(self, forward))

    def action_toggle_regex(self) -> None:
        """Read the query as a regular expression, or as plain text."""
        self.regex = not self.regex
        self.post_message(self.Changed(self, self.query_text, self.regex))

    def action_close(self) -> None:
        """Close the bar."""
        self.close()
