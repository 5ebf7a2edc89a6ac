"""Exports: a run directory as CSV files or TensorBoard event files, so a run can
be opened in the tools people already have (a spreadsheet, pandas, TensorBoard).

    cockpit export RUN_DIR|RUN_ID|latest [--csv] [--tensorboard] [--out DIR]
    cockpit export RUN_DIR|RUN_ID|latest --model [--step N] [--format pt|safetensors] [--out DIR]

CSV (the default; into OUT, default RUN_DIR/export/):
    steps.csv        every step event: step, epoch, t, loss, lr, grad_norm, tokens,
                     step_ms, tokens_per_s, mfu
    evals.csv        every eval: step, epoch, t, val_loss, val_ppl, one column a metric
    checkpoints.csv  every checkpoint event: step, t, name, bytes, seconds, blocked_s, tags
    system.csv       the cockpit's samples (system.jsonl), flattened: proc.*, sys.*,
                     gpuN.* (N: the GPU's index); when the run was watched
    ranks.csv        each rank's step lines (ranks/rank-N.jsonl); under torchrun

TensorBoard (into OUT/tensorboard/; needs the `tensorboard` package, which the
cockpit does not depend on): the same figures as scalars (train/*, val/*,
system/*, gpuN/*, rankN/*), each at its training step and wall time; a system
sample is put at the step the run had reached when it was taken.

The model (--model; into OUT/model-step-NNNNNNN.pt or .safetensors): the weights of
one checkpoint (`latest`, or the one of step N) gathered into one file, whether the
run saved one file or a sharded (DCP) directory, for sampling, the post-flight and
sharing. The checkpoint is verified first (every shard against its sidecar). A .pt
holds {"model": weights, "model_config": GPTConfig's fields, "step", "config_hash",
"tokenizer_hash"} (torch.load(..., weights_only=True) reads it); a .safetensors holds
the weights, the tied lm_head.weight once (as wte.weight), and the rest as metadata.

Files are read line by line (a torn last line is skipped, as every reader of the
run directory does), so a long run exports in bounded memory; a live run exports
what it has written so far.
"""

from __future__ import annotations

import bisect
import csv
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from cockpit.checks.postflight_load import PostflightError, read_run
from cockpit.model.runs import resolve
from core import checkpoint as C
from core.jsonl import read_jsonl

if TYPE_CHECKING:
    from argparse import Namespace

    from torch.utils.tensorboard import SummaryWriter

STEP_COLS: tuple[str, ...] = ("step", "epoch", "t", "loss", "lr", "grad_norm", "tokens", "step_ms")
STEP_COLS += ("tokens_per_s", "mfu")
EVAL_COLS = ("step", "epoch", "t", "val_loss", "val_ppl")
CKPT_COLS = ("step", "t", "name", "bytes", "seconds", "blocked_s", "tags")
RANK_COLS: tuple[str, ...] = ("rank", "step", "t", "step_ms", "fwd_ms", "rss_mib", "cuda_alloc_mib")
RANK_COLS += ("cuda_max_alloc_mib",)
TB_TRAIN = ("loss", "lr", "grad_norm", "tokens_per_s", "step_ms", "mfu")
TB_SYSTEM: tuple[str, ...] = (
    "proc.rss_mib",
    "proc.uss_mib",
    "proc.cpu_pct",
    "proc.num_threads",
    "sys.cpu_pct",
)
TB_SYSTEM += ("sys.ram_used_mib", "sys.swap_used_mib")
TB_GPU = ("util_pct", "mem_used_mib", "temp_c", "power_w", "proc_mem_mib")
TB_RANK = ("step_ms", "fwd_ms", "rss_mib", "cuda_max_alloc_mib")


class ExportError(Exception):
    """What stops an export, in one line for the user."""


# -----------------------------------------------------------------------------
# reading the run directory


def jsonl(path: Path) -> Iterator[dict]:
    """The complete JSON objects of a JSON Lines file; nothing when it is missing."""
    return read_jsonl(path)


def events_of(run_dir: Path, *types: str) -> Iterator[dict]:
    for e in jsonl(run_dir / "events.jsonl"):
        if e.get("type") in types:
            yield e


def rank_lines(run_dir: Path) -> Iterator[dict]:
    """Every step line of every ranks/rank-N.jsonl, rank by rank, with its rank."""
    d = run_dir / "ranks"
    try:
        names = [n for n in os.listdir(d) if n.startswith("rank-") and n.endswith(".jsonl")]
    except OSError:
        return
    for name in sorted(names, key=lambda n: (len(n), n)):
        try:
            rank = int(name[5:-6])
        except ValueError:
            continue
        for x in jsonl(d / name):
            if x.get("type") == "step":
                yield dict(x, rank=rank)


