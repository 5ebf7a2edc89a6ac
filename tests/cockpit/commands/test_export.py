"""Exports of a real tiny run: the CSV files hold exactly what events.jsonl says;
TensorBoard files when tensorboard is installed, one clear line when it is not."""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys

import pytest

from cockpit.collect.gpu import GpuSampler
from cockpit.collect.sampling import ProcessSampler
from cockpit.collect.system import SystemSampler
from cockpit.commands.export import ExportError, cmd_export, export_csv, export_tensorboard
from tests.conftest import TINY_WALKS, events, run_core, sets

CFG = TINY_WALKS + [
    "train.max_steps=30",
    "train.epochs=null",
    "eval.every_epoch=false",
    "eval.every_steps=10",
    "checkpoint.every_epoch=false",
    "checkpoint.every_steps=10",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real tiny run, plus three system samples taken by the cockpit's own samplers."""
    rd = tmp_path_factory.mktemp("export") / "20260101-000000-demo-walks"
    run_core("--run-dir", str(rd), *sets(*CFG), check_rc=0)
    ps, ss, gs = ProcessSampler(os.getpid()), SystemSampler(rd), GpuSampler()
    steps = [e for e in events(rd) if e["type"] == "step"]
    with open(rd / "system.jsonl", "wb") as f:
        for e in (steps[0], steps[15], steps[-1]):
            d = {"t": e["t"], "proc": ps.sample().to_dict(), "sys": ss.sample().to_dict()}
            d["gpu"] = gs.sample([os.getpid()]).to_dict()
            f.write(json.dumps(d).encode() + b"\n")
    return rd


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_csv_loss_column_equals_the_events_losses(run, tmp_path):
    files = export_csv(run, tmp_path)
    assert [p.name for p in files] == ["steps.csv", "evals.csv", "checkpoints.csv", "system.csv"]
    rows = read_csv(tmp_path / "steps.csv")
    steps = [e for e in events(run) if e["type"] == "step"]
    assert [float(r["loss"]) for r in rows] == [
        e["loss"] for e in steps
    ]  # exact: floats round-trip
    assert [int(r["step"]) for r in rows] == list(range(1, 31))
    assert [float(r["lr"]) for r in rows] == [e["lr"] for e in steps]
    assert [float(r["tokens_per_s"]) for r in rows] == [e["tokens_per_s"] for e in steps]
    assert list(rows[0]) == [
        "step", "epoch", "t", "loss", "lr", "grad_norm", "tokens", "step_ms", "tokens_per_s", "mfu",
    ]  # fmt: skip


def test_csv_evals_checkpoints_and_system_samples(run, tmp_path):
    export_csv(run, tmp_path)
    evs = [e for e in events(run) if e["type"] == "eval"]
    rows = read_csv(tmp_path / "evals.csv")
    assert [int(r["step"]) for r in rows] == [10, 20, 30]
    assert [float(r["val_loss"]) for r in rows] == [e["val_loss"] for e in evs]
    assert [float(r["edge_compliance"]) for r in rows] == [
        e["metrics"]["edge_compliance"] for e in evs
    ]
    ck = read_csv(tmp_path / "checkpoints.csv")
    assert [int(r["step"]) for r in ck] == [10, 20, 30]
    assert ck[-1]["name"] == "step-0000030.pt" and "final" in ck[-1]["tags"].split()
    sysrows = read_csv(tmp_path / "system.csv")
    assert len(sysrows) == 3
    assert float(sysrows[0]["proc.rss_mib"]) > 10 and "sys.ram_used_mib" in sysrows[0]
    assert not any(k.startswith("proc.procs") for k in sysrows[0])  # lists stay in the jsonl


def test_csv_of_rank_files_and_a_torn_last_line(run, tmp_path):
    rd = tmp_path / "run"
    shutil.copytree(run, rd)
    (rd / "ranks").mkdir()
    for rank in (0, 1):
        lines = [{"v": 1, "t": 1.0, "type": "start", "rank": rank, "pid": 1}]
        lines += [
            {"v": 1, "t": 1.0 + s, "type": "step", "step": s, "step_ms": 10.0 + rank, "fwd_ms": 2.0}
            for s in (1, 2)
        ]
        (rd / "ranks" / f"rank-{rank}.jsonl").write_text(
            "".join(json.dumps(x) + "\n" for x in lines)
        )
    with open(rd / "events.jsonl", "a") as f:
        f.write('{"v": 1, "t": 9.0, "type": "step", "step": 31, "lo')  # a writer mid-line
    files = export_csv(rd, tmp_path / "out")
    assert files[-1].name == "ranks.csv"
    rows = read_csv(tmp_path / "out" / "ranks.csv")
    assert [(r["rank"], r["step"], r["step_ms"]) for r in rows] == [
        ("0", "1", "10.0"), ("0", "2", "10.0"), ("1", "1", "11.0"), ("1", "2", "11.0"),
    ]  # fmt: skip
    assert len(read_csv(tmp_path / "out" / "steps.csv")) == 30


def _args(run_dir, **kw):
    return argparse.Namespace(
        run_dir=str(run_dir),
        csv=kw.get("csv", False),
        tensorboard=kw.get("tb", False),
        out=kw.get("out"),
    )


def test_cmd_export_writes_csv_by_default_into_the_run_s_export_folder(run, tmp_path, capsys):
    rd = tmp_path / "run"
    shutil.copytree(run, rd)
    assert cmd_export(_args(rd)) == 0
    assert (rd / "export" / "steps.csv").exists()
    assert f"wrote {rd / 'export' / 'steps.csv'}" in capsys.readouterr().out


def test_cmd_export_finds_a_run_by_id_or_latest_and_says_when_there_is_none(
    run, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(run, tmp_path / "logs" / run.name)
    assert cmd_export(_args(run.name, out=str(tmp_path / "a"))) == 0
    assert cmd_export(_args("latest", out=str(tmp_path / "b"), csv=True)) == 0
    assert (tmp_path / "a" / "steps.csv").exists() and (tmp_path / "b" / "evals.csv").exists()
    assert cmd_export(_args("no-such-run")) == 2
    assert "error: no run 'no-such-run'" in capsys.readouterr().err


def test_tensorboard_missing_is_one_clear_line(run, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "torch.utils.tensorboard", raising=False)
    with pytest.raises(ExportError, match="pip install tensorboard"):
        export_tensorboard(run, tmp_path / "tb")
    assert cmd_export(_args(run, tb=True, out=str(tmp_path / "x"))) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tensorboard" in err and "Traceback" not in err


def test_tensorboard_scalars_equal_the_events(run, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = export_tensorboard(run, tmp_path / "tb")
    export_tensorboard(run, out)  # a second export replaces the first
    assert len(list(out.glob("events.out.tfevents.*"))) == 1
    acc = EventAccumulator(str(out))
    acc.Reload()
    steps = [e for e in events(run) if e["type"] == "step"]
    loss = acc.Scalars("train/loss")
    assert [s.step for s in loss] == list(range(1, 31))
    assert [s.value for s in loss] == pytest.approx([e["loss"] for e in steps], rel=1e-6)
    assert [s.step for s in acc.Scalars("val/loss")] == [10, 20, 30]
    assert "val/edge_compliance" in acc.Tags()["scalars"]
    assert [s.step for s in acc.Scalars("system/proc_rss_mib")] == [1, 16, 30]


def test_model_export_writes_one_checkpoints_weights_as_one_file(run, tmp_path, capsys):
    """--model on a one-file run: the latest checkpoint's weights, with the model's shape,
    loadable by torch.load(weights_only=True); a step with no checkpoint is one line."""
    import torch

    from core import checkpoint as C
    from core.model import GPT, GPTConfig

    args = argparse.Namespace(
        run_dir=str(run), model=True, step=None, format="pt", out=str(tmp_path)
    )
    assert cmd_export(args) == 0
    path = tmp_path / "model-step-0000030.pt"
    assert capsys.readouterr().out.strip() == f"wrote {path}"
    got = torch.load(path, weights_only=True)
    want = C.load(C.latest(run / "checkpoints"))["model"]
    assert got["step"] == 30 and all(torch.equal(got["model"][k], v) for k, v in want.items())
    GPT(GPTConfig(**got["model_config"])).load_state_dict(got["model"])

    args.step = 7
    assert cmd_export(args) == 1
    err = capsys.readouterr().err
    assert "no checkpoint of step 7 (there are: 10, 20, 30)" in err and "Traceback" not in err
