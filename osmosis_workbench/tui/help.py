"""The help screen (``?``): how the step debugger works and every key, by where it applies.

The key tables are built from the live ``BINDINGS`` of the app and the screens, so help
cannot drift from what the keys do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import ClassVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from osmosis_workbench.tui.widgets.key_bar import KeyBar

INTRO = (
    "The workbench runs your agent through the real rollout protocol: each dataset row becomes "
    "a rollout request sent to the rollout server, and the agent's LLM calls come back to the "
    "workbench's local trainer. In the step debugger the rollout pauses after every model "
    "answer, before the agent sees it: look at it, edit it, release it (n), or let the "
    "rollout run to the end (c). Aborting (q) ends that rollout as ERROR; the app stays. "
    "With --model human you are the model: each LLM call waits for the answer you write. "
    "F forks the rollout (or a run's) at one of its LLM calls: it runs again with the history "
    "before that call fixed (the earlier answers replayed), answered from there by the same "
    "model, another one or you; d shows the fork beside its parent, the first difference marked."
)

#: A help section: its heading and (key, what it does) pairs.
Section = tuple[str, list[tuple[str, str]]]


def binding_rows(
    app: App, bindings: Iterable[BindingType], keymap: Mapping[str, str] | None = None
) -> list[tuple[str, str]]:
    """(key, what it does) per described binding, keys shown as the footer shows them.

    A key bound to several actions (each enabled in a different state) gets one row. Keys
    the settings file's ``keymap`` moved are shown where they are now; each row ends with
    the binding's id, the name ``[keymap]`` uses.
    """
    rows: dict[str, list[str]] = {}  # insertion-ordered: the order the bindings declare
    keymap = keymap or {}
    for item in bindings:
        if not isinstance(item, Binding):
            item = Binding(*item)
        if not item.description:
            continue
        moved = keymap.get(item.id or "")
        if moved:
            item = item.with_key(moved, key_display=None)
        keys = item.key.split(",")
        # A key_display stands for the first key; the others show as themselves.
        shown = " / ".join(
            app.get_key_display(
                Binding(
                    key.strip(),
                    item.action,
                    item.description,
                    key_display=item.key_display if n == 0 else None,
                )
            )
            for n, key in enumerate(keys)
        )
        text = item.tooltip or item.description
        rows.setdefault(shown, []).append(f"{text} [{item.id}]" if item.id else text)
    return [(keys, " · ".join(texts)) for keys, texts in rows.items()]


class HelpScreen(ModalScreen[None]):
    """Explains the workbench and lists the keys of each part."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "close", "Close help", id="help.close"),
    ]

    def __init__(self, sections: Sequence[Section]) -> None:
        super().__init__()
        self.sections = list(sections)

    def compose(self) -> ComposeResult:
        tables: list[RenderableType] = []
        for heading, rows in self.sections:
            table = Table(
                title=heading,
                title_justify="left",
                title_style="bold",
                show_header=False,
                box=None,
                padding=(0, 1),
            )
            table.add_column(style="bold cyan", no_wrap=True, min_width=12)
            table.add_column(ratio=1)
            for key, description in rows:
                # Text, not markup: the ids end each line in brackets.
                line = Text(description)
                line.highlight_regex(r"\[[\w.]+\]", "dim")
                table.add_row(key, line)
            tables.extend([table, Text()])
        with Vertical(id="help-dialog", classes="dialog"):
            yield Label("Osmosis workbench: help", classes="dialog-title")
            with VerticalScroll(id="help-body"):
                yield Static(Group(Text(INTRO), Text(), *tables), id="help-text")
        yield KeyBar()

    def action_close(self) -> None:
        """Back to where you were."""
        self.dismiss(None)
