"""Notifications: a run's alerts, its gate and its end, pushed to a phone or a chat.

`cockpit run --notify URL` / `cockpit watch --notify URL` (repeatable; or `notify:`
in the user config). How a URL's kind is recognised, first match wins:

| URL | kind | what is sent |
|---|---|---|
| `ntfy://[TOKEN@ or USER:PASS@]host/topic` | ntfy | the text, POSTed to `https://host/topic` (`ntfy+http://` for plain http) |
| `https://ntfy.sh/topic`, or a host named `ntfy.*` | ntfy | the same |
| `slack+https://…` | Slack-compatible webhook | `{"text": …}` to `https://…` (Mattermost, Rocket.Chat, Discord's `/slack`) |
| `https://hooks.slack.com/…` | Slack webhook | `{"text": …}` |
| `json+https://…`, or any other `http(s)://…` | generic JSON | `{"event", "run_id", "run_dir", "level", "text", "figures", "t"}` |

Nothing here ever blocks the session: `Notifier.post()` puts a message on a
bounded queue (a full queue drops it and says so once) and a daemon thread sends
it, with a timeout and retries with backoff. A target that fails is reported
once, as a `notify` alert, never raised. URLs are shown only masked
(`mask_url`): their tokens (user info, Slack's path, query values, an ntfy
topic) never reach a log or a screen.

`RunNotices` watches a run model and decides what to send: new alerts at or
above the level (`error` by default, `warn` to get more), the gate passing, the
run's end. Whatever was already in the history when it started is not sent.
"""

from __future__ import annotations

import base64
import json
import queue
import threading
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cockpit.fmt import clean, fmt_duration, fmt_num
from cockpit.model.runmodel import ENDED, OK_STATUSES

if TYPE_CHECKING:
    from cockpit.model.runmodel import RunModel
    from cockpit.userconfig import UserConfig

LEVELS = {"info": 0, "warn": 1, "error": 2}
MESSAGE_CHARS = 300  # a message from a trainer is cut here: one short line

# -----------------------------------------------------------------------------
# targets


@dataclass(frozen=True)
class Target:
    kind: str  # ntfy | slack | json
    url: str  # where the POST goes (may hold a token: never shown)
    shown: str  # the URL as logs and screens show it
    headers: tuple[tuple[str, str], ...] = ()


def mask_url(url: str) -> str:
    """The URL with its secrets replaced by ***: user info, query values, every path
    segment after the first (Slack's and Discord's tokens live there), and an ntfy
    topic but its first 3 characters (a topic is its own password on ntfy.sh)."""
    try:
        u = urllib.parse.urlsplit(url)
    except ValueError:
        return "***"
    host = u.hostname or ""
    if u.port:
        host += f":{u.port}"
    if u.username or u.password:
        host = "***@" + host
    segs = [s for s in u.path.split("/") if s]
    if u.scheme.startswith("ntfy") or _is_ntfy_host(u.hostname or ""):
        segs = [s[:3] + "***" if len(s) > 3 else "***" for s in segs]
    else:
        segs = segs[:1] + ["***"] * min(1, len(segs) - 1)
    path = "/" + "/".join(segs) if segs else ""
    q = urllib.parse.parse_qsl(u.query, keep_blank_values=True)
    query = "?" + "&".join(f"{k}=***" for k, _ in q) if q else ""
    return f"{u.scheme}://{host}{path}{query}"


def _is_ntfy_host(host: str) -> bool:
    return host == "ntfy.sh" or host.startswith("ntfy.")


def parse_target(spec: str) -> Target:
    """One --notify URL; ValueError says what is wrong and what is expected."""
    spec = spec.strip()
    try:
        u = urllib.parse.urlsplit(spec)
    except ValueError as e:
        raise ValueError(f"--notify {mask_url(spec)}: not a URL ({e})") from None
    scheme = u.scheme.lower()
    kinds = {"ntfy": ("ntfy", "https"), "ntfy+https": ("ntfy", "https")}
    kinds |= {"ntfy+http": ("ntfy", "http"), "slack+https": ("slack", "https")}
    kinds |= {"slack+http": ("slack", "http"), "json+https": ("json", "https")}
    kinds |= {"json+http": ("json", "http")}
    if scheme in kinds:
        kind, real = kinds[scheme]
    elif scheme in ("http", "https"):
        host = (u.hostname or "").lower()
        kind = "ntfy" if _is_ntfy_host(host) else "slack" if host == "hooks.slack.com" else "json"
        real = scheme
    else:
        raise ValueError(
            f"--notify {mask_url(spec)}: unknown kind {u.scheme!r}; use ntfy://host/topic, "
            "slack+https://… (or https://hooks.slack.com/…), json+https://… or https://…"
        )
    if not u.hostname:
        raise ValueError(f"--notify {mask_url(spec)}: no host in the URL")
    headers: list[tuple[str, str]] = []
    netloc = u.hostname + (f":{u.port}" if u.port else "")
    if u.username is not None or u.password is not None:
        user = urllib.parse.unquote(u.username or "")
        if u.password is not None:  # USER:PASS@ -> basic auth
            pw = urllib.parse.unquote(u.password)
            tok = base64.b64encode(f"{user}:{pw}".encode()).decode()
            headers.append(("Authorization", f"Basic {tok}"))
        else:  # TOKEN@ -> a bearer token (ntfy's access tokens)
            headers.append(("Authorization", f"Bearer {user}"))
    if kind == "ntfy" and not u.path.strip("/"):
        raise ValueError(f"--notify {mask_url(spec)}: an ntfy URL needs a topic: ntfy://host/TOPIC")
    url = urllib.parse.urlunsplit((real, netloc, u.path or "/", u.query, ""))
    return Target(kind, url, mask_url(spec), tuple(headers))


