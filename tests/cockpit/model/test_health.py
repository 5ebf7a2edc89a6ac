"""Health checks on recorded streams: each fires on the stream that shows the
problem, stays quiet on a healthy one, and fires once per episode."""

from __future__ import annotations

import math
import random
import time

import pytest

from cockpit.model.health import Health, HealthConfig, check_all
from cockpit.model.runmodel import RunModel
from core import events as E

T0 = 1_000.0


def healthy_stream(n: int = 400, seed: int = 0) -> list[dict]:
    """A run whose loss falls with a little noise, a step every 0.1 s, an eval every 100."""
    rng = random.Random(seed)
    out = []
    for i in range(1, n + 1):
        t = T0 + i * 0.1
        loss = 3.0 * 0.995**i + rng.gauss(0, 0.01)
        out.append(
            E.Step(
                step=i,
                epoch=0,
                loss=loss,
                lr=1e-3,
                grad_norm=1.0,
                tokens=i * 64,
                step_ms=100.0,
                tokens_per_s=640.0,
                t=t,
            ).to_dict()
        )
        if i % 100 == 0:
            out.append(E.Eval(step=i, epoch=0, val_loss=loss + 0.1, val_ppl=1.0, t=t).to_dict())
    return out


def model_of(stream, alive=True) -> RunModel:
    m = RunModel()
    m.feed_all(stream)
    m.proc_alive = alive
    return m


def codes(m, now, **cfg) -> set[str]:
    return {f.code for f in check_all(m, HealthConfig(**cfg), now)}


def test_a_healthy_run_raises_nothing():
    m = model_of(healthy_stream())
    assert codes(m, T0 + 41) == set()


def test_stall_after_the_threshold_only_while_the_process_lives():
    m = model_of(healthy_stream())  # last activity at T0 + 40
    assert "stall" not in codes(m, T0 + 40 + 59)
    assert "stall" in codes(m, T0 + 40 + 61)  # max(10 x 0.1 s, 60 s)
    m.proc_alive = False
    assert "stall" not in codes(m, T0 + 1000)
    # a heartbeat is activity: a long step is not a stall
    m = model_of(healthy_stream() + [E.Heartbeat(step=400, t=T0 + 90).to_dict()])
    assert "stall" not in codes(m, T0 + 140)
    # slow steps raise the threshold to 10 x the median step
    slow = model_of(
        [dict(e, step_ms=30_000.0) if e["type"] == "step" else e for e in healthy_stream()]
    )
    assert "stall" not in codes(slow, T0 + 40 + 290) and "stall" in codes(slow, T0 + 40 + 301)


def test_crash_is_a_dead_process_without_run_end():
    m = model_of(healthy_stream(), alive=False)
    m.exit_code, m.log_tail = 137, "Traceback ...\nKilled"
    (f,) = [f for f in check_all(m, HealthConfig(), T0 + 41) if f.code == "crash"]
    assert "exit code 137" in f.message and "step 400" in f.message and f.detail.endswith("Killed")
    m.feed(E.RunEnd(status="completed", step=400, reason="done", wall_s=40).to_dict())
    assert "crash" not in codes(m, T0 + 41)


def test_nan_loss_unless_the_trainer_said_so():
    s = healthy_stream()
    s.insert(200, dict(s[199], loss=None))  # the core writes NaN as null
    assert "nan_loss" in codes(model_of(s), T0 + 41)
    s.append(E.Alert(level="error", code="nan_loss", message="loss nan").to_dict())
    assert "nan_loss" not in codes(model_of(s), T0 + 41)


def test_loss_spike_at_any_recent_step():
    s = healthy_stream()
    assert "loss_spike" not in codes(model_of(s), T0 + 41)
    steps = [e for e in s if e["type"] == "step"]
    steps[390]["loss"] = 5.0  # 9 steps before the newest: the check still sees it
    assert "loss_spike" in codes(model_of(s), T0 + 41)
    steps[390]["loss"] = steps[389]["loss"] + 0.02  # within the noise: nothing
    assert "loss_spike" not in codes(model_of(s), T0 + 41)


def test_a_new_runs_spike_is_found_where_the_last_run_was_freed():
    """The spike check keeps its last answer for the same curve. A curve freed and
    a new one made in its place (a run opened after another, the same length and
    the same newest point) is another curve: its spike is found."""
    import gc

    s = healthy_stream()
    steps = [e for e in s if e["type"] == "step"]
    first = model_of(s)
    assert "loss_spike" not in codes(first, T0 + 41)
    freed = id(first.loss)
    del first
    gc.collect()
    steps[390]["loss"] = 5.0
    # CPython gives the next curve of its size the freed one's place, if it was freed
    # (a check that keeps the curve it scanned keeps it from being freed)
    for _ in range(20):
        m = model_of(s)
        if id(m.loss) == freed:
            break
    assert "loss_spike" in codes(m, T0 + 41)


