"""The panels show the run model's figures: a run replayed on its own (the
oracle) and the same run in the TUI must agree, number for number, in the
formats the headless display prints."""

from __future__ import annotations

import asyncio

import pytest

from cockpit.headless import fmt_duration, fmt_num, fmt_rate
from cockpit.session import Session
from cockpit.supervisor import Trainer
from tests.cockpit.tuikit import CPU, GPU, frozen, in_repo, recorded_app, settle  # noqa: F401
from tests.recorded.make_recorded import CLOCK


def reference(run):
    s = Session(run, Trainer.find(run), notify=False)
    s.replay()
    s.review(CLOCK)
    s.settle()
    s.close()
    return s.model


def texts(app) -> dict[str, str]:
    ids = ("header", "alertbar", "loss-figures", "throughput", "eval", "memory", "gpu", "threads")
    out = {i: app.screen.query_one(f"#{i}").render().plain for i in ids}
    out["checkpoints"] = app.screen.query_one("#checkpoints").render().plain
    out["loss"] = out.pop("loss-figures")
    return out


@pytest.mark.parametrize("run", [CPU, GPU], ids=["cpu", "gpu"])
def test_panels_show_the_run_models_figures(in_repo, run):  # noqa: F811
    m = reference(run)
    f = m.figures()

    async def go():
        app = recorded_app("monitor", run)
        async with app.run_test(size=(160, 48)) as pilot:
            await settle(pilot)
            return app.screen.view, texts(app)

    view, t = asyncio.run(go())
    assert view.figures == f  # the view the panels format is the model's own figures

    assert f"step {f['step']:,}/{f['total_steps']:,}" in t["header"]
    assert f"epoch {f['epoch'] + 1}/{f['total_epochs']}" in t["header"]
    assert f"ETA {fmt_duration(f['eta_s'])}" in t["header"]
    assert f"elapsed {fmt_duration(m.elapsed_s(CLOCK))}" in t["header"]
    assert m.status in t["header"] and f"(exit {m.exit_code})" in t["header"]

    for part in (
        f"train {fmt_num(f['loss'])}",
        f"val {fmt_num(f['val_loss'])}",
        f"best {fmt_num(m.best_val)}",
        f"ema {fmt_num(m.loss_ema)}",
        f"lr {fmt_num(f['lr'], '.2e')}",
    ):
        assert part in t["loss"], (part, t["loss"])
    assert fmt_rate(f["tokens_per_s"]) in t["throughput"]
    assert fmt_num(m.last["step_ms"], ".1f") in t["throughput"]
    assert f"{f['rss_mib']:.0f} MiB" in t["memory"]
    ram = m.system["ram_pct"]
    assert f"({ram:.0f}%)" in t["memory"]

    if f["gpu_available"]:
        assert f"{f['gpu_util_pct']:.0f}%" in t["gpu"]
        assert m.gpu["devices"][0]["name"] in t["gpu"]
        assert "MFU" in t["throughput"] and f"{100 * m.last['mfu']:.1f}%" in t["throughput"]
    else:
        assert "no GPU" in t["gpu"] and m.gpu["reason"] in t["gpu"]

    present = [c for c in m.checkpoints.values() if c.present]
    assert present
    for c in present:
        assert f"{c.step:,}" in t["checkpoints"] and ",".join(c.tags) in t["checkpoints"]
        assert c.verified is True
    assert "✓" in t["checkpoints"]

    last_eval = m.evals[-1]
    assert f"val {fmt_num(last_eval['val_loss'])}" in t["eval"]
    if m.gate:
        for k, th in m.gate["thresholds"].items():
            assert f"{m.gate['metrics'][k]:.3f} ≥ {th:g}" in t["eval"]

    a = m.alerts[-1]
    assert f"{a.level.upper()} {a.code}:" in t["alertbar"]
    threads = m.proc_threads["procs"][0]["threads"]
    assert max(threads, key=lambda th: th["cpu_pct"])["name"] in t["threads"]
