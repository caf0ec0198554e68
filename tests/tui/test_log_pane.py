"""Log routing: uvicorn's, litellm's and the agent's records and prints reach the log pane, from
any thread, and never the terminal; everything is given back when the app exits."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Callable

from textual.app import App, ComposeResult
from textual.pilot import Pilot

from osmosis_workbench.tui.log_pane import (
    ROUTED_LOGGERS,
    LogPane,
    LogRouter,
    install_log_routing,
    log_router,
)


class PaneApp(App[None]):
    """An app with one log pane (which installs the routing when it mounts)."""

    def __init__(self, max_lines: int = 5000) -> None:
        super().__init__()
        self.max_lines = max_lines

    def compose(self) -> ComposeResult:
        yield LogPane(max_lines=self.max_lines)


async def until(pilot: Pilot, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Let the app run until ``predicate()`` holds (the pane drains on a timer)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await pilot.pause(0.02)


def pane_text(app: App) -> str:
    return "\n".join(app.query_one(LogPane).lines)


def terminal_handlers(name: str) -> list[logging.Handler]:
    streams = (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)
    return [
        h
        for h in logging.getLogger(name).handlers
        if isinstance(h, logging.StreamHandler)
        and not isinstance(h, logging.FileHandler)
        and h.stream in streams
    ]


async def test_records_from_the_loop_and_threads_and_prints_reach_the_pane():
    app = PaneApp()
    async with app.run_test() as pilot:
        logging.getLogger("uvicorn.error").warning("uvicorn says %s", "hello")
        logging.getLogger("server_core.rollouts").info("an agent-side record")
        logging.getLogger("my_agent").error("the user's own logger")
        worker = threading.Thread(
            target=lambda: logging.getLogger("LiteLLM").warning("from a litellm thread")
        )
        worker.start()
        worker.join()
        print("a print from the agent")
        print("half a line", end="")
        print(" ... and its end")
        await until(pilot, lambda: "its end" in pane_text(app))
        text = pane_text(app)
        assert "WARNING uvicorn.error: uvicorn says hello" in text
        assert "INFO    server_core.rollouts: an agent-side record" in text
        assert "ERROR   my_agent: the user's own logger" in text
        assert "LiteLLM: from a litellm thread" in text
        assert "print   a print from the agent" in text
        assert "print   half a line ... and its end" in text


async def test_tracebacks_go_to_the_pane_as_lines():
    app = PaneApp()
    async with app.run_test() as pilot:
        try:
            raise ValueError("broken agent")
        except ValueError:
            logging.getLogger("osmosis_workbench.tui").exception("the batch failed")
        await until(pilot, lambda: "ValueError: broken agent" in pane_text(app))
        lines = app.query_one(LogPane).lines
        assert any(line.startswith("Traceback (most recent call last)") for line in lines)


async def test_terminal_handlers_are_removed_even_when_added_later_and_restored_at_exit():
    before = logging.StreamHandler(sys.stderr)
    logging.getLogger("uvicorn").addHandler(before)
    app = PaneApp()
    try:
        async with app.run_test() as pilot:
            router = log_router(app)
            assert router is not None and router in logging.getLogger().handlers
            assert all(not terminal_handlers(name) for name in ("", *ROUTED_LOGGERS))
            # litellm adds its own stderr handler when first imported, long after start-up.
            late = logging.StreamHandler(sys.stderr)
            litellm_logger = logging.getLogger("LiteLLM")
            litellm_logger.addHandler(late)
            litellm_logger.propagate = False
            await until(pilot, lambda: late not in litellm_logger.handlers, timeout=3)
            assert litellm_logger.propagate  # its records now go up to the pane
            litellm_logger.warning("routed after the sweep")
            await until(pilot, lambda: "routed after the sweep" in pane_text(app))
        # Exit: every logger has its handlers, propagation and level back.
        assert router not in logging.getLogger().handlers
        assert before in logging.getLogger("uvicorn").handlers
        assert late in litellm_logger.handlers and not litellm_logger.propagate
        assert log_router(app) is None
    finally:
        logging.getLogger("uvicorn").removeHandler(before)
        logging.getLogger("LiteLLM").removeHandler(late)
        logging.getLogger("LiteLLM").propagate = True


async def test_a_silenced_logger_stays_silent():
    access = logging.getLogger("uvicorn.access")
    access.propagate = False  # what uvicorn does with access_log=False
    access.setLevel(logging.INFO)
    app = PaneApp()
    try:
        async with app.run_test() as pilot:
            access.info("GET /health 200")
            logging.getLogger("uvicorn.error").warning("marker")
            await until(pilot, lambda: "marker" in pane_text(app))
            assert "GET /health" not in pane_text(app)
    finally:
        access.propagate = True
        access.setLevel(logging.NOTSET)


async def test_the_pane_keeps_at_most_max_lines_and_a_burst_costs_one_write():
    app = PaneApp(max_lines=100)
    async with app.run_test() as pilot:
        pane = app.query_one(LogPane)
        writes: list[int] = []
        original = pane.write_lines

        def counting(lines, scroll_end=None):
            lines = list(lines)
            writes.append(len(lines))
            return original(lines, scroll_end)

        pane.write_lines = counting  # type: ignore[method-assign]
        logger = logging.getLogger("osmosis_workbench.burst")
        for n in range(1000):
            logger.info("record %d", n)
        await until(pilot, lambda: "record 999" in pane_text(app))
        assert pane.line_count <= 100
        assert len(writes) <= 2  # drained in bulk, not one write per record


def test_install_is_idempotent_and_the_router_buffer_is_bounded():
    router = LogRouter(max_lines=3)
    for n in range(5):
        router.push(f"line {n}")
    lines, seen = router.read_since(0)
    assert lines == ["line 2", "line 3", "line 4"] and seen == 5
    assert router.read_since(seen) == ([], 5)
    router.push("line 5")
    assert router.read_since(seen) == (["line 5"], 6)


async def test_install_log_routing_twice_gives_the_same_router():
    app = PaneApp()
    async with app.run_test():
        assert install_log_routing(app) is install_log_routing(app) is log_router(app)
