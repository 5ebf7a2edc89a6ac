"""Post-flight: what people do by hand after a run, done on its
best or final checkpoint: val-split perplexity against a target, N generations
scored by the profile's validator against a target, and a page of samples to
read. The kinds run on the checklist engine (checklists/postflight.yaml); what
they load is in cockpit.checks.postflight_load, the command and the report in
cockpit.commands.postflight.

The steps share one load of the checkpoint and the data (ctx.loaded). They
are measurements of one finished model, so the command runs every step (engine.run_every_step)
even after a FAIL: a perplexity over target is when the samples matter most.
"""

from __future__ import annotations

import dataclasses
import math

from cockpit.checks.base import Context, Kind, Progress, StepResult, StepSpec
from cockpit.checks.postflight_load import PostflightError, loaded
from core import checkpoint as C
from core.validators import validator_for


def joined(s: dict) -> str:
    """A sample as one text, spaced as report.md's samples are."""
    gap = "" if not s["prompt"] or s["prompt"].endswith((" ", "\n")) else " "
    return s["prompt"] + gap + s["text"]


def _judge(spec: StepSpec, r: StepResult, checks: list[tuple[str, float, bool, str]]) -> None:
    """Apply every named figure's `fail`, then `warn`, bar; the worst level wins.
    checks: (figure, value, bad when below, what it means)."""
    for level, bars in (("FAIL", spec.fail), ("WARN", spec.warn)):
        for figure, value, below, what in checks:
            bar = bars.get(figure)
            if bar is not None and (value < bar if below else value > bar):
                sign = "<" if below else ">"
                r.status = level
                r.message = f"{what} ({figure} {value:,.4g} {sign} {bar:,.4g}); {r.message}"
                return


# -----------------------------------------------------------------------------
# perplexity on the val split


def check_perplexity(spec: StepSpec, ctx: Context, r: StepResult, progress: Progress) -> None:
    from core.evaluate import val_loss  # lazy: loads torch (seconds); only this path needs it

    try:
        L = loaded(ctx)
    except PostflightError as e:
        r.status, r.message = "FAIL", str(e)
        return
    p = ctx.profile
    ev = dataclasses.replace(
        p.eval, val_batches=int(spec.params.get("val_batches") or 0) or p.eval.val_batches
    )
    tr = dataclasses.replace(
        p.train, batch_size=int(spec.params.get("batch_size") or 0) or p.train.batch_size
    )
    q = dataclasses.replace(p, eval=ev, train=tr)
    val = L["data"].val
    windows = min(len(val), ev.val_batches * tr.batch_size)
    loss = val_loss(L["model"], val, q, L["device"], L["dtype"])  # the run's own eval, same windows
    if not math.isfinite(loss):
        r.status = "FAIL"
        r.message = f"val loss is {loss} on {L['ckpt'].name}: the weights give no finite loss"
        return
    ppl = math.exp(min(loss, 50.0))
    vocab = L["model"].cfg.vocab_size
    run_val = (C.read_sidecar(L["ckpt"]) or {}).get("val_loss")  # what the run's eval said
    r.figures = {
        "val_loss": loss,
        "val_ppl": round(ppl, 4),
        "vocab_size": vocab,
        "ppl_vs_uniform": round(ppl / vocab, 6),  # 1.0: no better than guessing uniformly
        "windows": windows,
        "tokens": windows * p.data.context,
        "run_val_loss": run_val,
        "checkpoint": L["ckpt"].name,
        "step": L["step"],
    }
    r.status = "PASS"
    r.message = (
        f"val perplexity {ppl:,.2f} (loss {loss:.4f}) on {windows:,} windows of "
        f"{L['split']}; checkpoint {L['ckpt'].name} ({L['why']})"
    )
    if L["split"] != "the run's val split":
        r.status = "WARN"
    _judge(
        spec,
        r,
        [
            ("val_ppl", ppl, False, "perplexity over target"),
            ("val_loss", loss, False, "val loss over target"),
            ("ppl_vs_uniform", ppl / vocab, False, "barely better than guessing uniformly"),
        ],
    )


# -----------------------------------------------------------------------------
# N generations scored by the profile's validator


