"""The throughput figures MFU is read with: the peak it divides by (from run_start) and
tokens/s per GPU (the run's tokens/s over its world size), computed once in the model."""

from __future__ import annotations

import pytest

from cockpit.model.runmodel import RunModel
from cockpit.session import Session
from tests.cockpit.ui.tuikit import GPU


def test_a_two_gpu_run_shows_its_peak_and_tokens_a_second_per_gpu():
    s = Session(GPU, None, notify=False)
    s.replay()
    f = s.model.figures()
    assert f.peak_flops == 989.5e12 and f.peak_source and "H100 SXM bf16 dense" in f.peak_source
    assert f.tokens_per_s is not None
    assert f.tokens_per_s_device == pytest.approx(f.tokens_per_s / 2)
    # the recorded MFU is what that peak gives: FLOPs a token x tokens/s / (2 x peak)
    assert f.mfu == pytest.approx(141_557_760 * f.tokens_per_s / (2 * f.peak_flops), abs=1e-4)


def test_a_run_that_names_no_peak_has_none():
    m = RunModel()
    m.feed({"type": "run_start", "world_size": 4, "device": "cuda"})
    m.feed({"type": "step", "step": 1, "tokens_per_s": 4000.0, "mfu": None})
    f = m.figures()
    assert f.peak_flops is None and f.mfu is None and f.tokens_per_s_device == 1000.0