def system(t: float, rss: float) -> dict:
    return {"t": t, "proc": {"alive": True, "rss_mib": rss, "cpu_pct": 90.0, "num_threads": 4}}


def test_memory_leak_is_a_sustained_slope():
    m = model_of(healthy_stream())
    for k in range(400):  # 400 s at 1 Hz, rising 0.5 MiB/s = 30 MiB/min
        m.feed_system(system(T0 + k, 500 + 0.5 * k + (k % 7)))
    assert "memory_leak" in codes(m, T0 + 400)
    flat = model_of(healthy_stream())
    for k in range(400):  # noisy but flat
        flat.feed_system(system(T0 + k, 500 + (k % 7) * 3))
    assert "memory_leak" not in codes(flat, T0 + 400)
    young = model_of(healthy_stream())
    for k in range(100):  # steep but only 100 s of history: too early to call
        young.feed_system(system(T0 + k, 500 + 2 * k))
    assert "memory_leak" not in codes(young, T0 + 100)


def test_overfitting_needs_val_up_and_train_down():
    s = healthy_stream(600)
    evals = [e for e in s if e["type"] == "eval"]
    for k, e in enumerate(evals):
        e["val_loss"] = 1.0 + (0.1 * k if k >= 2 else -0.1 * k)  # falls, then rises 4 times
    assert "overfitting" in codes(model_of(s), T0 + 61)
    for k, e in enumerate(evals):
        e["val_loss"] = 1.0 - 0.05 * k
    assert "overfitting" not in codes(model_of(s), T0 + 61)


def busy(t: float, gpu: float, main: float) -> dict:
    return {
        "t": t,
        "proc": {
            "alive": True,
            "rss_mib": 100.0,
            "procs": [{"pid": 7, "threads": [{"tid": 7, "cpu_pct": main}]}],
        },
        "gpu": {"available": True, "devices": [{"index": 0, "util_pct": gpu}]},
    }


def test_input_bound_needs_an_idle_gpu_and_a_busy_main_thread():
    m = model_of(healthy_stream())
    for k in range(40):
        m.feed_system(busy(T0 + k, 20.0, 99.0))
    assert "input_bound" in codes(m, T0 + 40)
    m2 = model_of(healthy_stream())
    for k in range(40):
        m2.feed_system(busy(T0 + k, 20.0, 10.0))  # idle GPU, idle main thread: not input-bound
    assert "input_bound" not in codes(m2, T0 + 40)
    # a CPU-only machine never says so, its main thread as busy as can be
    cpu = model_of(healthy_stream())
    for k in range(40):
        cpu.feed_system(busy(T0 + k, 0.0, 100.0) | {"gpu": {"available": False, "devices": []}})
    assert cpu.proc_threads is not None  # the thread list was there to judge by
    assert "input_bound" not in codes(cpu, T0 + 40)


def test_input_bound_waits_the_whole_window():
    """ "for 30 s" (README, input_window_s): 29 s of starving samples are not enough."""
    cfg = HealthConfig()
    short = model_of(healthy_stream())
    for k in range(int(cfg.input_window_s)):  # samples at 0..29 s: a 29 s span
        short.feed_system(busy(T0 + k, 20.0, 99.0))
    assert "input_bound" not in codes(short, T0 + cfg.input_window_s - 1)
    short.feed_system(busy(T0 + cfg.input_window_s, 20.0, 99.0))  # now 30 s of them
    assert "input_bound" in codes(short, T0 + cfg.input_window_s)
    # a busy GPU sample inside the window starts the count again
    broken = model_of(healthy_stream())
    for k in range(40):
        broken.feed_system(busy(T0 + k, 90.0 if k == 20 else 20.0, 99.0))
    assert "input_bound" not in codes(broken, T0 + 39)


def test_disk_filling_below_two_checkpoints():
    m = model_of(healthy_stream())
    m.feed(
        E.Checkpoint(
            step=100,
            path="checkpoints/step-0000100.pt",
            bytes=600 * 2**20,
            sha256="x",
            seconds=1,
            tags=["latest"],
        ).to_dict()
    )
    m.feed_system({"t": T0, "sys": {"disk_free_mib": 1000.0}})
    assert "disk_filling" in codes(m, T0 + 1)
    m.feed_system({"t": T0 + 1, "sys": {"disk_free_mib": 1300.0}})
    assert "disk_filling" not in codes(m, T0 + 2)


