"""Copying text out of the workbench: OSC 52 to the terminal, and the platform's clipboard tool.

OSC 52 asks the terminal itself to set the clipboard, so it works over ssh; the terminal never
says whether it did. Inside tmux the sequence is wrapped in tmux's passthrough form
(``ESC P tmux; ... ESC \\``, every ESC doubled): tmux's default ``set-clipboard external``
ignores an application's own OSC 52, and passes the wrapped one to the outer terminal when
``allow-passthrough`` is on. Where a clipboard tool exists (wl-copy on Wayland, xclip or xsel
on X11, pbcopy on macOS) it is run too: it reports success, so the notice can say so.
No Textual here: the app writes the sequence through its driver.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

#: Base64 bytes above which some terminals drop an OSC 52 write (xterm's default is 100,000).
OSC52_LIMIT = 100_000
#: How long a clipboard tool may take (xclip waits for a display that is not there).
_TOOL_TIMEOUT_S = 3.0


def osc52_sequence(text: str, *, tmux: bool = False) -> str:
    """The OSC 52 sequence that sets the clipboard to ``text``; tmux's passthrough form."""
    encoded = base64.b64encode(text.encode("utf-8")).decode("ascii")
    sequence = f"\x1b]52;c;{encoded}\x07"
    if tmux:
        return "\x1bPtmux;" + sequence.replace("\x1b", "\x1b\x1b") + "\x1b\\"
    return sequence


def in_tmux() -> bool:
    """Whether the workbench runs inside tmux (``$TMUX`` is set there)."""
    return bool(os.environ.get("TMUX"))


def clipboard_tool() -> list[str] | None:
    """The command that copies its stdin to this desktop's clipboard (``None``: none here)."""
    candidates: list[list[str]] = []
    if sys.platform == "darwin":
        candidates.append(["pbcopy"])
    if os.environ.get("WAYLAND_DISPLAY"):
        candidates.append(["wl-copy"])
    if os.environ.get("DISPLAY"):
        candidates += [["xclip", "-selection", "clipboard"], ["xsel", "--clipboard", "--input"]]
    for command in candidates:
        if shutil.which(command[0]):
            return command
    return None


@dataclass
class CopyResult:
    """How a copy went: the ways it was sent, and what failed."""

    ways: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def describe(self, what: str, chars: int) -> tuple[str, bool]:
        """The notice's text, and whether it is an error (no way took the text)."""
        size = f"{chars:,} character{'s' if chars != 1 else ''}"
        if not self.ways:
            return f"Could not copy {what}: {'; '.join(self.problems)}", True
        text = f"Copied {what} ({size}) with {' and '.join(self.ways)}."
        if self.problems:
            text += " " + "; ".join(self.problems) + "."
        return text, False


def run_clipboard_tool(command: list[str], text: str) -> str | None:
    """Give ``text`` to a clipboard tool; ``None`` when it took it, else why not (blocking)."""
    try:
        done = subprocess.run(
            command,
            input=text.encode("utf-8"),
            capture_output=True,
            timeout=_TOOL_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{command[0]} failed: {exc}"
    if done.returncode != 0:
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines()
        return f"{command[0]} failed: {reason[0] if reason else f'exit {done.returncode}'}"
    return None


def send_osc52(text: str, write: Callable[[str], object], result: CopyResult) -> None:
    """Write the OSC 52 sequence for ``text`` with ``write`` (the terminal), noted in ``result``."""
    tmux = in_tmux()
    sequence = osc52_sequence(text, tmux=tmux)
    write(sequence)
    result.ways.append("OSC 52 through tmux" if tmux else "OSC 52")
    if len(sequence) > OSC52_LIMIT:
        result.problems.append("it is long: some terminals drop OSC 52 writes this big")


def copy_with_tool(text: str, result: CopyResult) -> None:
    """Give ``text`` to this desktop's clipboard tool, if there is one (blocking: a thread)."""
    command = clipboard_tool()
    if command is not None:
        problem = run_clipboard_tool(command, text)
        if problem is None:
            result.ways.append(command[0])
        else:
            result.problems.append(problem)
    elif result.ways:
        # OSC 52 went out unconfirmed: say what it needs from the terminal.
        needs = "and tmux's allow-passthrough on; " if in_tmux() else "; "
        result.problems.append(
            f"it reaches the clipboard if your terminal allows OSC 52 writes {needs}"
            "no wl-copy, xclip, xsel or pbcopy was found to confirm it"
        )
    else:
        result.problems.append(
            "no terminal to send OSC 52 to, and no wl-copy, xclip, xsel or pbcopy found"
        )
