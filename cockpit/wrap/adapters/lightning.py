"""PyTorch Lightning's TQDMProgressBar (bar_format "{l_bar}{bar}| {n_fmt}/{total_fmt}
[{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]"), one frame per batch, each
rewritten over the last with \\r:

    Epoch 0:  45%|████▌     | 45/100 [00:01<00:02, 25.00it/s, v_num=0, train_loss=1.230]
    Validation DataLoader 0:  50%|█████     | 5/10 [00:00<00:00, 50.00it/s]
    Epoch 0: 100%|██████████| 100/100 [00:04<00:00, 25.00it/s, v_num=0, train_loss=1.100, val_loss=1.200]
    Epoch 1: 12it [00:00, 25.00it/s, v_num=0]          (a loader without a length)

The step is the global batch count: the batches of the epochs before (the most
each epoch's bar counted) plus this frame's. Each batch draws two frames (the
count, then the new postfix), so a step is emitted from the last frame drawn
for it, when the next step's frame (or an eval, or the end) comes: a step
event when its postfix has a loss (`loss`, `train_loss_step`, `train_loss`, or
another `*loss*` that is not val/test), with 1000/it/s as step_ms; a heartbeat
without one (Lightning >= 2 shows only what is logged with prog_bar=True). An
eval is emitted when the postfix's val loss first appears or changes, or after
a validation bar. Lightning 1.x's main bar also counts validation batches:
those count as steps there.

The RichProgressBar, as drawn on a terminal (cockpit.wrap.ptyrelay; the
cursor moves and colours are gone once the line is cleaned): `Epoch N/LAST`,
the bar, `n/total`, times, the rate, then every logged `name: value`:

    Epoch 1/2  ━━━━━━━━━━╺━━━━━━━━━━━━━━━━━━━━━━━━━━━━━ 5/20 0:00:00 • 0:00:01 23.01it/s train_loss: 3.875 val_loss: 4.286
    Validation ━━━━━━━━━━━━━━━━━━━━╺━━━━━━━━━━━━━━━━━━━ 2/4   0:00:00 • 0:00:01 868.70it/s

Its frames are read as the TQDM bar's (the same step counting, eval and
heartbeat rules), with one difference: Rich draws from a thread of its own,
at moments of its choosing, so a frame can show batch n's count with batch
n-1's figures (drawn between the two updates Lightning makes per batch), and a
fast run has counts never drawn at all. A frame's value is therefore batch
n's loss or batch n-1's. It is taken as step n's when that is sure enough: a
second, different value drawn for the same count (the later one is new), the
first step of the run, or a value that differs from the one drawn for step
n-1 (a stale value equals it, unless n-1's frame was stale too: two stale
draws in a row, rare). A step whose predecessor was never drawn, or whose
value repeats it, is a heartbeat: fewer steps rather than a loss at the wrong
step.
"""

from __future__ import annotations

import re

from cockpit.wrap.adapters.common import field_of, num, ppl

NAME = "lightning"
SIGNATURE = re.compile(
    r"^Epoch \d+(?:: (?:\s*\d+%\||\d+it \[)|/(?:\d+|\?) +\D{0,400}\d+/(?:\d+|\?) )"
)

FRAME = re.compile(r"^Epoch (\d+): (?:\s*\d+%\|[^|]*\| (\d+)/(?:\d+|\?)|(\d+)it) \[([^\]]*)")
LOSS_NEEDLES = tuple(f", {k}=" for k in ("loss", "train_loss_step", "train_loss", "loss_step"))
# Rich: the bar is no digits; then n/total, elapsed, remaining, rate, metrics
RICH = re.compile(
    r"^Epoch (\d+)/(?:\d+|\?) +\D{0,400}?(\d+)/(?:\d+|\?) +(\S+) • \S+ +(?:([\d.]+)it/s)?\s*(.*)$"
)
RICH_METRIC = re.compile(r"([A-Za-z_][\w/.-]{0,100}): (\S{1,40})")
VAL_NEEDLES = tuple(f", {k}=" for k in ("val_loss", "val_loss_epoch", "valid_loss", "val/loss"))


def _value(bracket: str, needle: str) -> str | None:
    """The value of `, key=` in a postfix, or None."""
    i = bracket.find(needle)
    if i < 0:
        return None
    i += len(needle)
    j = bracket.find(",", i)
    return bracket[i:] if j < 0 else bracket[i:j]


def _loss(bracket: str) -> str | None:
    for k in LOSS_NEEDLES:
        v = _value(bracket, k)
        if v is not None:
            return v
    if "loss" not in bracket:
        return None
    for item in bracket.split(", ")[2:]:  # another name with "loss" in it, not val/test
        k, eq, v = item.partition("=")
        if eq and "loss" in k and not k.startswith(("val", "test")):
            return v
    return None


