"""The run model: one in-memory picture of a run that every collector feeds
(events, system samples, checkpoints, the supervisor) and every display reads
(through frozen views: cockpit.model.view). Displays only format what is here,
so every figure they show is testable without a terminal.

Memory stays bounded however long the run: curves keep a fixed number of
buckets (each keeps its minimum and maximum, so a spike is never averaged
away) plus a raw tail of recent points; lists of evals, samples and alerts are
bounded deques.
"""

from __future__ import annotations

import math
import operator
import statistics
import sys
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cockpit.model.curve import Curve
from cockpit.model.records import AlertRecord, CheckpointInfo, main_thread_cpu  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    import numpy as np

    from cockpit.collect.ckwatch import CkptState
    from cockpit.collect.ranks import RanksSnapshot

# statuses a run ends with (core's run_end, plus `failed` when the process died without one)
ENDED = ("completed", "gate_passed", "early_stopped", "interrupted", "diverged", "failed")
OK_STATUSES = ("completed", "gate_passed", "early_stopped")
STEP_CURVES = ("loss", "lr", "tokens_per_s", "step_ms", "mfu")  # step-event fields kept as curves
NUMPY_MIN_STEPS = 4096  # a run of steps this long takes numpy in, shorter ones wait for it


def status_code(status: str) -> int:
    """The trainer's exit code for a run status, when nobody saw the process exit."""
    return 0 if status in OK_STATUSES else 130 if status == "interrupted" else 1


GPU_HIST = ("util_pct", "mem_used_mib", "temp_c", "power_w", "proc_mem_mib")


def _f(x: object) -> float | None:
    return float(x) if isinstance(x, int | float) else None


_NUMBERS = frozenset((float, int, type(None)))


def _values(evs: list[dict], key: str) -> list:
    """ev.get(key) of every event: by itemgetter in C when every event has the key
    (a trainer writes the same fields each step), else dict.get's None for the missing."""
    try:
        return list(map(operator.itemgetter(key), evs))
    except KeyError:
        return [ev.get(key) for ev in evs]


def _column(values: list, missing: float = math.nan) -> np.ndarray:
    """_f of every value as a float array (None: `missing`), in one numpy call when
    they are all plain numbers (numpy would read a string as a number: those, and
    None, take the slow path)."""
    import numpy as np

    a = _numbers(values)
    if a is not None:
        return a
    if set(map(type, values)) <= _NUMBERS:
        a = np.array(values, dtype=float)
        if missing == missing and (nan := np.isnan(a)).any():
            a[nan & np.array([v is None for v in values])] = missing
        return a
    out = [_f(v) for v in values]
    return np.array([missing if v is None else v for v in out], dtype=float)


def _numbers(values: list) -> np.ndarray | None:
    """`values` (numbers, or tuples of them) as floats, or None when one of them is
    something else. numpy reads a list of ints, floats and bools as numbers (int or
    float, as float() would), anything else (None, a string, a list, a dict, an int
    too big for it) as another kind or shape."""
    import numpy as np

    try:
        a = np.array(values)
    except (ValueError, TypeError, OverflowError):  # ragged nested lists, and such
        return None
    if a.dtype.kind not in "fiub" or a.ndim != (
        2 if values and values[0].__class__ is tuple else 1
    ):
        return None
    return a.astype(float, copy=False)


STEP_COLUMNS = ("t", "step", *STEP_CURVES)
_PLAIN = frozenset((int, float))


