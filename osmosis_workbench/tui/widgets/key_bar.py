"""The keys that work now, on one line at the bottom of the screen.

Textual's ``Footer`` mounts a widget per key and restyles each of them on every binding
change: measured here at 100-300 ms per change with 17 keys, paid twice per ``n`` in the
debugger (paused -> running -> paused). ``KeyBar`` renders the same information as one line
of text: well under a millisecond. Keys are clickable, like the footer's.
"""

from __future__ import annotations

from textual.app import App
from textual.binding import Binding
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Input, Static, TextArea

#: The actions whose keys are shown whatever else must be left out for room: the command
#: palette (every other key is in it) and the help.
PINNED_ACTIONS = ("command_palette", "help")


class KeyBar(Static):
    """One line: each key the focused widget, the screen and the app bind, with what it does."""

    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: 1;
        width: 1fr;
        padding: 0 1;
        color: $footer-foreground;
        background: $footer-background;
        text-wrap: nowrap;
        text-overflow: ellipsis;
        link-style: not underline;
        link-style-hover: reverse;
    }
    """

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self.refresh_keys()

    def on_resize(self) -> None:
        self.refresh_keys()

    def _bindings_changed(self, _screen: Screen) -> None:
        self.refresh_keys()

    def refresh_keys(self) -> None:
        """Render the active bindings (called when they change).

        The bar's size never depends on its keys: no layout pass (the whole screen's) on the
        focus changes and state changes that change them.
        """
        self.update(self.keys_content(), layout=False)

    def keys_content(self) -> Content:
        """The key line: ``n Next  c Continue …``; disabled keys are dimmed.

        When the line is wider than the bar, keys are left out rather than cut off at the
        edge: first the app's own (quit), then the grouped mode keys, then the screen's from
        its last binding back. The palette and help keys always stay, at the end, after a
        ``…`` that says some keys are only in the palette and the help.
        """
        app = self.app
        own: list[Content] = []  # the focused widget's and the screen's, in binding order
        app_keys: list[Content] = []
        pinned_by_rank: dict[int, Content] = {}
        seen_actions: set[str] = set()
        grouped: dict[Binding.Group, list[tuple[str, str]]] = {}
        for node, binding, enabled, _tooltip in self.screen.active_bindings.values():
            if not binding.show or binding.action in seen_actions:
                continue
            seen_actions.add(binding.action)
            # Clicks run the action on the node that bound it.
            namespace = (
                "app"
                if isinstance(node, App)
                else ("screen" if isinstance(node, Screen) else "focused")
            )
            action = f"{namespace}.{binding.action}"
            key = app.get_key_display(binding)
            if binding.group is not None:
                # Grouped keys share one description ("123 Debug/Data/Server"): it saves room.
                grouped.setdefault(binding.group, []).append((key, action))
                continue
            entry = self._entry([(key, action)], binding.description, enabled)
            if binding.action in PINNED_ACTIONS:
                pinned_by_rank[PINNED_ACTIONS.index(binding.action)] = entry
            elif isinstance(node, App):
                app_keys.append(entry)
            else:
                own.append(entry)
        help_rank = PINNED_ACTIONS.index("help")
        if help_rank not in pinned_by_rank and isinstance(self.screen.focused, (Input, TextArea)):
            # A text field has the focus and ``?`` types itself: the key is still shown, dimmed
            # as keys that do not work now are (esc leaves the field; a click opens the help).
            help_key = next(
                (
                    binding
                    for bindings in app._bindings.key_to_bindings.values()
                    for binding in bindings
                    if binding.action == "help"
                ),
                None,
            )
            if help_key is not None:
                key = app.get_key_display(help_key)
                pinned_by_rank[help_rank] = self._entry([(key, "app.help")], "Help", False)
        pinned = [pinned_by_rank[rank] for rank in sorted(pinned_by_rank)]
        groups = [self._entry(keys, group.description, True) for group, keys in grouped.items()]
        # Left out first when the line is too wide: the app's keys, the groups, then own keys
        # from the last one back (screens bind their most used keys first).
        droppable = [*own, *groups, *app_keys]
        drop_order = [*reversed(app_keys), *reversed(groups), *reversed(own)]
        width = self.content_region.width
        for separator in ("  ", " "):
            line = Content(separator).join([*droppable, *pinned])
            if width <= 0 or line.cell_length <= width:
                return line
        # Tight spacing does not fit either: leave keys out until it does.
        dropped: set[int] = set()
        more = Content.styled("…", "$footer-description-foreground")
        for entry in drop_order:
            dropped.add(id(entry))
            kept = [e for e in droppable if id(e) not in dropped]
            line = Content(" ").join([*kept, more, *pinned])
            if line.cell_length <= width:
                return line
        return Content(" ").join([more, *pinned])

    @staticmethod
    def _entry(keys: list[tuple[str, str]], description: str, enabled: bool) -> Content:
        key_style = "bold $footer-key-foreground" if enabled else "dim"
        pieces = [Content.styled(key, f"{key_style} @click={action!r}") for key, action in keys]
        text = (
            Content("").join(pieces)
            + Content(" ")
            + Content.styled(description, "$footer-description-foreground" if enabled else "dim")
        )
        return text
