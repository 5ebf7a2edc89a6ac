"""Notifications (cockpit/notify.py) against a real HTTP server on 127.0.0.1: what
arrives for each kind, that a slow or dead endpoint never slows the cockpit, that
a URL's token never reaches a message, and the user config they may come from."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cockpit.model.runmodel import RunModel
from cockpit.notify import Note, Notifier, RunNotices, mask_url, parse_target, session_kwargs
from cockpit.userconfig import UserConfigError, config_path, load_user_config


class Hooks:
    """A real HTTP server that records every POST (path, headers, body, arrival time);
    `delay_s` makes it slow, `status` makes it fail."""

    def __init__(self, delay_s: float = 0.0, status: int = 200):
        self.got: list[dict] = []
        self.delay_s, self.status = delay_s, status
        hooks = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                hooks.got.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": body,
                        "t": time.time(),
                    }
                )
                time.sleep(hooks.delay_s)
                self.send_response(hooks.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def url(self, path: str) -> str:
        return f"127.0.0.1:{self.port}{path}"

    def wait(self, n: int, timeout: float = 10.0) -> list[dict]:
        deadline = time.time() + timeout
        while len(self.got) < n and time.time() < deadline:
            time.sleep(0.01)
        return self.got

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hooks():
    h = Hooks()
    yield h
    h.close()


def dead_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: a connection is refused
    return port


# -----------------------------------------------------------------------------
# URLs


def test_the_kind_of_each_url_and_where_it_posts():
    t = parse_target("ntfy://ntfy.sh/my-topic")
    assert (t.kind, t.url) == ("ntfy", "https://ntfy.sh/my-topic")
    assert parse_target("https://ntfy.sh/abc").kind == "ntfy"
    assert parse_target("https://ntfy.example.org/abc").kind == "ntfy"
    assert parse_target("ntfy+http://127.0.0.1:8080/t").url == "http://127.0.0.1:8080/t"
    s = parse_target("https://hooks.slack.com/services/T0/B0/XYZ")
    assert s.kind == "slack" and s.url == "https://hooks.slack.com/services/T0/B0/XYZ"
    m = parse_target("slack+https://chat.example.org/hooks/abc")
    assert (m.kind, m.url) == ("slack", "https://chat.example.org/hooks/abc")
    assert parse_target("https://example.org/hook").kind == "json"
    assert parse_target("json+http://10.0.0.1/hook").url == "http://10.0.0.1/hook"
    with pytest.raises(ValueError, match="unknown kind 'ftp'"):
        parse_target("ftp://example.org/x")
    with pytest.raises(ValueError, match="needs a topic"):
        parse_target("ntfy://ntfy.sh/")


def test_tokens_in_urls_are_masked():
    slack = "https://hooks.slack.com/services/T0SECRET/B0SECRET/XYZSECRETTOKEN"
    assert "SECRET" not in mask_url(slack)
    assert mask_url(slack).startswith("https://hooks.slack.com/services/")
    ntfy = "ntfy://tk_SECRETTOKEN@ntfy.sh/topicSECRET"
    assert "SECRET" not in mask_url(ntfy) and "ntfy.sh" in mask_url(ntfy)
    assert "SECRET" not in mask_url("https://x.org/hook?token=SECRET&a=SECRET")
    basic = parse_target("ntfy://bob:SECRETPW@ntfy.sh/alerts")
    assert "SECRET" not in basic.shown and basic.headers[0][1].startswith("Basic ")
    assert parse_target("ntfy://tk_abc@ntfy.sh/t").headers == (("Authorization", "Bearer tk_abc"),)


# -----------------------------------------------------------------------------
# payloads, for real


def note(line: str = "run-1: error crash: the trainer died", level: str = "error") -> Note:
    return Note(
        "alert", level, line, {"steps": "12/100", "best val": "2.3100"}, "run-1", "logs/run-1", 1.0
    )


def test_each_kind_gets_its_payload(hooks):
    targets = [
        parse_target("ntfy+http://tk_SECRET@" + hooks.url("/cockpit-alerts")),
        parse_target("slack+http://" + hooks.url("/services/T0/B0/SECRET")),
        parse_target("json+http://" + hooks.url("/hook?token=SECRET")),
    ]
    n = Notifier(targets)
    n.post(note())
    got = {g["path"]: g for g in hooks.wait(3)}
    n.close()
    ntfy = got["/cockpit-alerts"]
    assert (
        ntfy["body"].decode()
        == "run-1: error crash: the trainer died\nsteps 12/100 · best val 2.3100"
    )
    assert ntfy["headers"]["Title"] == "cockpit alert: run-1"
    assert ntfy["headers"]["Priority"] == "high"
    assert ntfy["headers"]["Authorization"] == "Bearer tk_SECRET"
    slack = json.loads(got["/services/T0/B0/SECRET"]["body"])
    assert slack == {"text": "run-1: error crash: the trainer died\nsteps 12/100 · best val 2.3100"}
    generic = json.loads(got["/hook?token=SECRET"]["body"])
    assert generic["event"] == "alert" and generic["level"] == "error"
    assert generic["run_id"] == "run-1" and generic["figures"]["steps"] == "12/100"
    assert n.sent == 3 and n.failed == 0 and n.problems() == []


def test_what_a_run_sends_alerts_at_the_level_the_gate_and_the_end(hooks):
    m = RunModel(run_id="r1")
    m.add_alert("error", "crash", "old news", "cockpit")  # in the history: not sent
    n = Notifier([parse_target("json+http://" + hooks.url("/h"))])
    rn = RunNotices(n, "error")
    rn.baseline(m)
    m.add_alert("warn", "loss_spike", "a spike", "cockpit")  # under the level
    m.add_alert("error", "stall", "no step for 90 s \x1b[31m", "cockpit")
    m.gate_passed_step, m.gate = 40, {"metrics": {"acc": 0.97}}
    m.status, m.step, m.best_val = "gate_passed", 40, 1.25
    m.energy = {"kwh": 0.012, "cost": 0.0036}
    rn.observe(m, end=False)
    rn.observe(m)  # once each, however often it looks
    rn.observe(m)
    got = [json.loads(g["body"]) for g in hooks.wait(3)]
    time.sleep(0.2)
    n.close()
    assert [g["event"] for g in got] == ["alert", "gate", "run_end"]
    assert "stall: no step for 90 s ␛[31m" in got[0]["line"]  # controls made visible
    assert got[1]["line"] == "r1: gate passed at step 40: acc 0.970"
    assert got[2]["line"] == "r1: run gate_passed" and got[2]["figures"]["energy"] == "0.012 kWh"
    assert got[2]["figures"]["best val"] == "1.2500" and got[2]["figures"]["steps"] == "40"


def test_warn_level_sends_warnings_too(hooks):
    m = RunModel(run_id="r1")
    rn = RunNotices(Notifier([parse_target("json+http://" + hooks.url("/h"))]), "warn")
    m.add_alert("warn", "loss_spike", "a spike", "cockpit")
    m.add_alert("info", "resumed", "resumed", "trainer")
    rn.observe(m)
    assert len(hooks.wait(1)) == 1
    rn.notifier.close()
    assert json.loads(hooks.got[0]["body"])["level"] == "warn"


# -----------------------------------------------------------------------------
# never in the way


def test_a_slow_endpoint_never_slows_posting():
    slow = Hooks(delay_s=2.0)
    try:
        n = Notifier([parse_target("json+http://" + slow.url("/h"))], queue_max=8, timeout_s=5)
        times = []
        for _ in range(50):
            t0 = time.perf_counter()
            n.post(note())
            times.append(time.perf_counter() - t0)
        # microseconds each (bench/notify.py measures them); never the endpoint's 2 s, only
        # at worst a wait for the GIL the sender and this test's own server threads hold
        assert sorted(times)[len(times) // 2] < 1e-4 and max(times) < 0.1, times
        assert n.dropped >= 40  # the queue is bounded: the rest are dropped, and said once
        problems = n.problems()
        assert len(problems) == 1 and "queue is full" in problems[0]
        t0 = time.monotonic()
        n.close(wait_s=0.5)
        assert time.monotonic() - t0 < 1.5
    finally:
        slow.close()


def test_a_dead_endpoint_is_reported_once_masked_and_never_raised():
    url = f"json+http://127.0.0.1:{dead_port()}/hook/SECRETTOKEN"
    n = Notifier([parse_target(url)], retries=2, backoff_s=0.01)
    for _ in range(3):
        assert n.post(note()) is True
    deadline = time.time() + 10
    while n.failed < 3 and time.time() < deadline:
        time.sleep(0.01)
    n.close()
    problems = n.problems()
    assert n.failed == 3 and len(problems) == 1
    assert (
        "cannot notify json+http://127.0.0.1" in problems[0] and "ConnectionRefused" in problems[0]
    )
    assert "SECRETTOKEN" not in problems[0]


def test_a_failing_endpoint_is_retried_then_reported():
    bad = Hooks(status=503)
    try:
        n = Notifier([parse_target("slack+http://" + bad.url("/x"))], retries=2, backoff_s=0.01)
        n.post(note())
        bad.wait(3)
        n.close()
        assert len(bad.got) == 3  # the first try and two retries
        assert "HTTP 503" in n.problems()[0]
    finally:
        bad.close()


# -----------------------------------------------------------------------------
# the user config


def test_the_user_config_gives_urls_level_and_price(tmp_path, monkeypatch, hooks):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    path = config_path()
    assert path == tmp_path / "cockpit" / "config.yaml"
    assert load_user_config().notify == ()  # no file: no settings
    path.parent.mkdir()
    path.write_text(
        f"notify:\n  - json+http://{hooks.url('/from-config')}\nnotify_level: warn\nprice_kwh: 0.3\n"
    )
    cfg = load_user_config()
    kw = session_kwargs([f"ntfy+http://{hooks.url('/flag')}"], None, None, cfg)
    assert kw["price_kwh"] == 0.3
    rn = kw["notices"]
    assert [t.kind for t in rn.notifier.targets] == ["json", "ntfy"] and rn.level == 1
    rn.notifier.close(0.1)
    assert session_kwargs([], "error", 0.5, cfg)["price_kwh"] == 0.5  # a flag wins


def test_a_bad_user_config_names_the_file_the_field_and_the_fix(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("notify: 42\nnotify_level: loud\nprice_kwh: cheap\nfoo: 1\n")
    with pytest.raises(UserConfigError) as e:
        load_user_config(path)
    msg = str(e.value)
    assert str(path) in msg and "notify: expected a list of URLs" in msg
    assert "notify_level: 'loud'" in msg and "price_kwh: 'cheap'" in msg
    assert "unknown field 'foo'" in msg and "Fix the file" in msg
    path.write_text("notify: [\n")
    with pytest.raises(UserConfigError, match="not valid YAML"):
        load_user_config(path)


def test_closing_with_a_dead_endpoint_returns_at_once():
    n = Notifier([parse_target(f"json+http://127.0.0.1:{dead_port()}/h")], backoff_s=5.0)
    n.post(note())
    time.sleep(0.2)  # the first try failed: the sender waits 5 s to retry
    t0 = time.monotonic()
    n.close(wait_s=5.0)
    assert time.monotonic() - t0 < 1.0 and n.failed == 1


def test_a_session_sends_what_is_new_and_shows_a_failing_target_as_an_alert(tmp_path, hooks):
    from cockpit.session import Session
    from core import events as E

    run = tmp_path / "run"
    run.mkdir()
    sink = E.JsonlSink(run / "events.jsonl")
    sink.write(E.Alert(level="error", code="old", message="before we watched"))
    dead = parse_target(f"json+http://127.0.0.1:{dead_port()}/hook/SECRETTOKEN")
    live = parse_target("json+http://" + hooks.url("/h"))
    notifier = Notifier([live, dead], retries=0)
    s = Session(run, None, notify=False, notices=RunNotices(notifier, "error"))
    try:
        s.replay()  # watching: the history is not news
        sink.write(E.Alert(level="error", code="data_error", message="shard 7 is unreadable"))
        deadline = time.time() + 10
        while time.time() < deadline and not any(a.code == "notify" for a in s.model.alerts):
            s.tick()
            time.sleep(0.05)
        got = [json.loads(g["body"])["line"] for g in hooks.wait(1)]
        assert got == ["run: error data_error: shard 7 is unreadable"]
        shown = [a for a in s.model.alerts if a.code == "notify"]
        assert len(shown) == 1 and shown[0].level == "warn"
        assert "cannot notify json+http://127.0.0.1" in shown[0].message
        assert "SECRETTOKEN" not in shown[0].message
    finally:
        sink.close()
        s.close()


def test_a_run_resumed_into_its_directory_notifies_its_own_end(hooks):
    m = RunModel(run_id="r1")
    m.feed({"v": 1, "t": 1.0, "type": "run_start", "run_id": "r1"})
    m.feed({"v": 1, "t": 2.0, "type": "run_end", "status": "interrupted", "step": 5})
    rn = RunNotices(Notifier([parse_target("json+http://" + hooks.url("/h"))]), "error")
    rn.baseline(m)  # the first run's end is history
    rn.observe(m)
    m.feed({"v": 1, "t": 3.0, "type": "run_start", "run_id": "r1"})  # resumed
    rn.observe(m)
    m.feed({"v": 1, "t": 4.0, "type": "run_end", "status": "completed", "step": 9})
    rn.observe(m)
    got = [json.loads(g["body"])["line"] for g in hooks.wait(1)]
    time.sleep(0.2)
    rn.notifier.close()
    assert got == ["r1: run completed"]
