"""What a scripted fake trainer answers with, shared by the fixtures (``conftest.py``) and the
0.2 compatibility suite (``server_core/compat/compat_support.py``)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi.responses import Response

_call_ids = itertools.count(1)


@dataclass
class Reply:
    """One scripted answer of a fake trainer.

    ``json`` is sent as a JSON body; ``text`` as a raw body (for malformed answers); ``delay``
    seconds pass before answering (with ``TimeoutASGITransport`` a delay past the client's
    timeout is a real timeout).
    """

    status: int = 200
    json: Any = None
    text: str | None = None
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)

    def response(self) -> Response:
        if self.text is not None:
            content = self.text.encode()
        elif self.status == 204:
            content = b""
        else:
            content = json.dumps(self.json if self.json is not None else {}).encode()
        return Response(content, self.status, self.headers, media_type="application/json")


#: A scripted item: a chat-completion body, a Reply, or a (possibly async) function of the
#: request body returning either.
Scripted = dict | Reply | Callable[[dict], Any]


def tool_call(name: str, arguments: dict | str, call_id: str | None = None) -> dict:
    """An OpenAI tool call as a model emits it (arguments as a JSON string)."""
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {
        "id": call_id or f"call_{next(_call_ids)}",
        "type": "function",
        "function": {"name": name, "arguments": args},
    }
