"""The user's own settings: `$XDG_CONFIG_HOME/cockpit/config.yaml`
(`~/.config/cockpit/config.yaml` when XDG_CONFIG_HOME is unset).

    # where run alerts, gate passes and run ends go (cockpit run / cockpit watch)
    notify:
      - ntfy://ntfy.sh/my-secret-topic
      - https://hooks.slack.com/services/T000/B000/XXXX
    notify_level: error     # error (default) | warn | info
    price_kwh: 0.30         # what a kWh costs you: runs show their energy cost

Command-line flags add to it (`--notify`) or override it (`--notify-level`,
`--price-kwh`). A missing file is no settings; a bad one is a one-paragraph error
naming the file, the field and the fix.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

LEVELS = ("info", "warn", "error")


class UserConfigError(ValueError):
    pass


@dataclass(frozen=True)
class UserConfig:
    notify: tuple[str, ...] = ()
    """Notification URLs (see cockpit/notify.py for the kinds)."""
    notify_level: str = "error"
    """Alerts at or above this level are sent."""
    price_kwh: float | None = None
    """What a kWh costs; runs show their energy cost with it."""
    path: Path | None = None
    """The file these came from (None: no file)."""


def config_path(env: Mapping[str, str] | None = None) -> Path:
    e: Mapping[str, str] = os.environ if env is None else env
    base = e.get("XDG_CONFIG_HOME") or str(Path(e.get("HOME") or Path.home()) / ".config")
    return Path(base) / "cockpit" / "config.yaml"


def load_user_config(path: Path | None = None) -> UserConfig:
    """The settings in `path` (default config_path()); UserConfigError lists every problem."""
    path = path or config_path()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return UserConfig()
    except OSError as e:
        raise UserConfigError(
            f"{path}: cannot read it ({e}); fix its permissions or remove it"
        ) from None
    import yaml  # here: most users have no config file, and the TUI starts without yaml

    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise UserConfigError(
            f"{path}: not valid YAML ({str(e).splitlines()[0]}); fix it or remove the file"
        ) from None
    if d is None:
        return UserConfig(path=path)
    if not isinstance(d, dict):
        raise UserConfigError(f"{path}: expected a mapping of settings (notify:, price_kwh:, …)")
    problems = []
    known = ("notify", "notify_level", "price_kwh")
    for k in d:
        if k not in known:
            problems.append(f"unknown field {k!r} (known: {', '.join(known)})")
    notify = d.get("notify") or []
    if isinstance(notify, str):
        notify = [notify]
    if not isinstance(notify, list) or not all(isinstance(u, str) for u in notify):
        problems.append("notify: expected a list of URLs, e.g. notify: [ntfy://ntfy.sh/my-topic]")
        notify = []
    level = d.get("notify_level", "error")
    if level not in LEVELS:
        problems.append(f"notify_level: {level!r} is not one of {', '.join(LEVELS)}")
    price = d.get("price_kwh")
    if price is not None and (
        isinstance(price, bool) or not isinstance(price, int | float) or price < 0
    ):
        problems.append(f"price_kwh: {price!r} is not a price, e.g. price_kwh: 0.30")
        price = None
    if problems:
        raise UserConfigError(
            f"{path}: " + "; ".join(problems) + ". Fix the file (or remove it) and run again."
        )
    return UserConfig(tuple(notify), level, float(price) if price is not None else None, path)
