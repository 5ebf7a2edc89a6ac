"""nanoGPT's train.py (karpathy/nanoGPT):

    tokens per iteration will be: 491,520
    number of parameters: 123.59M
    step 0: train loss 10.9876, val loss 10.9894
    iter 0: loss 10.9802, time 31425.71ms, mfu -100.00%
    iter 10: loss 9.6021, time 253.18ms, mfu 35.61%

`mfu -100.00%` is its "not measured yet" (the first 5 iterations): unknown.
Steps keep nanoGPT's own numbers (`iter N` is the step the log calls N).
tokens/s and cumulative tokens come from "tokens per iteration" when printed.
nanoGPT evaluates at iteration N before it trains iteration N (`step N: ...`
comes before `iter N: ...`, both on the same weights): the eval is held until
that iter line and written after its step, so the eval at step N follows step
N as in our own runs (a display of the run at the eval shows step N, not N-1).
Forks append figures (`, lr 6.00e-04`): any `name value` pair after the
standard ones is read with the generic names.
"""

from __future__ import annotations

import re

from cockpit.wrap.adapters.common import KEYS, mfu_from, num, ppl

NAME = "nanogpt"
SIGNATURE = re.compile(r"^(?:iter \d+: loss |step \d+: train loss )")

ITER = re.compile(r"^iter (\d+): loss (\S+?), time ([\d.]+)ms(?:, mfu ([-\d.]+|nan)%)?(.*)$")
EVAL = re.compile(r"^step (\d+): train loss (\S+?), val loss (\S+?)(?:,|$)")
EXTRA = re.compile(r"([A-Za-z_][\w/]*) ([-+]?[\d.]+(?:e[-+]?\d+)?)")
TOKENS_PER_ITER = re.compile(r"^tokens per iteration will be: ([\d,]+)")
N_PARAMS = re.compile(r"^number of parameters: ([\d.]+)M")


class Parser:
    def __init__(self) -> None:
        self.info: dict = {}
        self.tpi: int | None = None  # tokens per iteration
        self.step = 0
        self.held: dict | None = None  # an eval waiting for its iteration's step

    def feed(self, line: str) -> list[dict] | None:
        c = line[:1]
        if c == "i":
            m = ITER.match(line)
            if m is None:
                return None
            step = int(m[1])
            ms = float(m[3])
            ev = {"type": "step", "step": step, "loss": num(m[2]), "step_ms": ms}
            mfu = mfu_from(num(m[4]), "%") if m[4] else None
            if mfu is not None:
                ev["mfu"] = mfu
            if self.tpi:
                ev["tokens"] = self.tpi * (step + 1)
                if ms > 0:
                    ev["tokens_per_s"] = self.tpi * 1000.0 / ms
            if m[5]:
                for k, v in EXTRA.findall(m[5]):
                    f = KEYS.get(k.lower())
                    if f in ("lr", "grad_norm") and f not in ev:
                        ev[f] = num(v)
            self.step = step
            h, self.held = self.held, None
            if h is None:
                return [ev]
            return [ev, h] if step == h["step"] else [h, ev]
        if c == "s":
            m = EVAL.match(line)
            if m is None:
                return None
            vl = num(m[3])
            out = self.flush()  # an eval still held (no iter line after it): at its own step
            self.held = {
                "type": "eval",
                "step": int(m[1]),
                "val_loss": vl,
                "val_ppl": ppl(vl),
                "metrics": {"train_loss": num(m[2])},
            }
            return out or None
        if c == "t" and (m := TOKENS_PER_ITER.match(line)):
            self.tpi = int(m[1].replace(",", ""))
            self.info["tokens_per_step"] = self.tpi
        elif c == "n" and (m := N_PARAMS.match(line)):
            self.info["n_params"] = round(float(m[1]) * 1e6)
        return None

    def flush(self) -> list[dict]:
        h, self.held = self.held, None
        return [h] if h is not None else []