def _step_columns(evs: list[dict]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The time column (a missing or non-number time: now, as feed() takes it), the
    step column (ints, as floats) and the step curves' columns (missing or not a
    number: NaN) of many step events (each with an int step). The
    fields the first event holds as numbers are read in one pass over the events, as
    rows (one trainer writes the same fields every step); the others (a null mfu
    where the peak is unknown), or all of them when a row holds anything else, a
    column at a time."""
    first = evs[0]
    rows = [k for k in STEP_COLUMNS if first.get(k).__class__ in _PLAIN]
    a = None
    if len(rows) > 1:
        try:
            a = _numbers(list(map(operator.itemgetter(*rows), evs)))
        except KeyError:
            pass
    got = {k: a[:, i] for i, k in enumerate(rows)} if a is not None else {}
    for k in STEP_COLUMNS:
        if k not in got:
            got[k] = _column(_values(evs, k), time.time() if k == "t" else math.nan)
    return got["t"], got["step"], {k: got[k] for k in STEP_CURVES}


# -----------------------------------------------------------------------------
# the headline figures


@dataclass(frozen=True)
class Figures:
    """The run's headline numbers at one moment, each computed once (RunModel.figures):
    what the summary line, the header, the figure panels and an eval's line show."""

    step: int = 0
    total_steps: int | None = None
    epoch: int = 0  # 0-based; displays show epoch + 1
    total_epochs: int | None = None
    steps_per_epoch: int | None = None
    tokens: int = 0  # cumulative
    loss: float | None = None  # the newest step's
    val_loss: float | None = None  # the newest eval's
    lr: float | None = None
    grad_norm: float | None = None
    tokens_per_s: float | None = None  # the trainer's own figure for its newest step
    step_ms: float | None = None
    mfu: float | None = None
    tokens_per_s_device: float | None = None  # tokens_per_s over the world size: per GPU (or rank)
    peak_flops: float | None = None  # one device's peak behind mfu (run_start); None: unknown
    peak_source: str | None = None  # where that peak came from
    steps_per_s: float | None = None  # wall clock over recent steps (evals and saves included)
    eta_s: float | None = None  # to the end of the step budget
    rss_mib: float | None = None  # the trainer's, while it lives
    gpu_available: bool | None = None  # None: not sampled
    gpu_util_pct: float | None = None
    ranks: tuple[tuple[int, float | None, float | None], ...] | None = None  # (rank, ms, MiB)


# -----------------------------------------------------------------------------
# the model


