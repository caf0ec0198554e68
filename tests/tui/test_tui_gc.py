"""The workbench and the garbage collector: full collections after a frame, frozen objects.

The schedule runs on fake gc counters (each rule checked exactly); the app tests check the
real thresholds and the frozen objects while a workbench runs and after it exits.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from osmosis_workbench.engine.config import EngineConfig
from osmosis_workbench.engine.models import ScriptedBackend
from osmosis_workbench.tui.app import WorkbenchApp, make_app
from osmosis_workbench.tui.gc_control import AfterFrameCollections

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    sys.implementation.name != "cpython" or sys.version_info >= (3, 14),
    reason="applies to CPython's generational collector (before 3.14)",
)


class FakeGC:
    """The gc functions the schedule uses, and the callbacks handed to 'after the frame'."""

    def __init__(self) -> None:
        self.threshold = (700, 10, 10)
        self.count = (0, 0, 0)
        self.collected = 0
        self.after_frame: list[Callable[[], None]] = []

    def collect(self) -> int:
        self.collected += 1
        self.count = (0, 0, 0)
        return 0

    def set_threshold(self, *values: int) -> None:
        self.threshold = values  # type: ignore[assignment]

    def schedule(self) -> AfterFrameCollections:
        return AfterFrameCollections(
            self.after_frame.append,
            collect=self.collect,
            get_count=lambda: self.count,
            get_threshold=lambda: self.threshold,
            set_threshold=self.set_threshold,
        )

    def draw_frame(self) -> None:
        callbacks, self.after_frame = self.after_frame, []
        for callback in callbacks:
            callback()


def scripted_app() -> WorkbenchApp:
    """The workbench on the sample agent, with a model that is never asked."""
    config = EngineConfig(
        module="sample_project.server:agent_loop", model="scripted", search_path=str(ROOT)
    )
    return make_app(config, backend=ScriptedBackend([]))


@pytest.fixture
def fake() -> FakeGC:
    return FakeGC()


def test_install_turns_automatic_full_collections_off_and_uninstall_restores(
    fake: FakeGC,
) -> None:
    schedule = fake.schedule()
    assert schedule.install() and schedule.installed
    assert fake.threshold[:2] == (700, 10) and fake.threshold[2] > 10**6
    assert schedule.install()  # twice is harmless
    schedule.uninstall()
    assert fake.threshold == (700, 10, 10) and not schedule.installed
    schedule.uninstall()
    assert fake.threshold == (700, 10, 10)


def test_a_second_schedule_leaves_the_first_ones_thresholds_alone(fake: FakeGC) -> None:
    first, second = fake.schedule(), fake.schedule()
    assert first.install()
    assert not second.install()
    second.uninstall()
    assert fake.threshold[2] > 10**6
    first.uninstall()
    assert fake.threshold == (700, 10, 10)


def test_collection_turned_off_by_the_program_stays_off(fake: FakeGC) -> None:
    fake.threshold = (0, 10, 10)
    schedule = fake.schedule()
    assert not schedule.install()
    fake.count = (0, 0, 500)
    assert not schedule.tick()
    assert fake.threshold == (0, 10, 10) and fake.after_frame == []


def test_a_due_collection_runs_after_the_frame_once(fake: FakeGC) -> None:
    schedule = fake.schedule()
    schedule.install()
    fake.count = (0, 0, 9)
    assert not schedule.tick()  # CPython would not collect yet either
    fake.count = (0, 0, 10)
    assert schedule.tick()
    assert not schedule.tick()  # already handed over: not twice
    assert fake.collected == 0  # nothing runs before the frame
    fake.draw_frame()
    assert fake.collected == 1 and schedule.collections == 1
    assert fake.count == (0, 0, 0)
    assert not schedule.tick()  # nothing due after the collection


def test_a_collection_no_longer_due_by_the_frame_is_skipped(fake: FakeGC) -> None:
    schedule = fake.schedule()
    schedule.install()
    fake.count = (0, 0, 10)
    schedule.tick()
    fake.count = (0, 0, 0)  # something else collected in between
    fake.draw_frame()
    assert fake.collected == 0
    fake.count = (0, 0, 11)
    assert schedule.tick()  # and the next due one is handed over again


def test_a_screen_that_never_goes_idle_still_gets_its_collection(fake: FakeGC) -> None:
    schedule = fake.schedule()
    schedule.install()
    fake.count = (0, 0, 10)
    assert schedule.tick()
    for _ in range(9):
        schedule.tick()  # frames keep coming: the handed-over callback never runs
    assert fake.collected == 0
    schedule.tick()
    assert fake.collected == 1
    fake.draw_frame()  # the late callback finds nothing due
    assert fake.collected == 1
    fake.count = (0, 0, 10)
    assert schedule.tick()  # and the next one is handed over as usual


def test_an_uninstalled_schedule_never_collects(fake: FakeGC) -> None:
    schedule = fake.schedule()
    fake.count = (0, 0, 1000)
    assert not schedule.tick()
    fake.draw_frame()
    assert fake.collected == 0


async def test_the_workbench_runs_full_collections_itself_and_restores_cpythons() -> None:
    before = gc.get_threshold()
    app = scripted_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.gc_schedule.installed
        assert gc.get_threshold()[:2] == before[:2] and gc.get_threshold()[2] > 10**6
        for _ in range(before[2]):
            gc.collect(1)  # as many younger collections as make a full one due
        assert gc.get_count()[2] >= before[2]
        ran = app.gc_schedule.collections
        app.gc_schedule.tick()  # (or the app's own tick, every 100 ms, did it already)
        await pilot.pause()  # a frame, then the idle screen runs the collection
        assert app.gc_schedule.collections > ran
    assert not app.gc_schedule.installed
    assert gc.get_threshold() == before


async def test_the_open_workspace_is_frozen_until_the_app_ends() -> None:
    # Frozen: later full collections skip the engine and Textual. Thawed at the end: what the
    # app leaves behind can be collected.
    app = scripted_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.workspace is not None
        assert gc.get_freeze_count() > 10_000
    assert gc.get_freeze_count() == 0


async def test_the_servers_the_workbench_starts_and_stops_leave_its_frozen_objects_alone() -> None:
    # The SDK's create_app freezes the heap at start-up and thaws it at shutdown: inside the
    # workbench that would thaw the app's own frozen objects whenever a server stops.
    app = scripted_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        workspace = app.workspace
        assert workspace is not None
        frozen = gc.get_freeze_count()
        await workspace.start_server(port=0)  # the agent on a real port
        await workspace.stop_server()
        await workspace.reload_agent()  # a new embedded server; the old one stops
        # Still frozen (less what reference counting freed: the replaced agent's objects).
        assert gc.get_freeze_count() > 0.9 * frozen
