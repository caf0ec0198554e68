"""The workbench's engine state in one object: agent, model, trainer, servers, dataset.

The TUI holds one ``Workspace`` and calls its plain async methods; nothing here imports Textual,
so every behaviour is testable headless. Rollouts always take the protocol path: the step
debugger and batch runs go through the local trainer to the embedded server (in-process) or to
a remote server (``url``); ``start_server`` also serves the agent on a real port for external
trainers, observed and pausable through ``live``.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from osmosis_workbench.engine.batch import BatchOptions, BatchRunner
from osmosis_workbench.engine.datasets import (
    DatasetRow,
    RowError,
    RowSelection,
    load_rows,
)
from osmosis_workbench.engine.embedded import EmbeddedRolloutServer
from osmosis_workbench.engine.live import LiveRollouts
from osmosis_workbench.engine.models import ModelBackend, create_backend
from osmosis_workbench.engine.session import StepSession
from osmosis_workbench.engine.trainer import LocalTrainer, ServerTarget
from server_core.http_client import AiohttpClient

logger = logging.getLogger("osmosis_workbench.workspace")


@dataclass
class WorkspaceConfig:
    """What the workbench was opened with (the CLI flags)."""

    module: str | None = None
    url: str | None = None
    server_api_key: str | None = None
    dataset: str | None = None
    model: str | None = None
    base_url: str | None = None
    model_api_key: str | None = None
    record: str | None = None
    rollout_timeout_s: float = 600.0
    search_path: str = "."
    trainer_host: str = "127.0.0.1"
    trainer_port: int = 0


def _module_files_under(folder: Path) -> list[str]:
    """Names of imported modules whose source lives under ``folder`` (to reload them)."""
    names = []
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file and Path(file).resolve().is_relative_to(folder) and ".venv" not in file:
            names.append(name)
    return names


class Workspace:
    """Engine state of one workbench session."""

    def __init__(self, config: WorkspaceConfig, backend: ModelBackend | None = None) -> None:
        self.config = config
        self.agent: Any = None
        self.backend = backend
        self.trainer: LocalTrainer | None = None
        self.embedded: EmbeddedRolloutServer | None = None
        self.remote: ServerTarget | None = None
        self.rows: list[DatasetRow] = []
        self.bad_rows: list[RowError] = []
        self.live = LiveRollouts()
        self.server: Any = None  # server_core.serve.EmbeddedServer on a real port
        self.server_app: Any = None
        self.server_api_key: str | None = None
        self._remote_client: AiohttpClient | None = None
        self._detach_live: Callable[[], None] | None = None

    # ---- opening and closing ----------------------------------------------------------------

    @property
    def model_name(self) -> str:
        """The model in use, for display."""
        return getattr(self.backend, "name", None) or self.config.model or "(none)"

    @property
    def target(self) -> ServerTarget:
        """Where rollouts run: the embedded server, or the remote one."""
        if self.remote is not None:
            return self.remote
        assert self.embedded is not None, "open() the workspace first"
        return self.embedded.target

    async def open(self) -> None:
        """Load the agent (off the loop), build the model backend, trainer and servers."""
        cfg = self.config
        if self.backend is None:
            if not cfg.model:
                raise ValueError(
                    "no model: pass --model provider/name or --model replay:FILE "
                    "(a cassette.jsonl next to the dataset or the agent is used by default)"
                )
            self.backend = create_backend(
                cfg.model, base_url=cfg.base_url, api_key=cfg.model_api_key, record_to=cfg.record
            )
        self.trainer = LocalTrainer(self.backend)
        if cfg.url:
            await self.trainer.listen(cfg.trainer_host, cfg.trainer_port)
            self._remote_client = AiohttpClient(read_timeout_s=60.0)
            self.remote = ServerTarget(
                url=cfg.url.rstrip("/"), api_key=cfg.server_api_key, client=self._remote_client
            )
        else:
            if not cfg.module:
                raise ValueError("give the agent with -m MODULE:ATTR or a server with --url")
            self.agent = await asyncio.to_thread(self._import_agent)
            await self._open_embedded()

    def _import_agent(self) -> Any:
        from server_core.loader import load_agent_loop

        return load_agent_loop(self.config.module, search_path=self.config.search_path)

    async def _open_embedded(self) -> None:
        assert self.trainer is not None
        self.embedded = EmbeddedRolloutServer(
            self.agent, self.trainer, rollout_timeout=self.config.rollout_timeout_s
        )
        await self.embedded.__aenter__()

    async def aclose(self) -> None:
        """Stop everything this workspace started."""
        await self.stop_server()
        if self.embedded is not None:
            await self.embedded.__aexit__(None, None, None)
            self.embedded = None
        if self._remote_client is not None:
            await self._remote_client.aclose()
        if self.trainer is not None:
            await self.trainer.aclose()

    # ---- agent ------------------------------------------------------------------------------

    @property
    def agent_name(self) -> str:
        """The agent's name (or the remote URL)."""
        if self.agent is not None:
            return self.agent.name
        return self.config.url or "(no agent)"

    async def agent_tools(self) -> list[dict[str, Any]]:
        """The agent's tools for a sample request (empty for a remote server)."""
        if self.agent is None:
            return []
        from server_core.protocol import RolloutRequest, normalize_tools

        sample = RolloutRequest(
            rollout_id="workbench", server_url="http://localhost", messages=[], completion_params={}
        )
        return normalize_tools(await asyncio.to_thread(self.agent.get_tools, sample))

    def agent_folder(self) -> Path | None:
        """The folder of the agent's module (watched for changes)."""
        if self.agent is None:
            return None
        module = sys.modules.get(type(self.agent).__module__)
        file = getattr(module, "__file__", None)
        return Path(file).resolve().parent if file else None

    async def reload_agent(self) -> str:
        """Re-import the agent's module and the project modules next to it; returns its name.

        Rollouts already running keep the old code; new ones use the new. A failed import
        keeps the old agent and raises ``ImportFromStringError`` with the reason.
        """
        folder = self.agent_folder()
        if folder is not None:
            stale = _module_files_under(folder)
            saved = {name: sys.modules.pop(name) for name in stale}
        else:
            saved = {}
        try:
            agent = await asyncio.to_thread(self._import_agent)
        except Exception:
            sys.modules.update(saved)  # keep the working code
            raise
        importlib.invalidate_caches()
        old_embedded = self.embedded
        self.agent = agent
        await self._open_embedded()
        if old_embedded is not None:
            await old_embedded.__aexit__(None, None, None)
        if self.server is not None:
            host, port = self.server.host, self.server.port
            await self.stop_server()
            await self.start_server(host=host, port=port, api_key=self.server_api_key)
        return agent.name

    # ---- dataset ----------------------------------------------------------------------------

    async def load_dataset(self, path: str | None = None, limit: int | None = None) -> None:
        """Read the dataset's rows (off the loop); bad rows are kept in ``bad_rows``."""
        path = path or self.config.dataset
        if not path:
            return
        self.config.dataset = path
        self.rows, self.bad_rows = await asyncio.to_thread(
            load_rows, path, RowSelection(limit=limit)
        )

    def row(self, index: int) -> DatasetRow:
        """The dataset row with this 0-based index."""
        for row in self.rows:
            if row.index == index:
                return row
        raise IndexError(f"row {index} is not in the dataset (or is a bad row)")

    # ---- rollouts ---------------------------------------------------------------------------

    def step(self, index: int, *, stepping: bool = True, **callbacks: Any) -> StepSession:
        """A step session for a dataset row (call ``await session.start()``)."""
        from osmosis_workbench.engine.batch import build_request

        assert self.trainer is not None, "open() the workspace first"
        request = build_request(self.row(index), 0, BatchOptions(dataset=Path(".")), "step")
        return StepSession(
            self.trainer,
            self.target,
            request,
            timeout_s=self.config.rollout_timeout_s,
            stepping=stepping,
            label=f"row {index}",
            **callbacks,
        )

    def batch(
        self,
        rows: list[int] | None = None,
        *,
        concurrency: int = 8,
        attempts: int = 1,
        pass_threshold: float = 1.0,
        **callbacks: Any,
    ) -> BatchRunner:
        """A batch runner over the dataset (all rows, or ``rows``); ``await runner.run()``."""
        assert self.trainer is not None and self.config.dataset, "open() and load a dataset"
        options = BatchOptions(
            dataset=Path(self.config.dataset),
            selection=RowSelection(rows=frozenset(rows) if rows is not None else None),
            concurrency=concurrency,
            attempts=attempts,
            rollout_timeout_s=self.config.rollout_timeout_s,
            pass_threshold=pass_threshold,
        )
        return BatchRunner(self.trainer, [self.target], options, **callbacks)

    # ---- the served agent (real port, for external trainers) -------------------------------

    async def start_server(
        self, *, host: str = "127.0.0.1", port: int = 9000, api_key: str | None = None
    ) -> str:
        """Serve the agent on a real port (``api_key=None``: local mode); returns its URL."""
        from server_core import create_app
        from server_core.serve import EmbeddedServer

        if self.agent is None:
            raise RuntimeError("the workbench is attached to a remote server; nothing to serve")
        await self.stop_server()
        app = create_app(self.agent, api_key=api_key, rollout_timeout=self.config.rollout_timeout_s)
        self._detach_live = self.live.attach(app.state.hooks)
        server = EmbeddedServer(app, host=host, port=port)
        await server.start()  # raises ServerStartError (port busy) with the port named
        self.server, self.server_app, self.server_api_key = server, app, api_key
        return server.url

    async def stop_server(self) -> None:
        """Stop the served agent (running rollouts drain, then end as ERROR)."""
        server, self.server = self.server, None
        if server is not None:
            await server.stop()
        if self._detach_live is not None:
            self._detach_live()
            self._detach_live = None
        self.server_app = None

    def server_health(self) -> dict[str, Any] | None:
        """The served agent's /health body, read in-process (no request needed)."""
        if self.server_app is None:
            return None
        return self.server_app.state.rollouts.health()