# -----------------------------------------------------------------------------
# messages


@dataclass(frozen=True)
class Note:
    """One notification: what happened (`event`: alert | gate | run_end), one short line,
    and a few figures."""

    event: str
    level: str  # info | warn | error
    line: str
    figures: dict[str, str] = field(default_factory=dict)
    run_id: str = ""
    run_dir: str = ""
    t: float = 0.0  # when it happened (the alert's time)

    def text(self) -> str:
        figs = " · ".join(f"{k} {v}" for k, v in self.figures.items())
        return self.line + (f"\n{figs}" if figs else "")


def payload(target: Target, note: Note) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one POST, by the target's kind."""
    headers = dict(target.headers)
    if target.kind == "slack":
        headers["Content-Type"] = "application/json"
        return json.dumps({"text": note.text()}).encode(), headers
    if target.kind == "ntfy":
        # a header is latin-1 at most: the title is kept ASCII, the text goes in the body
        title = f"cockpit {note.event}: {note.run_id}".encode("ascii", "replace").decode()
        headers |= {"Title": title, "Content-Type": "text/plain; charset=utf-8"}
        headers["Priority"] = {"error": "high", "warn": "default"}.get(note.level, "low")
        tag = {"error": "rotating_light", "warn": "warning"}.get(note.level, "white_check_mark")
        headers["Tags"] = tag
        return note.text().encode(), headers
    headers["Content-Type"] = "application/json"
    body = {
        "event": note.event,
        "level": note.level,
        "run_id": note.run_id,
        "run_dir": note.run_dir,
        "text": note.text(),
        "line": note.line,
        "figures": note.figures,
        "t": note.t,
    }
    return json.dumps(body).encode(), headers


# -----------------------------------------------------------------------------
# the sender


