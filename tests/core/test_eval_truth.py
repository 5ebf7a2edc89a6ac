"""Evaluation figures measure what they say: samples end at their document,
val loss weighs tokens, the val windows do not depend on the world size, the
tokenizer never sees val text, report throughput counts this process's steps,
and an eval says how long it took and what part is running."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import core.data as D
import core.evaluate as EV
from core import events as E
from core.config import DataConfig, EvalConfig, Profile, SamplesConfig, TokenizerConfig, TrainConfig
from core.data import WalkWindows
from core.report import write_report
from core.runstate import RunProgress

CPU = torch.device("cpu")


class ListSink:
    def __init__(self) -> None:
        self.events: list[E.Event] = []

    def write(self, event: E.Event) -> None:
        self.events.append(event)

    def close(self) -> None:
        pass


class RowLoss(nn.Module):
    """Loss of a batch = mean of its target tokens; remembers the rows it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.seen += x[:, 0].tolist()
        return y.float().mean()


def profile(batch_size: int, val_batches: int) -> Profile:
    return Profile(
        name="t",
        train=TrainConfig(batch_size=batch_size),
        eval=EvalConfig(val_batches=val_batches),
    )


# --- val loss -----------------------------------------------------------------


def test_val_loss_weighs_every_token_the_same():
    """5 windows at batch 4: a mean of batch means gives the lone last window
    the weight of four."""
    rows = torch.ones(5, 9, dtype=torch.long)
    rows[4] = 5
    vl = EV.val_loss(RowLoss(), WalkWindows(rows), profile(4, 2), CPU, torch.float32)
    assert vl == pytest.approx((4 * 1 + 5) / 5)


def test_val_windows_are_the_same_at_any_world_size(monkeypatch):
    """Ranks split one fixed set of windows: what two ranks score together is
    what one process scores."""
    rows = torch.arange(100).repeat_interleave(9).view(100, 9)
    p = profile(4, 3)
    one = RowLoss()
    EV.val_loss(one, WalkWindows(rows), p, CPU, torch.float32)
    monkeypatch.setattr(EV.dist, "all_reduce", lambda t: None)
    two = [RowLoss(), RowLoss()]
    for r in range(2):
        EV.val_loss(two[r], WalkWindows(rows), p, CPU, torch.float32, rank=r, world=2)
    assert sorted(two[0].seen + two[1].seen) == sorted(one.seen)
    assert not set(two[0].seen) & set(two[1].seen)


# --- samples ------------------------------------------------------------------


class Scripted(nn.Module):
    """`generate` appends a fixed continuation to every prompt."""

    def __init__(self, tail: list[int]) -> None:
        super().__init__()
        self.tail = torch.tensor(tail)

    def generate(self, x: torch.Tensor, n: int, **_: object) -> torch.Tensor:
        return torch.cat([x, self.tail[:n].expand(len(x), -1)], 1)


def test_samples_end_at_the_end_of_their_document(tmp_path: Path):
    docs = ["def f(x):\n    return x\n", "print(1)\n", "class A:\n    pass\n"] * 20
    tok = D.train_tokenizer(docs, 300, tmp_path / "tok.json")
    eot = tok.token_to_id(D.EOT)
    good = tok.encode("    return x\n", add_special_tokens=False).ids
    glued = tok.encode("((((broken", add_special_tokens=False).ids
    tail = good + [eot] + glued
    p = Profile(
        name="t",
        eval=EvalConfig(
            validator="python",
            samples=SamplesConfig(prompts=["def f(x):\n"], max_new_tokens=len(tail)),
        ),
    )
    metrics, samples = EV.text_samples(Scripted(tail), tok, p, CPU, torch.float32, 0)
    assert samples[0]["text"] == "    return x\n"
    assert metrics["valid_python"] == 1.0


# --- tokenizer ----------------------------------------------------------------


def test_tokenizer_is_trained_on_the_train_split_only(tmp_path: Path, monkeypatch):
    d = tmp_path / "docs"
    d.mkdir()
    for i in range(60):
        (d / f"{i}.txt").write_text(f"document number {i} " * 40 + "\n")
    seen: list[str] = []
    real = D.train_tokenizer

    def spy(docs: list[str], *a: object, **k: object) -> object:
        seen.extend(docs)
        return real(docs, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(D, "train_tokenizer", spy)
    cfg = DataConfig(
        source="files", paths=[str(d)], context=16, stride=16, val_fraction=0.2,
        cache_dir=str(tmp_path / "cache"),
    )  # fmt: skip
    D.prepare_files(cfg, TokenizerConfig(path=str(tmp_path / "tok.json"), vocab_size=300))
    assert seen
    assert not [s for s in seen if D._is_val(s, 0.2)]
    assert len(seen) < 60


# --- report -------------------------------------------------------------------


def test_report_throughput_counts_the_steps_this_process_ran(tmp_path: Path):
    prog = RunProgress(step=200)
    summary = {"tokens_per_step": 10, "resumed_at_step": 100}
    write_report(tmp_path, Profile(name="t"), "completed", "done", prog, 10.0, summary, {})
    text = (tmp_path / "report.md").read_text()
    assert "| mean throughput | 100 tokens/s |" in text


# --- duration and phases ------------------------------------------------------


def test_an_eval_logs_its_duration_and_a_phase_per_part():
    from core.model import GPT, GPTConfig
    from core.walks import make_corpus

    p = Profile(name="t", train=TrainConfig(batch_size=4), eval=EvalConfig(val_batches=1))
    w = replace(p.data.walks, n_walks=200, eval_walks=8)
    p = replace(p, data=replace(p.data, context=16, walks=w))
    g, _, val = make_corpus(w, 16, 0.1)
    torch.manual_seed(0)
    model = GPT(GPTConfig(g.vocab_size, 16, 1, 2, 32))
    sink = ListSink()
    r = EV.evaluate(model, WalkWindows(val), p, CPU, torch.float32, 0, g, val, sink=sink)
    names = [e.name for e in sink.events if isinstance(e, E.Phase)]
    assert names == ["eval val loss", "eval generation"]
    assert r.seconds > 0
    EV.record_eval(r, RunProgress(), p, sink)
    ev = next(e for e in sink.events if isinstance(e, E.Eval))
    assert ev.seconds == r.seconds
    assert np.isfinite(ev.seconds)


def test_a_minimal_profile_evaluates_in_seconds():
    """`data: {source: walks}` and every other key default: one eval at a 2-core
    CPU's matmul rate (~100 GFLOP/s; the eval ran 4.7 s on one) is seconds."""
    from core.model import GPT, GPTConfig

    p = Profile(name="t")
    m = p.model
    with torch.device("meta"):
        model = GPT(
            GPTConfig(p.data.walks.n_nodes + 1, p.data.context, m.n_layer, m.n_head, m.n_embd)
        )
    val_s, gen_s = EV.eval_seconds(EV.eval_work(p, model.flops_per_token() / 3, m.n_layer), 100e9)
    assert val_s + gen_s < 15
