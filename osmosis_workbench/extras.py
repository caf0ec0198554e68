"""The optional ``[workbench]`` dependencies: a clear message when one is missing.

A rollout server deployed alone installs ``osmosis-workbench`` without extras (the SDK,
``osmosis serve``, ``osmosis validate``, ``osmosis test``); the terminal app, Parquet and CSV
datasets, pandas analysis and litellm models need ``osmosis-workbench[workbench]``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

INSTALL_HINT = (
    "install the workbench extra: pip install 'osmosis-workbench[workbench]' "
    "(or uv add 'osmosis-workbench[workbench]')"
)


class MissingExtraError(ImportError):
    """A feature needs a package of the ``[workbench]`` extra that is not installed."""


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` for ``feature``, or raise ``MissingExtraError`` saying how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name is not None and module.split(".")[0] != exc.name.split(".")[0]:
            raise  # the package is there but broken: its own error says more
        raise MissingExtraError(
            f"{feature} needs {module.split('.')[0]}, which is not installed; {INSTALL_HINT}"
        ) from None
