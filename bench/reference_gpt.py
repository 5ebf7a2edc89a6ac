"""The reference: a plain single-file PyTorch training loop of the core's own
architecture, written the way a user would write it from the nanochat/nanoGPT
pattern: RoPE (the "half" layout), gainless RMSNorm, no biases, a GELU MLP, SDPA,
tied embeddings, GPT-2's init, fused AdamW (betas 0.9/0.95, decay on every
matrix), gradient clipping at 1.0, fp32, a `loss.item()` every step. So the
ratio bench/train_throughput.py prints measures the engine around the model
(data feeding, bookkeeping, events, signal and checkpoint checks), not design
choices. `--model core` runs the core's own model module (core.model.GPT, its
param groups) in the same plain loop instead: then the ratio is the engine alone,
with not even the model's implementation differing. Prints one JSON line per step: {"step", "step_ms", "t" (its start, perf_counter)}.

    python bench/reference_gpt.py --steps 30 --n_layer 4 --n_head 4 --n_embd 256 --context 256 --batch 16 --vocab 8192
"""

import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def rms_norm(x):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)


def rotary(x, cos, sin):
    d = x.size(-1) // 2
    x1, x2 = x[..., :d], x[..., d:]
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), -1)


class Block(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.qkv, self.proj = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)
        self.fc, self.out = nn.Linear(d, 4 * d, bias=False), nn.Linear(4 * d, d, bias=False)

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        q, k, v = self.qkv(rms_norm(x)).split(C, 2)
        q, k, v = (t.view(B, T, self.h, C // self.h).transpose(1, 2) for t in (q, k, v))
        q, k = rotary(q, cos, sin), rotary(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + self.proj(y)
        return x + self.out(F.gelu(self.fc(rms_norm(x))))


class GPT(nn.Module):
    def __init__(self, vocab, context, n_layer, n_head, n_embd):
        super().__init__()
        self.wte = nn.Embedding(vocab, n_embd)
        self.blocks = nn.ModuleList(Block(n_embd, n_head) for _ in range(n_layer))
        self.head = nn.Linear(n_embd, vocab, bias=False)
        self.head.weight = self.wte.weight
        hd = n_embd // n_head
        inv = 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd))
        freqs = torch.outer(torch.arange(context).float(), inv)
        self.register_buffer("cos", freqs.cos()[None, None], persistent=False)
        self.register_buffer("sin", freqs.sin()[None, None], persistent=False)
        for name, p in self.named_parameters():  # GPT-2's init, the residual projections scaled
            std = (
                0.02 / math.sqrt(2 * n_layer)
                if name.endswith(("proj.weight", "out.weight"))
                else 0.02
            )
            nn.init.normal_(p, mean=0.0, std=std)

    def forward(self, idx, targets):
        T = idx.size(1)
        cos, sin = self.cos[:, :, :T], self.sin[:, :, :T]
        x = self.wte(idx)
        for b in self.blocks:
            x = b(x, cos, sin)
        logits = self.head(rms_norm(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser()
    for k, v in dict(
        steps=30, n_layer=4, n_head=4, n_embd=256, context=256, batch=16, vocab=8192, lr=3e-3
    ).items():
        ap.add_argument(f"--{k}", type=type(v), default=v)
    ap.add_argument("--model", choices=("plain", "core"), default="plain")
    a = ap.parse_args()
    torch.manual_seed(0)
    if a.model == "core":
        import sys
        from pathlib import Path

        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from core.model import GPT as CoreGPT
        from core.model import GPTConfig, param_groups

        model = CoreGPT(GPTConfig(a.vocab, a.context, a.n_layer, a.n_head, a.n_embd))
        params = param_groups(model, 0.01)
    else:
        model = GPT(a.vocab, a.context, a.n_layer, a.n_head, a.n_embd)
        params = model.parameters()
    opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.95), weight_decay=0.01, fused=True)
    data = torch.randint(0, a.vocab, (a.batch * 64, a.context + 1))
    print(json.dumps({"n_params": sum(p.numel() for p in model.parameters())}), flush=True)
    for step in range(1, a.steps + 1):
        t0 = time.perf_counter()
        rows = data[torch.randint(0, len(data), (a.batch,))]
        loss = model(rows[:, :-1], rows[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss_val = loss.item()
        dt = time.perf_counter() - t0
        assert math.isfinite(loss_val)
        print(json.dumps({"step": step, "step_ms": dt * 1000, "t": t0}), flush=True)


if __name__ == "__main__":
    main()
