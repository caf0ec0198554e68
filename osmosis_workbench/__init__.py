"""osmosis_workbench: the developer engine, the ``osmosis`` CLI and the Textual workbench."""

__version__ = "0.1.0"
