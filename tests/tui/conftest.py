"""What every workbench test shares: a scratch folder and its own settings file.

Runs (``.osmosis/runs``), exports and crash logs land in the test's folder, never in the
repository; ``$XDG_CONFIG_HOME`` points there too, so a developer's own theme and keymap
(``~/.config/osmosis/workbench.toml``) never change what a test sees.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _scratch_folder_and_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    # No clipboard tool and no tmux unless a test gives one: copies go by OSC 52 alone.
    for variable in ("TMUX", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(variable, raising=False)
