"""`cockpit postflight RUN_DIR [--json] [--checkpoint C] [--checklist C]`, and
postflight_after_run for the run command. Results go to postflight.json (the
shape of `cockpit preflight --json`), to a "## Post-flight" section of the
run's report.md (replaced in place on a re-run, the rest of the file kept byte
for byte), and to the terminal as a Rich table or one JSON object."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from cockpit.checks.base import Context
from cockpit.checks.engine import StepResult, load_checklist, overall, run_every_step
from cockpit.checks.postflight import joined
from cockpit.checks.postflight_load import PostflightError, choose_checkpoint, read_run
from cockpit.fmt import STEP_ICONS, STEP_STYLES, clean
from cockpit.model.runs import resolve
from core.checkpoint import atomic_write_text
from core.events import finite_or_none
from core.jsonl import tail_objects
from core.yamlmap import ProfileError

if TYPE_CHECKING:
    from argparse import Namespace

SECTION = "## Post-flight"


def to_json(
    profile: str, run_dir: Path, checkpoint: str | None, status: str, results: list[StepResult]
) -> dict:
    steps = [dict(r.to_dict(), seconds=round(r.seconds or 0.0, 3)) for r in results]
    return finite_or_none(
        {
            "profile": profile,
            "run": run_dir.name,
            "checkpoint": checkpoint,
            "status": status,
            "steps": steps,
        }
    )


def write_json(run_dir: Path, out: dict) -> Path:
    path = run_dir / "postflight.json"
    atomic_write_text(path, json.dumps(out, indent=1, allow_nan=False, ensure_ascii=False) + "\n")
    return path


# -----------------------------------------------------------------------------
# report.md


def _fence(text: str) -> str:
    """A backtick fence longer than any run of backticks in the text."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def section_markdown(out: dict) -> str:
    lines = [
        SECTION,
        "",
        f"**{out['status']}** on `{out['checkpoint']}` (`cockpit postflight {out['run']}`; "
        "details in postflight.json)",
        "",
        "| step | status | message |",
        "|---|---|---|",
    ]
    for s in out["steps"]:
        msg = s["message"].replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {s['id']} | {s['status']} | {msg} |")
    for s in out["steps"]:
        page = s["figures"].get("samples") if isinstance(s["figures"], dict) else None
        if not page:
            continue
        lines += ["", f"### Samples ({s['id']})", ""]
        for i, smp in enumerate(page, 1):
            verdict = {True: " ✓ valid", False: " ✗ invalid"}.get(smp.get("valid"), "")
            body = joined(smp)[:600]
            fence = _fence(body)
            lines += [f"{i}.{verdict}", "", fence, body, fence, ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _section_span(lines: list[str]) -> tuple[int, int] | None:
    """[start, end) of the post-flight section: its heading up to the next level-1 or
    level-2 heading outside a code fence, or the end of the file."""
    start, fence = None, None
    for i, line in enumerate(lines):
        m = re.match(r"^\s{0,3}(`{3,}|~{3,})", line)
        if m:
            mark = m.group(1)
            if fence is None:
                fence = mark
            elif mark[0] == fence[0] and len(mark) >= len(fence) and not line.strip()[len(mark) :]:
                fence = None
            continue
        if fence is not None:
            continue
        if start is None and line.rstrip() == SECTION:
            start = i
        elif start is not None and re.match(r"^#{1,2} ", line):
            return start, i
    return (start, len(lines)) if start is not None else None


def upsert_section(text: str, section: str) -> str:
    """`text` with its post-flight section replaced by `section`, or `section` appended."""
    lines = text.splitlines(keepends=True)
    span = _section_span(lines)
    if span is None:
        sep = "" if not text or text.endswith("\n\n") else "\n" if text.endswith("\n") else "\n\n"
        return text + sep + section
    a, b = span
    tail = "".join(lines[b:])
    return "".join(lines[:a]) + section + ("\n" + tail if tail else "")


def write_report_section(run_dir: Path, out: dict) -> Path:
    path = run_dir / "report.md"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = f"# Run {run_dir.name}\n"  # a trainer that writes no report: start one
    atomic_write_text(path, upsert_section(text, section_markdown(out)))
    return path


# -----------------------------------------------------------------------------
# the terminal


def text(s: object, style: str = "") -> Text:
    """What a run, a checkpoint or a sample says, as text: never markup, controls shown."""
    return Text(clean(str(s)), style=style)


def print_results(out: dict, fixes: dict[str, str]) -> None:
    con = Console(highlight=False)
    t = Table(
        title=text(f"post-flight: {out['run']} on {out['checkpoint']} — {out['status']}"),
        title_justify="left",
    )
    for col in ("", "step", "status", "message", "s"):
        t.add_column(col)
    for s in out["steps"]:
        t.add_row(
            *map(text, (STEP_ICONS[s["status"]], s["id"], s["status"], s["message"])),
            f"{s['seconds']:.1f}",
            style=STEP_STYLES.get(s["status"]),
        )
    con.print(t)
    for s in out["steps"]:
        for f in s["findings"]:
            con.print(text(f"{s['id']} {f['line']}", "bold") + text(f" ({f['kind']})"))
            con.print(text(f["preview"]))
        if s["status"] == "FAIL" and fixes.get(s["id"]):
            con.print(text(f"fix for {s['id']}: {fixes[s['id']]}"))


# -----------------------------------------------------------------------------
# the command: cockpit postflight RUN_DIR [--json] [--checkpoint C] [--checklist C]


def cmd_postflight(args: Namespace | SimpleNamespace) -> int:
    """Exit 0 when nothing failed, 1 on a FAIL, 2 on a bad run directory or checklist."""

    arg = getattr(args, "run_dir", None)
    run_dir = resolve(str(arg) if arg is not None else None)
    try:
        if run_dir is None:
            raise PostflightError(
                f"no run directory {arg or 'latest'!r}: give a run directory, a run id under "
                "logs/, or `latest` (`cockpit runs` lists them)"
            )
        profile, summary = read_run(run_dir)
        ckpt, why = choose_checkpoint(run_dir, getattr(args, "checkpoint", None))
        cl = load_checklist(getattr(args, "checklist", None) or "postflight")
    except (PostflightError, ProfileError) as e:
        print(f"error: post-flight cannot run: {e}", file=sys.stderr)
        return 2
    ctx = Context(profile=profile, logs=run_dir.parent, run_dir=run_dir, checkpoint=ckpt)
    ctx.loaded |= {"why": why, "summary": summary}
    results = run_every_step(cl, ctx)
    out = to_json(profile.name, run_dir, ckpt.name, overall(results), results)
    write_json(run_dir, out)
    write_report_section(run_dir, out)
    if getattr(args, "json", False):
        print(json.dumps(out, indent=1, allow_nan=False, ensure_ascii=False))
    else:
        print_results(out, {s.id: s.fix for s in cl.steps if s.fix})
    return 1 if out["status"] == "FAIL" else 0


def postflight_after_run(run_dir: Path | str, wait_s: float = 10.0) -> int:
    """Post-flight on a run that just ended (call it after the trainer exited): the
    default checklist, printed as a table. The trainer writes run_end before its
    report.md, so wait up to `wait_s` for a report as new as the run_end."""

    run_dir = Path(run_dir)
    t_end = _run_end_time(run_dir)
    t0 = time.time()
    while t_end is not None and time.time() - t0 < wait_s:
        rep = run_dir / "report.md"
        if rep.exists() and rep.stat().st_mtime >= t_end - 1:
            break
        time.sleep(0.1)
    return cmd_postflight(SimpleNamespace(run_dir=str(run_dir), checkpoint=None, checklist=None))


def _run_end_time(run_dir: Path) -> float | None:
    """The time of the last run_end, read from the events' last 64 KiB (run_end is last)."""
    for d in reversed(tail_objects(run_dir / "events.jsonl", 64 << 10)):
        if d.get("type") == "run_end":
            t = d.get("t")
            return float(t) if isinstance(t, int | float) else None
    return None
