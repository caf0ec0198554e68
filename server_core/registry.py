"""A registry of agent loops by name (kept for 0.2 code; the server and CLI do not need it)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from server_core.errors import AgentLoopNotFoundError

if TYPE_CHECKING:
    from server_core.agent import RolloutAgentLoop


class AgentLoopRegistry:
    """Agent loops by their ``name``; safe to use from several threads."""

    def __init__(self) -> None:
        self._loops: dict[str, RolloutAgentLoop] = {}
        self._lock = threading.Lock()

    def register(self, loop: RolloutAgentLoop) -> None:
        """Add ``loop``; a second loop of the same name raises ``ValueError``."""
        with self._lock:
            if loop.name in self._loops:
                raise ValueError(
                    f"Agent loop '{loop.name}' is already registered. "
                    "Unregister it first or give the new one another name."
                )
            self._loops[loop.name] = loop

    def unregister(self, name: str) -> bool:
        """Remove the loop called ``name``; whether there was one."""
        with self._lock:
            return self._loops.pop(name, None) is not None

    def get(self, name: str) -> RolloutAgentLoop | None:
        """The loop called ``name``, or None."""
        with self._lock:
            return self._loops.get(name)

    def list_names(self) -> list[str]:
        """The registered names, in the order they were registered."""
        with self._lock:
            return list(self._loops)

    def clear(self) -> None:
        """Remove every loop."""
        with self._lock:
            self._loops.clear()


_registry = AgentLoopRegistry()


def register_agent_loop(loop: RolloutAgentLoop) -> None:
    """Add ``loop`` to the process-wide registry (``ValueError`` on a duplicate name)."""
    _registry.register(loop)


def unregister_agent_loop(name: str) -> bool:
    """Remove a loop from the process-wide registry; whether it was there."""
    return _registry.unregister(name)


def get_agent_loop(name: str) -> RolloutAgentLoop:
    """The registered loop called ``name``; ``AgentLoopNotFoundError`` lists the others."""
    loop = _registry.get(name)
    if loop is None:
        raise AgentLoopNotFoundError(name, _registry.list_names())
    return loop


def list_agent_loops() -> list[str]:
    """The names in the process-wide registry."""
    return _registry.list_names()
