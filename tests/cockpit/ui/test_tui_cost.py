"""What the monitor repaints while it follows a live run (its CPU is mostly
Textual painting): the header with every view, so the newest step is on screen
as soon as the pump read it, and the body's panels together, at most once a
second. A frame that repaints any body panel paints every panel of the body
(Textual renders each widget whose container the frame touches), so panels
that each kept their own pace made a body frame several times a second.

The live run is real: a run directory the test writes events and log lines
into at 50 steps a second, followed by the real session and pump."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

from cockpit.session import Session
from cockpit.ui.app import CockpitApp
from cockpit.ui.widgets.base import Panel
from cockpit.ui.widgets.header import AlertBar, RunHeader
from tests.cockpit.ui.tuikit import CPU, in_repo, recorded_app, settle  # noqa: F401

TOP = (RunHeader, AlertBar)  # above the body: every view reaches them


def moments(times: list[float], gap: float = 0.05) -> int:
    """Times a few ms apart are one repaint (the same pass, the same frame)."""
    n, last = 0, None
    for t in sorted(times):
        if last is None or t - last > gap:
            n += 1
        last = t
    return n


class Writer:
    """A trainer's files, written from the test: events.jsonl and stdout.log."""

    def __init__(self, run: Path):
        run.mkdir(parents=True)
        self.events = open(run / "events.jsonl", "a", buffering=1)  # noqa: SIM115
        self.log = open(run / "stdout.log", "a", buffering=1)  # noqa: SIM115
        self.step = 0
        self.event(
            type="run_start", run_id=run.name, profile="test", pid=os.getpid(), device="cpu",
            world_size=1, dtype="float32", n_params=1000, tokens_per_step=4096,
            total_steps=10**6, total_epochs=1,
        )  # fmt: skip

    def event(self, **e: object) -> None:
        self.events.write(json.dumps({"v": 1, "t": time.time(), **e}) + "\n")

    async def steps(self, seconds: float, rate: float = 50.0) -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            self.step += 1
            s = self.step
            self.event(
                type="step", step=s, epoch=0, loss=2 + 1 / s, lr=3e-4, grad_norm=1.0,
                tokens=4096 * s, step_ms=1000 / rate, tokens_per_s=4096 * rate, mfu=None,
            )  # fmt: skip
            if s % 10 == 0:
                self.log.write(f"step {s} | loss {2 + 1 / s:.4f}\n")
            await asyncio.sleep(1 / rate)

    def close(self) -> None:
        self.events.close()
        self.log.close()


def spy(monkeypatch, method: str) -> list[tuple[type, tuple, float]]:
    """Each call of Panel.<method> from now on: (the panel's type, its arguments, when)."""
    seen: list[tuple[type, tuple, float]] = []
    real = getattr(Panel, method)

    def wrapper(self, *a, **kw):
        seen.append((type(self), a, time.monotonic()))
        return real(self, *a, **kw)

    monkeypatch.setattr(Panel, method, wrapper)
    return seen


def run_live(tmp_path: Path, go) -> None:
    """`go(writer)` on a live run the test writes into tmp_path/live; its files closed after."""
    w = Writer(tmp_path / "live")
    try:
        asyncio.run(go(w))
    finally:
        w.close()


def test_the_body_repaints_together_at_most_once_a_second_the_header_every_view(
    tmp_path, monkeypatch
):
    painted = spy(monkeypatch, "refresh")

    async def go(w: Writer) -> None:
        app = CockpitApp("monitor", session=Session(tmp_path / "live", None))
        async with app.run_test(size=(160, 48)) as pilot:
            await w.steps(0.3)  # the history replayed, the panels drawn once
            t0 = time.monotonic()
            await w.steps(1.1)
            t1 = time.monotonic()
            await pilot.pause(0.1)
            header = [t for k, _, t in painted if k is RunHeader and t0 <= t < t1]
            body = [t for k, _, t in painted if k not in TOP and t0 <= t < t1]
            shown = app.screen.query_one(RunHeader).view
            assert shown is not None and shown.figures.step > 50
        # a pass each second: two in 1.1 s at most (their own paces made 3 to 8)
        assert 1 <= moments(body) <= 2, f"the body repainted at {moments(body)} moments"
        # the header: each view a new step (the pump ticks every 0.12 s at most)
        assert len(header) >= 2 * moments(body) + 3, (len(header), moments(body))

    run_live(tmp_path, go)


def test_a_mouse_selection_in_a_panel_takes_the_row_under_it(in_repo):  # noqa: F811
    """Panels keep each row's rendered line (only changed rows re-render): the
    lines still say which row of the panel they are, so a drag over the header's
    second row selects that row's text."""

    async def go() -> None:
        app = recorded_app("monitor", CPU)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            header = app.screen.query_one(RunHeader)
            await pilot.mouse_down(header, offset=(1, 1))
            await pilot.hover(header, offset=(20, 1))
            await pilot.mouse_up(header, offset=(20, 1))
            await pilot.pause()
            assert app.screen.get_selected_text() == "step 180/600 (30%) ·"

    asyncio.run(go())


