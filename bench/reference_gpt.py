"""The reference: a plain single-file PyTorch GPT training loop (nanoGPT
style: its init, learned positions, LayerNorm, GELU MLP, SDPA, tied embeddings, AdamW,
fp32). Prints one JSON line per step: {"step", "step_ms"}.

    python bench/reference_gpt.py --steps 30 --n_layer 4 --n_head 4 --n_embd 256 --context 256 --batch 16 --vocab 8192
"""

import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, 2)
        q, k, v = (t.view(B, T, self.h, C // self.h).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + self.proj(y)
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class GPT(nn.Module):
    def __init__(self, vocab, context, n_layer, n_head, n_embd):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, n_embd), nn.Embedding(context, n_embd)
        self.blocks = nn.ModuleList(Block(n_embd, n_head) for _ in range(n_layer))
        self.ln = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab, bias=False)
        self.head.weight = self.wte.weight
        # nanoGPT's init (N(0, 0.02), zero biases): PyTorch's default N(0, 1)
        # embedding gives logits with std ~16, which changes the softmax's cost
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Embedding):
                nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1)))
        for b in self.blocks:
            x = b(x)
        logits = self.head(self.ln(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser()
    for k, v in dict(
        steps=30, n_layer=4, n_head=4, n_embd=256, context=256, batch=16, vocab=8192, lr=3e-4
    ).items():
        ap.add_argument(f"--{k}", type=type(v), default=v)
    a = ap.parse_args()
    torch.manual_seed(0)
    model = GPT(a.vocab, a.context, a.n_layer, a.n_head, a.n_embd)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
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
        print(json.dumps({"step": step, "step_ms": dt * 1000}), flush=True)


if __name__ == "__main__":
    main()