@dataclass
class RunModel:
    run_dir: Path | None = None
    run_id: str = ""
    profile: str = ""
    status: str = "waiting"  # waiting | starting | running | one of ENDED
    info: dict = field(default_factory=dict)  # the run_start event
    phase: dict | None = None  # the newest phase event
    step: int = 0
    total_steps: int | None = None
    epoch: int = 0
    total_epochs: int | None = None
    tokens: int = 0
    last: dict = field(default_factory=dict)  # the newest step event
    loss_ema: float | None = None
    t_first: float | None = None  # first event time
    t_last_activity: float | None = None  # newest step/heartbeat/phase/run_start
    t_last_step: float | None = None
    best_val: float | None = None
    gate: dict | None = None  # the newest gate event
    gate_passed_step: int | None = None
    run_end: dict | None = None
    exit_code: int | None = None
    proc_alive: bool | None = None  # None: unknown (not watched yet)
    t_gone: float | None = None  # when the process was seen gone
    log_tail: str | None = None  # the last lines of stdout.log once the process ended
    malformed: int = 0
    # curves
    loss: Curve = field(default_factory=Curve)
    val_loss: Curve = field(default_factory=lambda: Curve(tail=500))
    lr: Curve = field(default_factory=Curve)
    tokens_per_s: Curve = field(default_factory=Curve)
    step_ms: Curve = field(default_factory=Curve)
    mfu: Curve = field(default_factory=Curve)
    step_t: Curve = field(default_factory=Curve)  # y: the step's time (plots against time)
    rss_mib: Curve = field(default_factory=Curve)  # x: time
    uss_mib: Curve = field(default_factory=Curve)
    cpu_pct: Curve = field(default_factory=Curve)
    num_threads: Curve = field(default_factory=Curve)
    gpu_util_pct: Curve = field(default_factory=Curve)
    # per GPU index: util_pct, mem_used_mib, temp_c, power_w, proc_mem_mib over time
    gpu_dev: dict[int, dict[str, Curve]] = field(default_factory=dict)
    # bounded lists
    evals: deque = field(default_factory=lambda: deque(maxlen=1000))
    samples: deque = field(default_factory=lambda: deque(maxlen=20))
    n_samples: int = 0
    alerts: deque = field(default_factory=lambda: deque(maxlen=500))
    n_alerts: int = 0
    n_evals: int = 0
    checkpoints: dict[str, CheckpointInfo] = field(default_factory=dict)
    step_times: deque = field(default_factory=lambda: deque(maxlen=240))  # (t, step)
    recent_step_ms: deque = field(default_factory=lambda: deque(maxlen=200))
    rss_hist: deque = field(default_factory=lambda: deque(maxlen=7200))  # (t, rss_mib, step)
    busy_hist: deque = field(
        default_factory=lambda: deque(maxlen=600)
    )  # (t, gpu util, main-thread cpu)
    # the newest system samples (dicts, as recorded in system.jsonl)
    proc: dict | None = None
    proc_threads: dict | None = None  # the newest process sample with thread lists in it
    system: dict | None = None
    gpu: dict | None = None
    ranks: RanksSnapshot | None = (
        None  # cockpit.collect.ranks.RanksSnapshot under torchrun (per-rank figures)
    )
    handles: tuple = (None, None)  # the trainer has a handler for SIGUSR1, SIGUSR2 (None: unknown)
    energy: dict | None = None  # core.energy's record once the run ended (cockpit.session)

    # --- events --------------------------------------------------------------

    def feed(self, ev: dict) -> None:
        """Take one event dict (unknown types and fields are ignored)."""
        fn = _HANDLERS.get(ev.get("type", ""))
        if fn is None:
            return
        t = ev.get("t")
        if not isinstance(t, int | float):
            t = time.time()
        if self.t_first is None:
            self.t_first = t
        fn(self, ev, t)

    def feed_all(self, evs: Iterable[dict]) -> None:
        """Many events, oldest first: the same state as feed() on each, with runs of
        step events taken in bulk (a replay is mostly steps)."""
        run: list[dict] = []
        for ev in evs:
            if ev.get("type") == "step" and ev.get("step").__class__ is int:
                run.append(ev)
                continue
            if run:
                self._steps(run)
                run = []
            self.feed(ev)
        if run:
            self._steps(run)

    def _steps(self, evs: list[dict]) -> None:
        """A run of step events (each with an int step): the state feed() gives, with
        every column taken as a numpy array (a million-step replay is mostly this)."""
        if len(evs) < 8 or len(evs) < NUMPY_MIN_STEPS and "numpy" not in sys.modules:
            # one by one: numpy's import (0.1-0.2 s) would cost a short history more
            # than it saves, and would hold up a display's first paint
            for ev in evs:
                self.feed(ev)
            return
        import numpy as np  # lazy: a short run's display never needs it

        ts, xs, cols = _step_columns(evs)
        if self.t_first is None:
            self.t_first = float(ts[0])
        for k, col in cols.items():
            getattr(self, k).extend(xs, col)
        self.step_t.extend(xs, ts)
        loss = cols["loss"]
        loss = loss[np.isfinite(loss)]
        ema = self.loss_ema
        if len(loss):
            ys = loss.tolist()
            if ema is None:
                ema, ys = ys[0], ys[1:]
            for y in ys:
                ema = 0.9 * ema + 0.1 * y
        self.loss_ema = ema
        recent: list[float] = []  # the newest step_ms figures (a deque keeps this many)
        keep = self.recent_step_ms.maxlen or len(evs)
        for ev in reversed(evs):
            ms = ev.get("step_ms")
            if isinstance(ms, int | float):
                recent.append(float(ms))
                if len(recent) >= keep:
                    break
        self.recent_step_ms.extend(reversed(recent))
        n = self.step_times.maxlen or len(evs)
        self.step_times.extend(zip(ts[-n:].tolist(), [ev["step"] for ev in evs[-n:]], strict=True))
        for ev in reversed(evs):
            if tokens := ev.get("tokens"):
                self.tokens = tokens
                break
        last = evs[-1]
        self.step, self.last, self.epoch = last["step"], last, last.get("epoch") or 0
        self.t_last_step = self.t_last_activity = float(ts[-1])
        if self.status in ("waiting", "starting"):
            self.status = "running"

    def _run_start(self, ev: dict, t: float) -> None:
        if self.run_end is not None:
            # resumed into the same run directory: a new part of the run begins
            self.run_end, self.status, self.exit_code, self.log_tail = None, "running", None, None
        self.info = ev
        self.run_id = ev.get("run_id") or self.run_id
        self.profile = ev.get("profile") or self.profile
        self.total_steps = ev.get("total_steps")
        self.total_epochs = ev.get("total_epochs")
        self.status = "running"
        self.t_last_activity = t

    def _phase(self, ev: dict, t: float) -> None:
        self.phase = ev
        if self.status == "waiting":
            self.status = "starting"
        self.t_last_activity = t

    def _step(self, ev: dict, t: float) -> None:
        step = ev.get("step")
        if not isinstance(step, int):
            return
        self.step, self.last = step, ev
        self.epoch = ev.get("epoch") or 0
        self.tokens = ev.get("tokens") or self.tokens
        self.t_last_step = self.t_last_activity = t
        loss = _f(ev.get("loss"))
        self.loss.add(step, loss)
        if loss is not None and math.isfinite(loss):
            self.loss_ema = loss if self.loss_ema is None else 0.9 * self.loss_ema + 0.1 * loss
        self.lr.add(step, _f(ev.get("lr")))
        self.tokens_per_s.add(step, _f(ev.get("tokens_per_s")))
        ms = _f(ev.get("step_ms"))
        self.step_ms.add(step, ms)
        self.mfu.add(step, _f(ev.get("mfu")))
        self.step_t.add(step, t)
        if ms is not None:
            self.recent_step_ms.append(ms)
        self.step_times.append((t, step))
        if self.status in ("waiting", "starting"):
            self.status = "running"

    def _heartbeat(self, ev: dict, t: float) -> None:
        self.t_last_activity = t

    def _eval(self, ev: dict, t: float) -> None:
        vl = _f(ev.get("val_loss"))
        step = ev.get("step")
        step = step if isinstance(step, int) else self.step
        self.val_loss.add(step, vl)
        if vl is not None and math.isfinite(vl) and (self.best_val is None or vl < self.best_val):
            self.best_val = vl
        # what the run looked like at this eval, for a line per eval and the overfitting check
        rec = dict(ev, train_loss_ema=self.loss_ema, best_val=self.best_val, figures=self.figures())
        self.evals.append(rec)
        self.n_evals += 1

    def _sample(self, ev: dict, t: float) -> None:
        self.samples.append(ev)
        self.n_samples += 1

    def _gate(self, ev: dict, t: float) -> None:
        self.gate = ev
        if ev.get("passed") and self.gate_passed_step is None:
            self.gate_passed_step = ev.get("step")

    def _checkpoint(self, ev: dict, t: float) -> None:
        path = str(ev.get("path") or "")
        name = Path(path).name or f"step-{ev.get('step', 0):07d}.pt"
        old = self.checkpoints.get(name)
        parent = Path(path).parent
        ours = (
            not path
            or parent.name == "checkpoints"
            and (self.run_dir is None or parent.parent.resolve() == Path(self.run_dir).resolve())
        )
        self.checkpoints[name] = CheckpointInfo(
            name=name,
            step=ev.get("step") or 0,
            bytes=ev.get("bytes") or 0,
            tags=list(ev.get("tags") or []),
            t=t,
            verified=old.verified if old else None,
            why=old.why if old else None,
            ours=ours,
            seconds=_f(ev.get("seconds")),
            blocked_s=_f(ev.get("blocked_s")),
            shards=old.shards if old else None,
        )

    def _alert(self, ev: dict, t: float) -> None:
        self.add_alert(
            ev.get("level") or "warn",
            ev.get("code") or "?",
            ev.get("message") or "",
            "trainer",
            t=t,
        )

    def _run_end(self, ev: dict, t: float) -> None:
        self.run_end = ev
        self.status = ev.get("status") or "completed"
        if isinstance(ev.get("step"), int):
            self.step = max(self.step, ev["step"])

    # --- the rest ------------------------------------------------------------

    def add_alert(
        self,
        level: str,
        code: str,
        message: str,
        source: str,
        detail: str | None = None,
        t: float | None = None,
    ) -> AlertRecord:
        self.n_alerts += 1
        a = AlertRecord(self.n_alerts, t or time.time(), level, code, message, source, detail)
        self.alerts.append(a)
        return a

    def set_checkpoints(self, states: Iterable[CkptState]) -> None:
        """What the checkpoint watcher found on disk (CkptState list)."""
        seen = set()
        for s in states:
            seen.add(s.name)
            c = self.checkpoints.get(s.name)
            if c is None:
                c = self.checkpoints[s.name] = CheckpointInfo(s.name, s.step, s.bytes, [], s.mtime)
            c.bytes, c.present, c.shards = s.bytes, True, s.shards
            c.tags = sorted(set(c.tags) | set(s.tags) | ({"latest"} if s.latest else set()))
            if not s.latest and "latest" in c.tags:
                c.tags.remove("latest")
            c.val_loss = s.val_loss if s.val_loss is not None else c.val_loss
            c.verified, c.why = s.verified, s.why
        for name, c in self.checkpoints.items():
            if name not in seen and c.ours:  # the watcher lists only the run's checkpoints/
                c.present = False

    def feed_system(self, d: dict) -> None:
        """One system.jsonl line: {"t", "proc": {...}, "sys": {...}, "gpu": {...}}."""
        t = d.get("t") or time.time()
        proc, sysd, gpu = d.get("proc"), d.get("sys"), d.get("gpu")
        if isinstance(proc, dict):
            self.proc = proc
            if any(p.get("threads") for p in proc.get("procs") or []):
                self.proc_threads = proc
            if proc.get("alive"):
                rss = _f(proc.get("rss_mib"))
                self.rss_mib.add(t, rss)
                self.cpu_pct.add(t, _f(proc.get("cpu_pct")))
                self.num_threads.add(t, _f(proc.get("num_threads")))
                self.uss_mib.add(t, _f(proc.get("uss_mib")))
                if rss is not None:
                    self.rss_hist.append((t, rss, self.step))
        if isinstance(sysd, dict):
            self.system = sysd
        if isinstance(gpu, dict):
            self.gpu = gpu
            util = self.gpu_util()
            self.gpu_util_pct.add(t, util)
            for dev in gpu.get("devices") or []:
                if isinstance(dev, dict) and isinstance(dev.get("index"), int):
                    hist = self.gpu_dev.get(dev["index"])
                    if hist is None:
                        hist = self.gpu_dev[dev["index"]] = {k: Curve(512, 600) for k in GPU_HIST}
                    for k, c in hist.items():
                        c.add(t, _f(dev.get(k)))
            if util is not None and isinstance(proc, dict):
                self.busy_hist.append((t, util, main_thread_cpu(proc)))

    def gpu_util(self) -> float | None:
        """Mean utilisation over the GPUs the trainer uses (all of them when that is
        unknown), or None with no GPU."""
        devs = (self.gpu or {}).get("devices") or []
        mine = [d for d in devs if (d.get("proc_mem_mib") or 0) > 0]
        devs = mine or devs
        vals = [d["util_pct"] for d in devs if isinstance(d.get("util_pct"), int | float)]
        return sum(vals) / len(vals) if vals else None

    def median_step_s(self) -> float | None:
        return statistics.median(self.recent_step_ms) / 1000 if self.recent_step_ms else None

    def steps_per_s(self) -> float | None:
        """Wall-clock rate over the recent steps (includes eval and checkpoint time)."""
        if len(self.step_times) < 2:
            return None
        (t0, s0), (t1, s1) = self.step_times[0], self.step_times[-1]
        dt = t1 - t0  # not t1 > t0: an int time and a float may differ yet subtract to 0.0
        return (s1 - s0) / dt if dt > 0 and s1 > s0 else None

    def eta_s(self) -> float | None:
        rate = self.steps_per_s()
        if rate is None or not self.total_steps or self.status in ENDED:
            return None
        return max(0, self.total_steps - self.step) / rate

    def steps_per_epoch(self) -> int | None:
        if self.total_steps and self.total_epochs:
            # the core counts ceil(total / steps_per_epoch) epochs
            return max(1, math.ceil(self.total_steps / self.total_epochs))
        return None

    def figures(self) -> Figures:
        """The run's headline numbers now (None when unknown)."""
        last = self.last
        proc, gpu = self.proc or {}, self.gpu or {}
        ranks = getattr(self.ranks, "ranks", None)
        return Figures(
            step=self.step,
            total_steps=self.total_steps,
            epoch=self.epoch,
            total_epochs=self.total_epochs,
            steps_per_epoch=self.steps_per_epoch(),
            tokens=self.tokens,
            loss=_f(last.get("loss")),
            val_loss=self.val_loss.latest,
            lr=_f(last.get("lr")),
            grad_norm=_f(last.get("grad_norm")),
            tokens_per_s=_f(last.get("tokens_per_s")),
            step_ms=_f(last.get("step_ms")),
            mfu=_f(last.get("mfu")),
            tokens_per_s_device=self.tokens_per_s_device(),
            peak_flops=_f(self.info.get("peak_flops")),
            peak_source=self.info.get("peak_source")
            if isinstance(self.info.get("peak_source"), str)
            else None,
            steps_per_s=self.steps_per_s(),
            eta_s=self.eta_s(),
            rss_mib=_f(proc.get("rss_mib")) if proc.get("alive") else None,
            gpu_available=bool(gpu.get("available")) if gpu else None,
            gpu_util_pct=self.gpu_util(),
            ranks=tuple((r.rank, r.median_step_ms, r.mem_mib) for r in ranks)
            if ranks is not None
            else None,
        )

    def tokens_per_s_device(self) -> float | None:
        """The newest step's tokens/s shared over the ranks (run_start's world size)."""
        tps, ws = _f(self.last.get("tokens_per_s")), self.info.get("world_size")
        if tps is None:
            return None
        return tps / ws if isinstance(ws, int) and ws > 0 else tps

    def elapsed_s(self, now: float | None = None) -> float | None:
        if self.run_end and isinstance(self.run_end.get("wall_s"), int | float):
            return self.run_end["wall_s"]
        return (now or time.time()) - self.t_first if self.t_first else None


_HANDLERS = {
    "run_start": RunModel._run_start,
    "phase": RunModel._phase,
    "step": RunModel._step,
    "heartbeat": RunModel._heartbeat,
    "eval": RunModel._eval,
    "sample": RunModel._sample,
    "gate": RunModel._gate,
    "checkpoint": RunModel._checkpoint,
    "alert": RunModel._alert,
    "run_end": RunModel._run_end,
}
