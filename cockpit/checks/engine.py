"""Checklists: a declarative YAML list of steps, validated like a profile, and
the engine that runs them in order and stops at the first FAIL.

A step is either a built-in `check` (a kind from cockpit.checks, with its
`params` and its `warn`/`fail` thresholds) or a shell command to `run` (PASS
on exit 0). Every step gives a StepResult: status, message, figures and
findings, the same for the screen, `--yes` and `--json`.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cockpit.checks.base import Context, FixError, StepResult, StepSpec
from cockpit.checks.registry import all_kinds, apply_fix, run_step
from core.yamlmap import Problem, ProfileError, _build, _parse_yaml

CHECKLISTS_DIR = Path(__file__).resolve().parents[2] / "checklists"

# -----------------------------------------------------------------------------
# the schema


@dataclass(frozen=True)
class Checklist:
    name: str = ""
    "what this checklist is for"
    steps: list[StepSpec] = field(default_factory=list)
    "the steps, run in this order"


def resolve_checklist_path(name_or_path: str) -> Path:
    """`pretrain` → checklists/pretrain.yaml; a relative path also resolves from the
    repository root (profiles name `checklists/pretrain.yaml`)."""
    p = Path(name_or_path)
    if p.suffix not in (".yaml", ".yml") and not p.exists():
        return CHECKLISTS_DIR / f"{name_or_path}.yaml"
    if not p.exists() and not p.is_absolute() and (CHECKLISTS_DIR.parent / p).exists():
        return CHECKLISTS_DIR.parent / p
    return p


def load_checklist(name_or_path: str) -> Checklist:
    """Load and validate; raises ProfileError listing every problem (file:line, key)."""
    kinds = all_kinds()

    path = resolve_checklist_path(name_or_path)
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        known = sorted(q.stem for q in CHECKLISTS_DIR.glob("*.yaml"))
        why = "no such checklist file" if isinstance(e, FileNotFoundError) else f"unreadable: {e}"
        raise ProfileError(
            [Problem(file, "", None, f"{why}; known checklists: {', '.join(known)}")], "checklist"
        ) from None
    raw, lines = _parse_yaml(text, file)
    problems: list[Problem] = []

    def err(key: str, msg: str) -> None:
        problems.append(Problem(file, key, lines.get(key) or _parent_line(key, lines), msg))

    cl = _build(Checklist, raw, "", err)
    if not cl.steps:
        err("steps", "a checklist needs at least one step")
    seen: set[str] = set()
    for i, s in enumerate(cl.steps):
        if s is None:
            continue
        at = f"steps[{i}]"
        if not s.id:
            err(at, "every step needs an `id`")
        elif s.id in seen:
            err(f"{at}.id", f"`{s.id}` is used by an earlier step; ids must be unique")
        seen.add(s.id)
        if (s.check is None) == (s.run is None):
            err(at, "give a step exactly one of `check` (a built-in kind) or `run` (a command)")
            continue
        if s.run is not None:
            continue
        kind = kinds.get(s.check)
        if kind is None:
            close = difflib.get_close_matches(s.check, kinds, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            err(f"{at}.check", f"unknown kind `{s.check}` (known: {', '.join(kinds)}){hint}")
            continue
        for group, allowed in (
            ("params", kind.params),
            ("warn", kind.figures),
            ("fail", kind.figures),
        ):
            for k in getattr(s, group):
                if k not in allowed:
                    names = ", ".join(allowed) or "none"
                    err(f"{at}.{group}.{k}", f"`{s.check}` has no {group} `{k}` (known: {names})")
    if problems:
        raise ProfileError(problems, "checklist")
    return cl


def _parent_line(key: str, lines: dict[str, int]) -> int | None:
    while "." in key or "[" in key:
        key = key[: max(key.rfind("."), key.rfind("["))]
        if key in lines:
            return lines[key]
    return None


# -----------------------------------------------------------------------------
# results and the engine


def overall(results: list[StepResult]) -> str:
    statuses = {r.status for r in results}
    return "FAIL" if "FAIL" in statuses else "WARN" if "WARN" in statuses else "PASS"


def run_one(
    spec: StepSpec, ctx: Context, r: StepResult, update: Callable[[StepResult], None]
) -> None:
    """Run one step into `r`. Never raises: a check that crashes is a FAIL naming it."""

    r.status, r.message, r.figures, r.findings = "RUNNING", "", {}, []
    update(r)
    t0 = time.time()

    def progress(done: float, total: float) -> None:
        r.progress = (done, total)
        update(r)

    try:
        run_step(spec, ctx, r, progress)
    except Exception as e:  # a check that breaks is a failed check, not a traceback
        r.status, r.message = "FAIL", f"the check itself failed: {type(e).__name__}: {e}"
    r.seconds, r.progress = time.time() - t0, None
    ctx.figures[spec.id] = r.figures
    update(r)


def fix_and_rerun(
    spec: StepSpec, ctx: Context, r: StepResult, update: Callable[[StepResult], None]
) -> bool:
    """Apply a failed step's built-in fix, then run the step again. False (with the
    reason in the message) when the kind has no fix or the fix could not be made."""

    try:
        fixed = apply_fix(spec, ctx, r, update)
    except FixError as e:
        r.message = f"{r.message} — the fix did not work: {e}"
        update(r)
        return False
    run_one(spec, ctx, r, update)
    r.fixed = fixed
    update(r)
    return True


def run_checklist(
    cl: Checklist,
    ctx: Context,
    on_update: Callable[[StepResult], None] | None = None,
    *,
    fix: bool = False,
    results: list[StepResult] | None = None,
    start: int = 0,
) -> list[StepResult]:
    """Every step in order from `start`; after a FAIL the rest are SKIP. With `fix`, a
    failed step's built-in fix is applied and the step re-run once. `results` carries
    earlier results on (the screen re-runs from a step after the user fixed it)."""
    update = on_update or (lambda r: None)
    if results is None:
        results = [StepResult(s.id, s.title or s.id) for s in cl.steps]
    failed: str | None = None
    for spec, r in list(zip(cl.steps, results, strict=True))[start:]:
        if failed is not None:
            r.status, r.message, r.figures, r.findings = (
                "SKIP",
                f"not run: step `{failed}` failed",
                {},
                [],
            )
            update(r)
            continue
        run_one(spec, ctx, r, update)
        if r.status == "FAIL" and fix:
            fix_and_rerun(spec, ctx, r, update)
        if r.status == "FAIL":
            failed = spec.id
    return results


def run_every_step(
    cl: Checklist, ctx: Context, on_update: Callable[[StepResult], None] | None = None
) -> list[StepResult]:
    """Every step of the checklist, none skipped after a FAIL (the post-flight: each
    step measures the same finished model, so one failure says nothing of the next)."""
    results: list[StepResult] = []
    for spec in cl.steps:
        results += run_checklist(Checklist(cl.name, [spec]), ctx, on_update)
    return results
