"""Generation speed: the KV cache against recomputing the window for every token.

For each shape it prints generated tokens/s with and without the cache, and the
cost of generating N tokens against one forward pass over N tokens of the same
batch (the issue's target: greedy-generating 252 tokens for 100 prompts at 4
layers x 256 wide, context 256, costs <= 3x one forward over 100 x 256 tokens).
Both paths run side by side in this process: each round times the forward and
the cached generation back to back (so a load change on a shared machine hits
both), best of `--rounds`. The load average is printed with the figures: on a
busy box every small op of the decode waits on the threads' barrier, which a
single long forward hardly notices, so the ratio grows with the load; with
`--threads 1` it does not.

    python bench/generate.py [--rounds 3] [--quick] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from core.model import GPT, GPTConfig

# name, layers, heads, width, context, prompts, prompt length, new tokens, vocab
SHAPES = [
    ("issue 4L/256d/ctx256", 4, 4, 256, 256, 100, 4, 252, 8192),
    ("demo-walks", 4, 4, 64, 64, 100, 16, 48, 201),
    ("tiny-text", 4, 4, 256, 128, 16, 32, 96, 4096),
    ("small-20m", 8, 6, 384, 1024, 4, 64, 128, 8192),
]


def best(fn, rounds: int) -> float:
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return min(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="the issue's shape only")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    ap.add_argument(
        "--no-uncached", action="store_true", help="skip the uncached path (minutes on a busy box)"
    )
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, load {load:.1f}")
    print(
        f"{'shape':<22} {'cached tok/s':>13} {'uncached tok/s':>15} {'speedup':>8} {'gen/fwd cached':>15} {'gen/fwd uncached':>17}"
    )
    for name, L, H, C, ctx, B, t0, n, vocab in SHAPES[:1] if a.quick else SHAPES:
        m = GPT(GPTConfig(vocab_size=vocab, context=ctx, n_layer=L, n_head=H, n_embd=C)).eval()
        prompts = torch.randint(0, vocab, (B, t0))
        full = torch.randint(0, vocab, (B, t0 + n))
        # the uncached path costs ~100x: timed on a tenth of the prompts (its ratio to a
        # forward over the same rows is what matters)
        b = max(1, B // 10)
        with torch.no_grad():
            m.generate(prompts[:b], 4)  # warm-up: the first call allocates
            fwd, cached = float("inf"), float("inf")
            for _ in range(a.rounds):  # alternating: the forward over every position, then gen
                fwd = min(fwd, best(lambda m=m, x=full: m(x, targets=x), 1))
                cached = min(cached, best(lambda m=m, x=prompts, n=n: m.generate(x, n), 1))
            fwd_b = best(lambda m=m, x=full[:b]: m(x, targets=x), a.rounds)
            plain = (
                float("nan")
                if a.no_uncached
                else best(lambda m=m, x=prompts[:b], n=n: m.generate(x, n, use_cache=False), 1)
            )
        print(
            f"{name:<22} {B * n / cached:>13,.0f} {b * n / plain:>15,.0f} "
            f"{(B * n / cached) / (b * n / plain):>7.1f}x {cached / fwd:>14.2f}x {plain / fwd_b:>16.1f}x"
        )


if __name__ == "__main__":
    main()
