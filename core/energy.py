"""Energy a run used: GPU energy from NVML, CPU package energy from RAPL.

Two counters, both read the same way: a reading now and then, the differences
summed. Each source is an accumulator fed one reading at a time (a pure fold
over a sequence of readings, so a recorded sequence can be fed in a test):

- **GPU** (`GpuAccumulator`): NVML's total-energy counter
  (`nvmlDeviceGetTotalEnergyConsumption`, millijoules since the driver loaded;
  Volta and newer). Where a GPU has no such counter, its power draw
  (`nvmlDeviceGetPowerUsage`) integrated over time (the trapezoid rule between
  readings), and the figure says it was estimated that way.
- **CPU** (`RaplAccumulator`): the package energy counters of the Linux powercap
  interface, `/sys/class/powercap/intel-rapl:N/energy_uj` (AMD processors expose
  theirs through the same interface). The counter wraps at `max_energy_range_uj`
  (a few hundred kJ: minutes to an hour at full load), so it is read often
  enough to see every wrap. Since Linux 5.10 only root may read it; the figure
  then says so and how to allow it. RAPL measures the whole package: other
  processes on the machine count too.

`EnergyMeter` reads both every few seconds on a daemon thread; `stop()` gives an
`Energy` record: joules, kWh, joules per token and, with a price per kWh, the
cost. The trainer (core/train.py) measures its own runs and writes the record
into result.json and report.md; the cockpit measures a command it wraps.
Standard library only (pynvml is imported lazily, where there is a GPU).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RAPL_ROOT = Path("/sys/class/powercap")
PRICE_ENV = "COCKPIT_PRICE_KWH"  # the price per kWh the cockpit passes to a trainer it launches
J_PER_KWH = 3.6e6
SAMPLE_EVERY_S = 5.0

RAPL_PERMISSION_FIX = "sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj"

# -----------------------------------------------------------------------------
# the accumulators: one reading at a time


@dataclass
class RaplAccumulator:
    """One RAPL zone's counter (microjoules), summed across wraps."""

    max_range_uj: int | None = None  # the value the counter wraps at
    total_uj: int = 0
    last_uj: int | None = None
    wraps: int = 0
    resets: int = 0  # fell back with no known range: the span is lost, not guessed

    def feed(self, uj: int) -> None:
        if self.last_uj is not None:
            d = uj - self.last_uj
            if d < 0:
                if self.max_range_uj:
                    d += self.max_range_uj
                    self.wraps += 1
                else:
                    d = 0
                    self.resets += 1
            self.total_uj += d
        self.last_uj = uj

    @property
    def joules(self) -> float:
        return self.total_uj / 1e6


def rapl_energy_j(readings: Iterable[int], max_range_uj: int | None) -> float:
    """Joules across a sequence of one zone's energy_uj readings, wraps included."""
    acc = RaplAccumulator(max_range_uj)
    for r in readings:
        acc.feed(r)
    return acc.joules


@dataclass
class GpuAccumulator:
    """One GPU: the total-energy counter where it has one, else power × time."""

    counter_j: float = 0.0  # from the energy counter
    power_j: float = 0.0  # from power readings, over spans with no counter at both ends
    last: tuple[float, int | None, float | None] | None = None  # (t, mJ, W)
    counter_spans: int = 0
    power_spans: int = 0

    def feed(self, t: float, energy_mj: int | None, power_w: float | None) -> None:
        if self.last is not None:
            t0, e0, p0 = self.last
            dt = t - t0
            if energy_mj is not None and e0 is not None and energy_mj >= e0:
                self.counter_j += (energy_mj - e0) / 1e3
                self.counter_spans += 1
            elif dt > 0 and (power_w is not None or p0 is not None):
                a = p0 if p0 is not None else power_w
                b = power_w if power_w is not None else p0
                assert a is not None and b is not None
                self.power_j += (a + b) / 2 * dt
                self.power_spans += 1
        self.last = (t, energy_mj, power_w)

    @property
    def joules(self) -> float:
        return self.counter_j + self.power_j

    @property
    def source(self) -> str | None:
        if self.counter_spans and self.power_spans:
            return "NVML energy counter, power × time where it was missing"
        if self.counter_spans:
            return "NVML energy counter"
        if self.power_spans:
            return "power × time (no energy counter)"
        return None


def gpu_energy_j(
    samples: Iterable[tuple[float, int | None, float | None]],
) -> tuple[float, str | None]:
    """Joules and how they were measured, from (t, energy mJ or None, power W or None)."""
    acc = GpuAccumulator()
    for t, e, p in samples:
        acc.feed(t, e, p)
    return acc.joules, acc.source


# -----------------------------------------------------------------------------
# RAPL: the package zones of a powercap tree


@dataclass(frozen=True)
class RaplZone:
    name: str  # package-0
    path: Path  # .../intel-rapl:0
    max_range_uj: int | None


