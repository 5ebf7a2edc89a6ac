"""The per-rank view at a thousand ranks: every rank writes through the core's own
RankLog, 8 to a node, and the cockpit reads one file per node (ranks/node-N.jsonl),
not a thousand, while stragglers and failed ranks are still found."""

from __future__ import annotations

import os
import socket

import pytest

from cockpit.collect.ranks import RankReader
from core.ranklog import RankLog

N, PER_NODE = 1024, 8
SLOW = 777  # on node 97, another host than this one


@pytest.fixture
def big_run(tmp_path, monkeypatch):
    logs = []
    for r in range(N):
        monkeypatch.setenv("GROUP_RANK", str(r // PER_NODE))
        logs.append(RankLog(tmp_path, r, r % PER_NODE, N, "cpu", flush_s=3600))
    return tmp_path, logs


def _steps(logs, first: int, last: int) -> None:
    for step in range(first, last + 1):
        for r, lg in enumerate(logs):
            lg.step(step, 500.0, 300.0 if r == SLOW else 200.0 + r % 3)
    for lg in logs:
        lg.flush()  # the once-a-second flush: one summary line a rank


def test_a_straggler_among_1024_ranks_is_found_from_one_file_a_node(big_run):
    run, logs = big_run
    names = os.listdir(run / "ranks")
    assert sum(n.startswith("node-") for n in names) == N // PER_NODE
    for n in names:  # the reader needs the node files alone
        if n.startswith("rank-"):
            os.unlink(run / "ranks" / n)
    _steps(logs, 1, 5)
    snap = RankReader(run).sample("")
    assert snap.error is None and len(snap.ranks) == N
    assert [s.rank for s in snap.stragglers] == [SLOW]
    s = snap.stragglers[0]
    assert s.key == "fwd_ms" and s.median_ms == 300.0 and s.others_ms == 201.0
    r5 = snap.ranks[5]
    assert (r5.step, r5.step_ms, r5.median_step_ms, r5.host) == (
        5,
        500.0,
        500.0,
        socket.gethostname(),
    )


def test_failed_ranks_among_1024_are_reported(big_run):
    run, logs = big_run
    _steps(logs, 1, 5)
    logs[1000].close(5, "failed", 1)  # an exception on node 125: its end line says so
    # torchrun's summary names a rank killed hard (no end line) on another node
    log = (
        "Failures:\n[1]:\n  rank      : 513 (local_rank: 1)\n  exitcode  : -9 (pid: 4242)"
        " (SIGKILL)\nRoot Cause (first observed failure):\n[0]:\n"
        "  rank      : 1000 (local_rank: 0)\n  exitcode  : 1 (pid: 4243)\n"
    )
    reader = RankReader(run)
    snap = reader.sample(log)
    got = {f.rank: f for f in snap.failures}
    assert set(got) == {513, 1000}
    assert "failed at step 5" in got[1000].reason and got[1000].root
    assert "killed by SIGKILL after step 5" in got[513].reason
    assert snap.ranks[1000].status == "failed" and snap.ranks[513].status == "gone"
    _steps([lg for i, lg in enumerate(logs) if i != 1000], 6, 6)  # the others go on: a tick later
    snap = reader.sample(log)
    assert {f.rank for f in snap.failures} == {513, 1000} and snap.ranks[0].step == 6
