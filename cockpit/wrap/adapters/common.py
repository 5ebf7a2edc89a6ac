"""What the adapters share: numbers as trainers print them, the names trainers
give the figures of a step, and a parser's state as a plain dict.

An adapter's output is a list of event dicts with `type` and the fields it
knows (cockpit.wrap.wrapped fills the rest of the schema with None). Every parser is a
small class with `feed(line) -> list[dict] | None`, `flush() -> list[dict]`
(what it held back, at the end) and `info` (figures for run_start). Its
attributes are plain JSON values, so `state()`/`restore()` can save it beside
the read offset and a re-attached cockpit continues the parse exactly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

# -----------------------------------------------------------------------------
# numbers


def num(s: str) -> float | None:
    """'1.23', '1,234', '4.5e-05', 'nan' -> float; anything else -> None."""
    try:
        return float(s)
    except ValueError:
        try:
            return float(s.replace(",", ""))
        except ValueError:
            return None


def whole(s: str) -> int | None:
    x = num(s)
    return int(x) if x is not None and math.isfinite(x) else None


def ppl(val_loss: float | None) -> float | None:
    if val_loss is None or not math.isfinite(val_loss):
        return None
    return math.exp(val_loss) if val_loss < 700 else math.inf


def mfu_from(v: float | None, unit: str = "") -> float | None:
    """MFU as a fraction. Printed as a percent by most trainers; a negative value
    is a trainer's 'not measured yet' (nanoGPT prints -100.00% for its first steps)
    and 0 is nanochat's 'no peak FLOPS known' on CPU: both are unknown."""
    if v is None or not math.isfinite(v) or v <= 0:
        return None
    return v / 100.0 if unit == "%" or v > 1.0 else v


# -----------------------------------------------------------------------------
# a parser's state: its attributes are plain JSON values by construction


def state(parser: object) -> dict:
    return {k: v for k, v in vars(parser).items() if not k.startswith("_")}


def restore(parser: object, d: dict) -> None:
    for k, v in d.items():
        if hasattr(parser, k) and not k.startswith("_"):
            setattr(parser, k, v)


# -----------------------------------------------------------------------------
# generic figures: key=value lines and JSON lines name the same things many ways

KEYS: dict[str, str] = {}
for _field, _names in {
    "step": "step iter iteration it global_step globalstep trainer/global_step train/step",
    "epoch": "epoch ep train/epoch",
    "loss": "loss train_loss train/loss training_loss loss_step train_loss_step",
    "lr": "lr learning_rate train/lr train/learning_rate lr-adamw",
    "grad_norm": "grad_norm gnorm grad-norm gradnorm train/grad_norm norm",
    "tokens": "tokens tokens_seen total_tokens num_tokens train/tokens",
    "tokens_per_s": "tokens_per_s tok/s tok/sec toks/s tokens/s tokens_per_sec tokens_per_second tps throughput",
    "step_ms": "step_ms ms time_ms dt_ms iter_ms ms/step ms/it",
    "step_s": "dt step_time time step_s dt_s iter_time sec s/it s/step",
    "mfu": "mfu train/mfu bf16_mfu",
    "val_loss": "val_loss eval_loss valid_loss validation_loss val/loss eval/loss",
}.items():
    for _n in _names.split():
        KEYS[_n] = _field


def field_of(key: str) -> str | None:
    """The schema field a printed name stands for (KEYS), or None."""
    return KEYS.get(key) or KEYS.get(key.lower())


def generic(items: Iterable[tuple[str, float, str]], last_step: int) -> tuple[list[dict], int]:
    """Events from one line's named figures, (key, value, unit) triples: a step when
    it has a step number and a loss, an eval when it has a validation loss.
    Returns (events, the step now). The first figure of a name wins."""
    got: dict[str, float] = {}
    unit_of: dict[str, str] = {}
    for key, v, unit in items:
        f = KEYS.get(key) or KEYS.get(key.lower())
        if f is not None and f not in got:
            got[f] = v
            if unit:
                unit_of[f] = unit
    return build(got, unit_of, last_step)


def build(got: dict[str, float], unit_of: dict[str, str], last_step: int) -> tuple[list[dict], int]:
    """generic()'s events from the figures by field name ({field: value}, {field: unit})."""
    s = got.get("step")
    step = int(s) if s is not None and math.isfinite(s) else None
    out: list[dict] = []
    if step is not None and "loss" in got:
        ev = {"type": "step", "step": step, "loss": got["loss"]}
        for k in ("lr", "grad_norm", "tokens_per_s", "step_ms"):
            if k in got:
                ev[k] = got[k]
        if "step_s" in got and "step_ms" not in got:
            ev["step_ms"] = got["step_s"] * (1.0 if unit_of.get("step_s") == "ms" else 1000.0)
        if "tokens" in got and math.isfinite(got["tokens"]):
            ev["tokens"] = int(got["tokens"])
        if "epoch" in got and math.isfinite(got["epoch"]):
            ev["epoch"] = int(got["epoch"])
        if "mfu" in got:
            m = mfu_from(got["mfu"], unit_of.get("mfu", ""))
            if m is not None:
                ev["mfu"] = m
        out.append(ev)
    if "val_loss" in got:
        vl = got["val_loss"]
        at = step if step is not None else last_step
        out.append({"type": "eval", "step": at, "val_loss": vl, "val_ppl": ppl(vl)})
    return out, step if step is not None else last_step


# key=value and key: value pairs, with an optional unit glued to the number
VALUE = (
    r"([-+]?(?:\d[\d,]*\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|inf))"
    r"(ms|s|%)?(?![\w.])"
)
KV = re.compile(r"(?<![\w./-])([A-Za-z_][\w./-]*)\s*[=:]\s*" + VALUE)


def kv_figures(line: str) -> list[tuple[str, float, str]]:
    """(key, value, unit) of every key=value or key: value pair in a line."""
    return [
        (k, float(v) if "," not in v else float(v.replace(",", "")), unit)
        for k, v, unit in KV.findall(line)
    ]
