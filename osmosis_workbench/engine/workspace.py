"""The workbench's engine state in one object: the built engine, the dataset, the served agent.

The TUI holds one ``Workspace`` and calls its plain async methods; nothing here imports Textual,
so every behaviour is testable headless. ``open()`` builds the engine with
``wiring.open_engine`` (the same composition root as ``osmosis test``) and ``aclose()`` closes
it. Rollouts always take the protocol path: the step debugger and batch runs go through the
local trainer to the embedded server (in-process) or to a remote server (``url``);
``start_server`` also serves the agent on a real port for external trainers, observed and
pausable through ``live``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import logging
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from osmosis_workbench.engine.batch import BatchRunner, build_request, run_tag_for
from osmosis_workbench.engine.config import EngineConfig
from osmosis_workbench.engine.datasets import DatasetRow, RowError, RowSelection, load_rows
from osmosis_workbench.engine.fork import ForkParent, ForkSession, OnDivergence, fork_options
from osmosis_workbench.engine.journal import JournalEntry
from osmosis_workbench.engine.live import LiveRollouts
from osmosis_workbench.engine.models import (
    HumanBackend,
    LiveBackend,
    ModelBackend,
    find_human,
    find_replay,
)
from osmosis_workbench.engine.session import StepSession
from osmosis_workbench.engine.trainer import LLMExchange, LocalTrainer, ServerTarget
from osmosis_workbench.engine.wiring import Engine, build_backend, import_agent, open_engine

logger = logging.getLogger("osmosis_workbench.workspace")


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

    def __init__(self, config: EngineConfig, backend: ModelBackend | None = None) -> None:
        self.config = config
        #: A model backend to use instead of the config's model (tests).
        self._given_backend = backend
        self.engine: Engine | None = None
        self.rows: list[DatasetRow] = []
        self.bad_rows: list[RowError] = []
        self.live = LiveRollouts()
        self.server: Any = None  # server_core.serve.EmbeddedServer on a real port
        self.server_app: Any = None
        self.server_api_key: str | None = None
        self._stack = contextlib.AsyncExitStack()
        self._detach_live: Callable[[], None] | None = None

    # ---- opening and closing ----------------------------------------------------------------

    @property
    def trainer(self) -> LocalTrainer | None:
        """The local trainer (``None`` until the workspace is open)."""
        return self.engine.trainer if self.engine is not None else None

    @property
    def agent(self) -> Any:
        """The agent served in-process (``None`` when attached to a remote server)."""
        return self.engine.agent if self.engine is not None else None

    @property
    def remote(self) -> ServerTarget | None:
        """The remote server the workbench is attached to (``None``: the agent runs here)."""
        if self.engine is None or not self.engine.remote:
            return None
        return self.engine.targets[0]

    @property
    def model_name(self) -> str:
        """The model in use, for display."""
        backend = self.engine.backend if self.engine is not None else self._given_backend
        return (backend.name if backend is not None else None) or self.config.model or "(none)"

    @property
    def live_model(self) -> bool:
        """Whether the model is reached over the network (it costs: estimate a run first)."""
        model = self.engine.model_backend if self.engine is not None else self._given_backend
        return isinstance(model, LiveBackend)

    @property
    def target(self) -> ServerTarget:
        """Where rollouts run: the embedded server, or the remote one."""
        assert self.engine is not None, "open() the workspace first"
        return self.engine.targets[0]

    async def open(self) -> None:
        """Build the engine: the model backend, the trainer, the agent (off the loop), servers."""
        self.engine = await self._stack.enter_async_context(
            open_engine(self.config, backend=self._given_backend)
        )

    async def aclose(self) -> None:
        """Stop everything this workspace started, in order."""
        await self.stop_server()
        self.engine = None
        await self._stack.aclose()

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
        assert self.engine is not None, "open() the workspace first"
        folder = self.agent_folder()
        if folder is not None:
            stale = _module_files_under(folder)
            saved = {name: sys.modules.pop(name) for name in stale}
        else:
            saved = {}
        try:
            agent = await asyncio.to_thread(import_agent, self.config)
        except Exception:
            sys.modules.update(saved)  # keep the working code
            raise
        importlib.invalidate_caches()
        await self.engine.serve_agent(agent)
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
        self.config = dataclasses.replace(self.config, dataset=path)
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

    def step(
        self,
        index: int,
        *,
        stepping: bool = True,
        on_exchange: Callable[[LLMExchange], None] | None = None,
    ) -> StepSession:
        """A step session for a dataset row (call ``await session.start()``)."""
        assert self.trainer is not None, "open() the workspace first"
        # test_data-step-3fa2c1-r0-a0-7: the dataset, a step, a nonce (other workbenches may
        # step the same row on the same --url server), the row.
        tag = f"{run_tag_for(self.config.dataset)}-step-{uuid.uuid4().hex[:6]}"
        request = build_request(self.row(index), 0, self.config, tag)
        human = self.human
        return StepSession(
            self.trainer,
            self.target,
            request,
            timeout_s=self.config.rollout_timeout_s,
            # The developer who writes each answer need not be shown it again before release.
            stepping=stepping and human is None,
            label=f"row {index}",
            on_exchange=on_exchange,
            cannot_regenerate=self.cannot_regenerate(index),
            human=human,
        )

    @property
    def human(self) -> HumanBackend | None:
        """The developer as the model (``--model human``), if that is the model."""
        return find_human(self.engine.backend) if self.engine is not None else None

    def cannot_regenerate(self, row: int, model: ModelBackend | None = None) -> str | None:
        """Why the model (``model``, else the workspace's) cannot answer an edited history of
        ``row`` (``None``: it can)."""
        assert self.engine is not None, "open() the workspace first"
        replay = find_replay(model or self.engine.backend)
        if replay is None:
            return None
        # A replay keys its answers by the exact history: an edited one was never recorded.
        server = f"-m {self.config.module}" if self.config.module else f"--url {self.config.url}"
        dataset = f" -d {self.config.dataset}" if self.config.dataset else ""
        return (
            f"the model is a replay of {replay.path}: it has answers only for the histories "
            "it recorded, and an edited tool result makes a new one. Ask a model that answers "
            "anything: a live one (--model openai/gpt-4o-mini) or you (--model human), e.g. "
            f"osmosis-workbench {server}{dataset} --row {row} --model human"
        )

    def fork(
        self,
        parent: StepSession | JournalEntry | ForkParent,
        at: int,
        *,
        model: str | None = None,
        answer: dict[str, Any] | str | None = None,
        on_divergence: OnDivergence = "stop",
        stepping: bool = True,
        on_exchange: Callable[[LLMExchange], None] | None = None,
    ) -> ForkSession:
        """A fork of ``parent`` at its LLM call ``at`` (1-based); ``await fork.start()``.

        ``parent``: a step session (the debugger's current rollout, running or finished), a
        journal entry, or a ``ForkParent`` (``ForkParent.from_run(run_dir, row)``: a run's
        rollout, whose fork then lands in the run's fork journal, scored as the run scores).
        ``model``: a ``--model`` spec for call ``at`` on; ``None``: the parent's model (its
        run's, else the workspace's). ``answer``: a hand-written answer (a message, or its
        text) for call ``at``, the model answering after it. Raises ``ForkError`` (no such
        call) or ``ConfigError`` (a model spec that cannot be built), each naming the fix.
        """
        assert self.engine is not None, "open() the workspace first"
        if isinstance(parent, StepSession):
            parent = ForkParent.from_session(parent)
        elif isinstance(parent, JournalEntry):
            parent = ForkParent.from_entry(parent)
        parent.check(at)  # before a model is built for nothing
        spec = model or (parent.run.model if parent.run is not None else None)
        owned = spec is not None and spec != self.config.model
        if owned:
            assert spec is not None
            continuation, _ = build_backend(
                dataclasses.replace(self.config, model=spec, record=None)
            )
        else:
            continuation = self.engine.backend
        human = find_human(continuation)
        scoring = fork_options(parent.run) or {
            "reward_fn": self.config.load_reward_fn(),
            "pass_threshold": self.config.pass_threshold,
        }
        return ForkSession(
            self.engine.trainer,
            self.target,
            parent,
            at,
            model=continuation,
            owns_model=owned,
            answer=answer,
            on_divergence=on_divergence,
            # As for a step: the developer who writes each answer need not see it again.
            stepping=stepping and human is None,
            timeout_s=self.config.rollout_timeout_s,
            on_exchange=on_exchange,
            cannot_regenerate=self.cannot_regenerate(parent.row, continuation),
            human=human,
            **scoring,
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
        assert self.engine is not None and self.config.dataset, "open() and load a dataset"
        config = dataclasses.replace(
            self.config,
            selection=RowSelection(rows=frozenset(rows) if rows is not None else None),
            concurrency=concurrency,
            attempts=attempts,
            pass_threshold=pass_threshold,
        )
        return BatchRunner(self.engine.trainer, self.engine.targets, config, **callbacks)

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
        # The workbench manages garbage collection itself (tui/gc_control.py): no SDK freeze.
        app = create_app(
            self.agent,
            api_key=api_key,
            rollout_timeout=self.config.rollout_timeout_s,
            freeze_heap=False,
        )
        self._detach_live = self.live.attach(app.state.hooks, cancel=app.state.rollouts.cancel)
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
