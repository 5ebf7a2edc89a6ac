"""A run's energy, for the cockpit: measured here for a command it wraps (core's
meter, run by the cockpit), read back from the run directory otherwise.

Our trainer writes its own figure into `result.json` (`energy`); for a wrapped
command the cockpit writes `energy.json` (the same record). Never raises.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from core.checkpoint import atomic_write_text
from core.energy import J_PER_KWH, EnergyMeter

ENERGY_FILE = "energy.json"


def meter_for_wrapped() -> EnergyMeter:
    """The cockpit's meter for a wrapped command: the GPUs CUDA_VISIBLE_DEVICES names (it
    is passed on to the command), else every GPU of this machine; RAPL as the trainer
    reads it."""
    vis = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus: list[int] | None = None
    if vis is not None:
        try:
            gpus = [int(x) for x in vis.split(",") if x.strip()]
        except ValueError:
            gpus = None
    return EnergyMeter(gpus if gpus is not None else _all_gpus(), measured_by="cockpit")


def _all_gpus() -> list[int] | None:
    try:
        import pynvml  # lazy: the cockpit's sampler imports it too

        pynvml.nvmlInit()
        n = pynvml.nvmlDeviceGetCount()
        return list(range(n)) or None
    except Exception:
        return None


def write_energy(run_dir: Path, energy: dict) -> None:
    try:
        atomic_write_text(run_dir / ENERGY_FILE, json.dumps(energy, indent=1) + "\n")
    except OSError:
        pass  # a full disk: the summary still shows it


def read_energy(run_dir: Path, price_kwh: float | None = None) -> dict | None:
    """The run's energy record: result.json's, else energy.json's; with the cost filled
    in from `price_kwh` when the record has none."""
    d: dict | None = None
    for name, key in (("result.json", "energy"), (ENERGY_FILE, None)):
        try:
            got = json.loads((run_dir / name).read_text())
        except (OSError, ValueError):
            continue
        got = got.get(key) if key and isinstance(got, dict) else got
        if isinstance(got, dict):
            d = got
            break
    if d is None:
        return None
    return with_price(d, price_kwh)


def with_price(d: dict, price_kwh: float | None) -> dict:
    kwh = d.get("kwh")
    if price_kwh is None or d.get("cost") is not None or not isinstance(kwh, int | float):
        return d
    return dict(d, price_kwh=price_kwh, cost=kwh * price_kwh)


def kwh_of(d: dict | None) -> float | None:
    if not d:
        return None
    k = d.get("kwh")
    if isinstance(k, int | float):
        return float(k)
    j = d.get("total_j")
    return j / J_PER_KWH if isinstance(j, int | float) else None
