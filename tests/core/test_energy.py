"""Energy (core/energy.py): recorded NVML and RAPL readings, including a counter wrap
and a missing counter; a fake powercap tree read from real files; this machine's
own RAPL files when it has them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.energy import (
    RAPL_ROOT,
    Energy,
    EnergyMeter,
    gpu_energy_j,
    gpu_indices,
    rapl_energy_j,
    rapl_zones,
    summary_line,
)

# -----------------------------------------------------------------------------
# recorded readings

# A package counter read every 10 s at ~65 W, wrapping at max_energy_range_uj
# (262143328850 µJ on a typical Intel part) between the 2nd and 3rd reading.
MAX = 262_143_328_850
RAPL_WRAP = [261_000_000_000, 261_650_000_000, 156_671_150, 806_671_150, 1_456_671_150]


def test_a_rapl_counter_wrap_is_counted_not_lost():
    j = rapl_energy_j(RAPL_WRAP, MAX)
    assert j == pytest.approx((MAX - 261_000_000_000 + 1_456_671_150) / 1e6)
    assert j == pytest.approx(2600.0, rel=1e-3)  # 4 spans of 10 s at 65 W


def test_a_rapl_fall_with_no_known_range_drops_the_span_rather_than_guess():
    assert rapl_energy_j([1_000_000, 3_000_000, 500_000, 1_500_000], None) == pytest.approx(3.0)


# NVML: (t, total energy mJ or None, power W or None): a GPU whose counter answers
# at first, then stops answering (a missing counter), covered by its power draw.
GPU = [(0.0, 1_000_000, 250.0), (10.0, 3_500_000, 250.0), (20.0, None, 300.0), (30.0, None, 300.0)]


def test_gpu_energy_from_the_counter_and_power_times_time_where_it_is_missing():
    j, how = gpu_energy_j(GPU)
    assert j == pytest.approx(2500 + 275 * 10 + 300 * 10)
    assert how == "NVML energy counter, power × time where it was missing"
    j, how = gpu_energy_j([(0.0, None, 100.0), (5.0, None, 200.0)])
    assert (j, how) == (pytest.approx(750.0), "power × time (no energy counter)")
    assert gpu_energy_j([(0.0, 10, None), (1.0, 20_010, None)]) == (20.0, "NVML energy counter")
    assert gpu_energy_j([(0.0, None, None), (1.0, None, None)]) == (0.0, None)


def test_the_record_gives_kwh_joules_per_token_and_cost():
    e = Energy.make(
        wall_s=60, gpu_j=3.0e6, gpu_source="NVML energy counter", gpu_note="GPU 0",
        cpu_j=0.6e6, cpu_note="1 RAPL package zone(s)", tokens=1_200_000, price_kwh=0.3,
        measured_by="trainer",
    )  # fmt: skip
    assert e.kwh == pytest.approx(1.0) and e.j_per_token == pytest.approx(3.0)
    assert e.cost == pytest.approx(0.3)
    assert summary_line(e.to_dict()) == (
        "1 kWh (GPU 3 MJ, CPU 600 kJ), 3 J/token, cost 0.3 (at 0.3/kWh)"
    )


def test_gpu_indices_follow_cuda_visible_devices():
    assert gpu_indices(2, {}) == [0, 1]
    assert gpu_indices(1, {"CUDA_VISIBLE_DEVICES": "3,5"}) == [3]
    assert gpu_indices(2, {"CUDA_VISIBLE_DEVICES": "GPU-abc"}) == [0, 1]


# -----------------------------------------------------------------------------
# a fake powercap tree, read from real files


def zone(root: Path, name: str, label: str, uj: int, rng: int | None = MAX) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "name").write_text(label + "\n")
    (d / "energy_uj").write_text(f"{uj}\n")
    if rng is not None:
        (d / "max_energy_range_uj").write_text(f"{rng}\n")
    return d


class Recorded:
    """NVML as recorded: each call answers the next reading of a GPU."""

    def __init__(self, readings: dict[int, list[tuple[int | None, float | None]]]):
        self.handles = dict.fromkeys(readings)
        self.error = None
        self.readings = {i: iter(r) for i, r in readings.items()}
        self._now: dict[int, tuple[int | None, float | None]] = {}

    def energy_mj(self, i: int) -> int | None:
        self._now[i] = next(self.readings[i])
        return self._now[i][0]

    def power_w(self, i: int) -> float | None:
        return self._now[i][1]


def test_the_meter_reads_package_zones_only_across_a_wrap(tmp_path):
    pkg = zone(tmp_path, "intel-rapl:0", "package-0", 262_000_000_000)
    zone(tmp_path, "intel-rapl:0:0", "core", 5)  # inside the package: not counted twice
    zone(tmp_path, "intel-rapl:1", "psys", 7)  # the platform: counts the package again
    amd = zone(tmp_path, "amd-rapl:1", "package-1", 1_000_000, rng=None)
    clock = iter([0.0, 10.0, 20.0, 30.0]).__next__
    gpu = Recorded({0: [(1_000, 100.0), (1_001_000, 100.0), (None, 150.0)]})
    m = EnergyMeter([0], rapl_root=tmp_path, nvml=gpu, clock=clock)  # type: ignore[arg-type]
    assert [z.name for z in m.zones] == ["package-1", "package-0"]
    m.sample()
    (pkg / "energy_uj").write_text("500000000\n")  # wrapped
    (amd / "energy_uj").write_text("3000000\n")
    m.sample()
    e = m.stop(tokens=1000, price_kwh=0.25)
    assert e.cpu_j == pytest.approx((MAX - 262_000_000_000 + 500_000_000) / 1e6 + 2.0)
    assert e.gpu_j == pytest.approx(1000.0 + 125.0 * 10)
    assert e.gpu_source == "NVML energy counter, power × time where it was missing"
    assert e.wall_s == 20.0 and e.j_per_token == pytest.approx(e.total_j / 1000)
    assert e.cost == pytest.approx(e.kwh * 0.25)


def test_no_rapl_says_so_with_the_fix(tmp_path):
    zones, why = rapl_zones(tmp_path / "missing")
    assert zones == [] and why is not None and "no RAPL package counters" in why
    e = EnergyMeter(None, rapl_root=tmp_path).start(every_s=60).stop(tokens=10)
    assert e.kwh is None and e.gpu_note == "no GPU used" and "modprobe" in (e.cpu_note or "")
    assert summary_line(e.to_dict()).startswith("not measured: no GPU used; no RAPL")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads energy_uj whatever its mode")
def test_an_unreadable_rapl_counter_says_how_to_allow_it(tmp_path):
    d = zone(tmp_path, "intel-rapl:0", "package-0", 5)
    (d / "energy_uj").chmod(0o200)
    zones, why = rapl_zones(tmp_path)
    assert zones == [] and "RAPL not readable (permission" in (why or "")
    assert "sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj" in (why or "")


def test_this_machines_own_rapl_files():
    zones, why = rapl_zones(RAPL_ROOT)
    if not zones:
        pytest.skip(f"this machine: {why}")
    m = EnergyMeter(None)
    m.sample()
    e = m.stop()
    assert e.cpu_j is not None and e.cpu_j >= 0


def test_report_md_and_result_json_carry_the_energy(tmp_path):
    from core.config import Profile
    from core.report import write_report, write_result
    from core.runstate import RunProgress

    e = Energy.make(
        wall_s=60, gpu_j=None, gpu_source=None, gpu_note="no GPU used", cpu_j=7200.0,
        cpu_note="1 RAPL package zone(s), the whole package (other processes too)",
        tokens=2400, price_kwh=0.3, measured_by="trainer",
    ).to_dict()  # fmt: skip
    prog, summary = RunProgress(step=10), {"tokens_per_step": 240}
    write_report(tmp_path, Profile(name="t"), "completed", "done", prog, 60.0, summary, {}, e)
    text = (tmp_path / "report.md").read_text()
    assert "| energy | 0.002 kWh (GPU –, CPU 7.2 kJ), 3 J/token, cost 0.0006 (at 0.3/kWh) |" in text
    assert "| energy cost | 0.0006 at 0.3 per kWh |" in text
    assert "- GPU energy: no GPU used" in text and "- CPU energy: 1 RAPL package zone(s)" in text
    write_result(
        tmp_path, Profile(name="t"), "completed", "done", prog, 60.0, summary, {"energy": e}
    )
    import json

    assert json.loads((tmp_path / "result.json").read_text())["energy"]["kwh"] == e["kwh"]
