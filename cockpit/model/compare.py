"""What differs between runs' configurations, for `cockpit compare` and the compare
screen: each run's settings as flat `section.key` strings, and the keys whose
values differ.

Our runs record their resolved profile in run.yaml. A wrapped run has none: its
settings are its command (the run_start event's `wrapped.command`), read as the
`--key=value` / `--key value` options most training scripts take, so two nanoGPT
runs that differ in `--learning_rate` show it like two of ours differing in
`train.lr`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

MAX_VALUE_CHARS = 200  # a value longer than this (a path list, a prompt) is cut


def flatten(d: Any, prefix: str = "") -> dict[str, str]:
    """{"train": {"lr": 3e-4}} -> {"train.lr": "0.0003"}; lists and scalars as text."""
    out: dict[str, str] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif prefix:
        out[prefix] = _text(d)
    return out


def _text(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"  # 3e-05, not 2.9999999999999997e-05 (lr / 10)
    s = v if isinstance(v, str) else json.dumps(v, default=str)
    return s if len(s) <= MAX_VALUE_CHARS else s[: MAX_VALUE_CHARS - 1] + "…"


def command_options(command: list[str]) -> dict[str, str]:
    """A command's `--key=value` and `--key value` options as {"arg.key": value}; a
    flag alone as "true". The program and its positional arguments as `command`."""
    out: dict[str, str] = {}
    positional: list[str] = []
    i = 0
    while i < len(command):
        a = str(command[i])
        if a.startswith("--") and len(a) > 2:
            key, eq, val = a[2:].partition("=")
            if not eq:
                nxt = command[i + 1] if i + 1 < len(command) else None
                if nxt is not None and not str(nxt).startswith("--"):
                    val, i = str(nxt), i + 1
                else:
                    val = "true"
            out[f"arg.{key}"] = _text(val)
        else:
            positional.append(a)
        i += 1
    if positional:
        out["command"] = _text(" ".join(positional))
    return out


def run_config(run_dir: Path | None, info: dict | None = None) -> dict[str, str]:
    """A run's settings, flat: run.yaml's `profile` section, else (a wrapped run) its
    command's options from the run_start event `info`. Empty when neither is there.
    Never raises: an unreadable run.yaml is no settings."""
    if run_dir is not None:
        try:
            doc = yaml.safe_load((Path(run_dir) / "run.yaml").read_text(errors="replace"))
        except (OSError, yaml.YAMLError):
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("profile"), dict):
            return flatten(doc["profile"])
    wrapped = (info or {}).get("wrapped")
    if isinstance(wrapped, dict):
        cmd = wrapped.get("command")
        out = command_options([str(c) for c in cmd]) if isinstance(cmd, list) else {}
        if wrapped.get("format"):
            out["wrapped.format"] = _text(wrapped["format"])
        return out
    return {}


def config_diff(configs: list[dict[str, str]]) -> list[tuple[str, list[str | None]]]:
    """The keys whose values differ between runs, each with every run's value (None
    where a run has no such key), in the first run's order. A key only one run has
    is left out: it says what kind of run that is, not what was changed (a wrapped
    run next to ours would list every key of our profile)."""
    keys: dict[str, None] = {}
    for c in configs:
        keys.update(dict.fromkeys(c))
    out = []
    for k in keys:
        vals = [c.get(k) for c in configs]
        present = [v for v in vals if v is not None]
        if len(present) >= 2 and len(set(present)) > 1:
            out.append((k, vals))
    return out
