"""nanochat's scripts/base_train.py (karpathy/nanochat), old and new lines:

    step 00012/00020 (60.00%) | loss: 4.123456 | lrm: 1.00 | dt: 123.45ms | tok/sec: 4,251 | bf16_mfu: 12.34 | epoch: 1 pq: 3 rg: 4 | total time: 0.12m | eta: 1.2m
    step 00012 (60.00%) | loss: 4.123456 | lrm: 1.00 | dt: 123.45ms | tok/sec: 4,251 | mfu: 12.34 | total time: 0.12m
    Step 00250 | Validation bpb: 0.812345
    Step 02000 | CORE metric: 0.2219

The loss is nanochat's debiased EMA of the train loss, as printed. `lrm` is a
multiplier of several optimizers' rates, not a rate: it is not `lr`. Its
validation figure is bits per byte, not a loss in nats: an eval event carries
it as `metrics.val_bpb` with val_loss unknown (a bpb beside a nats train loss
on one curve would mislead). MFU 0.00 (no peak FLOPS known, on CPU) is unknown.
"""

from __future__ import annotations

import math
import re

from cockpit.wrap.adapters.common import num

NAME = "nanochat"
SIGNATURE = re.compile(r"^(?:step \d+(?:/\d+)? \([\d.]+%\) \| loss: |Step \d+ \| Validation bpb: )")

# the fields come in this order; each one may be missing, others may come between
STEP = re.compile(
    r"^step (\d+)(?:/(\d+))? \([\d.]+%\) \| loss: (\S+)(?:.*? \| dt: ([\d.]+)ms)?"
    r"(?:.*? \| tok/sec: ([\d,]+))?(?:.*? \| (?:\w+_)?mfu: ([-\d.]+))?(?:.*? \| epoch: (\d+))?"
)
EVAL = re.compile(r"^Step (\d+) \| (Validation bpb|CORE metric): (\S+)")
INFO = (
    (
        re.compile(r"^(?:Calculated|Using user-provided) number of iterations.*: ([\d,]+)$"),
        "total_steps",
    ),
    (re.compile(r"^Total batch size ([\d,]+) =>"), "tokens_per_step"),
    (re.compile(r"^(?:total\s+|Number of parameters): ([\d,]+)$"), "n_params"),
)
DTYPE = re.compile(r"^COMPUTE_DTYPE: (?:torch\.)?(\w+)")
GPU = re.compile(r"^GPU: (.+?) \|")
METRIC = {"Validation bpb": "val_bpb", "CORE metric": "core_metric"}


class Parser:
    def __init__(self) -> None:
        self.info: dict = {}
        self.step = 0
        self.tps = 0  # tokens per step, when the preamble said

    def feed(self, line: str) -> list[dict] | None:
        c = line[:1]
        if c == "s":
            m = STEP.match(line)
            if m is None:
                return None
            step, total, loss, dt, tok, mfu, epoch = m.groups()
            step = self.step = int(step)
            if total and "total_steps" not in self.info:
                self.info["total_steps"] = int(total)
            try:
                ev: dict = {"type": "step", "step": step, "loss": float(loss)}
                if dt:
                    ev["step_ms"] = float(dt)
                if tok:
                    ev["tokens_per_s"] = float(tok.replace(",", ""))
            except ValueError:  # not a number after all ("1.2.3"): unknown
                ev = {"type": "step", "step": step, "loss": num(loss)}
            # 0.00 is no peak FLOPS known (on CPU), a negative one not measured yet
            if mfu and 0.0 < (x := num(mfu) or 0.0) < math.inf:
                ev["mfu"] = x / 100.0
            if epoch:
                ev["epoch"] = int(epoch)
            if self.tps:
                ev["tokens"] = self.tps * (step + 1)
            return [ev]
        if c == "S":
            m = EVAL.match(line)
            if m is None:
                return None
            self.step = int(m[1])
            metrics = {METRIC[m[2]]: num(m[3])}
            return [{"type": "eval", "step": self.step, "val_loss": None, "metrics": metrics}]
        for rx, key in INFO:
            if m := rx.match(line):
                self.info[key] = int(m[1].replace(",", ""))
                self.tps = self.info.get("tokens_per_step", 0)
                return None
        if c == "C" and (m := DTYPE.match(line)):
            self.info["dtype"] = m[1]
        elif c == "G" and (m := GPU.match(line)):
            self.info["device"] = m[1]
        return None

    def flush(self) -> list[dict]:
        return []