class Notifier:
    """A bounded queue and one daemon thread that POSTs each note to every target."""

    def __init__(
        self,
        targets: list[Target],
        *,
        queue_max: int = 64,
        timeout_s: float = 5.0,
        retries: int = 3,
        backoff_s: float = 1.0,
    ):
        self.targets = targets
        self.timeout_s, self.retries, self.backoff_s = timeout_s, retries, backoff_s
        self._q: queue.Queue[Note | None] = queue.Queue(maxsize=queue_max)
        self._problems: deque[str] = deque(maxlen=50)  # for the session to show
        self._reported: set[str] = set()  # targets whose failure was said already
        self.sent = self.failed = self.dropped = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cockpit-notify", daemon=True)
        self._thread.start()

    def post(self, note: Note) -> bool:
        """Queue a note (never waits); False when the queue was full and it was dropped."""
        try:
            self._q.put_nowait(note)
            return True
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1:
                self._problems.append(
                    f"notifications are not getting out fast enough: the queue is full, "
                    f"dropping new ones (targets: {', '.join(t.shown for t in self.targets)})"
                )
            return False

    def problems(self) -> list[str]:
        """What went wrong since the last call, each target's failure once, masked."""
        out = []
        while self._problems:
            out.append(self._problems.popleft())
        return out

    def close(self, wait_s: float = 5.0) -> None:
        """Send what is queued (the run's end, typically) for up to wait_s, then stop."""
        self._stopping.set()
        try:
            self._q.put(None, timeout=max(0.0, wait_s))
        except queue.Full:
            pass
        self._thread.join(timeout=wait_s)

    def _run(self) -> None:
        while True:
            note = self._q.get()
            if note is None:
                return
            for t in self.targets:
                self._send(t, note)

    def _send(self, target: Target, note: Note) -> None:
        import urllib.error  # here: http.client and ssl load only once there is something to send
        import urllib.request

        body, headers = payload(target, note)
        why = ""
        for attempt in range(self.retries + 1):
            if attempt:
                if self._stopping.is_set() and attempt > 1:
                    break  # closing: one retry at most, the session is waiting
                # closing cuts the wait short: the cockpit is on its way out
                self._stopping.wait(self.backoff_s * 2 ** (attempt - 1))
            req = urllib.request.Request(target.url, body, headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                    r.read(1 << 16)
                self.sent += 1
                return
            except urllib.error.HTTPError as e:
                why = f"HTTP {e.code}"
                if e.code < 500 and e.code != 429:
                    break  # the request is wrong (a bad token, a bad URL): retrying won't help
            except (OSError, ValueError) as e:  # refused, timed out, no route, bad URL
                reason = getattr(e, "reason", e)
                why = f"{type(reason).__name__}: {reason}" if str(reason) else type(e).__name__
            # a URL's secret may be echoed in an error: keep only the masked form
            why = why.replace(target.url, target.shown)
        self.failed += 1
        if target.shown not in self._reported:
            self._reported.add(target.shown)
            self._problems.append(
                f"cannot notify {target.shown} ({target.kind}): {why}; further failures of "
                "this target are not reported"
            )


# -----------------------------------------------------------------------------
# what a run says


class RunNotices:
    """Turns a run model's new alerts, gate pass and end into notes."""

    def __init__(self, notifier: Notifier, level: str = "error"):
        if level not in LEVELS:
            raise ValueError(f"--notify-level {level!r}: one of {', '.join(LEVELS)}")
        self.notifier, self.level = notifier, LEVELS[level]
        self.seen_alert = 0  # the newest alert seq looked at
        self.gate_sent = False
        self.end_sent = False
        self.run_t: object = None  # the run_start the end belongs to

    def baseline(self, m: RunModel) -> None:
        """What the history already holds is not news (a run resumed into the same
        directory starts a new run_start: its end will be)."""
        self.seen_alert = m.n_alerts
        self.gate_sent = m.gate_passed_step is not None
        self.end_sent = m.status in ENDED
        self.run_t = m.info.get("t")

    def observe(self, m: RunModel, now: float | None = None, end: bool = True) -> None:
        """Post what is new; `end=False` keeps the run's end for later (its energy is not
        known until the session settles)."""
        now = now or time.time()
        if m.info.get("t") != self.run_t:  # a new run_start: resumed into this directory
            self.run_t, self.end_sent = m.info.get("t"), m.status in ENDED
        if m.n_alerts > self.seen_alert:
            for a in list(m.alerts):
                if a.seq <= self.seen_alert:
                    continue
                if LEVELS.get(a.level, 0) >= self.level and a.code != "notify":
                    msg = clean(a.message)[:MESSAGE_CHARS]
                    self._post(m, "alert", a.level, f"{a.level} {a.code}: {msg}", a.t)
            self.seen_alert = m.n_alerts
        if not self.gate_sent and m.gate_passed_step is not None:
            self.gate_sent = True
            g = m.gate or {}
            figs = ", ".join(
                f"{clean(str(k))} {fmt_num(v, '.3f')}"
                for k, v in list((g.get("metrics") or {}).items())[:4]
                if isinstance(v, int | float)
            )
            line = f"gate passed at step {m.gate_passed_step}" + (f": {figs}" if figs else "")
            self._post(m, "gate", "info", line, now)
        if end and not self.end_sent and m.status in ENDED:
            self.end_sent = True
            level = "info" if m.status in OK_STATUSES else "error"
            reason = clean(str((m.run_end or {}).get("reason") or ""))[:MESSAGE_CHARS]
            code = f" (exit {m.exit_code})" if m.exit_code is not None else ""
            line = f"run {m.status}{code}" + (f": {reason}" if reason else "")
            self._post(m, "run_end", level, line, now)

    def _post(self, m: RunModel, event: str, level: str, line: str, t: float) -> None:
        steps = f"{m.step}/{m.total_steps}" if m.total_steps else str(m.step)
        figures = {"steps": steps, "best val": fmt_num(m.best_val)}
        figures["wall"] = fmt_duration(m.elapsed_s(time.time()))
        if event == "run_end":
            kwh = (m.energy or {}).get("kwh")
            if isinstance(kwh, int | float):
                figures["energy"] = f"{kwh:.3g} kWh"
                cost = (m.energy or {}).get("cost")
                if isinstance(cost, int | float):
                    figures["cost"] = f"{cost:.3g}"
            figures["run dir"] = str(m.run_dir)
        self.notifier.post(
            Note(
                event=event,
                level=level,
                line=f"{clean(m.run_id)}: {line}",
                figures=figures,
                run_id=clean(m.run_id),
                run_dir=str(m.run_dir or ""),
                t=t,
            )
        )


# -----------------------------------------------------------------------------
# from the command line and the user config


def session_kwargs(
    urls: list[str], level: str | None, price_kwh: float | None, cfg: UserConfig
) -> dict:
    """The Session's `notices` and `price_kwh` from the flags and the user config (flags
    add URLs to the config's, and override its level and price). ValueError: a bad URL."""
    targets = [parse_target(u) for u in [*cfg.notify, *urls]]
    notices = None
    if targets:
        notices = RunNotices(Notifier(targets), level or cfg.notify_level)
    return {"notices": notices, "price_kwh": price_kwh if price_kwh is not None else cfg.price_kwh}


def describe(kw: dict) -> str | None:
    """One line saying where notifications go (masked), for the command to print."""
    n = kw.get("notices")
    if n is None:
        return None
    names = {v: k for k, v in LEVELS.items()}
    where = ", ".join(f"{t.shown} ({t.kind})" for t in n.notifier.targets)
    return f"cockpit: notifying {where} of {names[n.level]}+ alerts, a gate pass and the run's end"
