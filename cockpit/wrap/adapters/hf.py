"""Hugging Face Trainer (transformers): its tqdm bar and the dicts its
ProgressCallback writes through the bar (`training_bar.write(str(logs))`):

     10%|█         | 50/500 [00:05<00:45,  9.98it/s]
    {'loss': 2.3456, 'grad_norm': 1.234, 'learning_rate': 4.5e-05, 'epoch': 0.33}
    {'loss': '2.346', 'grad_norm': '1.234', 'learning_rate': '4.5e-05', 'epoch': '0.33'}
    {'eval_loss': '2.1', 'eval_runtime': '1.2', 'eval_samples_per_second': '80', 'eval_steps_per_second': '10', 'epoch': '1'}
    {'train_runtime': '60.1', 'train_samples_per_second': '25', 'train_steps_per_second': '8.3', 'train_loss': '2.2', 'epoch': '3'}

Newer versions print floats as quoted strings (f"{v:.4g}"); older ones as
numbers, and some grad norms as `tensor(1.23, device='cuda:0')`. The dicts
carry no step: tqdm.write clears the bar, prints the dict and redraws the bar
at the current step, so a dict waits for the next frame of the training bar
and takes its step (and its it/s as step_ms). Frames of other bars (the
evaluation bar has another total) are ignored; a training frame with a new
step and no dict is a heartbeat. Without any bar (disable_tqdm=True prints
the dicts alone) a dict's step is its count among the loss dicts.

The "***** Running training *****" block, when the script logs at INFO, gives
total steps, epochs and the parameter count for run_start.
"""

from __future__ import annotations

import math
import re

from cockpit.wrap.adapters.common import num, ppl

NAME = "hf"
SIGNATURE = re.compile(r"^(?:\s*\d+%\|[^|]*\| \d+/\d+ \[|\{'(?:loss|eval_loss|train_runtime)': )")

BAR = re.compile(r"^\s*\d+%\|[^|]*\| (\d+)/(\d+) \[([^\]]*)")
PAIR = re.compile(r"'([^']+)':\s*(?:'([^']*)'|tensor\(([^,)]+)[^)]*\)|([^,}]+))")
INFO = (
    (re.compile(r"Total optimization steps = ([\d,]+)"), "total_steps"),
    (re.compile(r"Num Epochs = ([\d,]+)"), "total_epochs"),
    (re.compile(r"Number of trainable parameters = ([\d,]+)"), "n_params"),
)
NOT_METRICS = ("eval_loss", "eval_runtime", "eval_samples_per_second", "eval_steps_per_second")


def step_ms(bracket: str) -> float | None:
    """'00:05<00:45,  9.98it/s' -> 100.2; '1.23s/it' -> 1230; '?it/s' -> None."""
    rate = bracket.split(",", 2)[1].strip() if "," in bracket else ""
    if rate.endswith("it/s"):
        r = num(rate[:-4])
        return 1000.0 / r if r else None
    if rate.endswith("s/it"):
        r = num(rate[:-4])
        return r * 1000.0 if r is not None else None
    return None


def parse_dict(line: str) -> dict[str, float]:
    out = {}
    for k, quoted, tensor, bare in PAIR.findall(line):
        x = num((quoted or tensor or bare).strip())
        if x is not None:
            out[k] = x
    return out


class Parser:
    def __init__(self) -> None:
        self.info: dict = {}
        self.total: int | None = None  # the training bar's total
        self.step = 0
        self.logs = 0  # loss dicts seen
        self.pending: list[dict] = []  # dicts waiting for the bar's step

    def feed(self, line: str) -> list[dict] | None:
        c = line[:1]
        if c == "{":
            return self._dict(line)
        if c == " " or c.isdigit():
            m = BAR.match(line)
            if m is not None:
                return self._frame(int(m[1]), int(m[2]), m[3])
        if "=" in line:
            for rx, key in INFO:
                if m := rx.search(line):
                    self.info[key] = int(m[1].replace(",", ""))
                    if key == "total_steps":
                        self.total = self.info[key]
        return None

    def _frame(self, n: int, total: int, bracket: str) -> list[dict] | None:
        if self.total is None:
            self.total = self.info["total_steps"] = total  # the first bar is the training bar
        elif total != self.total:
            return None  # the evaluation bar
        if not self.pending:
            if n == self.step:
                return None
            self.step = n
            return [{"type": "heartbeat", "step": n}]
        self.step = n
        ms = step_ms(bracket)
        out = self.pending
        self.pending = []
        for ev in out:
            ev["step"] = n
            if ms is not None and ev["type"] == "step":
                ev["step_ms"] = ms
        return out

    def _dict(self, line: str) -> list[dict] | None:
        d = parse_dict(line)
        if "loss" in d:
            self.logs += 1
            ev = {"type": "step", "loss": d["loss"]}
            if "learning_rate" in d:
                ev["lr"] = d["learning_rate"]
            if "grad_norm" in d:
                ev["grad_norm"] = d["grad_norm"]
        elif "eval_loss" in d:
            vl = d["eval_loss"]
            metrics = {
                k[5:]: v for k, v in d.items() if k.startswith("eval_") and k not in NOT_METRICS
            }
            ev = {"type": "eval", "val_loss": vl, "val_ppl": ppl(vl), "metrics": metrics}
        else:
            return None  # the final summary, or a dict of someone else's
        ep = d.get("epoch")
        if ep is not None and math.isfinite(ep):
            ev["epoch"] = int(ep)
        if self.total is None:  # no bar at all: count the logs
            if ev["type"] == "step":
                self.step = self.logs
            ev["step"] = self.step
            return [ev]
        self.pending.append(ev)
        return None

    def flush(self) -> list[dict]:
        out = self.pending
        self.pending = []
        for ev in out:
            ev["step"] = self.step
        return out