def flatten_sample(d: dict) -> dict:
    """One system.jsonl line as flat columns: t, proc.*, sys.*, gpuN.* (scalars only;
    the per-process and per-thread lists stay in system.jsonl)."""
    out = {"t": d.get("t")}
    for part in ("proc", "sys"):
        for k, v in (d.get(part) or {}).items():
            if _scalar(v) and k != "t":
                out[f"{part}.{k}"] = v
    for dev in (d.get("gpu") or {}).get("devices") or []:
        if isinstance(dev, dict) and isinstance(dev.get("index"), int):
            for k, v in dev.items():
                if _scalar(v) and k != "index":
                    out[f"gpu{dev['index']}.{k}"] = v
    return out


def _scalar(v: object) -> bool:
    return v is None or isinstance(v, str | int | float | bool)


# -----------------------------------------------------------------------------
# CSV


def _write_csv(path: Path, cols: Iterable[str], rows: Iterable[dict]) -> Path:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(cols), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(v) for k, v in r.items()})
    os.replace(tmp, path)  # a reader never sees half a file
    return path


def _cell(v: object) -> object:
    if isinstance(v, list | tuple):
        return " ".join(str(x) for x in v)
    return "" if v is None else v


def export_csv(run_dir: Path, out_dir: Path) -> list[Path]:
    """Write the run's CSV files into out_dir; returns the files written."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if not (run_dir / "events.jsonl").exists():
        raise ExportError(f"{run_dir}: no events.jsonl, nothing to export")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [_write_csv(out_dir / "steps.csv", STEP_COLS, events_of(run_dir, "step"))]
    metrics = sorted({k for e in events_of(run_dir, "eval") for k in e.get("metrics") or {}})
    evals = (dict(e, **(e.get("metrics") or {})) for e in events_of(run_dir, "eval"))
    written.append(_write_csv(out_dir / "evals.csv", EVAL_COLS + tuple(metrics), evals))
    ckpts = (dict(e, name=Path(e.get("path") or "").name) for e in events_of(run_dir, "checkpoint"))
    written.append(_write_csv(out_dir / "checkpoints.csv", CKPT_COLS, ckpts))
    system = run_dir / "system.jsonl"
    if system.exists():  # two passes: the columns (GPUs, keys) first, rows streamed after
        cols: dict[str, None] = {}
        for d in jsonl(system):
            cols.update(dict.fromkeys(flatten_sample(d)))
        rows = (flatten_sample(d) for d in jsonl(system))
        written.append(_write_csv(out_dir / "system.csv", cols, rows))
    if (run_dir / "ranks").is_dir():
        written.append(_write_csv(out_dir / "ranks.csv", RANK_COLS, rank_lines(run_dir)))
    return written


# -----------------------------------------------------------------------------
# TensorBoard


def _summary_writer() -> type[SummaryWriter]:
    try:
        from torch.utils.tensorboard import SummaryWriter  # lazy: the optional tensorboard extra
    except ImportError:
        raise ExportError(
            "TensorBoard export needs the tensorboard package: pip install tensorboard"
        ) from None
    return SummaryWriter


def export_tensorboard(run_dir: Path, out_dir: Path) -> Path:
    """Write the run as TensorBoard event files into out_dir (old event files there are
    replaced); returns out_dir. ExportError when tensorboard is not installed."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if not (run_dir / "events.jsonl").exists():
        raise ExportError(f"{run_dir}: no events.jsonl, nothing to export")
    SummaryWriter = _summary_writer()
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("events.out.tfevents.*"):
        old.unlink()  # a second export replaces the first instead of doubling every curve
    w = SummaryWriter(log_dir=str(out_dir))
    try:
        step_t: list[tuple[float, int]] = []
        for e in events_of(run_dir, "step"):
            step, t = e.get("step"), e.get("t")
            if not isinstance(step, int):
                continue
            for k in TB_TRAIN:
                _scalar_to(w, f"train/{k}", e.get(k), step, t)
            if isinstance(t, int | float):
                step_t.append((t, step))
        for e in events_of(run_dir, "eval"):
            step, t = e.get("step"), e.get("t")
            _scalar_to(w, "val/loss", e.get("val_loss"), step, t)
            _scalar_to(w, "val/ppl", e.get("val_ppl"), step, t)
            for k, v in (e.get("metrics") or {}).items():
                _scalar_to(w, f"val/{k}", v, step, t)
        step_t.sort()
        times = [x[0] for x in step_t]
        for d in jsonl(run_dir / "system.jsonl"):
            flat, t = flatten_sample(d), d.get("t")
            if not isinstance(t, int | float):
                continue
            i = bisect.bisect_right(times, t)
            step = step_t[i - 1][1] if i else 0  # the step the run had reached
            for k in TB_SYSTEM:
                _scalar_to(w, "system/" + k.replace(".", "_"), flat.get(k), step, t)
            for k, v in flat.items():
                if k.startswith("gpu") and k.split(".", 1)[1] in TB_GPU:
                    _scalar_to(w, k.replace(".", "/"), v, step, t)
        for x in rank_lines(run_dir):
            for k in TB_RANK:
                _scalar_to(w, f"rank{x['rank']}/{k}", x.get(k), x.get("step"), x.get("t"))
    finally:
        w.close()
    return out_dir


