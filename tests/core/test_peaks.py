"""The peak behind MFU: one row per device, matched by whole words (never the first
substring hit), the profile's train.peak_flops over the table, unknown never guessed."""

from __future__ import annotations

import pytest
import yaml

from core.peaks import PEAKS, gpu_peak, lookup, words
from tests.conftest import TINY_WALKS, events, run_core, sets

# names as torch.cuda.get_device_name gives them -> the row they are
NAMES = {
    "NVIDIA H100 80GB HBM3": "H100 SXM",
    "NVIDIA H100 PCIe": "H100 PCIe",
    "NVIDIA H100 NVL": "H100 NVL",
    "NVIDIA H200": "H200 SXM",
    "NVIDIA H200 NVL": "H200 NVL",
    "NVIDIA A100-SXM4-80GB": "A100 (40/80 GB, SXM4 and PCIe)",
    "NVIDIA A100-SXM4-40GB": "A100 (40/80 GB, SXM4 and PCIe)",
    "NVIDIA A100-PCIE-40GB": "A100 (40/80 GB, SXM4 and PCIe)",
    "NVIDIA A100 80GB PCIe": "A100 (40/80 GB, SXM4 and PCIe)",
    "NVIDIA L40S": "L40S",
    "NVIDIA L40": "L40",
    "NVIDIA L4": "L4",
    "NVIDIA A10": "A10",
    "NVIDIA A40": "A40",
    "NVIDIA GeForce RTX 3090": "GeForce RTX 3090",
    "NVIDIA GeForce RTX 4090": "GeForce RTX 4090",
    "NVIDIA GeForce RTX 5090": "GeForce RTX 5090",
    "NVIDIA RTX A6000": "RTX A6000",
    "NVIDIA RTX 6000 Ada Generation": "RTX 6000 Ada",
    "Tesla V100-SXM2-16GB": "V100 SXM2",
    "Tesla T4": "T4",
}


@pytest.mark.parametrize("name", sorted(NAMES))
def test_each_device_name_gets_its_own_row(name):
    row = lookup(name)
    assert row is not None and row.device == NAMES[name]


def test_near_names_do_not_borrow_a_neighbours_peak():
    # the old table matched by substring, first hit: each of these got another card's figure
    assert gpu_peak("NVIDIA L40", "bfloat16")[0] == 181.05e12  # not L4's 121
    assert gpu_peak("NVIDIA H100 PCIe", "bfloat16")[0] == 756.5e12  # not SXM's 989.5
    assert gpu_peak("NVIDIA L4", "bfloat16")[0] == 121e12
    # no vendor data sheet for these: unknown, never a neighbour's figure
    for name in ("NVIDIA A10G", "NVIDIA GeForce RTX 3090 Ti", "NVIDIA GeForce RTX 4090 D",
                 "NVIDIA H800", "NVIDIA GeForce RTX 4090 Laptop GPU", "Some Future GPU"):  # fmt: skip
        peak, why = gpu_peak(name, "bfloat16")
        assert peak == 0.0 and "MFU unknown" in why, name


def test_the_dtype_picks_the_figure_and_a_missing_one_is_unknown():
    assert gpu_peak("NVIDIA H100 80GB HBM3", "bfloat16")[0] == 989.5e12
    assert gpu_peak("NVIDIA H100 80GB HBM3", "tf32")[0] == 494.5e12
    assert gpu_peak("NVIDIA H100 80GB HBM3", "float32")[0] == 67e12
    peak, why = gpu_peak("Tesla V100-SXM2-16GB", "bfloat16")  # Volta has no bf16
    assert peak == 0.0 and "no bf16" in why
    _, src = gpu_peak("NVIDIA A100-SXM4-80GB", "bfloat16")
    assert "A100 data sheet" in src  # says where the figure came from


def test_no_listed_name_matches_two_rows():
    for row in PEAKS:
        assert row.source and all(v > 0 for v in row.flops.values())
    for name in NAMES:
        w = words(name)
        assert sum(1 for r in PEAKS if r.needs <= w and not (r.bars & w)) == 1, name


@pytest.mark.heavy  # a real trainer subprocess: 10-30 s on a busy 2-core box
def test_train_peak_flops_overrides_and_is_recorded(tmp_path):
    """The profile's peak is the one MFU divides by, and run.yaml and run_start say so."""
    rd = tmp_path / "run"
    cfg = TINY_WALKS + ["train.max_steps=5", "train.epochs=null", "eval.every_epoch=false",
                        "checkpoint.every_epoch=false", "gate.metrics={}", "train.peak_flops=2e+12"]  # fmt: skip
    run_core("--run-dir", str(rd), *sets(*cfg), check_rc=0)
    env = yaml.safe_load((rd / "run.yaml").read_text())["environment"]
    assert env["peak_flops"] == 2e12 and "train.peak_flops" in env["peak_flops_source"]
    ev = events(rd)
    start = next(e for e in ev if e["type"] == "run_start")
    assert start["peak_flops"] == 2e12 and "train.peak_flops" in start["peak_source"]
    from core.model import GPT, GPTConfig  # the core's one FLOP model

    n = yaml.safe_load((rd / "run.yaml").read_text())["summary"]
    m = GPT(GPTConfig(n["vocab_size"], 16, 1, 2, 32))
    for e in (e for e in ev if e["type"] == "step"):
        assert e["mfu"] == pytest.approx(m.flops_per_token() * e["tokens_per_s"] / 2e12, rel=1e-9)
