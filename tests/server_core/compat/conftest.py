"""Fixtures of the 0.2 compatibility suite: a loopback trainer and settings isolation."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compat_support import LoopbackTrainer


@pytest.fixture(scope="session")
def _loopback_trainer() -> Iterator[LoopbackTrainer]:
    trainer = LoopbackTrainer().start()
    yield trainer
    trainer.stop()


@pytest.fixture
def lb_trainer(_loopback_trainer: LoopbackTrainer) -> LoopbackTrainer:
    """The session's loopback trainer, with its records and scripts cleared for this test."""
    _loopback_trainer.reset()
    return _loopback_trainer


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    """``reset_settings()`` before and after: the settings singleton never leaks between tests."""
    import server_core

    reset = getattr(server_core, "reset_settings", None)
    if reset is not None:
        reset()
    yield
    if reset is not None:
        reset()
