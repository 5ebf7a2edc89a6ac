"""Helpers the TUI tests share: the recorded runs, a frozen clock, and waiting
for a screen to have loaded everything (polling, never a fixed sleep)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cockpit.session import Session
from cockpit.supervisor import Trainer
from cockpit.ui.app import CockpitApp
from cockpit.ui.screens.compare import CompareScreen
from cockpit.ui.screens.monitor import MonitorScreen
from cockpit.ui.screens.runs import RunsScreen
from tests.conftest import REPO
from tests.recorded.make_recorded import CLOCK, CPU_RUN, GPU_RUN

RECORDED = Path("tests/recorded/runs")  # relative: the runs screen shows it (tests chdir to REPO)
CPU = RECORDED / CPU_RUN
GPU = RECORDED / GPU_RUN


def frozen() -> float:
    return CLOCK


def recorded_app(mode: str = "monitor", run: Path | None = CPU) -> CockpitApp:
    """The app on a recorded run (or the runs screen), with the clock frozen."""
    session = Session(run, Trainer.find(run)) if mode == "monitor" and run else None
    return CockpitApp(mode, session=session, logs=RECORDED, clock=frozen)


def loaded(app) -> bool:
    """The active screen shows all it will: the run replayed, checkpoints verified,
    the runs listed, every compared run read."""
    s = app.screen
    if isinstance(s, MonitorScreen):
        v = s.view
        return s.pump.final is not None and v is not None and v.version >= s.pump.final.version
    if isinstance(s, RunsScreen):
        return bool(s.rows)
    if isinstance(s, CompareScreen):
        return s.is_mounted and all(v is not None for v in s.views)
    return True


async def until(pilot, cond, timeout: float = 60, what: str = "") -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return
        await pilot.pause(0.05)
    pytest.fail(f"timed out waiting for {what or cond}")


async def settle(pilot) -> None:
    """Wait until loaded, then let the last messages be drawn."""
    await until(pilot, lambda: loaded(pilot.app), what="the screen to load")
    await pilot.pause(0.1)
    await pilot.pause()


@pytest.fixture
def in_repo(monkeypatch):
    """Run from the repository root with local time in UTC (the runs screen's
    start times), as the snapshots were taken."""
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
