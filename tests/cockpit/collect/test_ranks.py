"""Per-rank figures under torchrun: the command, the reader, the straggler and
failing-rank judgements, and a real 2-rank run launched by the supervisor."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from cockpit.collect.ranks import (
    RankReader,
    RankState,
    find_failures,
    find_stragglers,
    parse_torchrun_failures,
    rank_log,
    rank_pids,
    running_pids,
    snapshot,
)
from cockpit.supervisor import Trainer, catches, log_tail, torchrun_command
from tests.conftest import ENDLESS_WALKS, REPO, TINY_WALKS, events

# stdout.log's tail after rank 1 was killed with SIGKILL (torch 2.13, --role=rank --tee=3);
# torchrun ends two of these lines with a space, restored below (ruff strips it here)
KILLED = """\
[rank0]:step 81/1000000 | epoch 2 | loss 3.4980 | lr 4.86e-06 | 55.8k tok/s | 9 ms | mfu 11.4%
[rank0]:Traceback (most recent call last):
[rank0]:  File "/work/main/core/runtime.py", line 110, in agree
[rank0]:    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
[rank0]:RuntimeError: [../gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:6572: Connection reset by peer.
E1121 13:15:02.835000 16870 torch/distributed/elastic/multiprocessing/api.py:1002] failed (exitcode: -9) local_rank: 1 (pid: 16888) of binary: /work/main/.venv/bin/python
Traceback (most recent call last):
  File "/work/main/.venv/lib/python3.11/site-packages/torch/distributed/launcher/api.py", line 383, in launch_agent
    raise ChildFailedError(
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
core.train FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2026-11-21_13:15:02
  host      : localhost
  rank      : 0 (local_rank: 0)
  exitcode  : 1 (pid: 16887)
  error_file: <N/A>
  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-11-21_13:15:01
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 16888)  (SIGKILL)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 16888
============================================================
"""
KILLED = KILLED.replace("Error:\n=", "Error: \n=").replace("(pid: 16887)\n", "(pid: 16887) \n")


# -----------------------------------------------------------------------------
# the command


def test_torchrun_command_runs_the_core_under_torchrun(tmp_path):
    rd = tmp_path / "run"
    cmd = torchrun_command("demo-walks", rd, ["train.max_steps=5"], 2)
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    i = cmd.index("-m", 3)
    launcher, trainer = cmd[3:i], cmd[i:]
    assert "--standalone" in launcher and "--nproc-per-node=2" in launcher
    assert {"--nnodes=1", "--role=rank", "--tee=3", f"--log-dir={rd / 'torchrun'}"} <= set(launcher)
    assert trainer == ["-m", "core.train", "--profile", "demo-walks", "--run-dir", str(rd)] + [
        "--set",
        "train.max_steps=5",
    ]


def test_torchrun_command_for_several_nodes_takes_the_rendezvous_from_extra(tmp_path):
    extra = ["--rdzv-backend=c10d", "--rdzv-endpoint=node0:29400", "--rdzv-id=job7"]
    cmd = torchrun_command("demo-walks", tmp_path, [], 8, nnodes=2, extra=extra)
    assert "--standalone" not in cmd and "--nnodes=2" in cmd and "--nproc-per-node=8" in cmd
    assert cmd.index("--rdzv-id=job7") < cmd.index("core.train")


# -----------------------------------------------------------------------------
# reading the rank files


def _line(**d) -> str:
    return json.dumps({"v": 1, "t": time.time(), **d}) + "\n"


def test_reader_follows_the_files_incrementally_and_waits_out_a_torn_line(tmp_path):
    d = tmp_path / "ranks"
    d.mkdir()
    f0 = d / "rank-0.jsonl"
    start = _line(type="start", rank=0, local_rank=0, world_size=2, pid=11, host="h", device="cpu")
    step1 = _line(type="step", step=1, step_ms=10.0, fwd_ms=3.0, rss_mib=100.0)
    step2 = _line(type="step", step=2, step_ms=12.0, fwd_ms=4.0, rss_mib=101.0)
    f0.write_text(start + step1 + step2[:20])  # torn mid-line
    (d / "rank-1.jsonl").write_text(_line(type="start", rank=1, pid=12, host="h"))
    (d / "notes.txt").write_text("not a rank file")
    r = RankReader(tmp_path)
    st = r.poll()
    assert sorted(st) == [0, 1]
    assert st[0].pid == 11 and st[0].step == 1 and list(st[0].fwd_ms) == [3.0]
    with open(f0, "a") as f:
        f.write(step2[20:] + _line(type="end", step=2, status="completed", exit_code=0))
    st = r.poll()
    assert st[0].step == 2 and list(st[0].step_ms) == [10.0, 12.0]
    assert st[0].end["status"] == "completed"
    with open(f0, "a") as f:  # a resume appends a new start: the rank runs again
        f.write(_line(type="start", rank=0, pid=21, host="h"))
    assert r.poll()[0].end is None and r.poll()[0].pid == 21
    assert rank_pids(tmp_path) == {0: 21, 1: 12}


def test_reader_of_a_run_without_rank_files_gives_an_empty_snapshot(tmp_path):
    snap = RankReader(tmp_path).sample()
    assert snap.ranks == () and snap.stragglers == () and snap.failures == ()


# -----------------------------------------------------------------------------
# stragglers


def test_a_rank_over_20_percent_slower_than_the_others_is_a_straggler():
    series = {0: [10.0] * 20, 1: [10.5] * 20, 2: [9.8] * 20, 3: [13.0] * 20}
    (s,) = find_stragglers(series)
    assert s.rank == 3 and s.others_ms == 10.0 and s.ratio == pytest.approx(1.3)
    series[3] = [11.5] * 20  # 15% slower: within the noise allowed
    assert find_stragglers(series) == []


def test_no_straggler_from_too_few_points_one_rank_or_a_millisecond_of_jitter():
    assert find_stragglers({0: [10.0] * 20, 1: [30.0] * 3}) == []  # rank 1: 3 points
    assert find_stragglers({0: [10.0] * 20}) == []
    assert find_stragglers({0: [1.0] * 20, 1: [1.5] * 20}) == []  # +50% but +0.5 ms
    assert find_stragglers({0: [1.0] * 20, 1: [1.5] * 20}, min_diff_ms=0.1)[0].rank == 1


def test_the_median_ignores_one_slow_step():
    assert find_stragglers({0: [10.0] * 20, 1: [10.0] * 19 + [500.0]}) == []


def _state(rank, fwd, step_ms=None, end=None, pid=None):
    st = RankState(rank, pid=pid, local_rank=rank, host="h")
    for i, v in enumerate(fwd, 1):
        st.feed({"type": "step", "step": i, "step_ms": step_ms or 20.0, "fwd_ms": v})
    if end:
        st.feed(dict(type="end", **end))
    return st


def test_snapshot_compares_forward_time_not_step_time():
    # under DDP each rank waits for the slowest: step_ms is the same, fwd_ms is not
    states = {0: _state(0, [5.0] * 10), 1: _state(1, [9.0] * 10)}
    snap = snapshot(states)
    assert [s.rank for s in snap.stragglers] == [1] and snap.stragglers[0].key == "fwd_ms"
    assert [f.median_step_ms for f in snap.ranks] == [20.0, 20.0]
    assert snap.ranks[1].median_fwd_ms == 9.0 and snap.ranks[1].status == "running"


# -----------------------------------------------------------------------------
# failures


def test_torchrun_failure_summary_is_parsed_with_its_root_cause():
    rep = parse_torchrun_failures(KILLED)
    assert rep[1] == {
        "local_rank": 1,
        "exit_code": -9,
        "pid": 16888,
        "signal": "SIGKILL",
        "root": True,
    }
    assert rep[0] == {"local_rank": 0, "exit_code": 1, "pid": 16887, "signal": None, "root": False}
    assert parse_torchrun_failures("[rank0]:step 5 | loss 3.2\n") == {}


def test_rank_log_gives_one_rank_s_lines_without_the_prefix():
    assert rank_log(KILLED, 0, n=2).splitlines() == [
        "    dist.all_reduce(flags, op=dist.ReduceOp.MAX)",
        "RuntimeError: [../gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:6572: Connection reset by peer.",
    ]
    assert rank_log(KILLED, 1) == ""


def test_failures_name_the_killed_rank_first_and_the_rank_that_failed_after_it():
    states = {
        0: _state(0, [1.0] * 5, end={"step": 87, "status": "failed", "exit_code": 1}),
        1: _state(1, [1.0] * 5),
    }
    f1, f0 = find_failures(states, KILLED)
    assert (f1.rank, f1.root, f1.exit_code) == (1, True, -9)
    assert "killed by SIGKILL after step 5" in f1.reason
    assert (f0.rank, f0.root, f0.exit_code) == (0, False, 1)
    assert "Connection reset by peer" in f0.log


def test_a_vanished_rank_without_an_end_line_is_a_failure_an_interrupted_one_is_not():
    states = {
        0: _state(0, [1.0] * 3, end={"step": 3, "status": "interrupted", "exit_code": 130}),
        1: _state(1, [1.0] * 3, pid=4242),
        2: _state(2, [1.0] * 3),
    }
    gone = find_failures(states, "", alive=lambda st: False if st.rank == 1 else None)
    assert [(f.rank, f.exit_code) for f in gone] == [(1, None)]
    assert "pid 4242" in gone[0].reason
    snap = snapshot(states, "", alive=lambda st: False if st.rank == 1 else None)
    assert [f.status for f in snap.ranks] == ["interrupted", "gone", "running"]


# -----------------------------------------------------------------------------
# end to end: the supervisor launches the core under torchrun


def _launch(tmp_path, monkeypatch, cfg) -> tuple[Trainer, Path]:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # one thread a rank: two ranks on two cores
    rd = tmp_path / "run"
    return Trainer.launch(torchrun_command("demo-walks", rd, cfg, 2), rd, cwd=REPO), rd


def _stop(t: Trainer) -> None:
    """Kill what is left: torchrun and, by pid, the ranks (each in a session of its own)."""
    try:
        kids = psutil.Process(t.pid).children(recursive=True)
    except psutil.Error:
        kids = []
    for p in [*kids]:
        try:
            p.kill()
        except psutil.Error:
            pass
    t.kill_group()
    t.wait(30)


def _wait_steps(reader: RankReader, t: Trainer, n: int, timeout: float = 120) -> dict:
    t0 = time.time()
    while time.time() - t0 < timeout:
        st = reader.poll()
        if len(st) == 2 and all(s.step >= n for s in st.values()):
            return st
        if not t.alive():
            pytest.fail(f"torchrun exited ({t.exit_code}):\n{log_tail(t.run_dir, 60)}")
        time.sleep(0.05)
    pytest.fail("no per-rank steps in time")


@pytest.mark.heavy  # over 10 s on 2 cores: make test stays under 10 min; CI runs it
@pytest.mark.slow
def test_a_two_rank_run_launched_by_the_supervisor_has_figures_for_both_ranks(
    tmp_path, monkeypatch
):
    cfg = TINY_WALKS + ["train.max_steps=60", "train.epochs=null", "gate.metrics={}"]
    t, rd = _launch(tmp_path, monkeypatch, cfg)
    try:
        reader = RankReader(rd)
        live = _wait_steps(reader, t, 1)  # read while it runs
        assert {s.pid for s in live.values()} <= {p.pid for p in psutil.Process(t.pid).children()}
        # save-now and stack dumps are asked of the ranks, which handle them; torchrun does not
        pids = running_pids(live)
        assert sorted(pids) == sorted(s.pid for s in live.values())
        assert t.handles(signal.SIGUSR1, pids) is True and t.handles(signal.SIGUSR2) is True
        assert catches(t.pid, signal.SIGUSR1) is False
        assert t.wait(180) == 0, log_tail(rd, 60)
    finally:
        _stop(t)
    snap = reader.sample(log_tail(rd, 400))
    assert [f.rank for f in snap.ranks] == [0, 1]
    for f in snap.ranks:
        assert f.step == 60 and f.status == "completed" and f.exit_code == 0
        assert f.step_ms > 0 and f.fwd_ms > 0 and f.median_fwd_ms > 0
        assert f.mem_kind == "rss" and f.mem_mib > 50
    assert snap.failures == ()
    assert sum(e["type"] == "step" for e in events(rd)) == 60  # events: rank 0's alone
    assert "[rank0]:run dir:" in log_tail(rd, 400)  # torchrun tees each rank's lines, prefixed


@pytest.mark.heavy  # over 10 s on 2 cores: make test stays under 10 min; CI runs it
@pytest.mark.slow
def test_a_killed_rank_is_reported_with_torchrun_s_exit_code(tmp_path, monkeypatch):
    t, rd = _launch(tmp_path, monkeypatch, ENDLESS_WALKS + ["gate.metrics={}"])
    try:
        reader = RankReader(rd)
        st = _wait_steps(reader, t, 5)
        os.kill(st[1].pid, signal.SIGKILL)
        assert t.wait(120) not in (None, 0)  # torchrun stops the other rank and fails
    finally:
        _stop(t)
    snap = reader.sample(log_tail(rd, 400))
    root = snap.failures[0]
    assert root.rank == 1 and root.root and root.exit_code == -9, snap.failures
    assert "SIGKILL" in root.reason
    assert {f.rank: f.status for f in snap.ranks}[1] == "gone"


@pytest.mark.heavy
@pytest.mark.slow
def test_cockpit_run_nproc_per_node_2_headless(tmp_path):
    """`cockpit run --nproc-per-node 2`: torchrun under the supervisor, both ranks write
    their figures, rank 0's events drive the display, the exit code is the run's."""
    from tests.conftest import TINY_WALKS, cockpit, events, sets

    d = tmp_path / "ddp"
    r = cockpit(
        "run", "--headless", "--skip-preflight", "--skip-postflight", "--nproc-per-node", "2",
        "--every", "1", "--run-dir", str(d), *sets(*TINY_WALKS, "train.epochs=2"),
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    assert [e["world_size"] for e in events(d) if e["type"] == "run_start"] == [2]
    assert [e["status"] for e in events(d) if e["type"] == "run_end"] == ["completed"]
    assert sorted(p.name for p in (d / "ranks").glob("rank-*.jsonl")) == [
        "rank-0.jsonl",
        "rank-1.jsonl",
    ]
    assert "  status       completed (exit 0)" in r.stdout
    # the summary lines carry each rank's step time and memory once both have reported
    assert re.search(r" · ranks r0 \d+ ms/\d+ MiB r1 \d+ ms/\d+ MiB", r.stdout), r.stdout
