"""`cockpit slurm`: the sbatch script is valid bash, runs torchrun as `cockpit run`
would with a c10d rendezvous on the first node and `--resume auto`, and, run under
stand-ins for srun and scontrol, saves on SIGTERM, requeues and resumes."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time

import pytest

from cockpit.commands.slurm import sbatch_script
from tests.conftest import REPO, TINY_WALKS, events, result


def _srun_argv(script: str) -> list[str]:
    """The command srun starts, as the shell would split it (variables left as named)."""
    lines = script.splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.startswith("srun "))
    cmd = " ".join(ln.rstrip("\\").strip() for ln in lines[i : i + 2])
    return shlex.split(cmd)


def test_the_script_is_valid_bash_with_the_torchrun_a_multinode_run_needs(tmp_path):
    text = sbatch_script("small-20m", 4, 8, "12:00:00", "gpu", "proj", ["train.lr=1e-3"])
    path = tmp_path / "job.sh"
    path.write_text(text)
    r = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for line in ("#SBATCH --nodes=4", "#SBATCH --gpus-per-node=8", "#SBATCH --time=12:00:00",
                 "#SBATCH --partition=gpu", "#SBATCH --account=proj", "#SBATCH --requeue",
                 "#SBATCH --ntasks-per-node=1"):  # fmt: skip
        assert line in text.splitlines(), line
    assert any(ln.startswith("#SBATCH --signal=B:TERM@") for ln in text.splitlines())
    argv = _srun_argv(text)
    tr = argv[argv.index("torch.distributed.run") + 1 :]
    assert "--nnodes=4" in tr and "--nproc-per-node=8" in tr and "--standalone" not in tr
    assert {
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=$HEAD_NODE:$PORT",
        "--rdzv-id=$SLURM_JOB_ID",
    } <= set(tr)
    core = tr[tr.index("-m") :]
    assert core[:2] == ["-m", "core.train"]
    assert core[core.index("--run-dir") + 1] == "$RUN_DIR" and core[-2:] == ["--resume", "auto"]
    assert core[core.index("--set") + 1] == "train.lr=1e-3"
    assert "cockpit.cli watch" in text and "--headless" in text  # the cockpit on the first node
    assert "scontrol requeue" in text and "trap on_term TERM" in text


def test_bad_arguments_exit_2_with_the_reason(capsys):
    from cockpit.cli import main

    assert main(["slurm", "--profile", "small-20m", "--nodes", "0", "--gpus-per-node", "8",
                 "--time", "forever"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "--nodes must be 1 or more" in err and "--time must be HH:MM:SS" in err
    assert (
        main(["slurm", "--profile", "no-such-profile", "--nodes", "1", "--gpus-per-node", "1"]) == 2
    )


FAKE_SRUN = """#!/bin/bash
# srun's stand-in: one task, here; its options dropped; signals reach the command
while [[ "$1" == --* ]]; do shift; done
export SLURM_NODEID=0
exec "$@"
"""
FAKE_SCONTROL = """#!/bin/bash
case "$1 $2" in
  "show hostnames") echo 127.0.0.1 ;;
  requeue*) echo "$@" >> "$REQUEUED" ;;
esac
"""


@pytest.mark.heavy  # a real run, stopped and resumed: ~1 min on 2 cores
def test_sigterm_saves_requeues_and_the_requeued_job_resumes(tmp_path):
    cfg = TINY_WALKS + ["train.max_steps=400", "train.epochs=null", "eval.every_epoch=false",
                        "eval.every_steps=400", "checkpoint.every_epoch=false", "gate.metrics={}",
                        "train.device=cpu"]  # fmt: skip
    script = tmp_path / "job.sh"
    script.write_text(sbatch_script("demo-walks", 1, 1, None, None, None, cfg, grace_s=60))
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        (bin_ / name).write_text(text)
        (bin_ / name).chmod(0o755)
    rd = tmp_path / "run"
    env = dict(os.environ, PATH=f"{bin_}:{os.environ['PATH']}", SLURM_JOB_ID="4242",
               SLURM_JOB_NODELIST="n1", COCKPIT_RUN_DIR=str(rd), REQUEUED=str(tmp_path / "rq"),
               OMP_NUM_THREADS="1")  # fmt: skip
    job = subprocess.Popen(["bash", str(script)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        t0 = time.time()
        while not any(e["type"] == "step" and e["step"] >= 20 for e in events(rd)):
            assert job.poll() is None and time.time() - t0 < 240, (rd / "stdout.log").read_text()[
                -3000:
            ]
            time.sleep(0.2)
        job.send_signal(signal.SIGTERM)  # what SLURM does at preemption
        out, _ = job.communicate(timeout=240)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 0, out
    assert result(rd)["status"] == "interrupted"
    assert (tmp_path / "rq").read_text().split() == ["requeue", "4242"]
    k = result(rd)["summary"]["steps"]
    # the requeued job: the same job id, the same run directory, resumed
    r = subprocess.run(["bash", str(script)], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=400)  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:]
    assert result(rd)["status"] == "completed"
    log = (rd / "stdout.log").read_text()
    assert f"step-{k:07d}.pt" in log and "resume: from" in log
    steps = [e["step"] for e in events(rd) if e["type"] == "step"]
    assert steps == list(range(1, 401))  # no step lost or repeated across the requeue
    assert (rd / "cockpit.log").exists()
