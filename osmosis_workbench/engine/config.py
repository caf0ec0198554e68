"""What the engine is built from: one typed, frozen config, resolved once from the arguments.

``osmosis test``, ``osmosis-workbench`` and the tests all describe a run the same way: where
rollouts run (an agent module served in-process, or remote server URLs), which dataset rows,
which policy model, and how rollouts run. ``wiring.open_engine`` builds everything from it.

Import-light on purpose (standard library only): the CLI resolves it before the app's first
screen, which must not wait for the engine's imports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from osmosis_workbench.engine.datasets.selection import RowSelection

#: The cassette a run replays by default: next to the dataset, or next to the agent's module.
CASSETTE_NAME = "cassette.jsonl"


class ConfigError(ValueError):
    """A bad option or combination of options; the message names the input and the fix."""


@dataclass(frozen=True)
class EngineConfig:
    """Everything a run or a workbench session is built from."""

    # -- where rollouts run: an agent served in-process (module), or remote servers (urls)
    module: str | None = None
    urls: tuple[str, ...] = ()
    server_api_key: str | None = None
    #: Where ``module`` is imported from.
    search_path: str = "."
    #: With ``urls``: where the local trainer listens for the servers' callbacks.
    trainer_host: str = "127.0.0.1"
    trainer_port: int = 0
    # -- the dataset and its rows
    dataset: str | None = None
    selection: RowSelection = field(default_factory=RowSelection)
    # -- the policy model behind the local trainer
    model: str | None = None
    base_url: str | None = None
    model_api_key: str | None = None
    record: str | None = None
    # -- how rollouts run
    concurrency: int = 8
    attempts: int = 1
    rollout_timeout_s: float = 600.0
    max_turns: int | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    #: ``module:function`` scoring trajectories instead of the agent's own reward.
    reward: str | None = None
    pass_threshold: float = 1.0
    #: Stop taking rows once the run's spend (US dollars) reaches this; ``None``: no cap.
    max_cost_usd: float | None = None

    def __post_init__(self) -> None:
        if self.module and self.urls:
            raise ConfigError(
                "-m and --url exclude each other: run the agent in-process or against "
                "remote servers, not both"
            )
        if self.concurrency < 1 or self.attempts < 1:
            raise ConfigError("--concurrency and --n must be at least 1")
        if self.rollout_timeout_s <= 0:
            raise ConfigError("--rollout-timeout must be more than 0 seconds")
        if self.max_cost_usd is not None and not self.max_cost_usd > 0:
            raise ConfigError("--max-cost must be more than 0 (US dollars)")
        # One spelling of each server URL: rollout ids and reports name them.
        object.__setattr__(self, "urls", tuple(u.rstrip("/") for u in self.urls))

    @property
    def url(self) -> str | None:
        """The first remote server (the workbench attaches to one)."""
        return self.urls[0] if self.urls else None

    def require_server(self) -> None:
        """Raise unless the config says where rollouts run."""
        if not self.module and not self.urls:
            raise ConfigError(
                "give the agent with -m MODULE:ATTR (e.g. -m server:agent_loop), "
                "or a rollout server with --url URL"
            )

    def require_model(self) -> str:
        """The model, or a ``ConfigError`` that says how to give one."""
        if self.model is None:
            raise ConfigError(
                "no model: pass --model provider/name (e.g. openai/gpt-4o-mini, with its API "
                "key in the environment) or --model replay:FILE for a recorded cassette"
            )
        return self.model

    def load_reward_fn(self) -> Callable[..., Any] | None:
        """The ``--reward`` function, imported (``None`` without one)."""
        if not self.reward:
            return None
        # server_core imports fastapi: only when a reward function is asked for.
        from server_core.loader import ImportFromStringError, import_from_string

        try:
            return import_from_string(self.reward)
        except ImportFromStringError as exc:
            raise ConfigError(f"--reward: {exc}") from None


def default_model(dataset: str | None, module: str | None) -> str | None:
    """The default model: a ``cassette.jsonl`` next to the dataset or the agent's module."""
    candidates: list[Path] = []
    if dataset:
        candidates.append(Path(dataset).resolve().parent / CASSETTE_NAME)
    if module:
        parts = module.partition(":")[0].split(".")
        candidates.append(Path.cwd().joinpath(*parts[:-1]) / CASSETTE_NAME)
    for path in candidates:
        if path.is_file():
            try:
                return f"replay:{path.relative_to(Path.cwd())}"
            except ValueError:
                return f"replay:{path}"
    return None
