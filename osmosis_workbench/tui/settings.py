"""The workbench's settings file: the theme, remembered across runs, and key overrides.

One small TOML file at the XDG path, ``$XDG_CONFIG_HOME/osmosis/workbench.toml``
(``~/.config/osmosis/workbench.toml`` when the variable is unset)::

    theme = "nord"              # any theme of the palette's "Theme" list; written by the app

    [keymap]                    # binding id = keys (comma-separated), as Textual's keymaps
    "debugger.next" = "n,space"
    "app.help" = "f1"

The app writes ``theme`` when the user picks one and leaves every other line as it was. A
file that cannot be read never stops the app: it opens with the defaults and says what is
wrong and where. No Textual here: tests read and write the file directly.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

#: The file's name under ``$XDG_CONFIG_HOME/osmosis``.
SETTINGS_NAME = "workbench.toml"
#: The theme of a first run: Textual's own dark theme.
DEFAULT_THEME = "textual-dark"
#: Names other Textual versions gave the ANSI themes (which follow the terminal's colours).
THEME_ALIASES = {"textual-ansi": "ansi-dark", "ansi": "ansi-dark"}

#: A top-level ``theme = ...`` line (before any ``[table]``), to rewrite in place.
_THEME_LINE = re.compile(r"^\s*theme\s*=.*$", re.MULTILINE)
_TABLE_LINE = re.compile(r"^\s*\[", re.MULTILINE)


def settings_path() -> Path:
    """Where the settings live: ``$XDG_CONFIG_HOME/osmosis/workbench.toml``."""
    base = os.environ.get("XDG_CONFIG_HOME") or ""
    # The XDG spec: a relative value is invalid and is ignored.
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "osmosis" / SETTINGS_NAME


@dataclass
class Settings:
    """What the file says, checked; ``problems`` says what was ignored, and why."""

    theme: str | None = None
    #: Binding id -> keys ("n,space"), for ``App.set_keymap``.
    keymap: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def load_settings(path: Path) -> Settings:
    """Read ``path`` (missing: the defaults); blocking, so call it from a thread."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Settings()
    except (OSError, UnicodeDecodeError) as exc:
        return Settings(problems=[f"cannot read {path}: {exc}; the defaults are used"])
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return Settings(
            problems=[f"{path} is not valid TOML ({exc}): fix or delete it; the defaults are used"]
        )
    settings = Settings()
    theme = data.get("theme")
    if theme is not None:
        if isinstance(theme, str) and theme.strip():
            settings.theme = THEME_ALIASES.get(theme.strip(), theme.strip())
        else:
            settings.problems.append(f'{path}: theme must be a theme name, e.g. theme = "nord"')
    keymap = data.get("keymap", {})
    if not isinstance(keymap, dict):
        settings.problems.append(
            f'{path}: keymap must be a table: [keymap] then lines like "debugger.next" = "n"'
        )
        keymap = {}
    for binding_id, keys in keymap.items():
        if isinstance(keys, str) and keys.strip():
            settings.keymap[str(binding_id)] = keys.replace(" ", "")
        else:
            settings.problems.append(
                f'{path}: keymap "{binding_id}" must be keys as a string, e.g. "n" or "n,space"'
            )
    return settings


def save_theme(path: Path, theme: str) -> None:
    """Write ``theme = "..."`` into ``path``, keeping its other lines (blocking: a thread)."""
    line = f"theme = {json.dumps(theme)}"  # a JSON string is a valid TOML basic string
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    # Only the top level holds ``theme``: a ``theme`` key inside a table is someone else's.
    table = _TABLE_LINE.search(text)
    head, tail = (text[: table.start()], text[table.start() :]) if table else (text, "")
    if _THEME_LINE.search(head):
        head = _THEME_LINE.sub(lambda _match: line, head, count=1)
    else:
        head = f"{line}\n{head}"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(head + tail, encoding="utf-8")
    temporary.replace(path)  # never a half-written file, even if the app is killed now
