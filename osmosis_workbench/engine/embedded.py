"""The embedded rollout server: the user's agent served by ``server_core`` inside this process.

Rollouts the workbench runs on it take the one protocol path (init, chat callbacks, completion)
through the real ASGI apps in both directions (``server_core.asgi_client``): the same HTTP
requests and the same app code as over a socket, without the socket. The TUI can also serve the
same agent on a real port for external trainers (``server_core.serve.EmbeddedServer``).
"""

from __future__ import annotations

from typing import Any

from osmosis_workbench.engine.trainer import IN_PROCESS_TRAINER_URL, LocalTrainer, ServerTarget
from server_core import RolloutAgentLoop, TrainerClient, create_app
from server_core.asgi_client import ASGIClient

#: The base URL the local trainer reaches the embedded server at, in-process.
IN_PROCESS_SERVER_URL = "http://embedded-server.invalid"


class EmbeddedRolloutServer:
    """An agent's rollout app wired to a local trainer in-process; use as an async context."""

    def __init__(self, agent: RolloutAgentLoop, trainer: LocalTrainer, **app_kwargs: Any):
        self.agent = agent
        self.trainer = trainer
        app_kwargs.setdefault("max_concurrent", 10_000)
        app_kwargs.setdefault("max_queued", 1_000_000)
        self.callback_client = TrainerClient(local_apps={IN_PROCESS_TRAINER_URL: trainer.app})
        self.app = create_app(agent, client=self.callback_client, **app_kwargs)
        self._client = ASGIClient(self.app)
        self.target = ServerTarget(
            url=IN_PROCESS_SERVER_URL,
            client=self._client,
            trainer_url=IN_PROCESS_TRAINER_URL,
        )
        self._lifespan: Any = None

    async def __aenter__(self) -> EmbeddedRolloutServer:
        # Requests straight into the app do not run its lifespan: run it here, so shutdown
        # drains rollouts and closes the callback client.
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        try:
            if self._lifespan is not None:
                await self._lifespan.__aexit__(*exc_info)
        finally:
            self._lifespan = None
            await self._client.aclose()