def rapl_zones(root: Path = RAPL_ROOT) -> tuple[list[RaplZone], str | None]:
    """The package zones (`intel-rapl:N`, `amd-rapl:N` named `package-*`; not their
    sub-zones, which the package already counts, nor `psys`) and, when none can be
    read, why, with the fix."""
    try:
        dirs = sorted(
            d
            for d in root.iterdir()
            if d.name.count(":") == 1 and d.name.split(":")[0] in ("intel-rapl", "amd-rapl")
        )
    except OSError:
        dirs = []
    zones, denied = [], []
    for d in dirs:
        try:
            name = (d / "name").read_text().strip()
        except OSError:
            name = d.name
        if not name.startswith("package"):
            continue
        try:
            int((d / "energy_uj").read_text())
        except PermissionError:
            denied.append(d)
            continue
        except (OSError, ValueError):
            continue
        try:
            rng: int | None = int((d / "max_energy_range_uj").read_text())
        except (OSError, ValueError):
            rng = None
        zones.append(RaplZone(name, d, rng))
    if zones:
        return zones, None
    if denied:
        return (
            [],
            f"RAPL not readable (permission; root only since Linux 5.10): {RAPL_PERMISSION_FIX}",
        )
    return [], (
        f"no RAPL package counters under {root} (not an Intel/AMD CPU, a virtual machine, "
        "or the intel_rapl_common module is not loaded: sudo modprobe intel_rapl_common)"
    )


def read_uj(zone: RaplZone) -> int | None:
    try:
        return int((zone.path / "energy_uj").read_text())
    except (OSError, ValueError):
        return None


# -----------------------------------------------------------------------------
# NVML: the GPUs a run uses


class Nvml:
    """The NVML readings the meter takes; every call answers None when it cannot."""

    def __init__(self, indices: Sequence[int] | None = None):
        self.handles: dict[int, Any] = {}
        self.error: str | None = None
        try:
            import pynvml  # lazy: only where the meter runs

            pynvml.nvmlInit()
            self._nvml: Any = pynvml
            n = pynvml.nvmlDeviceGetCount()
            for i in indices if indices is not None else range(n):
                if 0 <= i < n:
                    self.handles[i] = pynvml.nvmlDeviceGetHandleByIndex(i)
        except Exception as e:  # no driver, no library, no GPU: a reason, not a raise
            self.error = f"NVML not available ({type(e).__name__}: {e})"

    def energy_mj(self, i: int) -> int | None:
        try:
            return int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self.handles[i]))
        except Exception:
            return None

    def power_w(self, i: int) -> float | None:
        try:
            return self._nvml.nvmlDeviceGetPowerUsage(self.handles[i]) / 1e3
        except Exception:
            return None


def gpu_indices(local_world_size: int = 1, env: Mapping[str, str] | None = None) -> list[int]:
    """The NVML indices of the GPUs this node's ranks use: CUDA_VISIBLE_DEVICES (when it
    lists indices), else the first local_world_size devices."""
    e: Mapping[str, str] = os.environ if env is None else env
    vis = e.get("CUDA_VISIBLE_DEVICES")
    if vis:
        try:
            listed = [int(x) for x in vis.split(",") if x.strip()]
            return listed[: max(1, local_world_size)]
        except ValueError:
            pass  # UUIDs: take the first devices
    return list(range(max(1, local_world_size)))


# -----------------------------------------------------------------------------
# the record


@dataclass(frozen=True)
class Energy:
    """What a run used; the figures are None where they could not be measured."""

    wall_s: float
    gpu_j: float | None
    gpu_source: str | None  # how the GPU figure was measured
    gpu_note: str | None  # why there is no GPU figure, or what it covers
    cpu_j: float | None
    cpu_note: str | None
    tokens: int | None
    price_kwh: float | None
    measured_by: str  # trainer | cockpit
    total_j: float | None = field(default=None)
    kwh: float | None = field(default=None)
    j_per_token: float | None = field(default=None)
    cost: float | None = field(default=None)

    @classmethod
    def make(cls, **kw: Any) -> Energy:
        e = cls(**kw)
        parts = [x for x in (e.gpu_j, e.cpu_j) if x is not None]
        total = sum(parts) if parts else None
        kwh = total / J_PER_KWH if total is not None else None
        return cls(
            **kw,
            total_j=total,
            kwh=kwh,
            j_per_token=total / e.tokens if total is not None and e.tokens else None,
            cost=kwh * e.price_kwh if kwh is not None and e.price_kwh is not None else None,
        )

    def to_dict(self) -> dict:
        return asdict(self)


def price_from_env(env: dict | None = None) -> float | None:
    v = (os.environ if env is None else env).get(PRICE_ENV)
    try:
        return float(v) if v else None
    except ValueError:
        return None


