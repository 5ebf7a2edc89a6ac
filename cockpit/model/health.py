"""Health checks: pure functions of the run model that say what is wrong.

Each check returns a Finding or None and touches nothing; `Health` turns the
findings into alerts, once per episode: a condition fires when it appears and
can fire again only after it cleared. Acting on a finding (a stack dump for a
stall) is the session's job, not the check's.

Thresholds live in `HealthConfig`, with defaults; `cockpit run --health
stall_min_s=120` overrides one.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass
from typing import Any

from cockpit.model.runmodel import ENDED, RunModel


@dataclass(frozen=True)
class HealthConfig:
    stall_factor: float = 10.0
    """A stall is no step or heartbeat for stall_factor x the median step time ..."""
    stall_min_s: float = 60.0
    """... and never less than this many seconds."""
    spike_window: int = 100
    """Steps in the rolling window a loss spike is measured against."""
    spike_sigma: float = 6.0
    """A loss above mean + spike_sigma x std of that window is a spike."""
    spike_min_points: int = 30
    """No spike check before the window holds this many finite losses."""
    leak_window_s: float = 600.0
    """The memory-leak trend is the RSS slope over this many recent seconds ..."""
    leak_min_span_s: float = 300.0
    """... judged only once samples span this long ..."""
    leak_mib_per_min: float = 10.0
    """... and alerting above this many MiB per minute."""
    overfit_evals: int = 3
    """Val loss rising for this many evals in a row while train loss falls."""
    input_gpu_util_pct: float = 50.0
    """Input-bound: GPU utilisation under this ..."""
    input_main_thread_pct: float = 80.0
    """... while the trainer's main thread is this busy ..."""
    input_window_s: float = 30.0
    """... for this many seconds."""
    disk_checkpoints: float = 2.0
    """Disk filling: free space under this many checkpoints' size."""
    crash_log_lines: int = 50
    """Lines of stdout.log shown with a crash."""

    @classmethod
    def from_pairs(cls, pairs: list[str]) -> HealthConfig:
        """`key=value` overrides; raises ValueError naming the bad key and the known ones."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        kw: dict[str, Any] = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or key not in names:
                raise ValueError(
                    f"--health {pair}: expected KEY=VALUE with KEY one of {', '.join(names)}"
                )
            try:
                kw[key] = int(value) if names[key].type in (int, "int") else float(value)
            except ValueError:
                raise ValueError(f"--health {pair}: {value!r} is not a number") from None
        return cls(**kw)


@dataclass(frozen=True)
class Finding:
    code: str  # stall | crash | nan_loss | loss_spike | memory_leak | overfitting | input_bound | disk_filling
    level: str  # info | warn | error
    message: str
    detail: str | None = None


EXIT_CODE_WAIT_S = 3.0


def _live(m: RunModel) -> bool:
    return m.proc_alive is True and m.status not in ENDED


# -----------------------------------------------------------------------------
# the checks


def stall_threshold_s(m: RunModel, cfg: HealthConfig) -> float:
    med = m.median_step_s()
    return max(cfg.stall_factor * med if med else 0.0, cfg.stall_min_s)


def stall(m: RunModel, cfg: HealthConfig, now: float) -> Finding | None:
    """No step or heartbeat for too long while the process lives."""
    since = m.t_last_activity or m.t_first
    if not _live(m) or since is None:
        return None
    quiet, limit = now - since, stall_threshold_s(m, cfg)
    if quiet <= limit:
        return None
    state = (m.proc or {}).get("status")
    why = " (the process is stopped: SIGSTOP or Ctrl+Z)" if state == "stopped" else ""
    return Finding(
        "stall",
        "error",
        f"no step or heartbeat for {quiet:.0f} s (limit {limit:.0f} s) at step {m.step}; "
        f"the process is alive{why}",
    )


def crash(m: RunModel, cfg: HealthConfig, now: float) -> Finding | None:
    """The process is gone and never wrote run_end."""
    if m.proc_alive is not False or m.run_end is not None:
        return None
    if m.exit_code is None and m.t_gone is not None and now - m.t_gone < EXIT_CODE_WAIT_S:
        return None  # a watcher: the launching cockpit records the exit code in a moment
    code = f"exit code {m.exit_code}" if m.exit_code is not None else "exit code unknown"
    return Finding(
        "crash",
        "error",
        f"the trainer died without finishing the run ({code}) at step {m.step}",
        m.log_tail,
    )


def nan_loss(m: RunModel, cfg: HealthConfig, now: float) -> Finding | None:
    if m.loss.n_nonfinite == 0:
        return None
    if any(a.code == "nan_loss" and a.source == "trainer" for a in m.alerts):
        return None  # the trainer said so itself
    return Finding(
        "nan_loss",
        "error",
        f"{m.loss.n_nonfinite} step(s) with a NaN/Inf loss; the newest at step {m.step}",
    )


SPIKE_SCAN = 500  # steps a check looks back for a spike (500 steps/s at one check a second)


def loss_spike(m: RunModel, cfg: HealthConfig, now: float) -> Finding | None:
    """A loss beyond mean + k·σ of the window before it, among the last SPIKE_SCAN
    steps: the checks run once a second, and steps may come far faster. The answer
    depends on the loss curve's tail alone: while no step comes (an idle run, an
    eval) it is the last one, not scanned again."""
    c = m.loss
    last = c.tail[-1] if c.tail else None
    # the curve itself, not its id(): a freed curve's id is the next one's
    key = (c.n, c.n_nonfinite, last, cfg.spike_window, cfg.spike_min_points, cfg.spike_sigma)
    if _spike_memo[0] is c and _spike_memo[1] == key:
        return _spike_memo[2]
    found = _loss_spike(list(c.tail)[-(SPIKE_SCAN + cfg.spike_window) :], cfg)
    _spike_memo[:] = [c, key, found]
    return found


_spike_memo: list = [None, None, None]  # the curve last scanned, its key, its finding


def _loss_spike(tail: list[tuple[float, float]], cfg: HealthConfig) -> Finding | None:
    w = cfg.spike_window
    if len(tail) < cfg.spike_min_points + 1:
        return None
    import numpy as np  # lazy: a display of a short run never needs it

    ys = np.array([y for _, y in tail], dtype=np.float64)
    # prefix sums (sequential, as a loop adds them): each window's mean and σ in O(1)
    s1 = np.concatenate(([0.0], np.cumsum(ys)))
    s2 = np.concatenate(([0.0], np.cumsum(ys * ys)))
    i = np.arange(len(ys) - 1, max(0, len(ys) - 1 - SPIKE_SCAN), -1)  # newest first
    lo = np.maximum(0, i - w)
    n = i - lo
    keep = n >= cfg.spike_min_points  # n only shrinks going back: a prefix of i
    i, lo, n = i[keep], lo[keep], n[keep]
    mean = (s1[i] - s1[lo]) / n
    sd = np.sqrt(np.maximum(0.0, (s2[i] - s2[lo]) / n - mean * mean))
    y = ys[i]
    bar = np.maximum(np.maximum(sd, 1e-6 * np.abs(mean)), 1e-12)
    hits = np.flatnonzero(y > mean + cfg.spike_sigma * bar)
    if not len(hits):
        return None
    k = int(hits[0])
    yk, mk, sk, j = float(y[k]), float(mean[k]), float(sd[k]), int(i[k])
    return Finding(
        "loss_spike",
        "warn",
        f"loss {yk:.4g} at step {int(tail[j][0])} is {(yk - mk) / max(sk, 1e-12):.1f}σ "
        f"above the mean {mk:.4g} of the {int(n[k])} steps before it",
    )


def leak_slope_mib_per_min(m: RunModel, window_s: float, now: float) -> tuple[float, float] | None:
    """(least-squares RSS slope in MiB/min, span in seconds) over the recent window."""
    pts = [(t, r) for t, r, _ in m.rss_hist if t >= now - window_s]
    if len(pts) < 3:
        return None
    span = pts[-1][0] - pts[0][0]
    t0 = pts[0][0]
    xs, ys = [t - t0 for t, _ in pts], [r for _, r in pts]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return slope * 60, span


def leak_mib_per_1k_steps(
    m: RunModel, cfg: HealthConfig | None = None, now: float | None = None
) -> float | None:
    """The memory trend against training progress (the monitor's figure): least-squares
    RSS slope over the steps of the alert's window, in MiB per 1000 steps. None until
    the memory_leak check itself would judge (the same window and warm-up: start-up
    growth is not a trend), or without enough steps."""
    if not m.rss_hist:
        return None
    cfg = cfg or HealthConfig()
    t_end = m.rss_hist[-1][0] if now is None else now
    pts = [(t, s, r) for t, r, s in m.rss_hist if t >= t_end - cfg.leak_window_s]
    if len(pts) < 3 or pts[-1][0] - pts[0][0] < cfg.leak_min_span_s:
        return None  # warming up, as the alert is
    if pts[-1][1] - pts[0][1] < 10:
        return None
    ms, mr = statistics.fmean(s for _, s, _ in pts), statistics.fmean(r for _, _, r in pts)
    sxx = sum((s - ms) ** 2 for _, s, _ in pts)
    return 1000 * sum((s - ms) * (r - mr) for _, s, r in pts) / sxx if sxx else None


def memory_leak(m: RunModel, cfg: HealthConfig, now: float) -> Finding | None:
    if not _live(m):
        return None
    got = leak_slope_mib_per_min(m, cfg.leak_window_s, now)
    if got is None:
        return None
    slope, span = got
    if span < cfg.leak_min_span_s or slope <= cfg.leak_mib_per_min:
        return None
    rss = m.rss_hist[-1][1]
    return Finding(
        "memory_leak",
        "warn",
        f"RSS rising {slope:.1f} MiB/min over the last {span / 60:.1f} min (now {rss:.0f} MiB; "
        f"threshold {cfg.leak_mib_per_min:g} MiB/min)",
    )


def overfitting(m: RunModel, cfg: HealthConfig, now: float) -> Finding | None:
    """Val loss up at each of the last N evals while the (smoothed) train loss fell."""
    evs = list(m.evals)[-(cfg.overfit_evals + 1) :]
    if len(evs) < cfg.overfit_evals + 1:
        return None
    vals = [e.get("val_loss") for e in evs]
    trains = [e.get("train_loss_ema") for e in evs]
    if any(not isinstance(v, int | float) or not math.isfinite(v) for v in vals + trains):
        return None
    rising = all(b > a for a, b in zip(vals, vals[1:], strict=False))
    if not rising or not trains[-1] < trains[0]:
        return None
    return Finding(
        "overfitting",
        "warn",
        f"val loss rose for {cfg.overfit_evals} evals ({vals[0]:.4g} → {vals[-1]:.4g}) while "
        f"train loss fell ({trains[0]:.4g} → {trains[-1]:.4g}); consider stopping at the best "
        "checkpoint",
    )


def input_bound(m: RunModel, cfg: HealthConfig, now: float) -> Finding | None:
    """Every sample of the last input_window_s starving (the GPU idle, the main thread
    busy): the newest run of such samples spans the whole window, as the README says."""
    if not _live(m):
        return None
    pts = []  # the newest run of starving samples, newest first
    for p in reversed(m.busy_hist):
        _, g, c = p
        if not (g < cfg.input_gpu_util_pct and c is not None and c >= cfg.input_main_thread_pct):
            break
        pts.append(p)
    if len(pts) < 3 or now - pts[0][0] > cfg.input_window_s:
        return None
    if pts[0][0] - pts[-1][0] < cfg.input_window_s:
        return None
    g = statistics.fmean(p[1] for p in pts)
    return Finding(
        "input_bound",
        "warn",
        f"GPU {g:.0f}% busy while the trainer's main thread is ≥{cfg.input_main_thread_pct:.0f}% "
        f"busy for {cfg.input_window_s:.0f} s: the GPU waits on the CPU (data loading, "
        "tokenizing, Python overhead); more DataLoader workers or pre-tokenized data help",
    )


def disk_filling(m: RunModel, cfg: HealthConfig, now: float) -> Finding | None:
    free = (m.system or {}).get("disk_free_mib")
    sizes = [c.bytes for c in m.checkpoints.values() if c.bytes]
    if not isinstance(free, int | float) or not sizes or m.status in ENDED:
        return None
    need = cfg.disk_checkpoints * max(sizes) / 2**20
    if free >= need:
        return None
    return Finding(
        "disk_filling",
        "error",
        f"{free:.0f} MiB free on the run directory's disk, less than {cfg.disk_checkpoints:g} "
        f"checkpoints ({need:.0f} MiB): the next save may fail",
    )


def straggler(m: RunModel, cfg: HealthConfig, now: float) -> Finding | None:
    """A rank whose data+forward time is well over the others' (cockpit.collect.ranks judges)."""
    snap = m.ranks
    if snap is None or not snap.stragglers or m.status in ENDED:
        return None
    s = snap.stragglers[0]
    return Finding(
        "straggler",
        "warn",
        f"rank {s.rank} is a straggler: {s.key} {s.median_ms:.0f} against {s.others_ms:.0f} on "
        f"the other ranks ({s.ratio:.2f}x); every rank waits for it in the all-reduce",
    )


def rank_failed(m: RunModel, cfg: HealthConfig, now: float) -> Finding | None:
    snap = m.ranks
    if snap is None or not snap.failures:
        return None
    f, more = snap.failures[0], len(snap.failures) - 1
    extra = f" ({more} more rank(s) failed)" if more else ""
    return Finding("rank_failed", "error", f.reason + extra, detail=f.log or None)


CHECKS = (
    stall,
    crash,
    nan_loss,
    loss_spike,
    memory_leak,
    overfitting,
    input_bound,
    disk_filling,
    straggler,
    rank_failed,
)


def check_all(m: RunModel, cfg: HealthConfig, now: float) -> list[Finding]:
    out = []
    for check in CHECKS:
        f = check(m, cfg, now)
        if f is not None:
            out.append(f)
    return out


class Health:
    """Runs the checks and reports each condition once per episode."""

    def __init__(self, cfg: HealthConfig | None = None):
        self.cfg = cfg or HealthConfig()
        self.active: set[str] = set()

    def update(self, m: RunModel, now: float) -> list[Finding]:
        found = check_all(m, self.cfg, now)
        new = [f for f in found if f.code not in self.active]
        self.active = {f.code for f in found}
        return new