def generate(ctx: Context, params: dict, progress: Progress | None = None) -> dict:
    """{"samples": [{"prompt", "text", "valid"}], "validator", "metrics"}: walks continue
    the prompts of held-out val walks (greedy, as the gate does) and are judged on edges
    and the rule; text samples the profile's prompts, judged by its eval.validator.
    `progress(done, total)` is told after each batch (text: one batch a prompt)."""
    import torch  # lazy: loads torch (seconds); only this path needs it

    from core import walks as W  # lazy: loads torch
    from core.data import EOT  # lazy: loads torch (seconds); only this path needs it
    from core.evaluate import autocast  # lazy: loads torch (seconds); only this path needs it

    tell = progress or (lambda done, total: None)
    L = loaded(ctx)
    p, model, device, dtype, data = ctx.profile, L["model"], L["device"], L["dtype"], L["data"]
    params = {k: v for k, v in params.items() if v is not None}  # null: the default
    n = int(params.get("n", 100))
    seed = int(params.get("seed", p.train.seed))
    gen = torch.Generator(device=device).manual_seed(seed)
    if data.graph is not None:
        g, k = data.graph, p.data.walks.prompt_len
        n = min(n, len(data.val_walks))
        new = int(params.get("max_new_tokens") or data.val_walks.size(1) - k)
        temp = float(params.get("temperature", 0.0))
        with autocast(device, dtype):
            out = (
                model.generate(
                    data.val_walks[:n, :k].to(device),
                    new,
                    temperature=temp,
                    top_k=None,
                    generator=gen,
                )
                .cpu()
                .numpy()
            )
        samples: list[dict] = [
            {
                "prompt": W.format_walk(g, row[:k]),
                "text": W.format_walk(g, row[k:]),
                "valid": bool(W.walk_is_valid(g, row, k)),
            }
            for row in out
        ]
        tell(n, n)
        metrics = W.score_walks(g, out, k) if n else {}
        return {"samples": samples, "validator": "walks (edges and the rule)", "metrics": metrics}
    s = p.eval.samples
    prompts = list(params.get("prompts") or s.prompts) or [""]
    new = int(params.get("max_new_tokens") or s.max_new_tokens)
    temp = float(params.get("temperature", s.temperature))
    judge = validator_for(p.eval.validator, p.eval.json_schema)
    verdicts = []
    samples = [{} for _ in range(n)]
    for j, prompt in enumerate(prompts):  # rows j, j+len, ... share a prompt: one batch each
        rows = list(range(j, n, len(prompts)))
        if not rows:
            continue
        ids = data.tok.encode(prompt, add_special_tokens=False).ids or [0]
        x = torch.tensor([ids] * len(rows), dtype=torch.long, device=device)
        with autocast(device, dtype):
            y = model.generate(x, new, temperature=temp, top_k=50, generator=gen)
        eot = data.tok.token_to_id(EOT)
        for i, toks in zip(rows, y[:, len(ids) :].tolist(), strict=True):
            # cut at the document's end before decoding (decode drops special tokens)
            text = data.tok.decode(toks[: toks.index(eot)] if eot in toks else toks)
            v = judge.judge(prompt, text) if judge else None
            samples[i] = {"prompt": prompt, "text": text, "valid": v.valid if v else None}
            if v:
                verdicts.append(v)
                samples[i] |= {"note": v.note} if v.note else {}
        tell(sum(bool(x) for x in samples), n)
    label = judge.label if judge else p.eval.validator
    return {
        "samples": samples,
        "validator": label,
        "metrics": judge.rates(verdicts) if judge else {},
    }


def check_generations(spec: StepSpec, ctx: Context, r: StepResult, progress: Progress) -> None:
    try:
        out = generate(ctx, spec.params, progress)
    except PostflightError as e:
        r.status, r.message = "FAIL", str(e)
        return
    ctx.loaded["generations"] = out
    L, samples = ctx.loaded, out["samples"]
    n = len(samples)
    judged = [s["valid"] for s in samples if s["valid"] is not None]
    r.figures = {"n": n, "validator": out["validator"]}
    if not judged:
        r.status = "SKIP"
        r.message = (
            f"{n} generations from {L['ckpt'].name}, none judged: the profile names no validator "
            "(eval.validator); read the samples"
        )
        return
    rate = sum(judged) / len(judged)
    r.figures |= {"valid": sum(judged), "valid_rate": round(rate, 4), **out["metrics"]}
    r.status = "PASS"
    r.message = f"{sum(judged)}/{n} valid ({rate:.1%}) by {out['validator']}, from {L['ckpt'].name}"
    checks = [("valid_rate", rate, True, "too few valid outputs")]
    checks += [(k, v, True, f"low {k}") for k, v in out["metrics"].items()]
    _judge(spec, r, checks)


# -----------------------------------------------------------------------------
# a page of samples to read


def check_samples(spec: StepSpec, ctx: Context, r: StepResult, progress: Progress) -> None:
    k = int(spec.params.get("n") or 8)
    try:
        out = ctx.loaded.get("generations") or generate(ctx, {**spec.params, "n": k}, progress)
    except PostflightError as e:
        r.status, r.message = "FAIL", str(e)
        return
    page = out["samples"][:k]
    ckpt = ctx.loaded["ckpt"].name
    valid = sum(bool(s["valid"]) for s in page)
    judged = sum(s["valid"] is not None for s in page)
    r.figures = {"n": len(page), "valid": valid, "samples": page}
    r.findings = [
        {
            "file": ckpt,
            "line": i + 1,
            "kind": {True: "valid", False: "invalid", None: "sample"}[s["valid"]],
            "preview": joined(s)[:400],
        }
        for i, s in enumerate(page)
    ]
    r.status = "PASS"
    verdict = f", {valid} of them valid" if judged else ""
    r.message = f"{len(page)} samples to read from {ckpt}{verdict}"


POSTFLIGHT_KINDS: dict[str, Kind] = {
    "perplexity": Kind(
        check_perplexity,
        params=("val_batches", "batch_size"),
        figures=("val_ppl", "val_loss", "ppl_vs_uniform"),
    ),
    "generations": Kind(
        check_generations,
        params=("n", "max_new_tokens", "temperature", "seed", "prompts"),
        figures=("valid_rate", "edge_compliance", "rule_compliance"),
    ),
    "samples": Kind(
        check_samples, params=("n", "max_new_tokens", "temperature", "seed", "prompts")
    ),
}
