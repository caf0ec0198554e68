"""Knowing when a batch's remote rollout servers stop answering.

A server that dies mid-run refuses every new init at once and never completes the rollouts
it holds: without a watch, every row left would be journaled as failed within a second while
the rollouts in flight wait out their timeout. ``ServerWatch`` counts connection failures per
server (from inits, and from ``/health`` probes while rollouts are in flight); a server that
keeps refusing is *down*: its rollouts in flight are let go (not journaled, so ``--resume``
runs them), and once every server is down the batch is told to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from osmosis_workbench.engine.trainer import LocalTrainer, RolloutRun, ServerTarget
from server_core.http_client import HTTPError, HTTPTransportError

#: A server is down after this many connection failures in a row...
DOWN_AFTER_FAILURES = 3
#: ...spread over at least this long (a restart or a full listen backlog is not a death).
DOWN_AFTER_S = 1.0
#: How often a server holding rollouts is asked for /health, and how long it may take.
PROBE_INTERVAL_S = 0.5
PROBE_TIMEOUT_S = 5.0


@dataclass(eq=False)
class _Health:
    """One server's record: failures in a row, since when, and whether it is down."""

    target: ServerTarget
    failures: int = 0
    failing_since: float | None = None
    down: str | None = None
    in_flight: dict[str, RolloutRun] = field(default_factory=dict)


class ServerWatch:
    """Connection health of a batch's servers; ``on_all_down(reason)`` once none answers."""

    def __init__(
        self,
        trainer: LocalTrainer,
        targets: list[ServerTarget],
        on_all_down: Callable[[str], None],
    ) -> None:
        self.trainer = trainer
        self._servers = [_Health(target) for target in targets]
        self._cycle = itertools.cycle(self._servers)
        self._on_all_down = on_all_down

    @property
    def all_down(self) -> bool:
        """Whether no server answers any more."""
        return all(server.down for server in self._servers)

    def next_target(self) -> ServerTarget | None:
        """The next server that is not down, round robin (``None``: all are down)."""
        for _ in self._servers:
            server = next(self._cycle)
            if not server.down:
                return server.target
        return None

    @contextlib.contextmanager
    def running(self, target: ServerTarget, run: RolloutRun) -> Iterator[None]:
        """While the block runs, ``run`` is in flight on ``target`` (let go if it goes down)."""
        server = self._find(target)
        server.in_flight[run.rollout_id] = run
        try:
            yield
        finally:
            server.in_flight.pop(run.rollout_id, None)

    def answered(self, target: ServerTarget) -> None:
        """``target`` answered over HTTP (whatever the status): it is up."""
        server = self._find(target)
        server.failures, server.failing_since = 0, None

    def connection_failed(self, target: ServerTarget, error: str) -> None:
        """Nothing answered at ``target``; after enough failures in a row, it is down."""
        server = self._find(target)
        if server.down or target.in_process:
            return
        now = time.monotonic()
        server.failures += 1
        server.failing_since = server.failing_since or now
        if server.failures >= DOWN_AFTER_FAILURES and now - server.failing_since >= DOWN_AFTER_S:
            self._mark_down(server, error)

    def _mark_down(self, server: _Health, error: str) -> None:
        server.down = error
        reason = f"the rollout server at {server.target.url} stopped answering ({error})"
        for run in list(server.in_flight.values()):
            self.trainer.abandon(run, reason)
        if self.all_down:
            urls = ", ".join(s.target.url for s in self._servers)
            plural = "s" if len(self._servers) > 1 else ""
            self._on_all_down(
                f"stopped early: the rollout server{plural} at {urls} stopped answering "
                f"({error}); the rollouts not journaled are left for --resume"
            )

    async def let_go_in_flight(self, reason: str, timeout_s: float = 2.0) -> None:
        """Stop waiting for every rollout in flight, and ask their servers to cancel them.

        For an interrupted batch: nothing waits for these rollouts any more, and a server
        shutting down would otherwise wait for them.
        """
        held = [(run, s.target) for s in self._servers for run in s.in_flight.values()]
        for run, _ in held:
            self.trainer.abandon(run, reason)
        cancels = [
            self.trainer.cancel_on_server(run, target)
            for run, target in held
            if not self._find(target).down
        ]
        if cancels:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*cancels), timeout_s)

    def _find(self, target: ServerTarget) -> _Health:
        return next(server for server in self._servers if server.target is target)

    async def watch(self, stop: asyncio.Event) -> None:
        """Probe the servers holding rollouts until ``stop`` is set (a rollout in flight on a
        dead server would otherwise wait out its whole timeout)."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PROBE_INTERVAL_S)
            for server in self._servers:
                if server.down or server.target.in_process or not server.in_flight:
                    continue
                await self._probe(server.target)

    async def _probe(self, target: ServerTarget) -> None:
        try:
            await asyncio.wait_for(
                target.client.get(f"{target.url}/health", headers=target.headers()),
                PROBE_TIMEOUT_S,
            )
        except HTTPTransportError as exc:  # refused, reset: nothing answers there
            self.connection_failed(target, str(exc) or type(exc).__name__)
            return
        except (TimeoutError, HTTPError):
            return  # slow is not dead
        self.answered(target)
