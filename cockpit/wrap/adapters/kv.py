"""Generic `key=value` (or `key: value`) lines, the format of many hand-written loops:

    step=100 loss=2.3141 lr=3.0e-04 grad_norm=0.91 tok/s=41250 dt=0.123
    epoch 1 | step: 200 | loss: 2.1012 | time: 98.2ms
    step=1000 val_loss=2.2871

A line with a step number (`step`, `iter`, `global_step`, ...) and a loss is a
step event; a line with a validation loss (`val_loss`, `eval_loss`, ...) is an
eval. Figures are read by their usual names (cockpit.wrap.adapters.common.KEYS); a
unit glued to a number is honoured (`dt: 98.2ms`, `time=1.2s`, `mfu=41%`);
`dt`/`time` without a unit are seconds.

Speed: a loop prints the same keys in the same order every time, so the shape
of a line that gave events (its text with the numbers taken out) becomes an
anchored pattern; the next lines of that shape are one match, not a search for
pairs. A line of another shape takes the search, and may become a shape too;
a line of more than MAX_SHAPE_PAIRS pairs never does (its pattern would cost
more to compile than the search it saves: 100k pairs took 11 s).
"""

from __future__ import annotations

import math
import re

from orjson import loads

from cockpit.wrap.adapters.common import KEYS, KV, field_of, generic, mfu_from, ppl

NAME = "kv"
MAX_SHAPES = 4
MAX_SHAPE_PAIRS = 32  # a training loop prints a dozen figures; a longer line is searched


def _number(v: str) -> float:
    return float(v) if "," not in v else float(v.replace(",", ""))


def detect(line: str) -> bool:
    if "=" not in line and ":" not in line:
        return False
    fields = {KEYS.get(m[1].lower()) for m in KV.finditer(line)}
    return "step" in fields and ("loss" in fields or "val_loss" in fields)


# inside a shape the numbers sit between fixed texts: a plainer pattern does
SHAPE_VALUE = r"[-+]?[\d.][\d.,eE+-]*|nan|inf"
PLAIN = ("lr", "grad_norm", "tokens_per_s", "step_ms")


def _literal(text: str) -> str:
    """The fixed text between values; a run of whitespace matches any run of it."""
    return r"\s+".join(re.escape(w) for w in re.split(r"\s+", text))


class Shape:
    """Lines like one that gave events: an anchored pattern, and where each field's
    first value sits in it, so that a line of this shape makes the events build()
    would make from it, without the search and the name lookups. Only the values
    of known fields are captured; a unit is part of the shape (`dt: 98ms` and
    `dt: 0.1s` are two shapes)."""

    def __init__(self, line: str, pairs: list[re.Match]):
        parts: list[str] = []
        pos = 0
        self.at: dict[str, int] = {}
        units: dict[str, str] = {}
        for m in pairs:
            parts.append(_literal(line[pos : m.start(2)]))
            f = field_of(m[1])
            if f is not None and f not in self.at:
                self.at[f] = len(self.at)  # the group it is in, from 0
                units[f] = m[3] or ""
                parts.append(f"({SHAPE_VALUE})")
            else:
                parts.append(f"(?:{SHAPE_VALUE})")
            parts.append(re.escape(m[3] or ""))
            pos = m.end()
        parts.append(_literal(line[pos:]) + "$")
        self.rx = re.compile("".join(parts))
        at = self.at
        self.i_step, self.i_loss, self.i_val = at.get("step"), at.get("loss"), at.get("val_loss")
        self.steps = self.i_step is not None and self.i_loss is not None
        self.plain = [(k, at[k]) for k in PLAIN if k in at]
        self.step_s = at.get("step_s") if "step_ms" not in at else None
        self.step_s_ms = 1.0 if units.get("step_s") == "ms" else 1000.0
        self.whole = [(k, at[k]) for k in ("tokens", "epoch") if k in at]
        self.i_mfu, self.mfu_unit = at.get("mfu"), units.get("mfu", "")

    def events(self, line: str, last_step: int) -> tuple[list[dict], int] | None:
        """(events, the step now) for a line of this shape; None when it is not one (or
        has a figure this fast path does not take: the caller searches it)."""
        m = self.rx.match(line)
        if m is None:
            return None
        g = m.groups()
        try:  # one parse for all the numbers: twice as fast as a float() each
            x = loads("[" + ",".join(g) + "]")
            if len(x) != len(g):  # 1,234 read as two
                raise ValueError
            x = [float(v) for v in x]  # 2 is 2.0, as the search reads it
        except ValueError:  # orjson.JSONDecodeError is one: nan, 1,234.5, 007, .5
            try:
                x = [_number(v) for v in g]
            except ValueError:
                return None
        out, step = [], last_step
        if self.i_step is not None:
            try:
                step = int(x[self.i_step])
            except (ValueError, OverflowError):  # nan, inf
                return None
        if self.steps and self.i_loss is not None:  # steps: i_loss is set
            ev = {"type": "step", "step": step, "loss": x[self.i_loss]}
            for k, i in self.plain:
                ev[k] = x[i]
            if self.step_s is not None:
                ev["step_ms"] = x[self.step_s] * self.step_s_ms
            for k, i in self.whole:
                if math.isfinite(x[i]):
                    ev[k] = int(x[i])
            if self.i_mfu is not None:
                mfu = mfu_from(x[self.i_mfu], self.mfu_unit)
                if mfu is not None:
                    ev["mfu"] = mfu
            out.append(ev)
        if self.i_val is not None:
            vl = x[self.i_val]
            out.append({"type": "eval", "step": step, "val_loss": vl, "val_ppl": ppl(vl)})
        return out, step


class Parser:
    def __init__(self) -> None:
        self.info: dict = {}
        self.step = 0
        self._shapes: list[Shape] = []  # rebuilt from the lines, not saved

    def feed(self, line: str) -> list[dict] | None:
        if "=" not in line and ":" not in line:
            return None
        for sh in self._shapes:
            got = sh.events(line, self.step)
            if got is not None:
                out, self.step = got
                return out or None
        pairs = list(KV.finditer(line))
        if not pairs:
            return None
        # only the figures of known names are read (a line may have 100k other pairs)
        figs = [(m[1], _number(m[2]), m[3] or "") for m in pairs if field_of(m[1]) is not None]
        out, self.step = generic(figs, self.step)
        if out and len(pairs) <= MAX_SHAPE_PAIRS:
            sh = Shape(line, pairs)
            if any(sh.rx.pattern == o.rx.pattern for o in self._shapes):
                return out  # a line its own shape does not take (a nan step): no second copy
            if len(self._shapes) >= MAX_SHAPES:
                del self._shapes[0]
            self._shapes.append(sh)
        return out or None

    def flush(self) -> list[dict]:
        return []
