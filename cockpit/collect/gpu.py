"""NVML sampler: what each NVIDIA GPU is doing, and how much of it the watched pids hold.

Display-free like cockpit/collect/sampling.py: `sample()` returns a timestamped frozen
snapshot and never raises. "No GPU" is a normal state (a laptop, a CPU box, a
container without the driver): `available` is False and `reason` says why, in
words a user can act on.

    gs = GpuSampler()
    snap = gs.sample(pids=[trainer_pid, *worker_pids])

Every NVML call goes through `_nv`, which turns any error into a default, so one
unsupported query (power on a consumer card, clocks on a MIG slice) blanks one
field, not the snapshot. NVML is initialised lazily and once; a failed init is
retried at most every 30 s. Query rounds are rate-limited to one per
`min_interval_s` (a round costs a few ms per device and the readings behind it
refresh about that often anyway). Never spawns nvidia-smi.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cockpit.collect.sampling import MIB, plain

try:
    import pynvml
except ImportError:  # nvidia-ml-py is a dependency, but a broken env should still say why
    pynvml = None

INIT_RETRY_S = 30.0

# clock-event (throttle) reason bits, as in nvml.h; GpuIdle (0x1) is left out on purpose:
# an idle GPU clocking down is not a problem to show
THROTTLE = {
    0x2: "applications clocks setting",
    0x4: "power cap",
    0x8: "hw slowdown",
    0x10: "sync boost",
    0x20: "thermal (sw slowdown)",
    0x40: "thermal (hw slowdown)",
    0x80: "power brake (hw slowdown)",
    0x100: "display clock setting",
    0x200: "board limit",
    0x400: "reliability",
}


def _nv(
    fn: Callable[..., Any] | None, *args: Any, default: Any = None, err: list | None = None
) -> Any:
    """The one door to NVML: any failure (NVMLError, a function the driver lacks, a
    missing library) returns `default`; `err`, when given, collects the exception."""
    try:
        if fn is None:  # getattr's default: a function this pynvml lacks
            return default
        return fn(*args)
    except Exception as e:
        if err is not None:
            err.append(e)
        return default


def _s(x: object) -> str:
    return x.decode(errors="replace") if isinstance(x, bytes) else str(x)


def _reason(e: BaseException) -> str:
    """NVML's init failure in words a user can act on."""
    value = getattr(e, "value", None)
    if value == getattr(pynvml, "NVML_ERROR_LIBRARY_NOT_FOUND", 12):
        return "NVML library not found (no NVIDIA driver)"
    if value == getattr(pynvml, "NVML_ERROR_DRIVER_NOT_LOADED", 9):
        return "NVIDIA driver not loaded"
    if value == getattr(pynvml, "NVML_ERROR_NO_PERMISSION", 4):
        return "NVML error: insufficient permissions"
    return f"NVML error: {e}"


# -----------------------------------------------------------------------------
# snapshots


@dataclass(frozen=True, slots=True)
class GpuDevice:
    index: int
    name: str
    uuid: str
    util_pct: float | None  # % of the last sample period a kernel ran
    mem_util_pct: float | None  # % of it memory was read or written
    mem_used_mib: float | None
    mem_total_mib: float | None
    temp_c: float | None
    power_w: float | None
    power_limit_w: float | None  # the enforced limit
    sm_clock_mhz: int | None
    mem_clock_mhz: int | None
    throttle: tuple[str, ...]  # active clock-throttle reasons, idle excluded
    proc_mem_mib: float | None  # held on this device by the watched pids (None: not asked)

    def to_dict(self) -> dict:
        return plain(self)


@dataclass(frozen=True, slots=True)
class GpuSnapshot:
    t: float
    available: bool
    reason: str | None  # why not available, e.g. "no NVIDIA GPU"
    driver: str | None
    devices: tuple[GpuDevice, ...]

    def to_dict(self) -> dict:
        return plain(self)


# -----------------------------------------------------------------------------
# sampler


