"""The `cockpit` command.

cockpit run      [--profile P] [--headless] [--yes] [--fix] [--skip-preflight] [--skip-postflight]
                 [--set k=v] [--health k=v]   pre-flight, the run, post-flight; exit code: the trainer's
cockpit watch    [RUN_DIR|latest] [--headless]    attach to a live run or replay a finished one
cockpit runs                                      every run under logs/ with its status
cockpit preflight [--profile P] [--checklist C] [--yes [--fix]] [--json]   exit 0 ok, 1 a FAIL, 2 bad input
cockpit postflight [RUN_DIR|latest] [--checkpoint C] [--json]            exit 0 ok, 1 a FAIL, 2 bad input
cockpit export   [RUN_DIR|latest] [--csv] [--tensorboard] [--out DIR]
cockpit verify   RUN_DIR|CHECKPOINT     exit 0 valid, 1 invalid (with the reason)
cockpit validate PROFILE [--set k=v]    exit 0 valid, 2 with every problem listed
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from core import checkpoint as C
from core.config import ProfileError, load_profile


def cmd_validate(args) -> int:
    try:
        p = load_profile(args.profile, args.set)
    except ProfileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from cockpit.checks_run import param_counts

    total, non_emb, vocab = param_counts(p)
    t = p.train
    budget = f"{t.max_steps} steps" if t.max_steps else f"{t.epochs} epochs"
    tokens_per_step = t.batch_size * t.grad_accum * p.data.context
    print(f"{args.profile}: valid profile '{p.name}'")
    print(
        f"  model    {p.model.n_layer}L x {p.model.n_head}H x {p.model.n_embd}d, vocab {vocab}: "
        f"{total:,} parameters ({non_emb:,} non-embedding)"
    )
    print(
        f"  data     {p.data.source}, context {p.data.context}, stride {p.data.stride}"
        + (f", paths {p.data.paths}" if p.data.source == "files" else "")
    )
    print(
        f"  train    {budget}, {tokens_per_step:,} tokens/step, lr {t.lr:g}, device {t.device}, dtype {t.dtype}"
    )
    if p.gate.metrics:
        print("  gate     " + ", ".join(f"{k} >= {v:g}" for k, v in p.gate.metrics.items()))
    return 0


def cmd_verify(args) -> int:
    path = Path(args.path)
    if path.is_file():
        why = C.verify(path, deep=True)
        if why:
            print(f"INVALID {path}: {why}")
            return 1
        meta = C.read_sidecar(path)
        print(
            f"OK {path}: step {meta['step']}, {meta['bytes']:,} bytes, sha256 {meta['sha256'][:12]}…, tags {', '.join(meta['tags'])}"
        )
        return 0
    ckpt_dir = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    if not ckpt_dir.is_dir():
        print(f"INVALID {path}: no such run directory or checkpoint")
        return 1
    results, latest_why = C.verify_run(ckpt_dir)
    bad = 0
    for p, why in results:
        print(f"{'OK     ' if why is None else 'INVALID'} {p.name}" + (f": {why}" if why else ""))
        bad += why is not None
    lp = C.latest(ckpt_dir)
    if latest_why:
        print(f"INVALID latest: {latest_why}")
    else:
        print(f"OK      latest -> {lp.name}")
    if bad or latest_why:
        print(
            f"{ckpt_dir}: {bad} invalid checkpoint(s){'; latest is not valid' if latest_why else ''}"
        )
        return 1
    print(f"{ckpt_dir}: {len(results)} checkpoint(s) valid")
    return 0


def _launch():
    from cockpit import launch  # its collectors load psutil, watchdog and NVML: only when needed

    return launch


def _preflight():
    from cockpit import preflight

    return preflight


def _export():
    from cockpit import export

    return export


def _postflight_cmd():
    from cockpit import postflight_cmd  # loads torch: only when asked

    return postflight_cmd


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="cockpit", description="A terminal cockpit for language-model training runs."
    )
    sub = ap.add_subparsers(dest="cmd", required=True)

    def display_opts(sp) -> None:
        sp.add_argument(
            "--headless",
            action="store_true",
            help="plain progress lines instead of the TUI (the default when not a terminal)",
        )
        sp.add_argument(
            "--every",
            type=float,
            default=10.0,
            metavar="SECONDS",
            help="a summary line this often (default 10), besides one per eval",
        )
        sp.add_argument(
            "--health",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override an alert threshold, e.g. stall_min_s=120 (see cockpit/health.py)",
        )

    r = sub.add_parser("run", help="launch a training run and follow it")
    r.add_argument(
        "--profile", default="demo-walks", help="profile name (profiles/NAME.yaml) or path"
    )
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    r.add_argument(
        "--yes", action="store_true", help="ask nothing: run the pre-flight, then launch"
    )
    r.add_argument(
        "--fix", action="store_true", help="apply a failing pre-flight step's fix and re-run it"
    )
    r.add_argument(
        "--skip-preflight", action="store_true", help="launch without the pre-flight checklist"
    )
    r.add_argument(
        "--skip-postflight",
        action="store_true",
        help="no post-flight checks (perplexity, generations, samples) after the run",
    )
    r.add_argument("--run-dir", help="run directory (default logs/<YYYYmmdd-HHMMSS>-<profile>)")
    r.add_argument(
        "--nproc-per-node",
        type=int,
        default=1,
        metavar="N",
        help="DDP: N ranks on this machine under torchrun (gloo on CPU, NCCL on GPU)",
    )
    r.add_argument("--nnodes", type=int, default=1, metavar="M", help="DDP: M machines")
    r.add_argument(
        "--torchrun-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="passed to torchrun as is, e.g. --torchrun-arg=--rdzv-endpoint=host:29400",
    )
    r.add_argument(
        "--format",
        choices=("auto", "nanogpt", "nanochat", "hf", "lightning", "jsonl", "kv"),
        default="auto",
        help="with -- CMD: how to read its stdout (default: detect from the first lines)",
    )
    r.add_argument(
        "cmd",
        nargs=argparse.REMAINDER,
        metavar="-- CMD",
        help="run any training command instead of a profile; its stdout becomes events",
    )
    display_opts(r)
    r.set_defaults(fn=lambda a: _launch().cmd_run(a))
    w = sub.add_parser(
        "watch", help="attach to a live run (history first) or replay a finished one"
    )
    w.add_argument("run", nargs="?", default="latest", help="run directory, run id, or latest")
    display_opts(w)
    w.set_defaults(fn=lambda a: _launch().cmd_watch(a))
    pf = sub.add_parser("preflight", help="run the pre-flight checklist for a profile")
    pf.add_argument("--profile", default="demo-walks", help="profile name or path")
    pf.add_argument("--checklist", help="checklist name or path (default: the profile's)")
    pf.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    pf.add_argument("--yes", action="store_true", help="ask nothing; print the results")
    pf.add_argument("--json", action="store_true", help="print one JSON object")
    pf.add_argument(
        "--fix", action="store_true", help="with --yes: apply a failing step's fix, re-run it"
    )
    pf.set_defaults(fn=lambda a: _preflight().cmd_preflight(a))
    po = sub.add_parser(
        "postflight", help="check a finished run: perplexity, generations, samples (seed 000_)"
    )
    po.add_argument("run_dir", nargs="?", default="latest", help="run directory, run id or latest")
    po.add_argument("--checkpoint", help="this checkpoint instead of the best (or final) one")
    po.add_argument("--checklist", help="checklist name or path (default: postflight)")
    po.add_argument("--json", action="store_true", help="print one JSON object")
    po.set_defaults(fn=lambda a: _postflight_cmd().cmd_postflight(a))
    ex = sub.add_parser("export", help="a run's curves and samples as CSV or TensorBoard files")
    ex.add_argument("run_dir", nargs="?", default="latest", help="run directory, run id or latest")
    ex.add_argument(
        "--csv", action="store_true", help="steps, evals, checkpoints, system (default)"
    )
    ex.add_argument("--tensorboard", action="store_true", help="event files (needs tensorboard)")
    ex.add_argument("--out", help="where to write (default RUN_DIR/export/)")
    ex.set_defaults(fn=lambda a: _export().cmd_export(a))
    rs = sub.add_parser("runs", help="list the runs under logs/ with their status")
    rs.add_argument("--logs", default="logs", help="where the run directories are (default logs)")
    rs.add_argument("--headless", action="store_true", help="a plain table instead of the screen")
    rs.set_defaults(fn=lambda a: _launch().cmd_runs(a))
    v = sub.add_parser(
        "verify",
        help="check a run's checkpoints (or one checkpoint): sidecar, size, sha256, latest",
    )
    v.add_argument("path", help="run directory, checkpoints/ folder, or step-NNNNNNN.pt")
    v.set_defaults(fn=cmd_verify)
    va = sub.add_parser("validate", help="check a profile without running it")
    va.add_argument("profile", help="profile name (profiles/NAME.yaml) or path")
    va.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    va.set_defaults(fn=cmd_validate)
    args = ap.parse_args(argv)
    try:
        return args.fn(args)
    except BrokenPipeError:
        # `cockpit run | head`: the reader left; the trainer, in its own session, goes on
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
