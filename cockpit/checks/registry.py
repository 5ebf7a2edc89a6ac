"""Every kind a checklist step can `check`, by name: the pre-flight kinds of
cockpit.checks.data and cockpit.checks.cost, and the post-flight ones of
cockpit.checks.postflight. The engine reads kinds only from here."""

from __future__ import annotations

from cockpit.checks.base import Context, FixError, Kind, Progress, StepResult, StepSpec, Update
from cockpit.checks.cost import RUN_KINDS
from cockpit.checks.data import DATA_KINDS, run_command
from cockpit.checks.postflight import POSTFLIGHT_KINDS


def all_kinds() -> dict[str, Kind]:
    """Every kind by name."""
    return {**DATA_KINDS, **RUN_KINDS, **POSTFLIGHT_KINDS}


def apply_fix(spec: StepSpec, ctx: Context, r: StepResult, update: Update) -> dict:
    kind = all_kinds().get(spec.check) if spec.check else None
    if kind is None or kind.fixer is None:
        raise FixError(f"`{spec.id}` has no automatic fix; {spec.fix or 'fix it by hand'}")
    return kind.fixer(spec, ctx, r, update)


def run_step(spec: StepSpec, ctx: Context, r: StepResult, progress: Progress) -> None:
    if spec.run is not None:
        run_command(spec, ctx, r, progress)
    else:
        assert spec.check is not None  # load_checklist: a step has `check` or `run`
        all_kinds()[spec.check].fn(spec, ctx, r, progress)