def _num(d: dict, k: str) -> float | None:
    v = d.get(k)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def summary_line(d: dict) -> str:
    """One line for people: `0.0123 kWh (GPU 40.1 kJ, CPU 4.2 kJ), 0.52 J/token, cost 0.0037`."""
    kwh, gpu, cpu = _num(d, "kwh"), _num(d, "gpu_j"), _num(d, "cpu_j")
    if kwh is None:
        return "not measured: " + "; ".join(
            x for x in (d.get("gpu_note"), d.get("cpu_note")) if isinstance(x, str)
        )
    parts = [f"GPU {_joules(gpu)}" if gpu is not None else "GPU –"]
    parts.append(f"CPU {_joules(cpu)}" if cpu is not None else "CPU –")
    out = f"{kwh:.4g} kWh ({', '.join(parts)})"
    jpt, cost = _num(d, "j_per_token"), _num(d, "cost")
    if jpt is not None:
        out += f", {jpt:.3g} J/token"
    if cost is not None:
        out += f", cost {cost:.4g} (at {_num(d, 'price_kwh'):g}/kWh)"
    return out


def notes(d: dict) -> list[str]:
    """What the figure covers and what it misses, one sentence each."""
    out = []
    if isinstance(d.get("gpu_source"), str):
        out.append(
            f"GPU energy: {d['gpu_source']}" + (f"; {d['gpu_note']}" if d.get("gpu_note") else "")
        )
    elif isinstance(d.get("gpu_note"), str):
        out.append(f"GPU energy: {d['gpu_note']}")
    if isinstance(d.get("cpu_note"), str):
        out.append(f"CPU energy: {d['cpu_note']}")
    return out


def _joules(j: float | None) -> str:
    if j is None:
        return "–"
    for unit, scale in (("MJ", 1e6), ("kJ", 1e3)):
        if abs(j) >= scale:
            return f"{j / scale:.3g} {unit}"
    return f"{j:.3g} J"


# -----------------------------------------------------------------------------
# the meter


class EnergyMeter:
    """Reads RAPL and NVML every `every_s` on a daemon thread from start() to stop().

    `gpus`: NVML indices to measure; None measures none (a CPU run). `nvml` and
    `rapl_root` are for a test's recorded readings and fake sysfs tree."""

    def __init__(
        self,
        gpus: Sequence[int] | None,
        *,
        rapl_root: Path = RAPL_ROOT,
        nvml: Nvml | None = None,
        clock: Callable[[], float] = time.time,
        measured_by: str = "trainer",
    ):
        self.clock, self.measured_by = clock, measured_by
        self.zones, self.cpu_note = rapl_zones(rapl_root)
        self.rapl = {z.path: RaplAccumulator(z.max_range_uj) for z in self.zones}
        self.gpu_note: str | None = None
        self.nvml: Nvml | None = None
        if gpus is None or not list(gpus):
            self.gpu_note = "no GPU used"
        else:
            self.nvml = nvml if nvml is not None else Nvml(gpus)
            if self.nvml.error:
                self.gpu_note, self.nvml = self.nvml.error, None
            elif not self.nvml.handles:
                self.gpu_note, self.nvml = f"no GPU at NVML index {list(gpus)}", None
        self.gpus = {i: GpuAccumulator() for i in (self.nvml.handles if self.nvml else {})}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.t0: float | None = None
        self.t_last: float | None = None

    def sample(self) -> None:
        """One reading of every counter."""
        with self._lock:
            t = self.clock()
            if self.t0 is None:
                self.t0 = t
            self.t_last = t
            for z in self.zones:
                uj = read_uj(z)
                if uj is not None:
                    self.rapl[z.path].feed(uj)
            if self.nvml is not None:
                for i, acc in self.gpus.items():
                    acc.feed(t, self.nvml.energy_mj(i), self.nvml.power_w(i))

    def start(self, every_s: float = SAMPLE_EVERY_S) -> EnergyMeter:
        self.sample()

        def loop() -> None:
            while not self._stop.wait(every_s):
                self.sample()

        self._thread = threading.Thread(target=loop, name="energy-meter", daemon=True)
        self._thread.start()
        return self

    def stop(self, tokens: int | None = None, price_kwh: float | None = None) -> Energy:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self.sample()
        with self._lock:
            wall = (self.t_last or 0.0) - (self.t0 or 0.0)
            gpu_j: float | None = None
            sources = {a.source for a in self.gpus.values()} - {None}
            if self.gpus and sources:
                gpu_j = sum(a.joules for a in self.gpus.values())
            gpu_note = self.gpu_note
            if self.gpus:
                gpu_note = f"GPU {', '.join(str(i) for i in self.gpus)}"
            cpu_j = sum(a.joules for a in self.rapl.values()) if self.zones else None
            cpu_note = self.cpu_note
            if self.zones:
                cpu_note = f"{len(self.zones)} RAPL package zone(s), the whole package (other processes too)"
            return Energy.make(
                wall_s=wall,
                gpu_j=gpu_j,
                gpu_source=" / ".join(sorted(s for s in sources if s)) or None,
                gpu_note=gpu_note,
                cpu_j=cpu_j,
                cpu_note=cpu_note,
                tokens=tokens,
                price_kwh=price_kwh,
                measured_by=self.measured_by,
            )
