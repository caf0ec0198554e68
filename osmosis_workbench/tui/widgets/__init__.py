"""Reusable widgets and views of the workbench: the message index, detail, dialogs, renderers."""

from osmosis_workbench.tui.widgets.answer_composer import AnswerComposer
from osmosis_workbench.tui.widgets.dialogs import (
    CrashDialog,
    EditResponseDialog,
    EditToolResultsDialog,
)
from osmosis_workbench.tui.widgets.key_bar import KeyBar
from osmosis_workbench.tui.widgets.message_format import (
    answer_tokens,
    editable_to_message,
    format_reward,
    message_to_editable,
    tool_names_by_call_id,
)
from osmosis_workbench.tui.widgets.message_list import MessageDetail, MessageList
from osmosis_workbench.tui.widgets.rollout_views import (
    render_message,
    render_outcome,
    render_response,
    render_tools,
)
from osmosis_workbench.tui.widgets.side_by_side import SideBySide

__all__ = [
    "AnswerComposer",
    "CrashDialog",
    "EditResponseDialog",
    "EditToolResultsDialog",
    "KeyBar",
    "MessageDetail",
    "MessageList",
    "SideBySide",
    "answer_tokens",
    "editable_to_message",
    "format_reward",
    "message_to_editable",
    "render_message",
    "render_outcome",
    "render_response",
    "render_tools",
    "tool_names_by_call_id",
]
