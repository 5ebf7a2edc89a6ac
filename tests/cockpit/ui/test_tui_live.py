"""The TUI's keys against a real tiny trainer under the supervisor (Pilot tests):
`s` saves a checkpoint that shows in the panel and on disk, `d` shows the
trainer's stacks, `q` detaches and leaves training running, a new cockpit on
the same run directory re-opens it live, and `x` (after its confirmation) ends
the run `interrupted` with a checkpoint."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from cockpit.session import Session
from cockpit.supervisor import Trainer, trainer_command
from cockpit.ui.app import CockpitApp, farewell
from cockpit.ui.screens.dialogs import ConfirmScreen, TextScreen
from core import checkpoint as C
from tests.conftest import ENDLESS_WALKS, REPO, events

pytestmark = pytest.mark.slow

# no periodic checkpoints and no evals (an improved val loss saves the best weights):
# every checkpoint this run makes is one the keys asked for
LIVE = ENDLESS_WALKS + ["checkpoint.every_steps=1000000", "eval.every_steps=1000000"]


async def until(pilot, cond, timeout: float = 120, what: str = "") -> None:
    """Let the app run until cond() holds (a loaded 2-core box is slow: poll, never sleep)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return
        await pilot.pause(0.1)
    pytest.fail(f"timed out waiting for {what or cond}")


def panel_text(app, selector: str) -> str:
    return app.screen.query_one(selector).render().plain


@pytest.fixture
def trainer(tmp_path):
    d = tmp_path / "logs" / "live"
    t = Trainer.launch(trainer_command("demo-walks", d, LIVE), d, cwd=REPO)
    yield t
    if t.alive():
        t.kill_group()
    t.wait(10)


@pytest.mark.heavy  # over 10 s on 2 cores: make test stays under 10 min; CI runs it
def test_keys_on_a_live_run(trainer, tmp_path, capsys):
    d = trainer.run_dir
    asyncio.run(_first_cockpit(trainer, d, tmp_path))
    assert trainer.alive(), "q must leave the trainer running"
    m_steps = [e["step"] for e in events(d) if e["type"] == "step"]
    asyncio.run(_second_cockpit(d, tmp_path, after_step=m_steps[-1]))
    assert trainer.wait(60) == 130
    ends = [e for e in events(d) if e["type"] == "run_end"]
    assert [e["status"] for e in ends] == ["interrupted"]
    ck = [e for e in events(d) if e["type"] == "checkpoint"]
    assert "interrupt" in ck[-1]["tags"] and C.verify(Path(ck[-1]["path"])) is None


async def _first_cockpit(trainer: Trainer, d: Path, tmp_path: Path) -> None:
    session = Session(d, trainer)
    app = CockpitApp("monitor", session=session, logs=tmp_path / "logs")
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.screen
        await until(
            pilot, lambda: screen.view is not None and screen.view.figures.step > 5, what="steps"
        )
        assert "no checkpoint yet" in panel_text(app, "#checkpoints")

        # s: a checkpoint now, in the panel and on disk
        await pilot.press("s")
        await until(
            pilot,
            lambda: any(c.present for c in screen.view.checkpoints),
            what="the checkpoint s asked for",
        )
        c = screen.view.checkpoints[-1]
        assert (d / "checkpoints" / c.name).exists() and "latest" in c.tags
        ev = [e for e in events(d) if e["type"] == "checkpoint"]
        assert [e["step"] for e in ev] == [c.step]  # the only one: s made it
        await until(pilot, lambda: f"{c.step:,}" in panel_text(app, "#checkpoints"), what="panel")
        await until(pilot, lambda: screen.view.checkpoints[-1].verified is True, what="verified")

        # d: the trainer's stacks, shown
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, TextScreen), what="the stacks screen")
        assert "File" in app.screen.text or "Thread" in app.screen.text
        assert list((d / "stacks").glob("stacks-*.txt"))
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen, what="back to the monitor")

        # q: the cockpit goes, the trainer stays
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running, timeout=30, what="the app to quit")
    assert trainer.alive()
    assert farewell(session) == 0


async def _second_cockpit(d: Path, tmp_path: Path, after_step: int) -> None:
    session = Session(d, Trainer.find(d))  # what `cockpit watch DIR` does
    app = CockpitApp("monitor", session=session, logs=tmp_path / "logs")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await until(
            pilot,
            lambda: screen.view is not None and screen.view.figures.step > after_step + 5,
            what="the re-opened run to go on",
        )
        assert screen.view.status == "running" and screen.view.proc_alive
        # the header shows the run's step as it goes on (not any two digits of it)
        m = re.search(r"\bstep ([\d,]+)", panel_text(app, "#header"))
        assert m is not None, panel_text(app, "#header")
        assert after_step + 5 < int(m[1].replace(",", "")) <= screen.view.figures.step

        # x: asks first; n keeps the run going
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        await pilot.press("n")
        await until(pilot, lambda: app.screen is screen)
        assert screen.view.status == "running"
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        await pilot.press("y")
        await until(
            pilot,
            lambda: screen.view.status == "interrupted" and screen.pump.finished,
            what="the run to end interrupted",
        )
        ck = [c for c in screen.view.checkpoints if c.present]
        assert "interrupt" in ck[-1].tags
        assert "interrupted" in panel_text(app, "#header")
        assert "interrupt" in panel_text(app, "#checkpoints")
        await pilot.press("q")
    assert farewell(session) == 130
