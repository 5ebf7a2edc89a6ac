"""What every check is made of: the context a checklist runs in, a kind's
declaration (its function, parameters, the figures its thresholds may name and
its fix), and the threshold rule. Imports nothing of the cockpit."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.config import Profile, load_profile

REPO = Path(__file__).resolve().parents[2]
MIB = 2**20
STATUSES = ("PENDING", "RUNNING", "PASS", "WARN", "FAIL", "SKIP")

Progress = Callable[[float, float], None]
"(done, total): how far a running check is"
Update = Callable[["StepResult"], None]
"told a step's result each time it changes"


@dataclass
class Context:
    profile: Profile
    logs: Path = Path("logs")  # where the run directory will be
    figures: dict = field(default_factory=dict)  # step id -> that step's figures
    run_dir: Path | None = None  # post-flight: the finished run's directory
    checkpoint: Path | None = None  # post-flight: the checkpoint its steps measure
    loaded: dict = field(default_factory=dict)  # post-flight: model and data, loaded once
    profile_ref: str | None = None  # the name or path it was loaded from (the probe runs it)
    sets: list[str] = field(default_factory=list)  # its --set overrides, and those fixes add
    gpus: str | None = None  # --gpus 8x80GB: the GPUs to size for, when planning elsewhere

    def use(self, key: str, value: Any) -> None:
        """Override a profile key for the rest of the checklist and the run that follows
        (a fix pointing data.paths at redacted copies)."""
        self.sets.append(f"{key}={json.dumps(value)}")  # JSON is YAML: --set parses it back
        self.profile = load_profile(self.profile_ref or self.profile.name, self.sets)


@dataclass(frozen=True)
class Kind:
    fn: Callable
    params: tuple[str, ...] = ()
    figures: tuple[str, ...] = ()  # what warn/fail thresholds may name
    fixer: Callable | None = None  # (spec, ctx, result, update) -> {"path": ...}; FixError


class FixError(Exception):
    """A fix that could not be made; the message says why."""


def threshold(
    spec: StepSpec, r: StepResult, figure: str, value: float, below: bool, what: str
) -> None:
    """Apply `fail`, then `warn`, for a figure that is bad when below (or above) its bar."""
    for level, bars in (("FAIL", spec.fail), ("WARN", spec.warn)):
        bar = bars.get(figure)
        if bar is not None and (value < bar if below else value > bar):
            r.status = level
            r.message = f"{what} ({figure} {value:,.4g} {'<' if below else '>'} {bar:,.4g})"
            return


# -----------------------------------------------------------------------------
# a step as the checklist declares it, and what running it found


@dataclass(frozen=True)
class StepSpec:
    id: str = ""
    "a short name, unique in the checklist (the JSON's `id`)"
    title: str = ""
    "what the step checks, in a few words"
    check: str | None = None
    "a built-in kind (dataset, secrets, tokenizer, compression, sizing, probe, disk, gpu)"
    run: str | None = None
    "or a shell command, run in the repository root: PASS on exit 0, FAIL otherwise"
    params: dict[str, Any] = field(default_factory=dict)
    "the kind's parameters"
    warn: dict[str, float] = field(default_factory=dict)
    "WARN thresholds, by the kind's figure names"
    fail: dict[str, float] = field(default_factory=dict)
    "FAIL thresholds, by the kind's figure names"
    fix: str | None = None
    "what to do when the step fails, told to the user"


@dataclass
class StepResult:
    id: str
    title: str
    status: str = "PENDING"
    message: str = ""
    figures: dict = field(default_factory=dict)
    findings: list[dict] = field(default_factory=list)  # {"file", "line", "kind", "preview"}
    progress: tuple[float, float] | None = None  # (done, total) while RUNNING
    seconds: float | None = None
    fixed: dict | None = None  # what the step's fix made, e.g. {"path": folder of copies}

    def to_dict(self) -> dict:
        d = {
            "id": self.id,
            "title": self.title,
            "status": self.status,
            "message": self.message,
            "figures": self.figures,
            "findings": self.findings,
            "seconds": None if self.seconds is None else round(self.seconds, 3),
        }
        if self.fixed is not None:
            d["fixed"] = self.fixed
        return d
