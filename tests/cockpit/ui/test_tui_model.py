"""The display-free pieces the TUI stands on: bulk curve and model updates that
equal the one-by-one ones, the quick preview of a long history, the log tail,
the frozen views and the pump that makes them, and the chart that keeps spikes."""

from __future__ import annotations

import json
import random
import threading
import time

import pytest

from cockpit import session as session_mod
from cockpit.collect.logtail import LogTail
from cockpit.model.curve import Curve, ema
from cockpit.model.health import leak_mib_per_1k_steps
from cockpit.model.runmodel import RunModel
from cockpit.model.view import ViewBuilder
from cockpit.session import Session
from cockpit.ui.pump import Pump, load_view
from cockpit.ui.widgets.base import Lines
from cockpit.ui.widgets.chart import Series, plot, spark
from cockpit.ui.widgets.machine import GpuPanel, MemoryPanel, ThreadsPanel
from core import events as E
from tests.cockpit.ui.tuikit import CPU, GPU, frozen, in_repo  # noqa: F401

CURVE_STATE = ("xs", "lo", "hi", "last", "width", "_fill", "n", "n_nonfinite")


@pytest.mark.parametrize("cap", [4, 5, 16, 256])
def test_curve_extend_is_add_point_by_point(cap):
    rng = random.Random(cap)
    for _ in range(40):
        n = rng.randint(0, 2500)
        ys = [rng.gauss(0, 1) if rng.random() > 0.02 else float("nan") for _ in range(n)]
        a, b = Curve(cap=cap, tail=50), Curve(cap=cap, tail=50)
        for x, y in enumerate(ys):
            a.add(x, y)
        i = 0
        while i < n:  # bulk and single adds, interleaved
            k = rng.randint(1, 600)
            if rng.random() < 0.2:
                for x in range(i, min(n, i + k)):
                    b.add(x, ys[x])
            else:
                b.extend(range(i, min(n, i + k)), ys[i : i + k])
            i += k
        assert [getattr(a, s) for s in CURVE_STATE] == [getattr(b, s) for s in CURVE_STATE]
        assert list(a.tail) == list(b.tail)


def _events(n: int, seed: int = 0) -> list[dict]:
    rng, out, t = random.Random(seed), [], 100.0
    for i in range(1, n + 1):
        t += 0.01
        if rng.random() < 0.95:
            loss = rng.choice([rng.random() + 1, None, 3])
            out.append(
                {"v": 1, "t": t, "type": "step", "step": i, "epoch": i // 100, "loss": loss,
                 "lr": 1e-3, "tokens": i * 8, "step_ms": rng.choice([5.0, None]),
                 "tokens_per_s": 100.0, "mfu": rng.choice([None, 0.3])}
            )  # fmt: skip
        else:
            out.append(E.Eval(step=i, epoch=0, val_loss=rng.random(), val_ppl=2.0, t=t).to_dict())
    return out


def test_feed_all_equals_feeding_one_event_at_a_time():
    evs = _events(5000)
    a, b = RunModel(), RunModel()
    for e in evs:
        a.feed(e)
    for i in range(0, len(evs), 777):
        b.feed_all(evs[i : i + 777])
    for name in ("loss", "lr", "tokens_per_s", "step_ms", "mfu", "step_t", "val_loss"):
        ca, cb = getattr(a, name), getattr(b, name)
        assert [getattr(ca, s) for s in CURVE_STATE] == [getattr(cb, s) for s in CURVE_STATE]
    for f in ("step", "epoch", "tokens", "loss_ema", "t_last_step", "status", "n_evals"):
        assert getattr(a, f) == getattr(b, f), f
    assert [e["train_loss_ema"] for e in a.evals] == [e["train_loss_ema"] for e in b.evals]
    assert list(a.step_times) == list(b.step_times)


