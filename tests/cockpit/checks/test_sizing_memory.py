"""Sizing before launch: memory a GPU by parallelism and activation checkpointing, which
configurations fit the GPUs (or a --gpus hint), and the probe's CUDA peak from torch's
own allocator figures, judged against free memory, fed figures where no GPU is."""

from __future__ import annotations

import pytest

from cockpit.checks.base import Context
from cockpit.checks.cost import (
    Layout,
    check_sizing,
    flops_per_token,
    judge_memory,
    memory_per_gpu,
    parse_gpus,
    probe_peak_mib,
)
from cockpit.checks.engine import StepResult, load_checklist
from core.config import load_profile

GIB = 1024.0  # MiB
D24 = Layout(n_params=1_381_498_880, n_layer=24, n_embd=2176, vocab=8192, context=2048, batch=8)


def test_fsdp_shards_the_state_and_checkpointing_shrinks_the_activations():
    ddp = memory_per_gpu(D24, 8, "ddp")
    fsdp = memory_per_gpu(D24, 8, "fsdp")
    # weights, gradients, buckets and AdamW: 20 bytes a parameter on every ddp rank;
    # fsdp: 16 bytes a parameter over 8 ranks
    assert ddp["weights_grads_optimizer"] == pytest.approx(20 * D24.n_params / 2**20, rel=1e-3)
    assert fsdp["weights_grads_optimizer"] == pytest.approx(16 * D24.n_params / 8 / 2**20, rel=1e-3)
    assert (
        memory_per_gpu(D24, 16, "fsdp")["weights_grads_optimizer"] < fsdp["weights_grads_optimizer"]
    )
    ac = memory_per_gpu(D24, 8, "fsdp", checkpointing=True)
    assert ac["activations"] < fsdp["activations"] / 5 and ac["total"] < 24 * GIB < ddp["total"]
    # ZeRO-2 keeps the whole bf16 model gathered: more than ZeRO-3's two blocks
    z2 = memory_per_gpu(D24, 8, "fsdp", reshard_after_forward=False)
    assert z2["gathered"] > 2 * D24.n_params / 2**20 > fsdp["gathered"]
    # Muon keeps one moment where AdamW keeps two
    assert (
        memory_per_gpu(D24, 1, "ddp", optimizer="muon")["weights_grads_optimizer"]
        < ddp["weights_grads_optimizer"]
    )


def test_gpu_hints_parse_and_a_bad_one_is_refused():
    assert parse_gpus("8x80GB") == (8, 80 * GIB)
    assert parse_gpus("4 x 24GiB") == (4, 24 * GIB) and parse_gpus("2x40") == (2, 40 * GIB)
    assert parse_gpus("eight GPUs") is None and parse_gpus("0x80GB") is None


def _sizing(gpus: str, *sets: str) -> StepResult:
    spec = next(s for s in load_checklist("pretrain").steps if s.id == "sizing")
    ctx = Context(load_profile("small-20m", list(sets)), profile_ref="small-20m", gpus=gpus)
    ctx.figures["dataset"] = {"bytes": 4e9}
    ctx.figures["compression"] = {"bytes_per_token": 4.0}
    r = StepResult("sizing", "sizing")
    check_sizing(spec, ctx, r, lambda *a: None)
    return r


def test_sizing_says_what_fits_the_hinted_gpus():
    ok = _sizing("8x80GB")
    assert ok.status == "PASS" and ok.figures["memory"]["fits"] and "fits" in ok.message
    assert ok.figures["memory"]["gpus"] == 8 and len(ok.figures["memory"]["table"]) == 4
    # a batch too big for a 24 GB card without checkpointing: a warning naming what fits
    big = _sizing("1x24GB", "train.batch_size=128")
    mem = big.figures["memory"]
    assert big.status == "WARN" and not mem["fits"] and "does NOT fit" in big.message
    assert "fits: ddp + activation checkpointing" in big.message
    assert _sizing("lots").status == "FAIL"


def test_the_probe_takes_torchs_reserved_peak_over_nvmls_zero_and_fails_when_it_does_not_fit():
    # inside a container NVML's per-process figure reads 0; torch's own figures do not
    res = {"peak_gpu_mib": 0.0, "cuda_max_alloc_mib": 61000.0, "cuda_max_reserved_mib": 70000.0}
    peak, src = probe_peak_mib(res, cuda=True)
    assert (peak, src) == (70000.0, "torch.cuda.max_memory_reserved")
    r = StepResult("probe", "probe")
    assert judge_memory(r, peak, free_mib=80000.0, margin=1.2)  # 84,000 > 80,000
    assert r.status == "FAIL" and "70,000 MiB x 1.2 margin exceeds the 80,000 MiB" in r.message
    assert not judge_memory(StepResult("probe", "probe"), peak, 90000.0, 1.2)
    assert probe_peak_mib({"peak_gpu_mib": 512.0}, cuda=True) == (512.0, "NVML per-process memory")
    assert probe_peak_mib({"peak_rss": 2**30}, cuda=False) == (1024.0, "peak RSS")


def test_the_probe_counts_flops_as_the_trainers_mfu_does():
    from core.model import GPT, GPTConfig

    p = load_profile("small-20m")
    m = GPT(GPTConfig(8192, 1024, 8, 6, 384))
    assert flops_per_token(p) == m.flops_per_token() > 6 * m.n_params()  # attention included
