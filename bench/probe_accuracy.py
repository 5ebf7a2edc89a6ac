"""The probe's estimate against the real thing: the pre-flight probe on a
profile (15 steps in a subprocess), then the real run's first N steps, side by side.

    .venv/bin/python bench/probe_accuracy.py [--profile tiny-text] [--steps 50]
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main():
    from cockpit.checks.base import Context
    from cockpit.checks.cost import check_probe
    from cockpit.checks.engine import StepResult, load_checklist
    from core.config import load_profile

    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="tiny-text")
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args()
    spec = next(s for s in load_checklist("pretrain").steps if s.id == "probe")
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context(load_profile(args.profile), logs=Path(tmp), profile_ref=args.profile)
        r = StepResult("probe", "probe")
        check_probe(spec, ctx, r, lambda *a: None)
        f = r.figures
        print(f"probe: {r.status}: {r.message}")
        d = Path(tmp) / "real"
        sets = [f"train.max_steps={args.steps + 5}", "checkpoint.every_steps=null"]
        sets += ["eval.every_steps=null"]
        cmd = [sys.executable, "-m", "core.train", "--profile", args.profile, "--run-dir", str(d)]
        for s in sets:
            cmd += ["--set", s]
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        evs = [json.loads(x) for x in (d / "events.jsonl").read_text().splitlines()]
        steps = [e for e in evs if e["type"] == "step"]
        n = args.steps
        real = steps[n - 1]["t"] - steps[0]["t"] + steps[0]["step_ms"] / 1e3
        est = n * f["step_ms"] / 1e3
        print(
            f"first {n} steps of {args.profile}: estimated {est:.1f} s "
            f"({f['step_ms']:.1f} ms a step, probe's peak {f['peak_mem_mib']:.0f} MiB), "
            f"measured {real:.1f} s: estimate / real = {est / real:.3f} (target within 25%)"
        )


if __name__ == "__main__":
    main()