def test_feed_all_equals_one_at_a_time_with_odd_values():
    """Strings, bools, NaN and missing figures in step events read the same in bulk."""
    rng = random.Random(3)
    odd = [None, "1.5", True, False, float("nan"), float("inf"), 2, 0, [1], {"a": 1}, 3.25]
    evs = []
    for i in range(1, 3000):
        e = {"type": "step", "step": i, "t": rng.choice([100.0 + i, None, "x", 100.0 + i])}
        for k in ("loss", "lr", "tokens_per_s", "step_ms", "mfu", "tokens", "epoch"):
            if rng.random() < 0.9:
                e[k] = rng.choice(odd) if rng.random() < 0.3 else rng.random() * 3
        evs.append(e)
        if i % 500 == 0:
            evs.append({"type": "eval", "step": i, "val_loss": 1.0, "t": 100.0 + i})
    a, b = RunModel(), RunModel()
    for e in evs:
        a.feed(e)
    b.feed_all(evs)
    for name in ("loss", "lr", "tokens_per_s", "step_ms", "mfu", "val_loss"):
        ca, cb = getattr(a, name), getattr(b, name)
        assert [getattr(ca, s) for s in CURVE_STATE] == [getattr(cb, s) for s in CURVE_STATE]
        assert [(x, y) for x, y in ca.tail] == [(x, y) for x, y in cb.tail]
    for f in ("step", "epoch", "tokens", "loss_ema", "status", "n_evals", "last"):
        assert getattr(a, f) == getattr(b, f), f
    assert [e["train_loss_ema"] for e in a.evals] == [e["train_loss_ema"] for e in b.evals]
    assert str(list(a.recent_step_ms)) == str(list(b.recent_step_ms))  # NaN == NaN as text
    # a step without a time is stamped when fed: the ones with times agree
    assert [s for _, s in a.step_times] == [s for _, s in b.step_times]


