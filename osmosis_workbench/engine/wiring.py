"""The composition root: build the engine from an ``EngineConfig``, close it in order.

``open_engine(config)`` is the one place the model backend, the local trainer, the embedded
rollout server (``-m``) or the remote targets and their client (``--url``) are built; it is an
async context manager over an ``AsyncExitStack``, so whatever was built is closed in the
reverse order (servers drain while the trainer still answers, then the trainer stops, then
the model backend closes), even when building fails half way. ``osmosis test`` and the
workbench's ``Workspace`` both use it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from osmosis_workbench.engine.config import ConfigError, EngineConfig
from osmosis_workbench.engine.embedded import EmbeddedRolloutServer
from osmosis_workbench.engine.models import (
    LiveBackend,
    ModelBackend,
    ModelError,
    RecordingBackend,
    create_backend,
)
from osmosis_workbench.engine.trainer import LocalTrainer, ServerTarget
from server_core import RolloutAgentLoop, load_agent_loop
from server_core.http_client import AiohttpClient

#: How long a remote server may take to answer one request before it counts as a timeout.
_REMOTE_READ_TIMEOUT_S = 60.0


@dataclass
class Engine:
    """A built engine: the model, the local trainer, and the servers rollouts run on."""

    config: EngineConfig
    #: What the trainer's chat endpoint asks (the model, recorded when ``--record``).
    backend: ModelBackend
    trainer: LocalTrainer
    #: The agent served in-process (``None`` against remote servers).
    agent: RolloutAgentLoop | None = None
    embedded: EmbeddedRolloutServer | None = None
    #: Where rollouts run: the embedded server's target, or one per remote URL.
    targets: list[ServerTarget] = field(default_factory=list)
    #: The model itself, without the recorder: what a preflight call may ask.
    model_backend: ModelBackend | None = None
    #: Closes the embedded server of the agent served now (replaced on a reload).
    _agent_stack: contextlib.AsyncExitStack = field(
        default_factory=contextlib.AsyncExitStack, init=False, repr=False
    )

    @property
    def remote(self) -> bool:
        """Whether rollouts run on remote servers (``--url``)."""
        return self.embedded is None

    async def preflight(self) -> str | None:
        """One tiny call to a live model; the message of a systemic error, else ``None``.

        A bad key or an unknown model would fail every row: better to stop before the first.
        """
        # Straight to the model: a recorder must not write the probe into the cassette.
        model = self.model_backend or self.backend
        if not isinstance(model, LiveBackend):
            return None  # replay, script, human: nothing to reach
        try:
            await model.probe()
        except ModelError as exc:
            if exc.systemic:
                return str(exc)
        return None

    async def serve_agent(self, agent: RolloutAgentLoop) -> None:
        """Serve ``agent`` in-process from now on (a reload); the previous one drains and stops.

        Rollouts already running keep the old agent until they end.
        """
        stack = contextlib.AsyncExitStack()
        embedded = await stack.enter_async_context(
            EmbeddedRolloutServer(
                agent, self.trainer, rollout_timeout=self.config.rollout_timeout_s
            )
        )
        old_stack, self._agent_stack = self._agent_stack, stack
        self.agent, self.embedded, self.targets = agent, embedded, [embedded.target]
        await old_stack.aclose()

    async def _close_agent(self) -> None:
        await self._agent_stack.aclose()


def build_backend(
    config: EngineConfig, on_notice: Callable[[str], None] | None = None
) -> tuple[ModelBackend, ModelBackend]:
    """(the backend the trainer asks, the model behind it) for the config's model.

    ``on_notice``: told of slow set-up work (litellm importing in the background).
    """
    spec = config.require_model()
    try:
        model = create_backend(
            spec, base_url=config.base_url, api_key=config.model_api_key, on_notice=on_notice
        )
    except (ValueError, OSError, ModelError) as exc:  # a missing file or key: the user's fix
        raise ConfigError(f"--model {spec!r}: {exc}") from None
    if config.record:
        return RecordingBackend(model, config.record), model
    return model, model


def import_agent(config: EngineConfig) -> RolloutAgentLoop:
    """Import the config's agent loop (``ImportFromStringError`` says what is wrong)."""
    assert config.module is not None
    return load_agent_loop(config.module, search_path=config.search_path)


@contextlib.asynccontextmanager
async def open_engine(
    config: EngineConfig,
    *,
    backend: ModelBackend | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> AsyncIterator[Engine]:
    """Build the engine ``config`` describes; everything is closed when the block ends.

    ``backend``: use this model backend instead of the config's model (tests, a model the
    caller built); it is closed with the engine all the same. ``on_notice``: see
    ``build_backend``.
    """
    config.require_server()
    async with contextlib.AsyncExitStack() as stack:
        if backend is None:
            backend, model = build_backend(config, on_notice)
        else:
            model = backend
        stack.push_async_callback(backend.aclose)
        trainer = LocalTrainer(backend)
        engine = Engine(config, backend, trainer, model_backend=model)
        if config.urls:
            await stack.enter_async_context(
                trainer.listening(config.trainer_host, config.trainer_port)
            )
            # One pooled client for every server: --concurrency 1000 holds 1000 sockets.
            client = AiohttpClient(
                max(100, config.concurrency), read_timeout_s=_REMOTE_READ_TIMEOUT_S
            )
            stack.push_async_callback(client.aclose)
            engine.targets = [
                ServerTarget(url=url, api_key=config.server_api_key, client=client)
                for url in config.urls
            ]
        else:
            # The user's module may do slow work at import: off the event loop.
            agent = await asyncio.to_thread(import_agent, config)
            stack.push_async_callback(engine._close_agent)
            await engine.serve_agent(agent)
        yield engine
