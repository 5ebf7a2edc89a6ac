"""The `cockpit` command.

cockpit run      [--profile P] [--headless] [--yes] [--fix] [--skip-preflight] [--skip-postflight]
                 [--set k=v] [--health k=v] [--notify URL] [--price-kwh P]
                 pre-flight, the run, post-flight; exit code: the trainer's
cockpit watch    [RUN_DIR|latest] [--headless] [--notify URL]   attach to a live run or replay one
cockpit runs                                      every run under logs/ with its status
cockpit index    [RUN_DIR|latest]                 write the run's events.idx: a long run then opens at once
cockpit serve    [RUN_DIR|latest] [--host H] [--port P] [--allow-control]   the monitor in a browser
cockpit compare  RUN RUN [RUN ...]                 up to 8 runs' curves overlaid, their figures side by side
cockpit preflight [--profile P] [--checklist C] [--yes [--fix]] [--json]   exit 0 ok, 1 a FAIL, 2 bad input
cockpit postflight [RUN_DIR|latest] [--checkpoint C] [--json]            exit 0 ok, 1 a FAIL, 2 bad input
cockpit export   [RUN_DIR|latest] [--csv] [--tensorboard] [--out DIR]
cockpit export   [RUN_DIR|latest] --model [--step N] [--format pt|safetensors]   one checkpoint's model, one file
cockpit verify   RUN_DIR|CHECKPOINT     exit 0 valid, 1 invalid (with the reason)
cockpit validate PROFILE [--set k=v]    exit 0 valid, 2 with every problem listed
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="cockpit", description="A terminal cockpit for language-model training runs."
    )
    sub = ap.add_subparsers(dest="cmd", required=True)

    def display_opts(sp: argparse.ArgumentParser) -> None:
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
            help="override an alert threshold, e.g. stall_min_s=120 (see cockpit/model/health.py)",
        )

    def notify_opts(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--notify",
            action="append",
            default=[],
            metavar="URL",
            help="send alerts, a gate pass and the run's end here (repeatable; also notify: in "
            "~/.config/cockpit/config.yaml): ntfy://host/topic, https://hooks.slack.com/…, "
            "slack+https://…, or any https:// URL for a JSON POST",
        )
        sp.add_argument(
            "--notify-level",
            choices=("info", "warn", "error"),
            default=None,
            help="send alerts at or above this level (default error)",
        )
        sp.add_argument(
            "--price-kwh",
            type=float,
            default=None,
            metavar="PRICE",
            help="what a kWh costs you: the run's energy is shown with its cost",
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
        "--gpus",
        metavar="NxMEM",
        help="size for these GPUs (e.g. 8x80GB) instead of this machine's: planning where they are not",
    )
    r.add_argument(
        "--nproc-per-node",
        type=int,
        default=1,
        metavar="N",
        help="DDP: N ranks on this machine under torchrun (gloo on CPU, NCCL on GPU)",
    )
    r.add_argument(
        "--nnodes",
        type=int,
        default=1,
        metavar="M",
        help="DDP over M machines: run the same command on each, with its --node-rank, the "
        "same --rdzv-endpoint and the same --run-dir on storage every machine shares",
    )
    r.add_argument(
        "--node-rank",
        type=int,
        default=0,
        metavar="R",
        help="with --nnodes: this machine's number, 0..M-1 (0 keeps stdout.log and "
        "supervisor.json in the run directory, R>0 under nodes/node-R/)",
    )
    r.add_argument(
        "--rdzv-endpoint",
        metavar="HOST:PORT",
        help="with --nnodes: torchrun's c10d rendezvous, a port on one of the machines "
        "(usually node 0's), the same on every machine",
    )
    r.add_argument(
        "--rdzv-id",
        metavar="ID",
        help="with --nnodes: the rendezvous id, the same on every machine (default: the "
        "run directory's name)",
    )
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
        "--checkpoints",
        action="append",
        default=[],
        metavar="DIR",
        help="with -- CMD: where it saves checkpoints (default: its known layouts: HF "
        "checkpoint-N/, Lightning *.ckpt, nanoGPT ckpt.pt); listed with a sha256 record",
    )
    r.add_argument(
        "--no-pty",
        action="store_true",
        help="with -- CMD: its output to the log through no terminal (bars draw less often)",
    )
    r.add_argument(
        "cmd",
        nargs=argparse.REMAINDER,
        metavar="-- CMD",
        help="run any training command instead of a profile; its stdout becomes events",
    )
    display_opts(r)
    notify_opts(r)
    r.set_defaults(command=("run", "cmd_run"))
    w = sub.add_parser(
        "watch", help="attach to a live run (history first) or replay a finished one"
    )
    w.add_argument("run", nargs="?", default="latest", help="run directory, run id, or latest")
    display_opts(w)
    notify_opts(w)
    w.set_defaults(command=("watch", "cmd_watch"))
    ix = sub.add_parser(
        "index", help="write a run's events.idx now: a long finished run then opens at once"
    )
    ix.add_argument("run", nargs="?", default="latest", help="run directory, run id, or latest")
    ix.add_argument("--background", action="store_true", help=argparse.SUPPRESS)
    ix.set_defaults(command=("index", "cmd_index"))
    pf = sub.add_parser("preflight", help="run the pre-flight checklist for a profile")
    pf.add_argument("--profile", default="demo-walks", help="profile name or path")
    pf.add_argument("--checklist", help="checklist name or path (default: the profile's)")
    pf.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    pf.add_argument("--yes", action="store_true", help="ask nothing; print the results")
    pf.add_argument("--json", action="store_true", help="print one JSON object")
    pf.add_argument(
        "--gpus",
        metavar="NxMEM",
        help="size for these GPUs (e.g. 8x80GB) instead of this machine's: planning where they are not",
    )
    pf.add_argument(
        "--fix", action="store_true", help="with --yes: apply a failing step's fix, re-run it"
    )
    pf.set_defaults(command=("preflight", "cmd_preflight"))
    po = sub.add_parser("postflight", help="check a finished run: perplexity, generations, samples")
    po.add_argument("run_dir", nargs="?", default="latest", help="run directory, run id or latest")
    po.add_argument("--checkpoint", help="this checkpoint instead of the best (or final) one")
    po.add_argument("--checklist", help="checklist name or path (default: postflight)")
    po.add_argument("--json", action="store_true", help="print one JSON object")
    po.set_defaults(command=("postflight", "cmd_postflight"))
    ex = sub.add_parser("export", help="a run's curves and samples as CSV or TensorBoard files")
    ex.add_argument("run_dir", nargs="?", default="latest", help="run directory, run id or latest")
    ex.add_argument(
        "--csv", action="store_true", help="steps, evals, checkpoints, system (default)"
    )
    ex.add_argument("--tensorboard", action="store_true", help="event files (needs tensorboard)")
    ex.add_argument("--out", help="where to write (default RUN_DIR/export/)")
    ex.add_argument(
        "--model",
        action="store_true",
        help="a checkpoint's model weights as one file (a sharded checkpoint gathered)",
    )
    ex.add_argument(
        "--step", type=int, help="with --model: the checkpoint of this step (default latest)"
    )
    ex.add_argument(
        "--format", choices=("pt", "safetensors"), default="pt", help="with --model (default pt)"
    )
    ex.set_defaults(command=("export", "cmd_export"))
    rs = sub.add_parser("runs", help="list the runs under logs/ with their status")
    rs.add_argument("--logs", default="logs", help="where the run directories are (default logs)")
    rs.add_argument("--headless", action="store_true", help="a plain table instead of the screen")
    rs.set_defaults(command=("runs", "cmd_runs"))
    se = sub.add_parser(
        "serve",
        help="the monitor of a run in a web browser (read-only, localhost, behind a token)",
    )
    se.add_argument("run", nargs="?", default="latest", help="run directory, run id, or latest")
    se.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every network)",
    )
    se.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free one)")
    se.add_argument(
        "--allow-control",
        action="store_true",
        help="offer the save, stop and dump keys on the page (default: read-only)",
    )
    se.add_argument("--health", action="append", default=[], metavar="KEY=VALUE",
                    help="override an alert threshold, e.g. stall_min_s=120")  # fmt: skip
    se.add_argument("--visitor", action="store_true", help=argparse.SUPPRESS)  # one page's monitor
    se.set_defaults(command=("serve", "cmd_serve"))
    co = sub.add_parser(
        "compare", help="up to 8 runs: loss curves overlaid, figures and config differences"
    )
    co.add_argument("runs", nargs="+", metavar="RUN", help="run directories or run ids (2 to 8)")
    co.add_argument("--logs", default="logs", help="where run ids are looked up (default logs)")
    co.add_argument("--headless", action="store_true", help="the figures as a plain table")
    co.set_defaults(command=("compare", "cmd_compare"))
    v = sub.add_parser(
        "verify",
        help="check a run's checkpoints (or one checkpoint): sidecar, size, sha256, latest",
    )
    v.add_argument(
        "path", help="run directory, checkpoints/ folder, step-NNNNNNN.pt or step-NNNNNNN/"
    )
    v.set_defaults(command=("verify", "cmd_verify"))
    sl = sub.add_parser(
        "slurm",
        help="print an sbatch script that trains a profile on several nodes (requeue on preemption)",
    )
    sl.add_argument("--profile", required=True, help="profile name (profiles/NAME.yaml) or path")
    sl.add_argument("--nodes", type=int, required=True, metavar="N", help="nodes to allocate")
    sl.add_argument("--gpus-per-node", type=int, required=True, metavar="G", help="ranks a node")
    sl.add_argument("--time", metavar="HH:MM:SS", help="the job's time limit")
    sl.add_argument("--partition", metavar="X")
    sl.add_argument("--account", metavar="Y")
    sl.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    sl.add_argument("--out", metavar="FILE", help="write the script here instead of printing it")
    sl.set_defaults(command=("slurm", "cmd_slurm"))
    va = sub.add_parser("validate", help="check a profile without running it")
    va.add_argument("profile", help="profile name (profiles/NAME.yaml) or path")
    va.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    va.set_defaults(command=("validate", "cmd_validate"))
    args = ap.parse_args(argv)
    module, fn = args.command
    # One module per command, imported only when that command runs: `cockpit --help`
    # and `cockpit verify` never load torch, textual or the collectors.
    command = getattr(importlib.import_module(f"cockpit.commands.{module}"), fn)
    try:
        return command(args)
    except BrokenPipeError:
        # `cockpit run | head`: the reader left; the trainer, in its own session, goes on
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