def _write_run(d, n: int, spike: float = 50.0) -> list[float]:
    d.mkdir(parents=True, exist_ok=True)
    rng = random.Random(1)
    losses = [2 + rng.random() for _ in range(n)]
    losses[n // 3] = spike
    lines = [E.RunStart(run_id=d.name, profile="p", pid=4194305, device="cpu", world_size=1,
                        dtype="float32", n_params=1, tokens_per_step=8, total_steps=n,
                        total_epochs=1, t=1.0).to_dict()]  # fmt: skip
    for i, y in enumerate(losses, 1):
        lines.append(E.Step(step=i, epoch=0, loss=y, lr=1e-3, grad_norm=1.0, tokens=8 * i,
                            step_ms=1.0, tokens_per_s=8000.0, t=1.0 + i / 1000).to_dict())  # fmt: skip
    lines.append(
        E.RunEnd(
            status="completed", step=n, reason="done", wall_s=n / 1000, t=2.0 + n / 1000
        ).to_dict()
    )
    (d / "events.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (d / "result.json").write_text(json.dumps({"curves": {"train_loss": losses}}))
    return losses


def test_preview_of_a_long_history_then_the_replay(tmp_path, monkeypatch):
    d = tmp_path / "long"
    _write_run(d, 30_000)
    monkeypatch.setattr(session_mod, "PREVIEW_BYTES", 1 << 20)
    monkeypatch.setattr(session_mod, "PREVIEW_TAIL_BYTES", 64 << 10)
    s = Session(d, None, notify=False)
    try:
        pm = s.preview()
        assert pm is not None and pm.status == "completed" and pm.step == 30_000
        assert pm.loss.maximum == 50.0 and pm.loss.n == 30_000  # the whole curve, spike kept
        seen = []
        assert s.replay(progress=lambda done, total: seen.append(done / total), batch_bytes=1 << 20)
        assert len(seen) > 3 and seen[-1] == 1.0 and seen == sorted(seen)
        m = s.model
        # the preview's curve is the replay's, bucket for bucket
        assert [getattr(pm.loss, k) for k in CURVE_STATE] == [
            getattr(m.loss, k) for k in CURVE_STATE
        ]
    finally:
        s.close()
    # a replay that is told to stop, stops (a replay from the start: no snapshot)
    (d / "events.idx").unlink()
    s2 = Session(d, None, notify=False)
    try:
        assert s2.replay(progress=lambda done, total: False, batch_bytes=1 << 20) is False
        assert 0 < s2.model.step < 30_000
        assert Session(tmp_path / "none", None, notify=False).preview() is None
    finally:
        s2.close()


def _pump_views(d) -> list:
    views: list = []
    pump = Pump(Session(d, None, notify=False), clock=frozen)
    pump.run(views.append, lambda text, level: None, lambda: pump.final is not None)
    return views


def test_the_history_says_it_is_loading_until_it_is_all_in(tmp_path, monkeypatch):
    from cockpit.model import snapshot
    from cockpit.ui import pump as pump_mod

    d = tmp_path / "long"
    _write_run(d, 10_000)
    monkeypatch.setattr(session_mod, "PREVIEW_BYTES", 1 << 20)
    monkeypatch.setattr(session_mod, "PREVIEW_TAIL_BYTES", 64 << 10)
    monkeypatch.setattr(pump_mod, "REPLAY_BATCH", 128 << 10)
    monkeypatch.setattr(snapshot, "MIN_BYTES", 512 << 10)
    monkeypatch.setattr(time, "monotonic", _fast_clock())  # a progress view per batch
    first = _pump_views(d)
    loading = [v.loading for v in first]
    # the preview at once (the newest step, the whole loss curve), then the replay's progress
    assert first[0].loading == 0.0 and first[0].figures.step == 10_000
    assert first[0].curve("loss").maximum == 50.0
    i = loading.index(None)
    assert i > 2 and loading[1:i] == sorted(loading[1:i]) and all(x is None for x in loading[i:])
    assert (d / snapshot.NAME).exists()
    # opened again: its events.idx gives the whole history in the first view, shown as
    # loading until its hashes are checked, then the same history loaded
    again = _pump_views(d)
    assert again[0].loading == 0.0 and again[0].figures == first[-1].figures
    assert again[0].curve("loss") == first[-1].curve("loss")
    assert again[1].loading is None and again[1].figures == first[-1].figures
    assert len(again) == 3  # and the finished run's final view: no progress views between
    # the run rewritten in place (same size, the spike changed) under its old events.idx:
    # what was shown first gives way to the run's own preview, then its replay
    _write_run(d, 10_000, spike=60.0)
    third = _pump_views(d)
    assert third[0].loading == 0.0 and third[0].curve("loss").maximum == 50.0  # not yet checked
    assert all(v.curve("loss").maximum == 60.0 for v in third[1:])
    assert third[-1].loading is None and len(third) > 3


def _fast_clock():
    """time.monotonic, a second later at every call (the pump shows progress at most
    every 0.25 s)."""
    t = [time.monotonic()]

    def tick() -> float:
        t[0] += 1.0
        return t[0]

    return tick


def test_log_tail_follows_appends_partial_lines_and_truncation(tmp_path):
    p = tmp_path / "stdout.log"
    t = LogTail(p, max_lines=3)
    assert t.poll() is False  # no file yet
    p.write_text("one\ntwo\nthr")
    assert t.poll() and list(t.lines) == ["one", "two"] and t.seq == 2
    with open(p, "a") as f:
        f.write("ee\nprogress 10%\rprogress 90%\nfour\r\n")
    assert t.poll() and list(t.lines) == ["three", "progress 90%", "four"] and t.seq == 5
    assert t.poll() is False
    p.write_text("new\n")  # truncated: start over
    assert t.poll() and list(t.lines)[-1] == "new"
    big = tmp_path / "big.log"
    big.write_text("".join(f"line {i}\n" for i in range(100_000)))
    t2 = LogTail(big, start_bytes=1000)
    assert t2.poll() and t2.lines[-1] == "line 99999" and len(t2.lines) < 200


def test_views_are_frozen_copies_and_share_unchanged_curves():
    m, b = RunModel(), ViewBuilder()
    m.feed_all(_events(300))
    v1 = b.build(m, 1000.0)
    assert not b.changed(m)
    m.feed_all(_events(10, seed=5)[:3])  # more steps
    assert b.changed(m)
    v2 = b.build(m, 1001.0)
    assert v2.version == v1.version + 1
    assert v2.curve("lr") is not v1.curve("lr") and v2.curve("val_loss") is v1.curve("val_loss")
    assert v1.curve("loss").n < v2.curve("loss").n
    assert v2.figures == m.figures() and v2.now == 1001.0


def test_pump_posts_the_final_view_of_a_recorded_run(in_repo):  # noqa: F811
    views, notes = [], []
    s = Session(CPU, None, notify=False)
    pump = Pump(s, clock=frozen)
    done = threading.Event()

    def post(v):
        views.append(v)
        if pump.final is not None:
            pump.submit("save")  # a finished run: nothing to signal

    def cancelled() -> bool:
        return done.is_set() or (bool(notes) and pump.final is not None)

    pump.run(post, lambda text, level: notes.append((level, text)), cancelled)
    v = views[-1]
    assert v is pump.final or v.version >= pump.final.version
    assert v.status == "gate_passed" and v.exit_code == 0 and v.loading is None
    assert v.log[-1] == "run gate_passed (step 180)" and v.now == frozen()
    assert [a.code for a in v.alerts] == ["loss_spike"]  # the review found the spike
    assert notes == [("warn", "the trainer is not running: nothing to signal")]
    g = load_view(GPU, clock=frozen)
    assert g.status == "interrupted" and g.gpu["available"] and 0 in g.gpu_dev


def test_chart_keeps_a_spike_and_sparklines_scale():
    pts = [(x, 1.0, 1.0) for x in range(10_000)]
    pts[7777] = (7777, 9.0, 9.0)
    rows = plot([Series(pts, "")], 40, 6)
    top = "".join(t for t, _ in rows[0])
    assert top.strip(" ┤0123456789.") and "9" in top  # a dot on the top row, labelled 9
    assert rows[-1][0][0].split() == ["0", "10.0k"]
    assert spark([1, 2, 3, 4], 4) == "▁▃▆█" and spark([5, 5], 4) == "▄▄" and spark([], 3) == ""
    assert ema([1.0, 1.0, 1.0], 0.9) == [1.0, 1.0, 1.0]


def test_the_chart_draws_the_same_pixels_a_cell_at_a_time():
    """The chart fills each column's span of pixel rows a cell (four rows) at a
    time, not a pixel at a time (a thousand noisy steps: 4.9 -> 3.4 ms a redraw;
    a falling loss 2.9 -> 1.7 ms). The rows are the ones the pixel-at-a-time chart drew, held here by
    their hashes, for noise with a spike, min-max buckets, log scales, a flat line,
    one x for every point, and a steep curve under a sparse one."""
    import hashlib
    import random

    rng = random.Random(7)
    noisy = [(x, y, y) for x in range(3000) for y in [2 + rng.gauss(0, 0.3) / (1 + x / 500)]]
    noisy[1234] = (1234, 40.0, 40.0)
    buckets = [(x * 37, 1.5 - rng.random(), 1.5 + rng.random()) for x in range(900)]
    flat = [(x, 1.0, 1.0) for x in range(700)]
    steep = [(x, 10.0 / (1 + x), 10.0 / (1 + x)) for x in range(400)]
    cases = [
        ([noisy], {}, "54066dd3749bd0bf"),
        ([noisy, buckets], {}, "73a6387996c96906"),
        ([buckets], {"log_y": True}, "c6b723a257c8899b"),
        ([flat], {}, "d046076174e18b8d"),
        ([[(5, 2.0, 3.0)] * 60], {}, "39d880de404bf98e"),
        ([steep, steep[::7]], {}, "ea558d78d2c4088f"),
        ([steep], {"log_y": True}, "f10a6e0b9f9fb1a4"),
    ]
    for series, kw, want in cases:
        rows = plot([Series(p, str(i)) for i, p in enumerate(series)], 102, 19, **kw)
        assert hashlib.sha256(repr(rows).encode()).hexdigest()[:16] == want, (len(series), kw)
    rows = plot([Series(noisy, "")], 102, 19)
    braille = "".join(t for r in rows[:-1] for t, _ in r[1:])
    assert "40" in rows[0][0][0] and sum(0x2800 < ord(ch) <= 0x28FF for ch in braille) > 100


def test_leak_trend_in_mib_per_thousand_steps():
    m = RunModel()
    for k in range(100):
        m.rss_hist.append((1000.0 + 6 * k, 500.0 + 0.5 * k, 10 * k))  # 0.5 MiB per 10 steps
    assert leak_mib_per_1k_steps(m) == pytest.approx(50.0)
    assert leak_mib_per_1k_steps(RunModel()) is None


def _panel_text(panel, view) -> str:
    out = Lines(100, 12)
    panel.draw(view, out)
    return "\n".join("".join(t for t, _ in row) for row in out.rows)


def test_the_leak_trend_waits_for_the_leak_checks_warm_up():
    """Start-up growth is not a leak: five seconds of a trainer loading its data once
    read +3754 MiB/1k steps. The panel shows a trend only once the memory_leak check
    itself would judge (5 min of samples), and says it is warming up before."""
    m = RunModel()
    for k in range(6):  # 5 s in: RSS climbs 400 MiB a second over 10 steps
        m.feed_system({"t": 1000.0 + k, "proc": {"alive": True, "rss_mib": 300.0 + 400 * k}})
        m.step = 2 * k
    assert leak_mib_per_1k_steps(m) is None
    v = ViewBuilder().build(m, 1005.0)
    assert v.leak_mib_per_1k_steps is None
    assert "trend  warming up (5 min of samples)" in _panel_text(MemoryPanel(), v)
    for k in range(6, 700):  # then flat, until the start-up has left the 10 min window
        m.step = 2 * k
        m.feed_system({"t": 1000.0 + k, "proc": {"alive": True, "rss_mib": 2300.0}})
    trend = leak_mib_per_1k_steps(m)
    assert trend is not None and abs(trend) < 1.0
    assert "MiB/1k steps" in _panel_text(MemoryPanel(), ViewBuilder().build(m, 1700.0))


def test_a_finished_run_nobody_watched_says_it_has_no_samples():
    """No system.jsonl: the panels say no samples were recorded, not that some are
    coming; a live run that has none yet says so instead."""
    m = RunModel()
    m.feed({"v": 1, "t": 1.0, "type": "run_start", "run_id": "r", "total_steps": 5})
    m.feed({"v": 1, "t": 2.0, "type": "step", "step": 5, "loss": 1.0})
    live = ViewBuilder().build(m, 3.0)
    m.feed({"v": 1, "t": 3.0, "type": "run_end", "status": "completed", "step": 5})
    done = ViewBuilder().build(m, 4.0)
    for panel in (ThreadsPanel(), MemoryPanel(), GpuPanel()):
        assert _panel_text(panel, live) == "not sampled yet"
        assert _panel_text(panel, done) == "no samples recorded: no cockpit watched this run live"


def test_the_tui_reads_the_run_model_only():
    """Widgets and screens only format (docs/architecture.md): no psutil, pynvml or core imports
    in them; the widgets do not even reach the collectors."""
    import ast

    from tests.conftest import REPO

    paths = sorted((REPO / "cockpit" / "ui").rglob("*.py"))
    assert len(paths) > 10
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for n in names:
                assert n.split(".")[0] not in ("psutil", "pynvml", "core"), (
                    f"{path.name} imports {n}"
                )
                if path.parent.name == "widgets":
                    assert n != "cockpit.session" and not n.startswith("cockpit.collect"), (
                        path,
                        n,
                    )


def test_a_run_that_only_beats_its_heart_lets_the_pump_sleep_on_notifications(
    tmp_path, monkeypatch
):
    """After a burst of steps the pump looks at the file every 50 ms; once the run
    only writes a heartbeat every 2 s (an eval, a stall, the end of the run) it goes
    back to inotify, which costs nothing while nothing is written (polling on was
    20 wake-ups a second of an idle run)."""
    from cockpit.ui import pump as pump_mod

    d = tmp_path / "run"
    d.mkdir()
    (d / "events.jsonl").write_text("")
    p = Pump(Session(d, None, record=False))
    f = p.session.follower
    if f.notify_mode != "watchdog":
        p.session.close()
        pytest.skip("no inotify here")
    now = [1000.0]
    monkeypatch.setattr(pump_mod.time, "monotonic", lambda: now[0])
    try:
        for _ in range(20):  # 50 lines a second
            p._changes.append(now[0])
            p._watch_mode()
            now[0] += 0.02
        assert f.notify_mode == "polling"
        for _ in range(4):  # then a heartbeat every 2 s
            now[0] += 2.0
            p._changes.append(now[0])
            p._watch_mode()
            f.wait(0.0)
        assert f.notify_mode == "watchdog"
    finally:
        monkeypatch.undo()
        p.session.close()


def test_a_live_runs_curves_are_copied_at_most_so_often_and_whole_once_it_ends(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    m, b = RunModel(), ViewBuilder(curves_every_s=0.5)
    m.feed_all(_events(300))

    def steps(first: int) -> list[dict]:
        return [{"v": 1, "t": 200.0 + i, "type": "step", "step": i, "loss": 1.0 + 1 / i}
                for i in range(first, first + 3)]  # fmt: skip

    v1 = b.build(m, 1000.0)
    m.feed_all(steps(301))
    now[0] += 0.1
    v2 = b.build(m, 1000.1)
    assert v2.figures == m.figures() and v2.figures.step == 303  # the figures are the newest
    assert v2.curve("loss") is v1.curve("loss")  # the curve's copy is 0.1 s old: kept
    now[0] += 0.5
    v3 = b.build(m, 1000.6)
    assert v3.curve("loss").n == m.loss.n == v1.curve("loss").n + 3
    m.feed_all(steps(304))
    m.feed(E.RunEnd(status="completed", step=306, reason="done", wall_s=1.0, t=300.0).to_dict())
    now[0] += 0.1
    v4 = b.build(m, 1000.7)
    assert v4.curve("loss").n == m.loss.n == v3.curve("loss").n + 3  # ended: whole at once
    assert ViewBuilder().build(m, 1000.7).curve("loss").n == m.loss.n  # the default: always
