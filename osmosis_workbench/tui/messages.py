"""What the screens tell the app: small messages, each named for what happened.

A screen posts one of these and it bubbles up to ``WorkbenchApp``, which switches modes and
hands the work to the debugger; screens never reach into the app. (The other way round the
app calls its screens' methods: it built them.) Tests see every one with ``message_hook``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from osmosis_workbench.engine.journal import JournalEntry
    from osmosis_workbench.engine.outcome import RolloutOutcome
    from osmosis_workbench.engine.runs import RunInfo
    from osmosis_workbench.engine.stepping import SteppedRollout


@dataclass
class RowStepRequested(Message):
    """The user asked to step dataset row ``row_index`` in the debugger."""

    row_index: int
    stepping: bool = True


@dataclass
class SessionStepRequested(Message):
    """The user asked to step a rollout that runs elsewhere (a trainer's live rollout)."""

    session: SteppedRollout
    label: str | None = None


@dataclass
class TrajectoryRequested(Message):
    """The user asked to read a finished rollout's trajectory and result."""

    outcome: RolloutOutcome
    title: str
    #: The journal entry it came from, and its run (what an export of it writes).
    entry: JournalEntry | None = None
    run: RunInfo | None = None


@dataclass
class WorkspaceRetryRequested(Message):
    """The user fixed what stopped the workspace from opening, and asked to try again."""


@dataclass
class CrashReported(Message):
    """Something failed that is a bug, not the user's doing: show its traceback."""

    title: str
    error: BaseException


@dataclass
class CopyRequested(Message):
    """The user asked to copy ``text`` (``what`` names it in the notice)."""

    text: str
    what: str


@dataclass
class ModelSwitchRequested(Message):
    """The user asked to reopen the workspace with another model (a ``--model`` spec)."""

    spec: str


@dataclass
class RunsRequested(Message):
    """The user asked for the runs screen: run ``run_b`` alone, or compared with ``run_a``."""

    run_a: Path | None = None
    run_b: Path | None = None
