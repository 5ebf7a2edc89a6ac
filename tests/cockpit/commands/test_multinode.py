"""`cockpit run --nnodes 2`: two launches on this machine playing two nodes, one c10d
rendezvous on 127.0.0.1, one shared run directory. Both ranks reach the end, each
cockpit supervises its own torchrun, and the run model lists both ranks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cockpit.session import Session
from tests.conftest import REPO, TINY_WALKS, events, result, sets

CFG = TINY_WALKS + [
    "train.max_steps=30",
    "train.epochs=null",
    "eval.every_epoch=false",
    "eval.every_steps=30",
    "checkpoint.every_epoch=false",
    "gate.metrics={}",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node(rd: Path, rank: int, port: int, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "cockpit.cli", "run", "--headless", "--skip-preflight"]
    cmd += ["--skip-postflight", "--nnodes", "2", "--nproc-per-node", "1"]
    cmd += ["--node-rank", str(rank), "--rdzv-endpoint", f"127.0.0.1:{port}"]
    cmd += ["--run-dir", str(rd), *extra, *sets(*CFG)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )


@pytest.mark.heavy  # two torchruns and two ranks on two cores: ~40 s
def test_two_nodes_one_rank_each_reach_the_end_and_both_ranks_are_listed(tmp_path):
    rd = tmp_path / "run"
    port = _free_port()
    procs = [_node(rd, 0, port), _node(rd, 1, port)]
    outs = []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=400)
        finally:
            if p.poll() is None:
                p.kill()
        outs.append(out)
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-4000:]
    assert result(rd)["status"] == "completed"
    start = next(e for e in events(rd) if e["type"] == "run_start")
    assert start["world_size"] == 2
    # each machine's launcher files stay its own; the core's files are the run's
    assert (rd / "supervisor.json").exists() and (
        rd / "nodes" / "node-1" / "supervisor.json"
    ).exists()
    assert (rd / "nodes" / "node-1" / "stdout.log").exists()
    assert sorted(p.name for p in (rd / "ranks").glob("node-*.jsonl")) == [
        "node-0.jsonl",
        "node-1.jsonl",
    ]
    # what the Ranks view reads: both ranks, both at the last step, both ended well
    s = Session(rd, None, notify=False)
    s.replay()
    s.review()
    ranks = s.model.ranks
    assert ranks is not None and [r.rank for r in ranks.ranks] == [0, 1]
    assert all(r.step == 30 and r.status == "completed" for r in ranks.ranks)
    assert not ranks.failures
    assert [f[0] for f in s.model.figures().ranks or ()] == [0, 1]


def test_a_multinode_command_line_missing_its_shared_run_dir_or_rendezvous_is_refused(capsys):
    from cockpit.cli import main

    base = ["run", "--headless", "--skip-preflight"]
    for extra, says in (
        (["--nnodes", "2"], "--run-dir"),
        (["--nnodes", "2", "--run-dir", "/tmp/x"], "--rdzv-endpoint"),
        (["--nnodes", "2", "--node-rank", "2", "--run-dir", "/tmp/x"], "0..1"),
        (["--nnodes", "2", "--run-dir", "/tmp/x", "--rdzv-endpoint", "no port"], "HOST:PORT"),
    ):
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err, err
