"""Generation with the KV cache gives the tokens a full recompute gives: greedy and
sampled, single and batched, prompts of several lengths, and past the context."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from core.model import GPT, GPTConfig

CTX = 32


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=64, context=CTX, n_layer=2, n_head=4, n_embd=64))
    for p in m.parameters():  # non-trivial weights: peaked, distinct next-token choices
        torch.nn.init.normal_(p, std=0.3)
    return m.eval()


def reference(model: GPT, idx, n, temperature=0.0, top_k=None, generator=None):
    """The whole window run again for every token: what the cache must reproduce."""
    with torch.no_grad():
        for _ in range(n):
            logits = model(idx[:, -CTX:])[:, -1, :].float()
            if temperature == 0:
                nxt = logits.argmax(-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:
                    v, _ = torch.topk(logits, top_k)
                    logits[logits < v[:, [-1]]] = -float("inf")
                nxt = torch.multinomial(F.softmax(logits, -1), 1, generator=generator)
            idx = torch.cat((idx, nxt), 1)
    return idx


@pytest.mark.parametrize("t0", [1, 5, 31, 32, 40])
@pytest.mark.parametrize("batch", [1, 6])
def test_greedy_tokens_equal_a_full_recompute(model, t0, batch):
    g = torch.Generator().manual_seed(t0 * 10 + batch)
    idx = torch.randint(0, 64, (batch, t0), generator=g)
    n = 45  # past the context for every prompt length
    got = model.generate(idx, n)
    assert torch.equal(got, reference(model, idx, n))
    assert got.shape == (batch, t0 + n)


def test_sampled_tokens_equal_with_a_fixed_generator(model):
    idx = torch.randint(0, 64, (4, 7), generator=torch.Generator().manual_seed(1))
    a = model.generate(
        idx, 40, temperature=0.9, top_k=20, generator=torch.Generator().manual_seed(3)
    )
    b = reference(model, idx, 40, 0.9, 20, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_prompts_of_different_lengths_are_grouped_and_come_back_in_order(model):
    g = torch.Generator().manual_seed(2)
    prompts = [torch.randint(0, 64, (n,), generator=g) for n in (3, 9, 3, 12, 9)]
    got = model.generate_each(prompts, 10)
    for p, row in zip(prompts, got, strict=True):
        assert torch.equal(row, reference(model, p[None], 10)[0])


def test_the_cache_path_runs_the_prompt_once_then_one_token_at_a_time(model):
    seen: list[int] = []
    h = model.register_forward_pre_hook(lambda m, args: seen.append(args[0].size(1)))
    try:
        model.generate(torch.zeros(2, 5, dtype=torch.long), 6)
    finally:
        h.remove()
    assert seen == [5, 1, 1, 1, 1, 1]