class GpuSampler:
    """`sample(pids)` runs at most one query round per `min_interval_s`; a call sooner
    returns the cached snapshot (whatever pids it is given). `queries` counts the rounds
    run, `init_attempts` the nvmlInit tries."""

    def __init__(self, *, min_interval_s: float = 1.0):
        self.min_interval_s = min_interval_s
        self.queries = 0  # query rounds run (not served from the cache); tests check the rate
        self.init_attempts = 0
        self._init_ok = False
        self._init_t = -INIT_RETRY_S
        self._reason: str | None = None
        self._driver: str | None = None
        self._devs: list[
            tuple[int, Any, str, str]
        ] = []  # (index, handle, name, uuid), fixed after init
        self._last: GpuSnapshot | None = None
        self._last_t = 0.0  # monotonic time of the last round

    def _init(self) -> None:
        now = time.monotonic()
        if self._init_ok or now - self._init_t < INIT_RETRY_S:
            return
        self._init_t = now
        self.init_attempts += 1
        if pynvml is None:
            self._reason = "nvidia-ml-py (pynvml) not installed"
            return
        err: list = []
        _nv(pynvml.nvmlInit, err=err)
        if err:
            self._reason = _reason(err[0])
            return
        self._init_ok = True
        self._driver = _s(_nv(pynvml.nvmlSystemGetDriverVersion, default="")) or None
        for i in range(_nv(pynvml.nvmlDeviceGetCount, default=0)):
            h = _nv(pynvml.nvmlDeviceGetHandleByIndex, i)
            if h is not None:
                name = _s(_nv(pynvml.nvmlDeviceGetName, h, default="?"))
                uuid = _s(_nv(pynvml.nvmlDeviceGetUUID, h, default=""))
                self._devs.append((i, h, name, uuid))  # a device we may not open is left out
        self._reason = None if self._devs else "no NVIDIA GPU"

    def sample(self, pids: Iterable[int] = ()) -> GpuSnapshot:
        now = time.monotonic()
        if self._last is not None and now - self._last_t < self.min_interval_s:
            return self._last
        self._last_t = now
        self.queries += 1
        try:
            self._init()
            if not self._devs:
                snap = GpuSnapshot(time.time(), False, self._reason, self._driver, ())
            else:
                want = set(pids)
                devs = tuple(self._device(*d, want) for d in self._devs)
                snap = GpuSnapshot(time.time(), True, None, self._driver, devs)
        except Exception as e:  # never raise into the UI
            snap = GpuSnapshot(time.time(), False, f"NVML error: {e!r}", self._driver, ())
        self._last = snap
        return snap

    def _device(self, index: int, h: Any, name: str, uuid: str, pids: set[int]) -> GpuDevice:
        nv = pynvml
        util = _nv(nv.nvmlDeviceGetUtilizationRates, h)
        mem = _nv(nv.nvmlDeviceGetMemoryInfo, h)
        # the versioned calls first, the deprecated ones for older drivers (a name this
        # pynvml lacks is getattr None, which _nv turns into None like any failure)
        temp = _nv(getattr(nv, "nvmlDeviceGetTemperatureV", None), h, nv.NVML_TEMPERATURE_GPU)
        if temp is None:
            temp = _nv(nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU)
        bits = _nv(getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None), h)
        if bits is None:
            bits = _nv(nv.nvmlDeviceGetCurrentClocksThrottleReasons, h)
        power_mw = _nv(nv.nvmlDeviceGetPowerUsage, h)
        limit_mw = _nv(nv.nvmlDeviceGetEnforcedPowerLimit, h)
        proc_mem = None
        if pids:
            procs = _nv(nv.nvmlDeviceGetComputeRunningProcesses, h)
            if procs is None:  # pynvml newer than the driver: the v3 entry point is missing
                procs = _nv(getattr(nv, "nvmlDeviceGetComputeRunningProcesses_v2", None), h)
            if procs is not None:
                # usedGpuMemory is None where the driver cannot tell (WDDM); in a container
                # NVML reports host pids, so nothing matches and this reads 0
                proc_mem = (
                    sum((p.usedGpuMemory or 0) for p in procs if getattr(p, "pid", None) in pids)
                    / MIB
                )
        return GpuDevice(
            index=index,
            name=name,
            uuid=uuid,
            util_pct=None if util is None else float(util.gpu),
            mem_util_pct=None if util is None else float(util.memory),
            mem_used_mib=None if mem is None else mem.used / MIB,
            mem_total_mib=None if mem is None else mem.total / MIB,
            temp_c=None if temp is None else float(temp),
            power_w=None if power_mw is None else power_mw / 1000,
            power_limit_w=None if limit_mw is None else limit_mw / 1000,
            sm_clock_mhz=_nv(nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_SM),
            mem_clock_mhz=_nv(nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_MEM),
            throttle=tuple(v for k, v in THROTTLE.items() if bits and bits & k),
            proc_mem_mib=proc_mem,
        )

    def close(self) -> None:
        if self._init_ok:
            _nv(pynvml.nvmlShutdown)
        self._init_ok, self._devs, self._init_t = False, [], -INIT_RETRY_S
