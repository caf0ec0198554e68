"""The embedded rollout server: the user's agent served by ``server_core`` inside this process.

Rollouts the workbench runs on it take the one protocol path (init, chat callbacks, completion)
through the real ASGI apps in both directions (``server_core.asgi_client``): the same HTTP
requests and the same app code as over a socket, without the socket. The TUI can also serve the
same agent on a real port for external trainers (``server_core.serve.EmbeddedServer``).
"""

from __future__ import annotations

import contextlib
from typing import Any

from osmosis_workbench.engine.trainer import IN_PROCESS_TRAINER_URL, LocalTrainer, ServerTarget
from server_core import RolloutAgentLoop, ServerLimits, TrainerClient, create_app
from server_core.asgi_client import ASGIClient

#: The base URL the local trainer reaches the embedded server at, in-process.
IN_PROCESS_SERVER_URL = "http://embedded-server.invalid"


def embedded_limits(rollout_timeout_s: float = 600.0) -> ServerLimits:
    """The embedded server's limits: the batch runner, not the server, bounds concurrency."""
    return ServerLimits(
        max_concurrent=10_000, max_queued=1_000_000, rollout_timeout_s=rollout_timeout_s
    )


class EmbeddedRolloutServer:
    """An agent's rollout app wired to a local trainer in-process; use as an async context."""

    def __init__(
        self,
        agent: RolloutAgentLoop,
        trainer: LocalTrainer,
        *,
        limits: ServerLimits | None = None,
        rollout_timeout: float = 600.0,
    ) -> None:
        self.agent = agent
        self.trainer = trainer
        self.callback_client = TrainerClient(local_apps={IN_PROCESS_TRAINER_URL: trainer.app})
        # freeze_heap=False: the host process (the workbench, osmosis test) decides what is
        # frozen; the SDK's own freeze would be undone, app-wide, whenever this server stops.
        self.app = create_app(
            agent,
            client=self.callback_client,
            limits=limits or embedded_limits(rollout_timeout),
            freeze_heap=False,
        )
        self._client = ASGIClient(self.app)
        self.target = ServerTarget(
            url=IN_PROCESS_SERVER_URL,
            client=self._client,
            trainer_url=IN_PROCESS_TRAINER_URL,
            in_process=True,
        )
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> EmbeddedRolloutServer:
        # Requests straight into the app do not run its lifespan: run it here, so shutdown
        # drains rollouts and closes the callback client.
        self._stack.push_async_callback(self._client.aclose)
        await self._stack.enter_async_context(self.app.router.lifespan_context(self.app))
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._stack.aclose()
