"""Editing text in the user's own editor (``$VISUAL``, else ``$EDITOR``), the app suspended.

The text goes to a temporary file, the editor runs on the terminal while the app is suspended
(``App.suspend``), and the file is read back when the editor exits. The editor runs as an
asyncio subprocess: the servers, the trainer and other rollouts share the app's event loop and
keep running while the user edits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from textual.app import App


class EditorError(Exception):
    """The editor could not run, or did not save: the message says what to fix."""


def editor_command() -> list[str]:
    """The user's editor as a command (``code --wait`` stays two words)."""
    for variable in ("VISUAL", "EDITOR"):
        value = os.environ.get(variable, "").strip()
        if value:
            try:
                return shlex.split(value)
            except ValueError as exc:
                raise EditorError(f"${variable} ({value!r}) cannot be read: {exc}") from None
    raise EditorError(
        "no editor: set $EDITOR (or $VISUAL), e.g. export EDITOR=nano, then start the "
        "workbench again"
    )


async def edit_in_editor(app: App[object], text: str, *, suffix: str = ".json") -> str:
    """``text`` as the user left it in their editor; ``EditorError`` when it did not work."""
    command = editor_command()
    path = await asyncio.to_thread(_write_temporary, text, suffix)
    try:
        # No frame may reach the terminal while the editor owns it (timers keep running):
        # the batch holds them until the app is back. Headless (tests) there is no terminal
        # to hand over, and the editor runs as it is.
        suspended = contextlib.nullcontext() if app.is_headless else app.suspend()
        with app.batch_update(), suspended:
            try:
                process = await asyncio.create_subprocess_exec(*command, str(path))
            except OSError as exc:
                raise EditorError(
                    f"could not start the editor {command[0]!r}: {exc}; set $EDITOR to an "
                    "editor on your PATH"
                ) from None
            code = await process.wait()
        if code != 0:
            raise EditorError(f"{command[0]} exited with status {code}: nothing was changed")
        return await asyncio.to_thread(path.read_text, encoding="utf-8")
    finally:
        await asyncio.to_thread(_remove, path)


def _write_temporary(text: str, suffix: str) -> Path:
    handle, name = tempfile.mkstemp(prefix="osmosis-", suffix=suffix)
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        file.write(text)
    return Path(name)


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
