"""``python -m osmosis_workbench``: the ``osmosis`` command under a name nothing else installs.

osmosis-ai (the 0.2 SDK) also installs a command called ``osmosis``; in an environment that has
both, this (or ``osmosis-wb``) always reaches ours.
"""

import sys

from osmosis_workbench.cli import main

sys.exit(main())
