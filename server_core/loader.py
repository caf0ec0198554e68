"""Load objects named as ``"module:attr"`` (``-m server:agent_loop``, ``--reward rewards:fn``).

Follows uvicorn's grammar and gives one precise message for each way a reference can be wrong.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any


class ImportFromStringError(Exception):
    """A ``module:attr`` reference that cannot be loaded; the message says why and how to fix."""


def import_from_string(ref: str, *, search_path: str | Path | None = None) -> Any:
    """Import ``module.path:attr.path`` and return the attribute.

    ``search_path`` (default: the current directory) is put first on ``sys.path`` so a
    project's own ``server.py`` is found when run from its folder.
    """
    module_name, sep, attrs = ref.partition(":")
    if not sep or not module_name or not attrs:
        raise ImportFromStringError(
            f'Import string "{ref}" must be in format "<module>:<attribute>", '
            'e.g. "server:agent_loop".'
        )
    folder = str(Path(search_path or ".").resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ImportFromStringError(
                f'Could not import module "{module_name}" (looked in {folder} and on sys.path); '
                "run from the folder that holds it or give its dotted path."
            ) from None
        raise ImportFromStringError(
            f'Module "{module_name}" was found but importing it failed: it imports '
            f'"{exc.name}", which is not installed or not on the path.'
        ) from exc
    except Exception as exc:
        raise ImportFromStringError(
            f'Importing module "{module_name}" raised {type(exc).__name__}: {exc}'
        ) from exc
    instance: Any = module
    try:
        for attr in attrs.split("."):
            instance = getattr(instance, attr)
    except AttributeError:
        raise ImportFromStringError(
            f'Attribute "{attrs}" not found in module "{module_name}".'
        ) from None
    return instance


def load_agent_loop(ref: str, *, search_path: str | Path | None = None) -> Any:
    """Load a ``RolloutAgentLoop`` instance from ``module:attr``.

    Raises ``ImportFromStringError`` when the reference is wrong or names something that is
    not an agent loop instance (a class gets a hint to export an instance).
    """
    from server_core.agent import RolloutAgentLoop

    obj = import_from_string(ref, search_path=search_path)
    if isinstance(obj, type) and issubclass(obj, RolloutAgentLoop):
        raise ImportFromStringError(
            f'"{ref}" is the class {obj.__name__}; export an instance, e.g. '
            f"agent_loop = {obj.__name__}()"
        )
    if not isinstance(obj, RolloutAgentLoop):
        raise ImportFromStringError(
            f'"{ref}" is a {type(obj).__name__}, not a RolloutAgentLoop instance; point -m at '
            "the agent loop object (e.g. server:agent_loop)."
        )
    return obj
