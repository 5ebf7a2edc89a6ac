"""RunModel.feed_all takes runs of step events in bulk (numpy columns, found in C):
whatever the events hold, the model it leaves is the one feed() leaves when given
them one at a time. Hostile input is ordinary input: a loss written as a string,
NaN, a missing or extra field, a bool, an int too big for numpy, a list where a
number goes, a step that is not an int, events that are not steps in between."""

from __future__ import annotations

import math
import random
import time
from collections import deque

import pytest

from cockpit.model.curve import Curve
from cockpit.model.runmodel import RunModel
from core import events as E

T0 = 1.7e9


def state(m: RunModel) -> dict:
    """Everything a display can read of a model, in comparable form."""
    out = {}
    for k, v in vars(m).items():
        if isinstance(v, Curve):
            v = {
                s: list(x) if isinstance(x := getattr(v, s), deque) else x for s in Curve.__slots__
            }
        elif k == "gpu_dev":
            v = {i: {n: c.points() for n, c in d.items()} for i, d in v.items()}
        elif isinstance(v, deque):
            v = list(v)
        out[k] = v
    out["figures"] = m.figures()
    return out


def same(a: object, b: object) -> bool:
    """== for what a display reads: numbers as the floats shown (feed() keeps an int
    time or value as written, the bulk path as a float), NaN equal to NaN."""
    if isinstance(a, int | float) and isinstance(b, int | float):
        x, y = float(a), float(b)
        return x == y or (x != x and y != y)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if hasattr(a, "__dataclass_fields__") and type(a) is type(b):
        return same(vars(a), vars(b))
    return type(a) is type(b) and a == b


def one_by_one(evs: list[dict]) -> RunModel:
    m = RunModel()
    for ev in evs:
        m.feed(ev)
    return m


def in_bulk(evs: list[dict], batch: int) -> RunModel:
    m = RunModel()
    for i in range(0, len(evs), batch):
        m.feed_all(evs[i : i + batch])
    return m


def check(evs: list[dict], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: T0 + 1e6)  # "now", for events without a time
    want = state(one_by_one(evs))
    for batch in (len(evs) or 1, 1000, 37, 7):
        got = state(in_bulk(evs, batch))
        bad = [k for k in want if not same(want[k], got[k])]
        assert not bad, (batch, {k: (want[k], got[k]) for k in bad[:3]})


def healthy(i: int, rng: random.Random) -> dict:
    return E.Step(
        step=i,
        epoch=i // 500,
        loss=3 + math.sin(i / 50) + rng.random(),
        lr=3e-4,
        grad_norm=1.0,
        tokens=i * 4096,
        step_ms=10 + rng.random(),
        tokens_per_s=4e5 + rng.random(),
        mfu=0.4,
        t=T0 + i,
    ).to_dict()


def run_start() -> dict:
    return {
        "v": 1,
        "t": T0,
        "type": "run_start",
        "run_id": "r",
        "profile": "p",
        "total_steps": 5000,
    }


def evaluation(i: int, val_loss: float) -> dict:
    return {"v": 1, "t": T0 + i + 0.5, "type": "eval", "step": i, "epoch": 0, "val_loss": val_loss}


def test_a_healthy_history_in_bulk_is_the_one_fed_one_by_one(monkeypatch):
    rng = random.Random(0)
    evs = [run_start()]
    for i in range(1, 5001):
        evs.append(healthy(i, rng))
        if i % 700 == 0:
            evs.append(evaluation(i, 3.5))
    check(evs, monkeypatch)


# each: what one step event may hold instead of a plain number (or in its place)
ODD = [
    "1.5",  # a string numpy would read as a number
    "nan",
    None,
    math.nan,  # json.loads reads NaN
    math.inf,
    -math.inf,
    True,
    False,
    10**30,  # too big for numpy's ints
    2**63,  # numpy's uint64
    -(2**63) - 1,
    2**60 + 1,  # an int a float rounds
    [1.0],
    [],
    {"a": 1},
    [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1.0]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],  # deep
    [0.5] * 1000,
    0,
    -2,
]


@pytest.mark.parametrize(
    "field", ["loss", "t", "step", "lr", "step_ms", "mfu", "tokens_per_s", "tokens", "epoch"]
)
def test_odd_values_in_a_step_field_give_the_model_feed_gives(field, monkeypatch):
    rng = random.Random(field)
    evs = []
    for i in range(1, 401):
        d = healthy(i, rng)
        if rng.random() < 0.3:
            d[field] = rng.choice(ODD)
        if rng.random() < 0.05:
            del d[field]
        evs.append(d)
    check(evs, monkeypatch)
    # the same odd value in every event of a run (numpy sees only that kind)
    for odd in ODD:
        evs = [healthy(i, rng) | {field: odd} for i in range(1, 40)]
        check(evs, monkeypatch)


def test_odd_events_between_steps_give_the_model_feed_gives(monkeypatch):
    rng = random.Random(1)
    evs: list[dict] = []
    i = 0
    for _ in range(3000):
        r = rng.random()
        i += 1
        d = healthy(i, rng)
        if r < 0.02:
            d["step"] = float(i)  # not an int: no step in bulk, feed() ignores it
        elif r < 0.03:
            d["step"] = True  # a bool: feed() takes it, the bulk path leaves it to feed()
        elif r < 0.04:
            d["type"] = "steps"
        elif r < 0.05:
            d.pop("type")
        elif r < 0.06:
            d = evaluation(i, rng.random() + 3)
        elif r < 0.07:
            d = {"type": "alert", "level": "warn", "code": "x", "message": "m", "t": T0 + i}
        elif r < 0.08:
            d["extra"] = {"nested": [1, 2]}
        elif r < 0.09:
            d = {k: v for k, v in d.items() if k in ("type", "step")}  # only the two needed
        elif r < 0.1:
            d["type"] = 7
        evs.append(d)
    check(evs, monkeypatch)


def test_short_runs_and_empty_batches(monkeypatch):
    rng = random.Random(2)
    m = RunModel()
    m.feed_all([])
    m.feed_all(iter([]))
    assert state(m) == state(RunModel())
    for n in (1, 7, 8, 9):
        evs = [healthy(i, rng) for i in range(1, n + 1)]
        check(evs, monkeypatch)
        check([evaluation(0, 1.0), *evs], monkeypatch)
