"""What a display shows of a run, frozen: a snapshot of the run model taken on the
thread that feeds the model, so a UI thread can format it while the model goes on
changing (the model's deques and dicts must not be read while another thread
writes them). Display-free: the TUI's widgets and the headless printer only
format what is here, and every figure here is one the run model computed.

RunView's fields are listed once: a field marked `model()` is the model's
attribute of the same name, copied as it is (build() and signature() both read
that list); the others are derived, each in one place in build().

A curve is copied only when it changed since the last snapshot, so building a
view costs little more than the figures it holds.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cockpit.collect.ranks import RanksSnapshot
from cockpit.model.curve import Curve, Extremes
from cockpit.model.health import leak_mib_per_1k_steps
from cockpit.model.runmodel import ENDED, AlertRecord, CheckpointInfo, Figures, RunModel

CURVES = (
    "loss", "val_loss", "lr", "tokens_per_s", "step_ms", "mfu", "step_t",
    "rss_mib", "uss_mib", "cpu_pct", "num_threads", "gpu_util_pct",
)  # fmt: skip


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


def model(default: Any = None) -> Any:
    """A RunView field that is the run model's attribute of the same name."""
    return field(default=default, metadata={"model": True})


@dataclass(frozen=True)
class RunView:
    now: float = 0.0  # the clock when taken (ages and elapsed are against it)
    # --- the model's own, as they are
    run_dir: Path | None = model()
    run_id: str = model("")
    profile: str = model("")
    status: str = model("waiting")
    phase: dict | None = model()  # the newest phase event
    last: dict | None = model()  # the newest step event, as written
    loss_ema: float | None = model()
    best_val: float | None = model()
    gate: dict | None = model()  # the newest gate event
    gate_passed_step: int | None = model()
    run_end: dict | None = model()
    exit_code: int | None = model()
    proc_alive: bool | None = model()
    log_tail: str | None = model()  # the log's end once the process died
    n_evals: int = model(0)
    n_samples: int = model(0)
    n_alerts: int = model(0)
    proc: dict | None = model()  # the newest process sample
    proc_threads: dict | None = model()  # the newest process sample that listed threads
    system: dict | None = model()
    gpu: dict | None = model()
    malformed: int = model(0)
    ranks: RanksSnapshot | None = model()  # under torchrun: per-rank figures
    handles: tuple = model((None, None))  # the trainer handles SIGUSR1 (save), SIGUSR2 (stacks)
    energy: dict | None = model()  # the run's energy (core.energy's record), once it ended
    # --- derived from the model, each in one place
    info: dict = field(default_factory=dict)  # the run_start event (a copy)
    figures: Figures = field(default_factory=Figures)  # RunModel.figures(): every headline number
    elapsed_s: float | None = None
    leak_mib_per_1k_steps: float | None = None  # None until the leak check's warm-up is over
    curves: dict[str, CurveView] = field(default_factory=dict)
    gpu_dev: dict[int, dict[str, CurveView]] = field(default_factory=dict)
    evals: tuple = ()  # the eval records the model keeps
    samples: tuple = ()
    alerts: tuple[AlertRecord, ...] = ()
    checkpoints: tuple[CheckpointInfo, ...] = ()  # by step
    # --- from the session
    log: tuple[str, ...] = ()  # the newest lines of stdout.log
    log_seq: int = 0  # lines of stdout.log read so far (changes when the log does)
    loading: float | None = None  # share of the history replayed, None once it all is
    pid: int | None = None  # the trainer's
    version: int = 0  # changes whenever anything but the clock does

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    def curve(self, name: str) -> CurveView:
        return self.curves.get(name, EMPTY)


MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(RunView) if f.metadata.get("model"))
_PLAIN = (str, int, float, bool, type(None), Path, tuple)


def _key(x: Any) -> Any:
    """What tells a change of one model field: the value of a plain one, the identity
    of a dict or object (the model replaces those; it never edits them in place)."""
    return x if isinstance(x, _PLAIN) else id(x)


# -----------------------------------------------------------------------------
# building views


class ViewBuilder:
    """Makes RunViews of one model after another, reusing the copies of curves that
    did not change. Used on the thread that feeds the model.

    `curves_every_s`: while a run goes on, a curve is copied again at most this
    often (its figures are always the newest): a display whose charts redraw about
    once a second need not pay for a copy of every curve with every view (8 a second
    at 50 steps/s). A run that ended always gets its curves whole."""

    def __init__(self, curves_every_s: float = 0.0) -> None:
        self.curves_every_s = curves_every_s
        self._cache: dict[int, tuple[tuple, CurveView, float]] = {}
        self._sig: tuple | None = None
        self._leak: tuple[tuple, float | None] = ((), None)
        self.version = 0

    def _leak_trend(self, m: RunModel) -> float | None:
        # a least-squares fit over up to 7200 samples: only when a sample came in
        key = (id(m), len(m.rss_hist), m.rss_hist[-1] if m.rss_hist else None)
        if self._leak[0] != key:
            self._leak = (key, leak_mib_per_1k_steps(m))
        return self._leak[1]

    def _curve(self, c: Curve, now: float | None = None) -> CurveView:
        """The curve's copy; `now` (monotonic): a copy younger than curves_every_s is
        good enough."""
        key = (c.n, c.n_nonfinite, c.width, len(c.xs))
        got = self._cache.get(id(c))
        if got is not None and (got[0] == key or now is not None and now < got[2]):
            return got[1]
        v = CurveView.of(c)
        self._cache[id(c)] = (key, v, time.monotonic() + self.curves_every_s)
        return v

    def signature(self, m: RunModel, log_seq: int = 0, loading: float | None = None) -> tuple:
        """Everything a view shows but the clock: equal signatures, equal views."""
        ck = tuple(
            (c.name, c.verified, tuple(c.tags), c.present, c.bytes) for c in m.checkpoints.values()
        )
        return (
            id(m), id(m.info), m.loss.n + m.loss.n_nonfinite, m.val_loss.n, m.t_last_activity,
            len(m.rss_hist), ck, log_seq, loading, *(_key(getattr(m, k)) for k in MODEL_FIELDS),
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
        # copies may be a little old while the run goes on, never once it has ended
        t = time.monotonic() if self.curves_every_s > 0 and m.status not in ENDED else None
        gpu_dev = {
            i: {k: self._curve(c, t) for k, c in hist.items()}
            for i, hist in sorted(m.gpu_dev.items())
        }
        live |= {id(c) for hist in m.gpu_dev.values() for c in hist.values()}
        for k in [k for k in self._cache if k not in live]:
            del self._cache[k]  # curves of a replaced model
        return RunView(
            now=now,
            **{k: getattr(m, k) for k in MODEL_FIELDS},
            info=dict(m.info),
            figures=m.figures(),
            elapsed_s=m.elapsed_s(now),
            leak_mib_per_1k_steps=self._leak_trend(m),
            curves={k: self._curve(getattr(m, k), t) for k in CURVES},
            gpu_dev=gpu_dev,
            evals=tuple(m.evals),
            samples=tuple(m.samples),
            alerts=tuple(m.alerts),
            checkpoints=tuple(
                dataclasses.replace(c, tags=list(c.tags))
                for c in sorted(m.checkpoints.values(), key=lambda c: c.step)
            ),
            log=log,
            log_seq=log_seq,
            loading=loading,
            pid=pid,
            version=self.version,
        )
