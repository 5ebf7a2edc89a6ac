"""Post-flight's inputs: the profile a run recorded, which checkpoint to
measure (best, else final, else `latest`; one file or a sharded directory), and
the model and data loaded once for every step (ctx.loaded)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import yaml

from cockpit.checks.base import Context
from core import checkpoint as C
from core.config import Profile
from core.errors import DataError
from core.yamlmap import _build

if TYPE_CHECKING:
    from core.data import Data


class PostflightError(Exception):
    """A run directory or checkpoint that post-flight cannot use; the message says why."""


# -----------------------------------------------------------------------------
# the run's profile and which checkpoint to measure


def read_run(run_dir: Path) -> tuple:
    """(the resolved profile, the summary) the trainer recorded in run.yaml."""

    path = run_dir / "run.yaml"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PostflightError(
            f"{run_dir} has no run.yaml: the trainer writes it once the data is loaded, so this "
            "run never started training (or is not a run directory)"
        ) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise PostflightError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    problems: list[str] = []
    p = _build(
        Profile,
        (raw or {}).get("profile") if isinstance(raw, dict) else None,
        "profile",
        lambda k, m: problems.append(f"{k}: {m}"),
    )
    if problems or not isinstance(raw, dict) or "profile" not in raw:
        why = "; ".join(problems[:3]) or "no `profile` mapping"
        raise PostflightError(f"{path}: the recorded profile does not load ({why})")
    summary = raw.get("summary")
    return p, summary if isinstance(summary, dict) else {}


def _val(meta: dict) -> float:
    v = meta.get("val_loss")
    return v if isinstance(v, int | float) and math.isfinite(v) else math.inf


def choose_checkpoint(run_dir: Path, given: str | Path | None = None) -> tuple[Path, str]:
    """(checkpoint, why this one): the given one; else the lowest val loss among those
    tagged best; else the one tagged final; else `latest`; else the newest. The first
    that verifies (size and sha256 against its sidecar) wins; the others are named."""
    ckpt_dir = run_dir / "checkpoints"
    if given is not None:
        g = Path(given)
        for cand in (g, ckpt_dir / g.name):
            if cand.is_file() or (cand.is_dir() and C.CKPT_RE.match(cand.name)):
                why = C.verify(cand)
                if why:
                    raise PostflightError(f"--checkpoint {given}: {why}")
                return cand, "given with --checkpoint"
        raise PostflightError(f"--checkpoint {given}: no such file (nor in {ckpt_dir})")
    ckpts = C.list_checkpoints(ckpt_dir)
    if not ckpts:
        raise PostflightError(
            f"{run_dir} holds no checkpoint (nothing in {ckpt_dir}): the run ended before its "
            "first save, so there is no model to check"
        )
    metas = {c: C.read_sidecar(c) or {} for c in ckpts}
    best = sorted(
        (c for c in ckpts if "best" in metas[c].get("tags", ())),
        key=lambda c: (_val(metas[c]), -metas[c].get("step", 0)),
    )
    order: list[tuple[Path, str]] = []
    if best:
        b = best[0]
        order.append((b, f"best: the lowest val loss of those tagged best, {_val(metas[b]):.4f}"))
    order += [(c, "final") for c in reversed(ckpts) if "final" in metas[c].get("tags", ())]
    if (lp := C.latest(ckpt_dir)) is not None:
        order.append((lp, "latest"))
    order += [(c, "newest") for c in reversed(ckpts)]
    skipped: list[str] = []
    for c, why in order:
        bad = C.verify(c)
        if bad is None:
            return c, why + (f"; skipped: {'; '.join(skipped)}" if skipped else "")
        if bad not in skipped:
            skipped.append(bad)
    raise PostflightError(f"no checkpoint in {ckpt_dir} verifies: {'; '.join(skipped)}")


# -----------------------------------------------------------------------------
# loading the model and the data once for every step


def loaded(ctx: Context) -> dict:
    """{"ckpt", "why", "step", "model", "data", "split", "device", "dtype"}, loaded once.
    Raises PostflightError; a failure is remembered so each step reports it quickly."""
    if "error" in ctx.loaded:
        raise PostflightError(ctx.loaded["error"])
    if "model" in ctx.loaded:
        return ctx.loaded
    try:
        ctx.loaded.update(_load(ctx))
    except PostflightError as e:
        ctx.loaded["error"] = str(e)
        raise
    return ctx.loaded


def _load(ctx: Context) -> dict:
    import torch  # lazy: loads torch (seconds); only this path needs it

    from core.model import GPT, GPTConfig  # lazy: loads torch (seconds); only this path needs it
    from core.runtime import pick_dtype  # lazy: loads torch (seconds); only this path needs it

    p = ctx.profile
    if ctx.checkpoint is None:
        if ctx.run_dir is None:
            raise PostflightError("post-flight needs a run directory or a checkpoint")
        ctx.checkpoint, ctx.loaded["why"] = choose_checkpoint(ctx.run_dir)
    ckpt = Path(ctx.checkpoint)
    try:
        state = C.load(ckpt)  # a sharded (DCP) checkpoint: its model gathered from every shard
    except Exception as e:
        raise PostflightError(f"{ckpt.name} cannot be loaded ({type(e).__name__}: {e})") from None
    if "summary" not in ctx.loaded and ctx.run_dir is not None:
        ctx.loaded["summary"] = read_run(ctx.run_dir)[1]
    try:
        data, split = _data(p, ctx.loaded.get("summary") or {})
    except DataError as e:
        raise PostflightError(f"the run's data cannot be loaded: {e}") from None
    if state.get("tokenizer_hash") not in (None, data.tok_hash):
        raise PostflightError(
            f"{ckpt.name} was trained with tokenizer/graph {state['tokenizer_hash']}, the data "
            f"now gives {data.tok_hash}: the tokenizer or the data changed since the run"
        )
    m = p.model
    try:
        sd = state["model"]
        vocab = sd["wte.weight"].shape[0]
        model = GPT(GPTConfig(vocab, p.data.context, m.n_layer, m.n_head, m.n_embd))
        model.load_state_dict(sd)
    except (KeyError, RuntimeError) as e:
        raise PostflightError(
            f"{ckpt.name} does not fit the model run.yaml describes ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200]})"
        ) from None
    want = p.train.device
    cuda = want == "cuda" or (want == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if cuda and torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    return {
        "ckpt": ckpt,
        "why": ctx.loaded.get("why", "given"),
        "step": state.get("step"),
        "model": model,
        "data": data,
        "split": split,
        "device": device,
        "dtype": pick_dtype(p.train.dtype, device),
    }


def _data(p: Profile, summary: dict) -> tuple[Data, str]:
    """(Data, how its val split relates to the run's). Text: the run's own token cache
    when it is still there (the exact windows its evals used, and no corpus to re-read);
    else the data as the profile reads it now. Walks are remade from their seed."""
    from core.data import (  # lazy: loads torch (seconds); only this path needs it
        Data,
        TokenWindows,
        load_data,
        load_tokenizer,
        open_cache,
    )

    rec = summary.get("data") or {}
    cache = Path(rec["cache"]) if isinstance(rec.get("cache"), str) else None
    if p.data.source == "files" and cache is not None and (cache / "meta.json").exists():

        def no_docs() -> NoReturn:
            raise DataError(f"tokenizer.path {p.tokenizer.path}: missing, and the run's is gone")

        tok, th = load_tokenizer(p.tokenizer, no_docs)
        train, val, _ = open_cache(cache)
        c = p.data.context
        figures = {"cache": str(cache), "data_hash": rec.get("data_hash")}
        data = Data(
            TokenWindows(train, c, p.data.stride),
            TokenWindows(val, c, c),
            p.tokenizer.vocab_size,
            th,
            figures,
            tok=tok,
        )
        return data, "the run's val split"
    data = load_data(p)
    then, now = rec.get("data_hash"), data.figures.get("data_hash")
    if then and now and then != now:
        return data, (
            f"a val split rebuilt from today's data (hash {now}; the run's was {then}, "
            "its cache is gone): not comparable with the run's evals"
        )
    return data, "the run's val split"
