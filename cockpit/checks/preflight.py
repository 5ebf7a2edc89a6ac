"""The pre-flight as a library: a checklist and its context for a profile, the
results as JSON (preflight.json in the run directory), the profiles to pick
from, and the summary a person reads before launching (dataset, tokenizer,
model, param/token, epochs, time, memory, and the exact command). The command
(cockpit.commands.preflight) and the screen (cockpit.ui) both use it.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from cockpit.checks.base import Context
from cockpit.checks.cost import param_counts
from cockpit.checks.engine import Checklist, StepResult, load_checklist, overall
from cockpit.fmt import fmt_bytes, fmt_estimate
from core.config import ProfileError, load_profile

PROFILES_DIR = Path(__file__).resolve().parents[2] / "profiles"


def prepare(
    profile: str, sets: list[str], checklist: str | None = None, logs: Path = Path("logs")
) -> tuple[Checklist, Context]:
    """The checklist and a fresh context for a profile; raises ProfileError (every
    problem of the profile or the checklist, with file and line)."""
    p = load_profile(profile, sets)
    cl = load_checklist(checklist or p.checklist)
    return cl, Context(profile=p, logs=logs, profile_ref=profile, sets=list(sets))


def to_json(ctx: Context, results: list[StepResult]) -> dict:
    return {
        "profile": ctx.profile.name,
        "status": overall(results),
        "sets": ctx.sets,
        "steps": [r.to_dict() for r in results],
    }


def save(run_dir: Path, ctx: Context, results: list[StepResult]) -> Path:
    """preflight.json in the run directory, written atomically."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "preflight.json"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(to_json(ctx, results), indent=1, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path


def launch_command(ctx: Context) -> str:
    """The exact command that runs the profile as checked (fixes' overrides included)."""
    cmd = ["cockpit", "run", "--profile", ctx.profile_ref or ctx.profile.name]
    for s in ctx.sets:
        cmd += ["--set", s]
    return shlex.join(cmd)


@dataclass(frozen=True)
class ProfileChoice:
    ref: str  # what --profile takes
    name: str
    description: str  # the profile file's opening comment, first sentence
    params: int | None  # None: the profile does not load
    budget: str  # "300 steps" or "50 epochs"


def profile_choices(profiles_dir: Path = PROFILES_DIR) -> list[ProfileChoice]:
    """Every profile in profiles/ for the picker, sizes included."""

    out = []
    for f in sorted(profiles_dir.glob("*.yaml")):
        lines = []
        for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.startswith("#"):
                break
            lines.append(line.lstrip("# ").rstrip())
        desc = " ".join(x for x in lines if x and not x.startswith(("python ", "cockpit ")))
        desc = desc.split(". ")[0].rstrip(".")
        try:
            p = load_profile(str(f))
            n = param_counts(p)[0]
            t = p.train
            budget = f"{t.max_steps:,} steps" if t.max_steps else f"{t.epochs} epochs"
        except ProfileError:
            out.append(ProfileChoice(f.stem, f.stem, desc, None, "does not load"))
            continue
        out.append(ProfileChoice(f.stem, p.name, desc, n, budget))
    return out


# -----------------------------------------------------------------------------
# the summary a person reads before Confirm: data, tokenizer, model, param/token, epochs, time


def summary_rows(ctx: Context) -> list[tuple[str, str]]:
    """(label, value) rows from what the steps found; a step that did not run shows —."""
    f, p = ctx.figures, ctx.profile
    ds, cp, sz, pr = (f.get(k, {}) for k in ("dataset", "compression", "sizing", "probe"))
    rows = []
    if p.data.source == "walks":
        w = p.data.walks
        rows.append(("Dataset", f"{w.n_walks:,} walks on a {w.n_nodes}-node graph (generated)"))
        rows.append(("Tokenizer", f"node ids, vocab {w.n_nodes + 1}"))
    else:
        rows.append(
            (
                "Dataset",
                f"{ds.get('files', '—')} file(s), {ds.get('documents', 0):,} documents, "
                f"{fmt_bytes(ds.get('bytes', 0))}",
            )
        )
        bpt = cp.get("bytes_per_token")
        rows.append(
            (
                "Tokenizer",
                f"vocab {p.tokenizer.vocab_size:,}, "
                + (f"{bpt:.2f} bytes a token" if bpt else "compression not measured"),
            )
        )
    if sz:
        rows.append(
            (
                "Model",
                f"{sz['params'] / 1e6:,.2f}M params ({p.model.n_layer} layers, {p.model.n_embd} wide), "
                f"context {p.data.context}",
            )
        )
        if "param_per_token" in sz:
            rows.append(("Param/Token", f"{sz['param_per_token']:.3g} ({sz['risk']} risk)"))
            rows.append(
                (
                    "Est. epochs",
                    f"{sz['chinchilla_epochs']:,.2f} at Chinchilla-optimal "
                    f"({sz['chinchilla_tokens'] / 1e6:,.1f}M tokens); "
                    f"recommended size for this data: {sz['recommended_model']}",
                )
            )
    if pr:
        rows.append(
            (
                "Est. time",
                f"{fmt_estimate(pr.get('est_train_s'))} for {pr.get('total_steps', 0):,} steps "
                f"({pr.get('step_ms', 0):,.1f} ms a step, {pr.get('tokens_per_s', 0):,.0f} tokens/s, "
                f"measured on {pr.get('device')})",
            )
        )
        rows.append(
            (
                "Est. memory",
                f"{pr.get('peak_mem_mib', 0):,.0f} MiB peak of {pr.get('free_mem_mib', 0):,.0f} MiB free",
            )
        )
    rows.append(("Command", launch_command(ctx)))
    return rows