def _scalar_to(w: SummaryWriter, tag: str, v: object, step: object, t: object) -> None:
    if isinstance(v, int | float) and not isinstance(v, bool) and isinstance(step, int):
        w.add_scalar(tag, v, step, walltime=t if isinstance(t, int | float) else None)


# -----------------------------------------------------------------------------
# the command


# -----------------------------------------------------------------------------
# the model as one file


def choose_step(run_dir: Path, step: int | None) -> Path:
    """The checkpoint to export: the one of `step`, else the one `latest` names; it must
    verify (a sharded one, every shard)."""
    ckpt_dir = run_dir / "checkpoints"
    if step is None:
        ck = C.latest(ckpt_dir)
        if ck is None:
            raise ExportError(f"{ckpt_dir}: no `latest` checkpoint to export (try --step N)")
    else:
        found = [p for p in C.list_checkpoints(ckpt_dir) if p.name.startswith(f"step-{step:07d}")]
        if not found:
            steps = [C.read_sidecar(p) or {} for p in C.list_checkpoints(ckpt_dir)]
            have = ", ".join(str(m.get("step")) for m in steps) or "none"
            raise ExportError(f"{ckpt_dir}: no checkpoint of step {step} (there are: {have})")
        ck = found[-1]
    why = C.verify(ck)
    if why:
        raise ExportError(f"{why}; export another one with --step N")
    return ck


def export_model(run_dir: Path, out_dir: Path, step: int | None, fmt: str) -> Path:
    """One checkpoint's model weights, gathered into out_dir/model-step-NNNNNNN.<fmt>."""
    import torch  # lazy: loads torch (seconds); only this path needs it

    from core.config import to_dict  # lazy: only this path needs it

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    ck = choose_step(run_dir, step)
    p, _ = read_run(run_dir)
    try:
        state = C.load(ck)  # a sharded checkpoint: its model gathered from every shard
    except Exception as e:
        raise ExportError(f"{ck.name}: cannot be loaded ({type(e).__name__}: {e})") from None
    weights = state["model"]
    m = to_dict(p)["model"]
    config = {"vocab_size": int(weights["wte.weight"].shape[0]), "context": p.data.context}
    config |= {k: m[k] for k in ("n_layer", "n_head", "n_embd")}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"model-step-{state['step']:07d}.{fmt}"
    info = {
        "step": state["step"],
        "config_hash": state.get("config_hash"),
        "tokenizer_hash": state.get("tokenizer_hash"),
    }
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        if fmt == "pt":
            torch.save({"model": weights, "model_config": config, **info}, tmp)
        else:
            try:
                from safetensors.torch import save_file  # lazy: an optional package
            except ImportError:
                raise ExportError(
                    "--format safetensors needs the safetensors package: pip install safetensors"
                ) from None
            # lm_head.weight is wte.weight (tied): safetensors stores no shared tensor
            flat = {k: v.contiguous() for k, v in weights.items() if k != "lm_head.weight"}
            meta = {k: str(v) for k, v in info.items()}
            meta |= {"model_config": json.dumps(config), "tied": "lm_head.weight=wte.weight"}
            save_file(flat, str(tmp), metadata=meta)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def cmd_export(args: Namespace) -> int:
    """`cockpit export RUN_DIR [--csv] [--tensorboard] [--out DIR]`: CSV when neither
    flag is given; `--model [--step N] [--format pt|safetensors]`: one checkpoint's model
    as one file. Exit 0, 1 when an export failed, 2 when there is no such run."""
    arg = getattr(args, "run_dir", None) or "latest"
    run_dir = resolve(arg)
    if run_dir is None:
        print(f"error: no run {arg!r} (a run directory, a run id under logs/, or latest)",
              file=sys.stderr)  # fmt: skip
        return 2
    if getattr(args, "model", False):
        out = Path(getattr(args, "out", None) or run_dir / "export")
        try:
            path = export_model(
                run_dir, out, getattr(args, "step", None), getattr(args, "format", None) or "pt"
            )
        except (ExportError, PostflightError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"wrote {path}")
        return 0
    tb = bool(getattr(args, "tensorboard", False))
    want_csv = bool(getattr(args, "csv", False)) or not tb
    out = Path(getattr(args, "out", None) or run_dir / "export")
    try:
        if want_csv:
            for path in export_csv(run_dir, out):
                print(f"wrote {path}")
        if tb:
            path = export_tensorboard(run_dir, out / "tensorboard")
            print(f"wrote {path}  (open it with: tensorboard --logdir {path})")
    except (ExportError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
