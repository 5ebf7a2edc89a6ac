"""`cockpit preflight`: run a checklist for a profile and show its results — Rich
when a person reads them, one JSON object for scripts — and the summary of seed
003_ step 6 (dataset, tokenizer, model, param/token, epochs, time, memory, and
the exact command). `cockpit run` calls the same functions before it launches,
and saves the results as preflight.json in the run directory.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cockpit.checklist import Checklist, StepResult, load_checklist, overall, run_checklist
from cockpit.checks import Context, all_kinds
from core.config import ProfileError, load_profile

PROFILES_DIR = Path(__file__).resolve().parents[1] / "profiles"

ICONS = {"PASS": "✓", "WARN": "!", "FAIL": "✗", "SKIP": "-", "RUNNING": "…", "PENDING": " "}
STYLES = {"PASS": "green", "WARN": "yellow", "FAIL": "bold red", "SKIP": "dim"}


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
    """Every profile in profiles/ for the picker (seed 003_ step 7), sizes included."""
    from cockpit.checks_run import param_counts

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
# the summary of seed 003_ step 6


def _mib(b: float) -> str:
    return f"{b / 2**20:,.1f} MiB"


def _dur(s: float | None) -> str:
    if s is None:
        return "—"
    s = int(s)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


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
                f"{_mib(ds.get('bytes', 0))}",
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
                    f"seed 003_ recommends {sz['recommended_model']} for this data",
                )
            )
    if pr:
        rows.append(
            (
                "Est. time",
                f"{_dur(pr.get('est_train_s'))} for {pr.get('total_steps', 0):,} steps "
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


# -----------------------------------------------------------------------------
# printing


def run_printed(cl: Checklist, ctx: Context, fix: bool = False) -> list[StepResult]:
    """Run with a progress bar on a terminal (stderr), then print the results table."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    err = Console(stderr=True, highlight=False)
    if not err.is_terminal:
        results = run_checklist(cl, ctx, fix=fix)
    else:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as bar:
            task = bar.add_task("pre-flight", total=None)

            def update(r: StepResult) -> None:
                done, total = r.progress or (0, None)
                bar.update(
                    task, description=f"{r.id}: {r.status.lower()}", completed=done, total=total
                )

            results = run_checklist(cl, ctx, update, fix=fix)
    print_results(cl, ctx, results)
    return results


def print_results(cl: Checklist, ctx: Context, results: list[StepResult]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(highlight=False)
    status = overall(results)
    t = Table(
        title=f"pre-flight: {cl.name} for {ctx.profile.name} — {status}", title_justify="left"
    )
    for col in ("", "step", "status", "message"):
        t.add_column(col)
    for r in results:
        t.add_row(ICONS[r.status], r.id, r.status, r.message, style=STYLES.get(r.status))
    con.print(t)
    for r in results:
        for fnd in r.findings[:10]:
            con.print(
                f"  {r.id}: {fnd['file']}:{fnd['line']} {fnd['kind']}: {fnd['preview']}",
                markup=False,
            )
        if len(r.findings) > 10:
            con.print(f"  {r.id}: … and {len(r.findings) - 10} more (--json lists them)")
        if r.fixed:
            con.print(f"  {r.id}: fixed: {r.fixed['path']}", markup=False)
    kinds = all_kinds()
    for spec, r in zip(cl.steps, results, strict=True):
        if r.status != "FAIL":
            continue
        auto = spec.check in kinds and kinds[spec.check].fixer is not None
        fix = spec.fix or "see the message above"
        if auto and "--fix" not in fix:
            fix += " (--fix applies it)"
        con.print(f"fix for {r.id}: {fix}", markup=False)
    if status != "FAIL":
        s = Table(show_header=False, box=None, title="summary", title_justify="left")
        for label, value in summary_rows(ctx):
            s.add_row(label, value)
        con.print(s)


# -----------------------------------------------------------------------------
# the screen (the TUI), and the command


def run_wizard(
    checklist: Checklist,
    ctx: Context,
    launcher: Callable[[Context, list[StepResult]], object] | None = None,
    auto: bool | str = False,
    **tui,
) -> int:
    """The pre-flight screen in the TUI. Without a launcher (`cockpit preflight`): exit
    0, or 1 when a step failed. With one (`cockpit run`): Confirm launches and the
    monitor follows the run; leaving before Confirm launches nothing (exit 1)."""
    from cockpit.app import run_tui
    from cockpit.screens.preflight import PreflightScreen

    made: list = []

    def make():
        made.append(PreflightScreen(checklist, ctx, launcher, auto=auto))
        return made[-1]

    code = run_tui("preflight", screens={"preflight": make}, **tui)
    screen = made[-1] if made else None
    if launcher is not None:
        if screen is None or not screen.launched:
            print("cockpit: pre-flight not confirmed; nothing launched")
            return 1
        return code
    return 1 if screen is None or screen.status == "FAIL" else 0


def cmd_preflight(args) -> int:
    try:
        cl, ctx = prepare(args.profile, args.set, args.checklist)
    except ProfileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.fix and not (args.yes or args.json):
        print(
            "error: --fix applies fixes without asking: give it with --yes or --json",
            file=sys.stderr,
        )
        return 2
    if not args.yes and not args.json and sys.stdout.isatty():
        return run_wizard(cl, ctx)
    if args.json:
        results = run_checklist(cl, ctx, fix=args.fix)
        print(json.dumps(to_json(ctx, results), indent=1, allow_nan=False))
    else:
        results = run_printed(cl, ctx, fix=args.fix)
    return 1 if overall(results) == "FAIL" else 0
