"""Notifications: what they cost the cockpit, and how soon one arrives.

    python bench/notify.py [--alerts 5]

1. Enqueue: `Notifier.post()` to an endpoint that takes 2 s to answer, 10,000
   times (the queue fills; the rest are dropped): the time each call takes.
2. The session loop: `Session.tick()` on a run that writes an error alert every
   tick, with notifications going to that slow endpoint, against no notifications.
3. End to end: `cockpit run --headless --notify json+http://127.0.0.1:PORT/…` on a
   wrapped trainer that writes an error alert every second; the latency from each
   alert's `t` (the trainer's clock, written with the event) to its POST arriving
   at a local HTTP server.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cockpit.model.health import HealthConfig  # noqa: E402
from cockpit.notify import Note, Notifier, RunNotices, parse_target  # noqa: E402
from cockpit.session import Session  # noqa: E402
from core import events as E  # noqa: E402


def server(delay_s: float) -> tuple[ThreadingHTTPServer, list]:
    got: list = []

    class H(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            got.append((time.time(), body))
            time.sleep(delay_s)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass

    s = ThreadingHTTPServer(("127.0.0.1", 0), H)
    s.daemon_threads = True
    threading.Thread(target=s.serve_forever, args=(0.05,), daemon=True).start()
    return s, got


def pct(xs: list[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))]


def enqueue() -> None:
    s, _ = server(2.0)
    n = Notifier([parse_target(f"json+http://127.0.0.1:{s.server_address[1]}/h")])
    note = Note("alert", "error", "r: error stall: no step for 90 s", {"steps": "1/2"}, "r", "d", 0)
    ts = []
    for _ in range(10_000):
        t0 = time.perf_counter()
        n.post(note)
        ts.append(time.perf_counter() - t0)
    us = [t * 1e6 for t in ts]
    print(
        f"enqueue (endpoint answering in 2 s, queue 64): median {statistics.median(us):.1f} µs, "
        f"p99 {pct(us, 0.99):.1f} µs, max {max(us):.1f} µs; {n.dropped} of 10000 dropped"
    )
    n.close(0.1)
    s.shutdown()


def ticks(notify: bool, n_ticks: int = 300) -> list[float]:
    s, _ = server(2.0)
    with tempfile.TemporaryDirectory() as d:
        run = Path(d) / "run"
        run.mkdir()
        sink = E.JsonlSink(run / "events.jsonl")
        notices = None
        if notify:
            target = parse_target(f"json+http://127.0.0.1:{s.server_address[1]}/h")
            notices = RunNotices(Notifier([target]), "error")
        ses = Session(run, None, HealthConfig(), notify=False, notices=notices)
        ses.replay()
        out = []
        for i in range(n_ticks):
            sink.write(E.Step(step=i + 1, epoch=0, loss=2.0, lr=1e-3, grad_norm=1.0,
                              tokens=i, step_ms=1.0, tokens_per_s=1.0))  # fmt: skip
            sink.write(E.Alert(level="error", code="data_error", message=f"bad shard {i}"))
            t0 = time.perf_counter()
            ses.tick()
            out.append((time.perf_counter() - t0) * 1e3)
        sink.close()
        if notices is not None:
            notices.notifier.close(0.1)
        ses.close()
    s.shutdown()
    return out


EVENTS = """
import json, sys, time
def ev(**d):
    print(json.dumps({"v": 1, "t": time.time(), **d}), flush=True)
ev(type="run_start", run_id="bench", profile="bench", pid=0, device="cpu", world_size=1,
   dtype="float32", n_params=1, tokens_per_step=1, total_steps=None, total_epochs=None)
for i in range(int(sys.argv[1])):
    ev(type="step", step=i + 1, epoch=0, loss=2.0, lr=1e-3, grad_norm=1.0, tokens=i,
       step_ms=1.0, tokens_per_s=1.0)
    time.sleep(0.37)  # not in step with the cockpit's tick
    ev(type="alert", level="error", code="data_error", message=f"bad shard {i}")
    time.sleep(0.63)
ev(type="run_end", status="completed", step=int(sys.argv[1]), reason="done", wall_s=1.0)
"""


def end_to_end(alerts: int) -> None:
    s, got = server(0.0)
    with tempfile.TemporaryDirectory() as d:
        script, run = Path(d) / "t.py", Path(d) / "run"
        script.write_text(EVENTS)
        url = f"json+http://127.0.0.1:{s.server_address[1]}/hook"
        subprocess.run(
            [sys.executable, "-m", "cockpit.cli", "run", "--headless", "--format", "jsonl",
             "--run-dir", str(run), "--notify", url, "--", sys.executable, str(script),
             str(alerts)],
            cwd=ROOT, capture_output=True, timeout=300, check=True,
        )  # fmt: skip
        sent = {
            json.loads(x)["message"]: json.loads(x)["t"]
            for x in (run / "events.jsonl").read_text().splitlines()
            if '"alert"' in x
        }
    lat = []
    for t, body in got:
        d = json.loads(body)
        if d["event"] == "alert":
            msg = d["line"].split(": ", 2)[-1]
            lat.append((t - sent[msg]) * 1e3)
    s.shutdown()
    print(
        f"alert written -> POST received, `cockpit run --headless` on a wrapped trainer, "
        f"{len(lat)} alerts: median {statistics.median(lat):.0f} ms, max {max(lat):.0f} ms "
        f"(the headless loop ticks every 0.5 s)"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--alerts", type=int, default=5)
    a = ap.parse_args()
    enqueue()
    base, slow = ticks(False), ticks(True)
    print(
        f"Session.tick() with an error alert every tick: median {statistics.median(base):.3f} ms "
        f"(p99 {pct(base, 0.99):.3f}) without notifications, {statistics.median(slow):.3f} ms "
        f"(p99 {pct(slow, 0.99):.3f}) notifying an endpoint that answers in 2 s"
    )
    end_to_end(a.alerts)


if __name__ == "__main__":
    main()