def test_a_covered_monitor_draws_nothing_and_catches_up_when_shown(tmp_path, monkeypatch):
    """While the runs screen covers the monitor of a live run, its panels draw
    nothing (the views still come, a few a second); back on it, the header shows
    the newest step at once."""
    drawn = spy(monkeypatch, "_draw_rows")

    async def go(w: Writer) -> None:
        app = CockpitApp("monitor", session=Session(tmp_path / "live", None), logs=tmp_path)
        async with app.run_test(size=(120, 36)) as pilot:
            monitor = app.screen
            await w.steps(0.2)
            await pilot.press("r")
            await pilot.pause(0.1)
            drawn.clear()
            await w.steps(0.4)
            assert drawn == [], f"drawn while covered: {sorted({k.__name__ for k, _, _ in drawn})}"
            await pilot.press("m")
            await pilot.pause(0.05)
            assert app.screen is monitor
            header, v = monitor.query_one(RunHeader), monitor.view
            assert v is not None and v.figures.step >= w.step - 10
            assert header.render().plain.splitlines()[1].startswith(f"step {v.figures.step:,}/")

    run_live(tmp_path, go)


def test_a_new_step_repaints_only_the_header_row_it_changed(tmp_path, monkeypatch):
    """The header's first row (run, profile, status, gate) stays put while a run
    steps: each view repaints the second row only (Textual re-renders every line
    of a widget refreshed whole, and every frame paints the header)."""
    lines = spy(monkeypatch, "render_line")

    async def go(w: Writer) -> None:
        app = CockpitApp("monitor", session=Session(tmp_path / "live", None))
        async with app.run_test(size=(160, 48)) as pilot:
            await w.steps(0.5)  # the history replayed, every panel drawn once
            await pilot.pause(0.2)
            t0 = time.monotonic()
            await w.steps(1.5)
            t1 = time.monotonic()
            await pilot.pause(0.1)
            header = [a[0] for k, a, t in lines if k is RunHeader and t0 <= t < t1]
            assert header.count(1) >= 5, header  # the step row, a view after another
            assert header.count(0) == 0, header  # the run's name and status: not again
            shown = app.screen.query_one(RunHeader).view
            assert shown is not None and shown.figures.step > 50

    run_live(tmp_path, go)


def test_a_panels_lines_are_what_textual_renders_of_its_text(in_repo):  # noqa: F811
    """Panels turn their rows into lines themselves (Textual's Content machinery
    cost a fifth of a header frame): each line carries the same text and the
    same colours, resolved from the theme, as Textual's own rendering of the
    panel's text, for every panel of the monitor, in two themes."""
    from rich.segment import Segment
    from textual.visual import Visual

    from cockpit.ui.widgets.base import Lines

    def cells(strip) -> list[tuple[str, object]]:
        # one entry per cell: the character and its colours and attributes
        out = []
        for seg in strip:
            st = seg.style.copy() if seg.style else None
            if st is not None:
                st._meta = None  # where it is in the panel: for mouse selection only
                st._hash = None
            out += [(ch, st) for ch in seg.text]
        return out

    async def go() -> None:
        app = recorded_app("monitor", CPU)
        async with app.run_test(size=(160, 48)) as pilot:
            await settle(pilot)
            for theme in ("textual-dark", "textual-light"):
                app.theme = theme
                await pilot.pause()
                checked = 0
                for panel in app.screen.query(Panel):
                    w, h = panel.size
                    if not w or not h:
                        continue
                    rows = panel._rows_now()
                    for y, row in enumerate(rows):
                        out = Lines(w)
                        out.rows = [row]
                        want = Visual.to_strips(panel, out.content(), w, 1, panel.visual_style)
                        got = panel.render_line(y)
                        assert cells(got) == cells(want[0] if want else []), (
                            type(panel).__name__,
                            y,
                            Segment.strip_styles(got),
                        )
                        checked += 1
                assert checked > 60, checked
                # a trainer's text: wide characters past the width, an empty part
                header = app.screen.query_one(RunHeader)
                w = header.size.width
                row = [("日本語の行 " * 40, "bold $text-warning"), ("", "$text-muted"), ("x", "")]
                out = Lines(w)
                out.line(*row)
                want = Visual.to_strips(header, out.content(), w, 1, header.visual_style)
                got = header._row_strip(tuple(out.rows[0]), w, 0, header.visual_style)
                assert cells(got) == cells(want[0]) and got.cell_length <= w

    asyncio.run(go())