def _items(bracket: str) -> list[tuple[str, str]]:
    """The postfix's name=value pairs (after the elapsed time and the rate)."""
    out = []
    for item in bracket.split(", ")[2:]:
        k, eq, v = item.partition("=")
        if eq:
            out.append((k.strip(), v.strip()))
    return out


class Parser:
    def __init__(self) -> None:
        self.info: dict = {}
        self.epoch = -1
        self.base = 0  # batches of the epochs before this one
        self.n_max = 0  # the most batches this epoch's bar counted so far
        self.step = 0  # the newest step seen
        self.held: dict | None = None  # the newest step's figures, until the next step
        self.val: float | None = None
        self.in_val = False
        self.drawn_step = 0  # Rich: the previous step drawn, and its (last) value
        self.drawn_loss: str | None = None

    def feed(self, line: str) -> list[dict] | None:
        c = line[:1]
        if c == "E":
            m = FRAME.match(line)
            if m is not None:
                return self._frame(int(m[1]), int(m[2] or m[3]), m[4])
            m = RICH.match(line)
            if m is not None:  # as a TQDM postfix: "elapsed, rate, name=value, ..."
                items = [f"{k}={v}" for k, v in RICH_METRIC.findall(m[5])]
                bracket = ", ".join([m[3], f"{m[4]}it/s" if m[4] else "?it/s", *items])
                return self._frame(int(m[1]), int(m[2]), bracket, rich=True)
        elif c == "V" and line.startswith("Validation"):
            self.in_val = True
        return None

    def _frame(self, epoch: int, n: int, bracket: str, rich: bool = False) -> list[dict] | None:
        if epoch != self.epoch:
            if self.epoch >= 0:
                self.base += self.n_max
            self.epoch, self.n_max = epoch, 0
        out: list[dict] = []
        if n > self.n_max:  # a new batch (n is 0, or back to 0, when a bar is reset)
            self.n_max = n
            if self.held is not None:
                out.append(self._release())
            self.step = self.base + n
            self.held = {"step": self.step, "epoch": epoch}
            if rich:
                self.held["losses"] = []
        held = self.held
        if held is not None and held["step"] == self.base + n:
            # the newest frame of a step has its postfix: keep its loss and rate
            held["loss"] = _loss(bracket)
            rate = bracket.split(", ", 2)
            held["rate"] = rate[1] if len(rate) > 1 else None
            if "=" in bracket:  # the bar's other figures the schema has a place for
                held["figs"] = {
                    f: v for k, v in _items(bracket) if (f := field_of(k)) in ("lr", "grad_norm")
                }
            seen = held.get("losses")
            if seen is not None and held["loss"] is not None and held["loss"] not in seen:
                seen.append(held["loss"])
        val = None
        if "val" in bracket:
            for k in VAL_NEEDLES:
                v = _value(bracket, k)
                if v is not None:
                    val = num(v)
                    break
        # Rich redraws the main bar, last eval's figures and all, between validation frames:
        # there only a new value is a new eval
        if val is not None and ((self.in_val and not rich) or val != self.val):
            if self.held is not None:
                out.append(self._release())
            metrics = {
                k: x
                for k, v in _items(bracket)
                if k.startswith(("val", "valid")) and "loss" not in k and (x := num(v)) is not None
            }
            ev = {"type": "eval", "step": self.step, "epoch": epoch, "val_loss": val}
            out.append(dict(ev, val_ppl=ppl(val), metrics=metrics))
            self.in_val = False
        if val is not None:
            self.val = val
        return out or None

    def _release(self) -> dict:
        h, self.held = self.held, None
        assert h is not None  # called with a step held
        if h.get("loss") is None or not self._sure(h):
            return {"type": "heartbeat", "step": h["step"]}
        ev = {"type": "step", "step": h["step"], "epoch": h["epoch"], "loss": num(h["loss"])}
        rate = h.get("rate") or ""
        r = num(rate[:-4]) if rate.endswith("it/s") else None
        if r:
            ev["step_ms"] = 1000.0 / r
        for f, v in (h.get("figs") or {}).items():
            x = num(v)
            if x is not None:
                ev[f] = x
        return ev

    def _sure(self, h: dict) -> bool:
        """Whether a step's loss is its own (always, but for Rich: see the docstring)."""
        seen = h.get("losses")
        if seen is None:
            return True
        loss, step = h["loss"], h["step"]
        sure = (
            len(seen) >= 2
            or (self.drawn_loss is None and step == 1)
            or (self.drawn_step == step - 1 and loss != self.drawn_loss)
        )
        self.drawn_step, self.drawn_loss = step, loss
        return sure

    def flush(self) -> list[dict]:
        return [self._release()] if self.held is not None else []
