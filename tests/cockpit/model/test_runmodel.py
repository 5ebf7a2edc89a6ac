"""The run model: what the displays read. Fed with event dicts as the follower
returns them."""

from __future__ import annotations

import math
import random

from cockpit.model.curve import Curve
from cockpit.model.runmodel import RunModel
from core import events as E


def ev(e: E.Event) -> dict:
    return e.to_dict()


def step(i: int, loss: float, t: float, ms: float = 10.0) -> dict:
    return ev(
        E.Step(
            step=i,
            epoch=i // 100,
            loss=loss,
            lr=3e-4,
            grad_norm=1.0,
            tokens=i * 1024,
            step_ms=ms,
            tokens_per_s=1024 / (ms / 1000),
            t=t,
        )
    )


def test_curve_keeps_every_extreme_in_bounded_memory():
    rng = random.Random(0)
    c = Curve(cap=256, tail=100)
    ys = [rng.gauss(2.0, 0.01) for _ in range(1_000_000)]
    ys[123_457] = 50.0  # one spike among a million
    ys[876_543] = -7.0
    for i, y in enumerate(ys):
        c.add(i, y)
    assert len(c.xs) <= 256 and len(c.tail) == 100
    assert c.maximum == 50.0 and c.minimum == -7.0
    # the spike's bucket covers its step
    b = max(range(len(c.xs)), key=lambda k: c.hi[k])
    assert c.xs[b] <= 123_457 < (c.xs[b + 1] if b + 1 < len(c.xs) else math.inf)
    assert c.n == 1_000_000 and c.latest == ys[-1]


def test_curve_counts_nonfinite_without_storing_them():
    c = Curve()
    for i, y in enumerate([1.0, float("nan"), None, float("inf"), 2.0]):
        c.add(i, y)
    assert (
        c.n == 2 and c.n_nonfinite == 3 and c.points() == [(0, 1.0, 1.0, 1.0), (4, 2.0, 2.0, 2.0)]
    )


def test_model_follows_a_run():
    m = RunModel()
    t = 1000.0
    m.feed(ev(E.Phase(name="prepare", done=1, total=2, t=t)))
    assert m.status == "starting"
    m.feed(
        ev(
            E.RunStart(
                run_id="r",
                profile="demo-walks",
                pid=1,
                device="cpu",
                world_size=1,
                dtype="float32",
                n_params=10,
                tokens_per_step=1024,
                total_steps=1000,
                total_epochs=10,
                t=t,
            )
        )
    )
    for i in range(1, 201):
        m.feed(step(i, 3.0 - i / 100, t + i * 0.1))
    m.feed(ev(E.Eval(step=200, epoch=1, val_loss=1.5, val_ppl=4.5, t=t + 20)))
    m.feed(ev(E.Eval(step=200, epoch=1, val_loss=1.7, val_ppl=5.5, t=t + 21)))
    m.feed({"v": 1, "t": t, "type": "from_the_future", "x": 1})  # ignored
    assert (m.status, m.step, m.epoch, m.tokens) == ("running", 200, 2, 200 * 1024)
    assert m.best_val == 1.5 and m.val_loss.latest == 1.7 and m.n_evals == 2
    assert math.isclose(m.steps_per_s(), 10.0, rel_tol=1e-6)
    assert math.isclose(m.eta_s(), 80.0, rel_tol=1e-6)  # 800 steps at 10 steps/s
    f = m.figures()
    assert f.loss == 1.0 and f.total_steps == 1000 and f.val_loss == 1.7
    m.feed(ev(E.RunEnd(status="gate_passed", step=200, reason="gate", wall_s=25.0, t=t + 25)))
    assert m.status == "gate_passed" and m.eta_s() is None and m.elapsed_s() == 25.0


def test_system_samples_feed_memory_and_gpu_state():
    m = RunModel()
    for k in range(5):
        m.feed_system(
            {
                "t": 100.0 + k,
                "proc": {"alive": True, "rss_mib": 100.0 + k, "cpu_pct": 50.0, "num_threads": 9},
                "sys": {"disk_free_mib": 1000.0},
                "gpu": {"available": False, "reason": "no NVIDIA GPU", "devices": []},
            }
        )
    assert m.rss_mib.latest == 104.0 and len(m.rss_hist) == 5
    assert m.figures().gpu_available is False and m.gpu_util() is None


def test_a_resumed_run_is_running_again():
    m = RunModel()
    start = dict(
        run_id="r", profile="p", pid=1, device="cpu", world_size=1, dtype="float32",
        n_params=1, tokens_per_step=1, total_steps=100, total_epochs=1,
    )  # fmt: skip
    m.feed(ev(E.RunStart(**start, t=1.0)))
    m.feed(step(10, 2.0, 2.0))
    m.feed(ev(E.RunEnd(status="interrupted", step=10, reason="SIGINT", wall_s=1.0, t=3.0)))
    assert m.status == "interrupted"
    m.feed(ev(E.RunStart(**start | {"pid": 2}, t=10.0)))  # --resume auto, same directory
    assert (m.status, m.run_end, m.info["pid"]) == ("running", None, 2)


def test_a_wrapped_trainers_own_checkpoints_are_not_marked_gone(tmp_path):
    """The checkpoint watcher lists the run's checkpoints/ only: a checkpoint a wrapped
    or natively integrated trainer wrote elsewhere (HF's checkpoint-N/) stays present,
    while one of ours that retention removed is marked gone."""
    m = RunModel(run_dir=tmp_path)
    hf = str(tmp_path / "out" / "checkpoint-6")
    ours = str(tmp_path / "checkpoints" / "step-0000006.pt")
    for path in (hf, ours):
        m.feed(
            {
                "v": 1,
                "t": 1.0,
                "type": "checkpoint",
                "step": 6,
                "path": path,
                "bytes": 9,
                "tags": [],
            }
        )
    m.set_checkpoints([])
    assert m.checkpoints["checkpoint-6"].present is True
    assert m.checkpoints["step-0000006.pt"].present is False
