"""result.json (status, summary, curves) and report.md (the human report card)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

from core import checkpoint as C
from core import events as E
from core.checkpoint import atomic_write_text
from core.energy import notes, summary_line

if TYPE_CHECKING:
    from core.config import Profile
    from core.runstate import RunProgress


def _checkpoints(run_dir: Path) -> list[dict]:
    out = []
    for p in C.list_checkpoints(run_dir / "checkpoints"):
        meta = C.read_sidecar(p) or {}
        out.append(
            {
                "file": p.name,
                "step": meta.get("step"),
                "val_loss": meta.get("val_loss"),
                "tags": meta.get("tags", []),
                "bytes": meta.get("bytes"),
                "sha256": meta.get("sha256"),
            }
        )
    return out


def write_result(
    run_dir: Path,
    p: Profile,
    status: str,
    reason: str,
    prog: RunProgress,
    wall: float,
    summary: dict,
    extra: dict,
) -> None:
    curves = prog.curves
    train = curves.get("train_loss", [])
    finite_val = [v for v in curves.get("val_loss", []) if math.isfinite(v)]
    result = {
        "status": status,
        "reason": reason,
        "profile": p.name,
        "summary": dict(
            summary,
            steps=prog.step,
            epochs=prog.epoch,
            wall_s=wall,
            tokens=prog.step * summary.get("tokens_per_step", 0),
            final_train_loss=train[-1] if train else None,
            best_val_loss=min(finite_val) if finite_val else None,
        ),
        "gate": prog.gate or None,
        "curves": curves,
        "checkpoints": _checkpoints(run_dir),
        **extra,
    }
    atomic_write_text(
        run_dir / "result.json", json.dumps(E.finite_or_none(result), indent=1) + "\n"
    )


def _samples(run_dir: Path, limit: int = 6) -> list[E.Sample]:
    path = run_dir / "events.jsonl"
    if not path.exists():
        return []
    samples = [e for e in E.read_events(path) if isinstance(e, E.Sample)]
    if not samples:
        return []
    last_step = samples[-1].step
    return [s for s in samples if s.step == last_step][:limit]


def _fmt(x: object, spec: str = ".4f") -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def _energy_rows(energy: dict | None) -> list[str]:
    """The energy rows of the figures table: kWh, J/token, cost (core.energy measured them)."""
    if not energy:
        return []
    if not isinstance(energy.get("kwh"), int | float):
        return ["| energy | not measured (below) |"]
    rows = [f"| energy | {summary_line(energy)} |"]
    rows.append(f"| energy per token | {_fmt(energy.get('j_per_token'), '.3g')} J |")
    if energy.get("cost") is not None:
        rows.append(f"| energy cost | {energy['cost']:.4g} at {energy['price_kwh']:g} per kWh |")
    return rows


def write_report(
    run_dir: Path,
    p: Profile,
    status: str,
    reason: str,
    prog: RunProgress,
    wall: float,
    summary: dict,
    env: dict,
    energy: dict | None = None,
) -> None:
    train = prog.curves.get("train_loss", [])
    val = [v for v in prog.curves.get("val_loss", []) if math.isfinite(v)]
    # wall is this process's time: after a resume, count only the steps it ran
    ran = prog.step - summary.get("resumed_at_step", 0)
    tps = summary.get("tokens_per_step", 0) * ran / wall if wall > 0 else 0
    lines = [
        f"# Run {run_dir.name}",
        "",
        f"**Status:** {status} — {reason}",
        "",
        "## Configuration",
        "",
        f"- profile: `{p.name}`; data: {p.data.source}, context {p.data.context}, stride {p.data.stride}",
        f"- model: {p.model.n_layer} layers × {p.model.n_head} heads × {p.model.n_embd} wide, "
        f"{summary.get('n_params', 0) / 1e6:.2f}M parameters ({summary.get('n_params_non_embedding', 0) / 1e6:.2f}M non-embedding), vocab {summary.get('vocab_size', '—')}",
        f"- train: batch {p.train.batch_size} × accum {p.train.grad_accum}, lr {p.train.lr:g} → {p.train.min_lr:g}, "
        f"warmup {p.train.warmup_frac:g}, wd {p.train.weight_decay:g}, clip {p.train.grad_clip}, seed {p.train.seed}",
        f"- environment: {env.get('device', '—')} {env.get('dtype', '')} ({env.get('device_name', '')}), torch {env.get('torch', '—')}, "
        f"python {env.get('python', '—')}, host {env.get('host', '—')}",
        f"- config hash `{summary.get('config_hash', '—')}`, tokenizer hash `{summary.get('tokenizer_hash', '—')}`",
        "",
        "## Figures",
        "",
        "| figure | value |",
        "|---|---|",
        f"| steps | {prog.step} / {summary.get('total_steps', '—')} |",
        f"| epochs completed | {prog.epoch} |",
        f"| tokens | {prog.step * summary.get('tokens_per_step', 0):,} |",
        f"| wall time | {wall:.1f} s |",
        f"| mean throughput | {tps:,.0f} tokens/s |",
        f"| first / final train loss | {_fmt(train[0] if train else None)} / {_fmt(train[-1] if train else None)} |",
        f"| best val loss | {_fmt(min(val) if val else None)} (ppl {_fmt(math.exp(min(val)) if val else None, '.2f')}) |",
        *_energy_rows(energy),
        "",
        *[f"- {n}" for n in notes(energy or {})],
        *([""] if energy and notes(energy) else []),
        "## Gate",
        "",
    ]
    if p.gate.metrics:
        g = prog.gate or {}
        lines += ["| metric | value | minimum | |", "|---|---|---|---|"]
        for k, thr in p.gate.metrics.items():
            v = (g.get("metrics") or {}).get(k)
            ok = v is not None and v >= thr
            lines.append(f"| {k} | {_fmt(v)} | {thr:g} | {'✓' if ok else '✗'} |")
        lines += [
            "",
            f"Gate {'**passed**' if g.get('passed') else '**not passed**'} (last evaluated at step {g.get('step', '—')}).",
        ]
    else:
        lines.append("No gate configured.")
    lines += ["", "## Checkpoints", "", "| file | step | val loss | tags |", "|---|---|---|---|"]
    for c in _checkpoints(run_dir):
        lines.append(
            f"| {c['file']} | {c['step']} | {_fmt(c['val_loss'])} | {', '.join(c['tags'])} |"
        )
    samples = _samples(run_dir)
    if samples:
        lines += ["", f"## Samples (step {samples[0].step})", ""]
        for s in samples:
            verdict = "" if s.valid is None else (" ✓ valid" if s.valid else " ✗ invalid")
            lines += [
                f"**prompt** `{s.prompt.strip()}`{verdict}",
                "",
                "```",
                (s.prompt + ("" if s.prompt.endswith((" ", "\n")) else " ") + s.text)[:600],
                "```",
                "",
            ]
    atomic_write_text(run_dir / "report.md", "\n".join(lines) + "\n")
