"""Where a run's energy shows: the final summary, `cockpit runs` (result.json's
record from our trainer, energy.json's from a wrapped command), with the cost."""

from __future__ import annotations

import json

import pytest

from cockpit.collect.energy import read_energy
from cockpit.fmt import final_rows
from cockpit.model.runmodel import RunModel
from cockpit.model.runs import summarize
from cockpit.model.view import ViewBuilder
from core.energy import Energy


def energy_record(price: float | None = None) -> dict:
    return Energy.make(
        wall_s=30, gpu_j=None, gpu_source=None, gpu_note="no GPU used", cpu_j=36_000.0,
        cpu_note="1 RAPL package zone(s)", tokens=12_000, price_kwh=price, measured_by="cockpit",
    ).to_dict()  # fmt: skip


def test_the_final_summary_and_the_runs_list_show_the_energy(tmp_path):
    run = tmp_path / "20260101-000000-x"
    run.mkdir()
    (run / "events.jsonl").write_text(
        json.dumps({"v": 1, "t": 1.0, "type": "run_end", "status": "completed", "step": 3}) + "\n"
    )
    (run / "energy.json").write_text(json.dumps(energy_record()))
    got = read_energy(run, price_kwh=0.5)
    assert got is not None and got["cost"] == pytest.approx(0.01 * 0.5)
    m = RunModel(run_dir=run, run_id=run.name, status="completed", energy=got)
    rows = dict(final_rows(ViewBuilder().build(m, 2.0)))
    assert rows["energy"] == "0.01 kWh (GPU –, CPU 36 kJ), 3 J/token, cost 0.005 (at 0.5/kWh)"
    assert summarize(run).energy_kwh == pytest.approx(0.01)
    # our trainer's record in result.json comes first
    (run / "result.json").write_text(json.dumps({"energy": dict(energy_record(), kwh=0.02)}))
    assert summarize(run).energy_kwh == pytest.approx(0.02)
