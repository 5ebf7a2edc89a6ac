"""The panels show the run model's figures: a run replayed on its own (the
oracle) and the same run in the TUI must agree, number for number, in the
formats the headless display prints."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from cockpit.fmt import fmt_duration, fmt_mib, fmt_num, fmt_rate
from cockpit.session import Session
from cockpit.supervisor import Trainer
from cockpit.ui.widgets.base import Panel
from tests.cockpit.ui.tuikit import CPU, GPU, frozen, in_repo, recorded_app, settle  # noqa: F401
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
    ids += ("ranks",)
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

    assert f"step {f.step:,}/{f.total_steps:,}" in t["header"]
    assert f"epoch {f.epoch + 1}/{f.total_epochs}" in t["header"]
    assert f"ETA {fmt_duration(f.eta_s)}" in t["header"]
    assert f"elapsed {fmt_duration(m.elapsed_s(CLOCK))}" in t["header"]
    assert m.status in t["header"] and f"(exit {m.exit_code})" in t["header"]

    for part in (
        f"train {fmt_num(f.loss)}",
        f"val {fmt_num(f.val_loss)}",
        f"best {fmt_num(m.best_val)}",
        f"ema {fmt_num(m.loss_ema)}",
        f"lr {fmt_num(f.lr, '.2e')}",
    ):
        assert part in t["loss"], (part, t["loss"])
    assert fmt_rate(f.tokens_per_s) in t["throughput"]
    assert fmt_num(m.last["step_ms"], ".1f") in t["throughput"]
    assert fmt_mib(f.rss_mib) in t["memory"]
    ram = m.system["ram_pct"]
    assert f"({ram:.0f}%)" in t["memory"]

    if f.gpu_available:
        for d in m.gpu["devices"]:  # (the summary's figure is their mean)
            assert f"GPU{d['index']} {d['name']}" in t["gpu"]
            assert f"util {d['util_pct']:>3.0f}%" in t["gpu"]
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
    if m.ranks is None:  # one process: its threads; under torchrun the ranks take their place
        threads = m.proc_threads["procs"][0]["threads"]
        assert max(threads, key=lambda th: th["cpu_pct"])["name"] in t["threads"]
        assert t["ranks"] == ""
        return
    assert t["threads"] == ""
    rows = {ln.split()[0]: ln.split() for ln in t["ranks"].splitlines()[1:3]}
    for r in m.ranks.ranks:  # rank, step, median step ms, median fwd ms, memory, state
        row = rows[f"r{r.rank}"]
        assert row[1:4] == [str(r.step), f"{r.median_step_ms:.0f}", f"{r.median_fwd_ms:.0f}"]
        assert f"{r.mem_mib / 1024:.1f} GiB" in " ".join(row)
    (slow,) = m.ranks.stragglers  # the recorded rank 1 is 1.33x slower in its forward
    assert slow.rank == 1 and rows["r1"][-1] == "straggler" and rows["r0"][-1] == "interrupted"
    assert f"r1: fwd {slow.median_ms:.0f} ms vs {slow.others_ms:.0f} ms" in t["ranks"]
    assert f"({slow.ratio:.2f}x)" in t["ranks"]


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_a_killed_rank_shows_failed_in_the_ranks_table_and_alerts_with_its_log(tmp_path, size):
    """The recorded 2-rank run, but rank 1 was SIGKILLed: its file has no end line and
    torchrun's failure summary is in stdout.log. The table says which rank failed, with
    its exit code, and the alert carries that rank's last lines."""
    from tests.cockpit.collect.test_ranks import KILLED

    run = tmp_path / GPU.name
    shutil.copytree(GPU, run)
    f1 = run / "ranks" / "rank-1.jsonl"
    f1.write_text("".join(f1.read_text().splitlines(keepends=True)[:-1]))  # no end line
    with open(run / "stdout.log", "a") as f:
        f.write("[rank1]:CUDA out of memory on the last batch\n" + KILLED)

    async def go():
        app = recorded_app("monitor", run)
        async with app.run_test(size=size) as pilot:  # compact: the narrow table
            await settle(pilot)
            text = app.screen.query_one("#ranks").render().plain
            await pilot.press("l")  # the log maximized: the other panels draw at 0x0
            for p in app.screen.query(Panel):
                p.redraw(force=True)
            await pilot.press("escape")
            return app.screen.view, text

    view, text = asyncio.run(go())
    rows = {ln.split()[0]: ln for ln in text.splitlines()[1:]}
    assert rows["r1"].endswith("failed -9"), text
    assert rows["r0"].endswith("interrupted"), text
    if size[1] > 24:  # room under the table: how it failed (and no straggler line for it)
        said = " ".join(text.split("failed -9\n", 1)[1].split())
        assert said == "rank 1 killed by SIGKILL after step 160, with no end line (a: its log)"
        assert "r1: fwd" not in text
    (alert,) = [a for a in view.alerts if a.code == "rank_failed"]
    assert alert.level == "error" and "rank 1 killed by SIGKILL" in alert.message
    assert "CUDA out of memory on the last batch" in alert.detail