def test_each_episode_alerts_once():
    h = Health(HealthConfig())
    m = model_of(healthy_stream())
    assert [f.code for f in h.update(m, T0 + 200)] == ["stall"]
    assert h.update(m, T0 + 201) == []  # still stalled: no repeat
    m.feed(E.Heartbeat(step=400, t=T0 + 202).to_dict())
    assert h.update(m, T0 + 203) == []  # cleared
    assert [f.code for f in h.update(m, T0 + 400)] == ["stall"]  # a new episode


def test_thresholds_override_by_name():
    cfg = HealthConfig.from_pairs(["stall_min_s=5", "overfit_evals=2"])
    assert cfg.stall_min_s == 5.0 and cfg.overfit_evals == 2 and isinstance(cfg.overfit_evals, int)
    with pytest.raises(ValueError, match="stall_min"):
        HealthConfig.from_pairs(["stall_minimum=5"])
    with pytest.raises(ValueError, match="not a number"):
        HealthConfig.from_pairs(["stall_min_s=soon"])


def test_a_pid_is_trusted_only_if_it_started_before_announcing_itself():
    import os
    import time

    from cockpit.supervisor import announced

    assert announced(os.getpid(), time.time()) is not None
    assert announced(os.getpid(), time.time() - 10**6) is None  # a recycled pid
    assert announced(2**22 + 12345, None) is None and announced("7", None) is None


def test_a_straggler_and_a_failed_rank_become_alerts_once():
    from cockpit.collect.ranks import RankFailure, RanksSnapshot, Straggler

    m = RunModel()
    h = Health()
    slow = Straggler(rank=1, median_ms=30.0, others_ms=10.0, ratio=3.0, key="fwd_ms")
    m.ranks = RanksSnapshot(time.time(), (), (slow,), ())
    [f] = h.update(m, time.time())
    assert (f.code, f.level) == ("straggler", "warn")
    assert f.message.startswith("rank 1 is a straggler: fwd_ms 30 against 10 on the other ranks")
    assert h.update(m, time.time()) == []  # once per episode
    dead = RankFailure(1, "rank 1 killed by SIGKILL after step 7, with no end line", -9, True, "x")
    m.ranks = RanksSnapshot(time.time(), (), (), (dead,))
    [f] = h.update(m, time.time())
    assert (f.code, f.level, f.detail) == ("rank_failed", "error", "x")
    assert f.message == "rank 1 killed by SIGKILL after step 7, with no end line"


def _spike_reference(m, cfg):
    """The spike rule written plainly, a window at a time (the check computes the
    same windows from prefix sums, all at once)."""
    from cockpit.model.health import SPIKE_SCAN

    tail = list(m.loss.tail)[-(SPIKE_SCAN + cfg.spike_window) :]
    ys = [y for _, y in tail]
    for i in range(len(ys) - 1, max(0, len(ys) - 1 - SPIKE_SCAN), -1):
        before = ys[max(0, i - cfg.spike_window) : i]
        if len(before) < cfg.spike_min_points:
            break
        mean = sum(before) / len(before)
        sd = math.sqrt(max(0.0, sum(y * y for y in before) / len(before) - mean * mean))
        if ys[i] > mean + cfg.spike_sigma * max(sd, 1e-6 * abs(mean), 1e-12):
            return int(tail[i][0]), len(before)
    return None


def test_the_spike_rule_at_every_window_and_an_idle_run_is_not_scanned_again():
    from cockpit.model import health as H

    rng, cfg = random.Random(3), H.HealthConfig()
    for trial in range(40):
        s = healthy_stream()
        steps = [e for e in s if e["type"] == "step"]
        for _ in range(trial % 4):  # none, one or more spikes anywhere in the window
            steps[rng.randrange(len(steps))]["loss"] = 3 + rng.random() * (trial % 7)
        m = model_of(s)
        want = _spike_reference(m, cfg)
        got = H.loss_spike(m, cfg, T0 + 41)
        if want is None:
            assert got is None
        else:
            assert got is not None and f"at step {want[0]} " in got.message
            assert f"of the {want[1]} steps before it" in got.message
    # a run with no new step since the last check: the same answer, from memory
    calls = []
    real = H._loss_spike
    H._loss_spike = lambda tail, cfg: calls.append(1) or real(tail, cfg)
    try:
        m = model_of(healthy_stream())
        first = [H.loss_spike(m, cfg, T0 + 41 + k) for k in range(5)]
        assert first == [first[0]] * 5 and len(calls) == 1
        newest = [e for e in healthy_stream() if e["type"] == "step"][-1]
        m.feed_all([dict(newest, step=newest["step"] + 1, loss=50.0, t=T0 + 60)])
        assert H.loss_spike(m, cfg, T0 + 61) is not None and len(calls) == 2
    finally:
        H._loss_spike = real
