"""Peak dense FLOP/s of GPUs by dtype, from the vendors' data sheets: the denominator of MFU.

A device name (as torch.cuda.get_device_name gives it) is matched by whole words after
normalising, never by substring: "NVIDIA L40" is not an L4, "A10G" is not an A10,
"H100 PCIe" is not an H100 SXM, "RTX 3090 Ti" is not an RTX 3090. A name that matches
no row, or more than one, has no peak: MFU is unknown rather than a guess. So does a
dtype a listed device has no figure for (bf16 on a V100).

Figures are dense (the data sheets' starred figures assume 2:4 structured sparsity and
are halved here) and, for fp16/bf16, with fp32 accumulation, which is what autocast's
matmuls use (GeForce cards run fp16-accumulate at twice that rate). `fp32` is the CUDA
cores' rate; `tf32` the tensor cores' rate for fp32 matmuls when torch allows TF32.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

T = 1e12


@dataclass(frozen=True)
class Peak:
    device: str  # the row's name, as the data sheet names it
    needs: frozenset[str]  # every one of these words is in the normalised name
    bars: frozenset[str]  # none of these is
    flops: dict[str, float]  # dtype (bf16, fp16, tf32, fp32) -> FLOP/s, dense
    source: str


def _row(device: str, needs: str, bars: str, bf16: float, fp16: float, tf32: float | None,
         fp32: float, source: str) -> Peak:  # fmt: skip
    flops = {"bf16": bf16 * T, "fp16": fp16 * T, "fp32": fp32 * T}
    if tf32 is not None:
        flops["tf32"] = tf32 * T
    if bf16 == 0:
        del flops["bf16"]
    return Peak(device, frozenset(needs.split()), frozenset(bars.split()), flops, source)


# device, words it needs, words it must not have, bf16, fp16, tf32, fp32 (TFLOP/s, dense)
PEAKS: tuple[Peak, ...] = (
    _row("H100 SXM", "H100", "PCIE NVL", 989.5, 989.5, 494.5, 67,
         "NVIDIA H100 data sheet (SXM): BF16 1979*, TF32 989* TFLOPS (*sparse), FP32 67"),
    _row("H100 PCIe", "H100 PCIE", "", 756.5, 756.5, 378, 51,
         "NVIDIA H100 data sheet (PCIe): BF16 1513*, TF32 756* (*sparse), FP32 51"),
    _row("H100 NVL", "H100 NVL", "", 835.5, 835.5, 417.5, 60,
         "NVIDIA H100 NVL data sheet: BF16 1671*, TF32 835* (*sparse), FP32 60"),
    _row("H200 SXM", "H200", "NVL", 989.5, 989.5, 494.5, 67,
         "NVIDIA H200 data sheet (SXM): BF16 1979*, TF32 989* (*sparse), FP32 67"),
    _row("H200 NVL", "H200 NVL", "", 835.5, 835.5, 417.5, 60,
         "NVIDIA H200 data sheet (NVL): BF16 1671*, TF32 835* (*sparse), FP32 60"),
    _row("GH200", "GH200", "", 989.5, 989.5, 494.5, 67,
         "NVIDIA GH200 data sheet: BF16 1979*, TF32 989* (*sparse), FP32 67"),
    _row("B200", "B200", "", 2250, 2250, 1125, 75,
         "NVIDIA HGX B200 data sheet, 8 GPUs: BF16 36 PF*, TF32 18 PF* (*sparse), FP32 600 TF; per GPU"),
    _row("A100 (40/80 GB, SXM4 and PCIe)", "A100", "", 312, 312, 156, 19.5,
         "NVIDIA A100 data sheet (all four variants): BF16 312, TF32 156, FP32 19.5"),
    _row("A40", "A40", "", 149.7, 149.7, 74.8, 37.4,
         "NVIDIA A40 data sheet: BF16 149.7, TF32 74.8, FP32 37.4"),
    _row("A30", "A30", "", 165, 165, 82, 10.3,
         "NVIDIA A30 data sheet: BF16 165, TF32 82, FP32 10.3"),
    _row("A10", "A10", "", 125, 125, 62.5, 31.2,
         "NVIDIA A10 data sheet: BF16 125, TF32 62.5, FP32 31.2"),
    _row("L40S", "L40S", "", 362.05, 362.05, 183, 91.6,
         "NVIDIA L40S data sheet: BF16 362.05, TF32 183, FP32 91.6"),
    _row("L40", "L40", "", 181.05, 181.05, 90.5, 90.5,
         "NVIDIA L40 data sheet: BF16 181.05, TF32 90.5, FP32 90.5"),
    _row("L4", "L4", "", 121, 121, 60, 30.3,
         "NVIDIA L4 data sheet: BF16 242*, TF32 120* (*sparse), FP32 30.3"),
    _row("RTX A6000", "RTX A6000", "", 154.8, 154.8, 77.4, 38.7,
         "NVIDIA RTX A6000 data sheet: tensor 309.7* TFLOPS (FP16, *sparse), FP32 38.7; TF32 at half FP16 (GA102 whitepaper)"),
    _row("RTX 6000 Ada", "RTX 6000 ADA", "", 364.2, 364.2, 182.1, 91.1,
         "NVIDIA RTX 6000 Ada data sheet: tensor 1457* TFLOPS (FP8, *sparse), FP32 91.1; BF16 at half FP8"),
    _row("GeForce RTX 3090", "RTX 3090", "TI LAPTOP MOBILE", 71, 71, 35.6, 35.6,
         "NVIDIA Ampere GA102 whitepaper: RTX 3090 FP16/BF16 with FP32 accumulate 71, TF32 35.6"),
    _row("GeForce RTX 4090", "RTX 4090", "D LAPTOP MOBILE", 165.2, 165.2, 82.6, 82.6,
         "NVIDIA Ada Lovelace whitepaper: RTX 4090 FP16/BF16 with FP32 accumulate 165.2, TF32 82.6"),
    _row("GeForce RTX 5090", "RTX 5090", "D LAPTOP MOBILE", 209.5, 209.5, 104.8, 104.8,
         "NVIDIA Blackwell GB202 whitepaper: RTX 5090 FP16/BF16 with FP32 accumulate 209.5, TF32 104.8"),
    _row("V100 SXM2", "V100", "PCIE V100S", 0, 125, None, 15.7,
         "NVIDIA V100 data sheet (SXM2): tensor 125 (FP16), FP32 15.7; no bf16, no TF32"),
    _row("V100 PCIe", "V100 PCIE", "", 0, 112, None, 14,
         "NVIDIA V100 data sheet (PCIe): tensor 112 (FP16), FP32 14; no bf16, no TF32"),
    _row("T4", "T4", "", 0, 65, None, 8.1,
         "NVIDIA T4 data sheet: mixed precision 65 (FP16), FP32 8.1; no bf16, no TF32"),
)  # fmt: skip

# words a product name carries that say nothing about the part: vendor and family
_NOISE = {"NVIDIA", "TESLA", "GEFORCE", "QUADRO", "GENERATION"}


def words(name: str) -> frozenset[str]:
    """The normalised words of a device name: upper case, split at spaces, '-' and '_'
    ('A100-SXM4-80GB' -> A100 SXM4 80GB), vendor and family words dropped."""
    return frozenset(w for w in re.split(r"[\s\-_/]+", name.upper()) if w and w not in _NOISE)


def lookup(name: str) -> Peak | None:
    """The one row a device name matches; None when it matches none or several."""
    w = words(name)
    hits = [p for p in PEAKS if p.needs <= w and not (p.bars & w)]
    return hits[0] if len(hits) == 1 else None


DTYPES = {"bfloat16": "bf16", "float16": "fp16", "tf32": "tf32", "float32": "fp32"}


def gpu_peak(name: str, dtype: str) -> tuple[float, str]:
    """(FLOP/s, where it came from) for a device and a dtype (bf16, fp16, tf32, fp32, or
    torch's names for them); (0.0, why not) when the table cannot say."""
    key = DTYPES.get(dtype, dtype)
    row = lookup(name)
    if row is None:
        return (
            0.0,
            f"{name}: not in the peak table (core/peaks.py), MFU unknown; set train.peak_flops",
        )
    if key not in row.flops:
        return 0.0, f"{name}: {row.device} has no {key} figure, MFU unknown; set train.peak_flops"
    return row.flops[key], f"{name}: {row.device} {key} dense, {row.source}"
