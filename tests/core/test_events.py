import dataclasses
import json

from core import events as E


def _one_of_each():
    return [
        E.RunStart(
            run_id="r",
            profile="p",
            pid=1,
            device="cpu",
            world_size=1,
            dtype="float32",
            n_params=10,
            tokens_per_step=64,
            total_steps=5,
            total_epochs=1,
        ),
        E.Phase(name="tokenize", done=5, total=10),
        E.Step(
            step=1,
            epoch=0,
            loss=2.5,
            lr=1e-3,
            grad_norm=0.5,
            tokens=64,
            step_ms=3.0,
            tokens_per_s=2e4,
            mfu=0.1,
        ),
        E.Eval(step=1, epoch=0, val_loss=2.4, val_ppl=11.0, metrics={"edge_compliance": 0.9}),
        E.Sample(step=1, prompt="def ", text="f(): pass", valid=True),
        E.Gate(step=1, passed=False, metrics={"a": 0.1}, thresholds={"a": 0.9}),
        E.Checkpoint(step=1, path="x.pt", bytes=10, sha256="ab", seconds=0.1, tags=["latest"]),
        E.Heartbeat(step=1),
        E.Alert(level="warn", code="c", message="m"),
        E.RunEnd(status="completed", step=1, reason="done", wall_s=1.0),
    ]


def test_every_design_event_type_round_trips_with_schema_fields():
    evs = _one_of_each()
    assert {e.type for e in evs} == set(E.EVENT_TYPES)  # docs/architecture.md, every type
    for ev in evs:
        line = E.encode(ev)
        d = json.loads(line)
        assert d["v"] == 1 and d["type"] == ev.type and isinstance(d["t"], float)
        assert E.decode(line) == ev


def test_non_finite_values_are_written_as_null_so_every_line_is_strict_json():
    line = E.encode(
        E.Step(
            step=3,
            epoch=0,
            loss=float("nan"),
            lr=1e-3,
            grad_norm=float("inf"),
            tokens=1,
            step_ms=1.0,
            tokens_per_s=1.0,
        )
    )
    d = json.loads(line)  # would raise on a bare NaN token with a strict parser
    assert d["loss"] is None and d["grad_norm"] is None


def test_reader_skips_torn_last_line_and_keeps_unknown_types(tmp_path):
    p = tmp_path / "events.jsonl"
    good = E.encode(E.Heartbeat(step=4))
    unknown = json.dumps({"v": 1, "t": 1.0, "type": "from_the_future", "x": 1}) + "\n"
    extra = json.dumps({"v": 1, "t": 1.0, "type": "heartbeat", "step": 5, "new_field": 1}) + "\n"
    p.write_text(good + "not json\n" + unknown + extra + good[:-10])
    evs = E.read_events(p)
    assert evs[0] == E.Heartbeat(step=4, t=evs[0].t)
    assert evs[1]["type"] == "from_the_future"
    assert evs[2] == E.Heartbeat(step=5, t=1.0)  # unknown field ignored
    assert len(evs) == 3  # malformed line and torn tail skipped


def test_jsonl_sink_flushes_each_line(tmp_path):
    sink = E.JsonlSink(tmp_path / "e.jsonl")
    sink.write(E.Heartbeat(step=1))
    # readable by another process before close: flushed per line
    assert (tmp_path / "e.jsonl").read_text().count("\n") == 1
    sink.close()
    sink.write(E.Heartbeat(step=2))  # after close: dropped, not raised
    assert all(dataclasses.is_dataclass(e) for e in E.read_events(tmp_path / "e.jsonl"))
