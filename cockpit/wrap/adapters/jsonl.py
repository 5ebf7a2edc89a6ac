"""JSON lines on stdout. Two kinds:

- the cockpit's own events (`{"v": 1, "t": ..., "type": "step", ...}`, what
  core.events.StdoutSink prints): passed through as they are, run_start and
  run_end included;
- any other JSON object a trainer prints per step, e.g.
  `{"step": 100, "loss": 2.31, "lr": 3e-4, "tok/s": 41000}`: its figures are read
  by their usual names (cockpit.wrap.adapters.common.KEYS), as key=value lines are.
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson

from cockpit.wrap.adapters.common import build, field_of, generic
from core.events import EVENT_TYPES

NAME = "jsonl"


def _obj(line: str) -> dict | None:
    if line[:1] != "{":
        return None
    try:
        d = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return d if d.__class__ is dict else None


def _numbers(d: dict) -> Iterator[tuple[str, float, str]]:
    return ((k, v, "") for k, v in d.items() if v.__class__ is float or v.__class__ is int)


def detect(line: str) -> bool:
    d = _obj(line)
    if d is None:
        return False
    if d.get("type") in EVENT_TYPES:
        return True
    return bool(generic(_numbers(d), 0)[0])


class Parser:
    def __init__(self) -> None:
        self.info: dict = {}
        self.step = 0
        # a loop prints the same keys every step: which of them name which field,
        # looked up once per set of keys (not saved: rebuilt from the lines)
        self._plans: dict[tuple, list[tuple[str, str]]] = {}

    def feed(self, line: str) -> list[dict] | None:
        d = _obj(line)
        if d is None:
            return None
        if d.get("type") in EVENT_TYPES:
            if isinstance(d.get("step"), int):
                self.step = d["step"]
            return [d]
        keys = tuple(d)
        plan = self._plans.get(keys)
        if plan is None:
            if len(self._plans) > 64:
                self._plans.clear()
            plan = self._plans[keys] = [(k, f) for k in keys if (f := field_of(k))]
        got: dict = {}
        for k, f in plan:  # the first number of a field wins, as in generic()
            v = d[k]
            if (v.__class__ is float or v.__class__ is int) and f not in got:
                got[f] = v
        out, self.step = build(got, {}, self.step)
        return out or None

    def flush(self) -> list[dict]:
        return []
