"""What a display shows of a run, frozen: a snapshot of the run model taken on the
thread that feeds the model, so a UI thread can format it while the model goes on
changing (the model's deques and dicts must not be read while another thread
writes them). Display-free: the TUI's widgets only format what is here, and
every figure here is one the run model computed.

A curve is copied only when it changed since the last snapshot, so building a
view costs little more than the figures it holds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from cockpit.curve import Curve, Extremes
from cockpit.health import leak_mib_per_1k_steps
from cockpit.runmodel import ENDED, AlertRecord, CheckpointInfo, RunModel

CURVES = (
    "loss", "val_loss", "lr", "tokens_per_s", "step_ms", "mfu", "step_t",
    "rss_mib", "uss_mib", "cpu_pct", "num_threads", "gpu_util_pct",
)  # fmt: skip
EVALS_KEPT = 20  # the newest evals a view carries


# -----------------------------------------------------------------------------
# a frozen curve


@dataclass(frozen=True)
class CurveView(Extremes):
    xs: tuple = ()  # per bucket: first x, min y, max y, last y (oldest first)
    lo: tuple = ()
    hi: tuple = ()
    last: tuple = ()
    tail: tuple = ()  # the newest raw (x, y) points
    n: int = 0
    n_nonfinite: int = 0

    @classmethod
    def of(cls, c: Curve) -> CurveView:
        return cls(
            tuple(c.xs), tuple(c.lo), tuple(c.hi), tuple(c.last), tuple(c.tail), c.n, c.n_nonfinite
        )

    def window(self, x_min: float | None = None) -> list[tuple[float, float, float]]:
        """(x, min, max) points with x >= x_min, oldest first: the raw tail when it
        reaches back that far (full detail), else the buckets (extremes kept)."""
        if not self.tail:
            return []
        if x_min is not None and self.tail[0][0] <= x_min:
            return [(x, y, y) for x, y in self.tail if x >= x_min]
        if x_min is None and len(self.tail) == self.n:
            return [(x, y, y) for x, y in self.tail]  # short curve: every point is here
        return [
            (x, lo, hi)
            for x, lo, hi in zip(self.xs, self.lo, self.hi, strict=True)
            if x_min is None or x >= x_min
        ]

    def recent(self, k: int) -> list[float]:
        """The newest k raw values (for a sparkline)."""
        return [y for _, y in self.tail[-k:]] if k > 0 else []


EMPTY = CurveView()


# -----------------------------------------------------------------------------
# a frozen run


@dataclass(frozen=True)
class RunView:
    now: float  # the clock when taken (ages and elapsed are against it)
    run_dir: Path | None
    run_id: str
    profile: str
    status: str
    info: dict  # the run_start event
    phase: dict | None
    step: int
    total_steps: int | None
    epoch: int
    total_epochs: int | None
    tokens: int
    figures: dict  # RunModel.figures(): the numbers of the headless summary line
    last: dict  # the newest step event
    loss_ema: float | None
    best_val: float | None
    gate: dict | None
    gate_passed_step: int | None
    run_end: dict | None
    exit_code: int | None
    proc_alive: bool | None
    log_tail: str | None  # the log's end once the process died
    elapsed_s: float | None
    eta_s: float | None
    steps_per_s: float | None
    leak_mib_per_1k_steps: float | None
    curves: dict[str, CurveView]
    gpu_dev: dict[int, dict[str, CurveView]]
    evals: tuple  # the newest eval records (RunModel.evals)
    n_evals: int
    samples: tuple
    alerts: tuple[AlertRecord, ...]
    n_alerts: int
    checkpoints: tuple[CheckpointInfo, ...]  # by step
    proc: dict | None
    proc_threads: dict | None  # the newest process sample that listed threads
    system: dict | None
    gpu: dict | None
    malformed: int
    log: tuple[str, ...] = ()  # the newest lines of stdout.log
    log_seq: int = 0  # lines of stdout.log read so far (changes when the log does)
    loading: float | None = None  # share of the history replayed, None once it all is
    pid: int | None = None  # the trainer's
    ranks: object | None = None  # cockpit.ranks.RanksSnapshot under torchrun, else None
    handles: tuple = (None, None)  # the trainer handles SIGUSR1 (save now), SIGUSR2 (stacks)
    version: int = 0  # changes whenever anything but the clock does
    extra: dict = field(default_factory=dict)

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    def curve(self, name: str) -> CurveView:
        return self.curves.get(name, EMPTY)


# -----------------------------------------------------------------------------
# building views


class ViewBuilder:
    """Makes RunViews of one model after another, reusing the copies of curves that
    did not change. Used on the thread that feeds the model."""

    def __init__(self):
        self._cache: dict[int, tuple[tuple, CurveView]] = {}
        self._sig: tuple | None = None
        self._leak: tuple[tuple, float | None] = ((), None)
        self.version = 0

    def _leak_trend(self, m: RunModel) -> float | None:
        # a least-squares fit over up to 7200 samples: only when a sample came in
        key = (id(m), len(m.rss_hist), m.rss_hist[-1] if m.rss_hist else None)
        if self._leak[0] != key:
            self._leak = (key, leak_mib_per_1k_steps(m))
        return self._leak[1]

    def _curve(self, c: Curve) -> CurveView:
        key = (c.n, c.n_nonfinite, c.width, len(c.xs))
        got = self._cache.get(id(c))
        if got is not None and got[0] == key:
            return got[1]
        v = CurveView.of(c)
        self._cache[id(c)] = (key, v)
        return v

    def signature(self, m: RunModel, log_seq: int = 0, loading: float | None = None) -> tuple:
        """Everything a view shows but the clock: equal signatures, equal views."""
        ck = tuple(
            (c.name, c.verified, tuple(c.tags), c.present, c.bytes) for c in m.checkpoints.values()
        )
        return (
            id(m), m.loss.n + m.loss.n_nonfinite, m.val_loss.n, m.n_alerts, m.n_evals,
            len(m.samples), id(m.proc), id(m.system), id(m.gpu), m.status, m.proc_alive,
            m.exit_code, id(m.phase), id(m.gate), id(m.run_end), m.t_last_activity, ck,
            m.malformed, log_seq, loading, id(m.info), id(m.ranks), m.handles,
        )  # fmt: skip

    def changed(self, m: RunModel, log_seq: int = 0, loading: float | None = None) -> bool:
        return self.signature(m, log_seq, loading) != self._sig

    def build(
        self,
        m: RunModel,
        now: float,
        *,
        log: tuple[str, ...] = (),
        log_seq: int = 0,
        loading: float | None = None,
        pid: int | None = None,
    ) -> RunView:
        sig = self.signature(m, log_seq, loading)
        if sig != self._sig:
            self._sig = sig
            self.version += 1
        live = {id(getattr(m, k)) for k in CURVES}
        gpu_dev = {
            i: {k: self._curve(c) for k, c in hist.items()} for i, hist in sorted(m.gpu_dev.items())
        }
        live |= {id(c) for hist in m.gpu_dev.values() for c in hist.values()}
        for k in [k for k in self._cache if k not in live]:
            del self._cache[k]  # curves of a replaced model
        return RunView(
            now=now,
            run_dir=m.run_dir,
            run_id=m.run_id,
            profile=m.profile,
            status=m.status,
            info=dict(m.info),
            phase=m.phase,
            step=m.step,
            total_steps=m.total_steps,
            epoch=m.epoch,
            total_epochs=m.total_epochs,
            tokens=m.tokens,
            figures=m.figures(),
            last=m.last,
            loss_ema=m.loss_ema,
            best_val=m.best_val,
            gate=m.gate,
            gate_passed_step=m.gate_passed_step,
            run_end=m.run_end,
            exit_code=m.exit_code,
            proc_alive=m.proc_alive,
            log_tail=m.log_tail,
            elapsed_s=m.elapsed_s(now),
            eta_s=m.eta_s(),
            steps_per_s=m.steps_per_s(),
            leak_mib_per_1k_steps=self._leak_trend(m),
            curves={k: self._curve(getattr(m, k)) for k in CURVES},
            gpu_dev=gpu_dev,
            evals=tuple(list(m.evals)[-EVALS_KEPT:]),
            n_evals=m.n_evals,
            samples=tuple(m.samples),
            alerts=tuple(m.alerts),
            n_alerts=m.n_alerts,
            checkpoints=tuple(
                dataclasses.replace(c, tags=list(c.tags))
                for c in sorted(m.checkpoints.values(), key=lambda c: c.step)
            ),
            proc=m.proc,
            proc_threads=m.proc_threads,
            system=m.system,
            gpu=m.gpu,
            malformed=m.malformed,
            log=log,
            log_seq=log_seq,
            loading=loading,
            pid=pid,
            ranks=m.ranks,
            handles=m.handles,
            version=self.version,
        )
