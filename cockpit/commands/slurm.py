"""`cockpit slurm`: an sbatch script that trains a profile on several nodes of a SLURM
cluster, printed (or written with --out) for the user to read and submit.

What the script does, on the first node of the allocation (where sbatch runs it):
- the run directory is `logs/<profile>-job<JOBID>` under this checkout, which must be
  on storage every node shares (or COCKPIT_RUN_DIR, set before sbatch); a requeued
  job keeps its job id, so it comes back to the same directory;
- the cockpit, headless, follows the run there (`cockpit watch`), its lines in
  `cockpit.log`;
- `srun` starts torchrun once per node, with a c10d rendezvous on the first node, and
  every rank `python -m core.train ... --resume auto` (a fresh start the first time,
  the newest checkpoint that verifies after a requeue); their output goes to the
  run's `stdout.log`, as under `cockpit run`;
- SIGTERM, which SLURM sends at preemption and (`--signal=B:TERM@S`) S seconds before
  the time limit, is passed on to torchrun on every node, which passes it to every
  rank: the ranks finish their step, save a checkpoint tagged `interrupt` and exit;
  then the script requeues the job (`#SBATCH --requeue` lets it), which resumes.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cockpit.supervisor import torchrun_command
from core.checkpoint import atomic_write_text
from core.config import ProfileError, load_profile

if TYPE_CHECKING:
    from argparse import Namespace

REPO = Path(__file__).resolve().parents[2]
PORT = 29400  # torchrun's usual c10d port, on the first node
TIME_RE = re.compile(r"(?:\d{1,3}-)?\d{1,3}:\d{2}:\d{2}")
NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _word(arg: str) -> str:
    """One shell word: literal (single-quoted) unless it refers to the script's own
    variables ($RUN_DIR, $HEAD_NODE, ...), which go in double quotes to expand."""
    if "$" not in arg:
        return shlex.quote(arg)
    return '"' + re.sub(r'(["\\`])', r"\\\1", arg) + '"'


def sbatch_script(
    profile: str,
    nodes: int,
    gpus_per_node: int,
    time_limit: str | None = None,
    partition: str | None = None,
    account: str | None = None,
    sets: list[str] | None = None,
    grace_s: int = 300,
) -> str:
    """The script, as text. `profile` as the user named it (a name or a path)."""
    name = Path(profile).stem
    run_cmd = torchrun_command(
        profile,
        Path("$RUN_DIR"),
        list(sets or []),
        gpus_per_node,
        nodes,
        ["--rdzv-backend=c10d", "--rdzv-endpoint=$HEAD_NODE:$PORT", "--rdzv-id=$SLURM_JOB_ID"],
    )
    run_cmd += ["--resume", "auto"]
    py = shlex.quote(sys.executable)
    head = [
        "#!/bin/bash",
        f"# Made by `cockpit slurm --profile {profile} --nodes {nodes} --gpus-per-node {gpus_per_node}`:",
        f"# trains profiles/{name} on {nodes} node(s) x {gpus_per_node} GPU(s), the cockpit headless on the",
        "# first. Submit with `sbatch FILE`; follow with `cockpit watch RUN_DIR` from any machine",
        "# that sees the run directory. Preempted or at its time limit, the job saves a",
        "# checkpoint, requeues itself and resumes from it.",
        f"#SBATCH --job-name=cockpit-{name}",
        f"#SBATCH --nodes={nodes}",
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --gpus-per-node={gpus_per_node}",
    ]
    if time_limit:
        head.append(f"#SBATCH --time={time_limit}")
    if partition:
        head.append(f"#SBATCH --partition={partition}")
    if account:
        head.append(f"#SBATCH --account={account}")
    head += [
        "#SBATCH --requeue",
        f"#SBATCH --signal=B:TERM@{grace_s}",
        "#SBATCH --open-mode=append",
        f"#SBATCH --output={REPO}/logs/slurm-%j.out",
    ]
    body = f"""
set -uo pipefail
cd {shlex.quote(str(REPO))}
# on storage every node shares: rank 0 writes the events there, every rank its figures
export RUN_DIR="${{COCKPIT_RUN_DIR:-{REPO}/logs/{name}-job$SLURM_JOB_ID}}"
export HEAD_NODE="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
export PORT={PORT}
mkdir -p "$RUN_DIR"
echo "cockpit: job $SLURM_JOB_ID (restart ${{SLURM_RESTART_COUNT:-0}}) trains {name} in $RUN_DIR"

# the cockpit, headless, on this node: alerts, stragglers, failed ranks in cockpit.log
{py} -m cockpit.cli watch "$RUN_DIR" --headless >> "$RUN_DIR/cockpit.log" 2>&1 &
COCKPIT=$!

# one torchrun a node, c10d rendezvous on the first; every rank resumes when it can
srun --kill-on-bad-exit=1 --ntasks-per-node=1 \\
  {" ".join(_word(a) for a in run_cmd)} \\
  >> "$RUN_DIR/stdout.log" 2>&1 &
SRUN=$!

on_term() {{
  echo "cockpit: SIGTERM (preemption or the time limit): the ranks save, then the job requeues"
  kill -TERM "$SRUN" 2>/dev/null  # srun passes it to torchrun on every node, torchrun to the ranks
  wait "$SRUN"
  scontrol requeue "$SLURM_JOB_ID"
  kill "$COCKPIT" 2>/dev/null
  exit 0
}}
trap on_term TERM

wait "$SRUN"
rc=$?
sleep 5  # the cockpit reads the run's end before it goes
kill "$COCKPIT" 2>/dev/null
exit $rc
"""
    return "\n".join(head) + "\n" + body


def cmd_slurm(args: Namespace) -> int:
    try:
        load_profile(args.profile, args.set)
    except ProfileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    problems = []
    if args.nodes < 1:
        problems.append(f"--nodes must be 1 or more, got {args.nodes}")
    if args.gpus_per_node < 1:
        problems.append(f"--gpus-per-node must be 1 or more, got {args.gpus_per_node}")
    if args.time and not TIME_RE.fullmatch(args.time):
        problems.append(f"--time must be HH:MM:SS or D-HH:MM:SS, got {args.time!r}")
    for key in ("partition", "account"):
        v = getattr(args, key)
        if v and not NAME_RE.fullmatch(v):
            problems.append(f"--{key} must be letters, digits, '.', '_' or '-', got {v!r}")
    if problems:
        print("error: " + "; ".join(problems), file=sys.stderr)
        return 2
    text = sbatch_script(
        args.profile, args.nodes, args.gpus_per_node, args.time, args.partition, args.account,
        list(args.set),
    )  # fmt: skip
    if args.out:
        out = Path(args.out)
        atomic_write_text(out, text)
        out.chmod(0o755)
        print(f"cockpit: wrote {out}; submit it with: sbatch {out}")
    else:
        sys.stdout.write(text)
    return 0
