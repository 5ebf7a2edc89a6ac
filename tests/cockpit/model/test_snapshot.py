"""events.idx, the snapshot of a replayed history: a run opened with it shows what a
full replay shows; a stale, truncated, corrupt or foreign one is ignored (and
written again); a run still being written is followed past it."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pytest

from cockpit.model import snapshot
from cockpit.model.view import RunView, ViewBuilder
from cockpit.session import Session
from core import events as E


@pytest.fixture(autouse=True)
def every_replay_writes_one(monkeypatch):
    monkeypatch.setattr(snapshot, "MIN_BYTES", 0)  # the runs here are small


def _lines(n: int, start: int = 1, t0: float = 1000.0, seed: int = 0) -> list[str]:
    rng, out = random.Random(seed + start), []
    for i in range(start, start + n):
        t = t0 + i
        loss = rng.choice([2 + rng.random(), 2 + rng.random(), None, float("nan")])
        out.append(json.dumps(E.Step(step=i, epoch=i // 500, loss=loss, lr=1e-3, grad_norm=1.0,
                                     tokens=64 * i, step_ms=rng.random() * 10, tokens_per_s=6400.0,
                                     t=t).to_dict()))  # fmt: skip
        if i % 250 == 0:
            out.append(json.dumps(E.Eval(step=i, epoch=0, val_loss=rng.random() + 2, val_ppl=9.0,
                                         metrics={"acc": 0.5}, t=t + 0.5).to_dict()))  # fmt: skip
            out.append(json.dumps(E.Sample(step=i, prompt="p", text="{\"$path\": 1}", valid=None,
                                           t=t + 0.6).to_dict()))  # fmt: skip
        if i % 700 == 0:
            out.append(json.dumps(E.Checkpoint(step=i, path=f"checkpoints/step-{i:07d}.pt",
                                               bytes=10, sha256="0", seconds=0.1, tags=["latest"],
                                               t=t + 0.7).to_dict()))  # fmt: skip
            out.append(json.dumps({"v": 1, "t": t + 0.8, "type": "alert", "level": "warn",
                                   "code": "odd", "message": "$dict keys: {\"$tuple\": []}"}))  # fmt: skip
        if i == start + 3:
            out.append('{"broken": ')  # a malformed line, counted
    return out


def _run(d: Path, n: int = 1000, end: bool = True) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    head = E.RunStart(run_id=d.name, profile="p", pid=4194305, device="cpu", world_size=1,
                      dtype="float32", n_params=1, tokens_per_step=64, total_steps=n,
                      total_epochs=1, t=1000.0).to_dict()  # fmt: skip
    lines = [json.dumps(head), *_lines(n)]
    if end:
        lines.append(json.dumps(E.RunEnd(status="completed", step=n, reason="done",
                                         wall_s=float(n), t=1001.0 + n).to_dict()))  # fmt: skip
    (d / "events.jsonl").write_text("".join(x + "\n" for x in lines))
    samples = [{"v": 1, "t": 1000.0 + k * 97, "type": "system",
                "proc": {"alive": True, "rss_mib": 100.0 + k, "cpu_pct": 50.0, "num_threads": 4,
                         "procs": [{"pid": 1, "threads": []}]},
                "sys": {"disk_free_mib": 1e5}, "gpu": {"available": False, "devices": []}}
               for k in range(n // 97)]  # fmt: skip
    (d / "system.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    return d


def _open(d: Path) -> tuple[RunView, Session]:
    s = Session(d, None, notify=False)
    assert s.replay(batch_bytes=64 << 10)
    return ViewBuilder().build(s.model, 5000.0), s


def _shown(v: RunView) -> str:
    """Everything a display draws of a run (run_dir excepted: the same here), as text
    (a NaN figure equals itself)."""
    curves = {
        k: (c.xs, c.lo, c.hi, c.last, c.tail, c.n, c.n_nonfinite) for k, c in v.curves.items()
    }
    return repr((
        v.figures, curves, v.evals, v.samples, v.alerts, v.checkpoints, v.info, v.last,
        v.status, v.loss_ema, v.best_val, v.malformed, v.proc, v.system, v.n_alerts,
        v.elapsed_s, v.leak_mib_per_1k_steps, v.run_id,
    ))  # fmt: skip


def _replay_only(d: Path) -> tuple:
    (d / snapshot.NAME).unlink(missing_ok=True)
    v, s = _open(d)
    s.close()
    (d / snapshot.NAME).unlink(missing_ok=True)
    return _shown(v), s.follower.malformed, s.follower.line_no


def test_a_run_opened_with_its_snapshot_shows_what_the_replay_shows(tmp_path):
    d = _run(tmp_path / "run")
    v1, s1 = _open(d)  # no snapshot yet: the full replay, which writes one
    s1.close()
    assert (d / snapshot.NAME).exists()
    v2, s2 = _open(d)
    s2.close()
    assert s2.replayed_events == 0  # nothing left to read: all of it came from the snapshot
    assert _shown(v2) == _shown(v1)
    assert v2.curve("loss").n > 300 and v2.n_evals == 4 and v2.malformed == 0  # not yet ticked
    assert (s2.follower.malformed, s2.follower.line_no) == (
        s1.follower.malformed,
        1 + 1000 + 4 * 2 + 1 * 2 + 1 + 1,
    )
    assert s2.follower.malformed_lines == s1.follower.malformed_lines


def test_a_run_still_written_is_followed_past_its_snapshot(tmp_path):
    d = _run(tmp_path / "live", n=600, end=False)
    _, s = _open(d)
    s.close()
    with open(d / "events.jsonl", "a") as f:  # the trainer went on
        f.write("".join(x + "\n" for x in _lines(700, start=601)))
        f.write('{"v": 1, "t": 1.0, "type": "step", "st')  # and is mid-line
    v, s = _open(d)
    try:
        assert s.replayed_events == 700 + 3 * 2 + 1 * 2  # only what came after the snapshot
        assert v.figures.step == 1300
        assert _shown(v) == _replay_only(d)[0]
        with open(d / "events.jsonl", "a") as f:  # the torn line completes, more follow
            f.write('ep": 1301, "loss": 1.5}\n')
        s.tick()
        assert s.model.step == 1301 and s.model.last["loss"] == 1.5
    finally:
        s.close()


def _stale(d: Path, how: str) -> None:
    p, idx = d / "events.jsonl", d / snapshot.NAME
    if how == "truncated events":
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])
    elif how == "events rewritten in the middle":  # same length, one figure changed
        data = bytearray(p.read_bytes())
        i = data.index(b'"loss": 2.', len(data) // 3)
        data[i + 9] = ord("7") if data[i + 9] != ord("7") else ord("8")
        p.write_bytes(bytes(data))
    elif how == "events replaced by another run":
        _run(d, n=900)
    elif how == "system.jsonl rewritten":
        (d / "system.jsonl").write_text("")
    elif how == "truncated snapshot":
        idx.write_bytes(idx.read_bytes()[:-100])
    elif how == "garbage":
        idx.write_bytes(os.urandom(4000))
    elif how == "other code":
        d2 = json.loads(idx.read_bytes())
        d2["code"] = "0" * 32
        idx.write_text(json.dumps(d2))
    elif how == "hostile model":
        d2 = json.loads(idx.read_bytes())
        d2["model"]["loss"]["$curve"][6] = ["x"] * 3  # a curve of strings
        d2["model"]["evals"] = {"$deque": [{"figures": 1}], "maxlen": 1000}
        idx.write_text(json.dumps(d2))
    elif how == "unknown tag":
        d2 = json.loads(idx.read_bytes())
        d2["model"]["info"] = {"$pickle": "x"}
        idx.write_text(json.dumps(d2))


@pytest.mark.parametrize(
    "how",
    [
        "truncated events", "events rewritten in the middle", "events replaced by another run",
        "system.jsonl rewritten", "truncated snapshot", "garbage", "other code", "hostile model",
        "unknown tag",
    ],
)  # fmt: skip
def test_a_stale_or_corrupt_snapshot_is_ignored_and_written_again(tmp_path, how):
    d = _run(tmp_path / "run")
    _, s = _open(d)
    s.close()
    good = (d / snapshot.NAME).read_bytes()
    _stale(d, how)
    found = (d / snapshot.NAME).read_bytes()  # what the next cockpit finds
    want = _replay_only(d)  # the truth: a replay without any snapshot
    (d / snapshot.NAME).write_bytes(found)
    v, s = _open(d)
    s.close()
    assert s.replayed_events > 0  # replayed from the start, not trusted
    assert (_shown(v), s.follower.malformed, s.follower.line_no) == want
    now = (d / snapshot.NAME).read_bytes()
    assert now != found or found == good  # written again, for the next time
    v2, s2 = _open(d)
    s2.close()
    assert s2.replayed_events == 0 and _shown(v2) == want[0]


def test_a_snapshot_names_the_directory_it_was_made_in(tmp_path):
    d = _run(tmp_path / "a")
    _, s = _open(d)
    s.close()
    moved = tmp_path / "b"
    d.rename(moved)  # copied or moved elsewhere: checkpoints and paths read anew
    v, s = _open(moved)
    s.close()
    assert s.replayed_events > 0 and v.run_dir == moved


def test_a_run_whose_snapshot_cannot_be_written_still_opens(tmp_path):
    d = _run(tmp_path / "ro")
    (d / f".{snapshot.NAME}.tmp-{os.getpid()}").mkdir()  # in the way, as a read-only dir would be
    v, s = _open(d)
    s.close()
    assert v.figures.step == 1000 and not (d / snapshot.NAME).exists()


def test_a_display_shows_a_run_from_its_snapshot_before_hashing_its_history(tmp_path, monkeypatch):
    """The first paint of a long run does not wait for the hash of every byte of its
    events (0.2 s for 200 MiB): the snapshot is shown at once, as loading, and the
    replay that follows checks it."""
    d = _run(tmp_path / "run")
    v1, s1 = _open(d)
    s1.close()
    hashed: list[int] = []
    real = snapshot.digest
    monkeypatch.setattr(snapshot, "digest", lambda fd, n: hashed.append(n) or real(fd, n))
    s = Session(d, None, notify=False)
    try:
        pm = s.preview()
        assert pm is not None and not hashed
        assert _shown(ViewBuilder().build(pm, 5000.0)) == _shown(v1)
        assert s.replay() and hashed and s.replayed_events == 0  # checked, then trusted
        assert not s.snapshot_rejected
    finally:
        s.close()


def test_a_stale_snapshot_shown_first_gives_way_to_the_replay(tmp_path):
    d = _run(tmp_path / "run")
    _, s = _open(d)
    s.close()
    _stale(d, "events rewritten in the middle")  # its size and header still look right
    found = (d / snapshot.NAME).read_bytes()
    want = _replay_only(d)
    (d / snapshot.NAME).write_bytes(found)
    s = Session(d, None, notify=False)
    try:
        stale = s.preview()
        assert stale is not None
        assert s.replay(batch_bytes=64 << 10) and s.snapshot_rejected and s.replayed_events > 0
        assert _shown(ViewBuilder().build(s.model, 5000.0)) == want[0]
        fallback = s.preview(snapshot_ok=False)  # what a display shows instead while it loads
        assert fallback is None or fallback.run_dir == d
    finally:
        s.close()


def test_a_long_run_watched_to_its_end_leaves_an_index_behind(tmp_path, monkeypatch):
    """A run followed live from its start was never replayed, so nothing wrote its
    events.idx: the cockpit that saw it end has one written (by `cockpit index`, in a
    process of its own, at low priority), and the next open reads it instead of
    every line."""
    monkeypatch.setattr(snapshot, "MIN_BYTES", 64 << 10)
    d = _run(tmp_path / "live", n=0, end=False)
    s = Session(d, None, notify=False)
    try:
        assert s.replay()
        assert not (d / snapshot.NAME).exists()  # too short to be worth one
        with open(d / "events.jsonl", "a") as f:  # the trainer writes its 1,500 steps
            f.write("".join(x + "\n" for x in _lines(1500)))
            end = E.RunEnd(status="completed", step=1500, reason="done", wall_s=1.0, t=2600.0)
            f.write(json.dumps(end.to_dict()) + "\n")
        deadline = time.time() + 10
        while not s.done() and time.time() < deadline:
            s.tick()
        assert s.done()
        s.settle(timeout=0.5)
    finally:
        s.close()
    deadline = time.time() + 60
    while not (d / snapshot.NAME).exists() and time.time() < deadline:
        time.sleep(0.1)
    assert (d / snapshot.NAME).exists()
    v, s2 = _open(d)
    s2.close()
    assert s2.replayed_events == 0 and v.figures.step == 1500
    assert _shown(v) == _replay_only(d)[0]


def test_cockpit_index_writes_a_runs_snapshot_on_demand(tmp_path, capsys, monkeypatch):
    """For a run trained without a cockpit watching: `cockpit index RUN`."""
    from cockpit.cli import main

    monkeypatch.setattr(snapshot, "MIN_BYTES", 4 << 20)  # as shipped: this run is far smaller
    d = _run(tmp_path / "run")
    assert main(["index", str(d)]) == 0
    out = capsys.readouterr().out
    assert f"indexed {d}" in out and "events read" in out and snapshot.NAME in out
    v, s = _open(d)
    s.close()
    assert s.replayed_events == 0 and _shown(v) == _replay_only(d)[0]
    assert main(["index", str(tmp_path / "nope")]) == 2
    assert "not a run directory" in capsys.readouterr().err
