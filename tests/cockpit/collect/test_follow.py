"""EventsFollower on real files: tail -F semantics, malformed lines, bounded
memory, change notification, and a live writer in another process."""

import math
import os
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc

import pytest

from cockpit.collect.follow import EventsFollower, Malformed
from core.events import Checkpoint, Eval, Heartbeat, Step, encode
from tests.conftest import REPO


def step(i: int) -> str:
    return encode(
        Step(
            step=i,
            epoch=0,
            loss=3.0 - i * 1e-3,
            lr=3e-4,
            grad_norm=0.5,
            tokens=4096 * i,
            step_ms=12.5,
            tokens_per_s=3.2e5,
            t=1000.0 + i,
        )
    )


def write(path, *lines, mode="a"):
    with open(path, mode + "b") as f:
        for ln in lines:
            f.write(ln.encode() if isinstance(ln, str) else ln)


def steps(events) -> list[int]:
    return [e["step"] for e in events]


@pytest.fixture
def follow():
    made = []

    def make(path, **kw):
        kw.setdefault("notify", False)
        f = EventsFollower(path, **kw)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


# -----------------------------------------------------------------------------
# appearing, replaying, appending


def test_file_and_directory_appear_later(tmp_path, follow):
    path = tmp_path / "run" / "events.jsonl"
    f = follow(path, notify=True)
    assert f.notify_mode == "polling"  # no directory to watch yet
    assert f.poll() == [] and f.poll() == []
    path.parent.mkdir()
    write(path, step(1), step(2))
    assert f.wait(1.0) is True
    assert f.notify_mode in ("watchdog", "polling")  # watchdog once the directory exists, if it can
    ev = f.poll()
    assert steps(ev) == [1, 2] and ev[0]["type"] == "step" and ev[0]["t"] == 1001.0
    assert (f.generation, f.line_no, f.malformed) == (0, 2, 0)


def test_replays_from_start_then_appends(tmp_path, follow):
    path = tmp_path / "events.jsonl"
    write(path, *(step(i) for i in range(1, 6)))
    f = follow(path)
    assert steps(f.poll()) == [1, 2, 3, 4, 5]
    assert f.poll() == []
    write(
        path,
        encode(Heartbeat(step=5, t=1.0)),
        encode(Eval(step=5, epoch=0, val_loss=2.0, val_ppl=7.4)),
    )
    ev = f.poll()
    assert [e["type"] for e in ev] == ["heartbeat", "eval"]
    assert ev[1]["val_loss"] == 2.0 and ev[1]["metrics"] == {}
    assert f.line_no == 7 and f.poll() == []


def test_unknown_type_is_returned(tmp_path, follow):
    path = tmp_path / "events.jsonl"
    write(path, '{"v":1,"t":1.0,"type":"from_the_future","x":[1,2]}\n')
    assert follow(path).poll() == [{"v": 1, "t": 1.0, "type": "from_the_future", "x": [1, 2]}]


def test_tiny_chunks_give_the_same_events(tmp_path, follow):
    path = tmp_path / "events.jsonl"
    ck = Checkpoint(step=3, path="c/step-3.pt", bytes=10, sha256="ab", seconds=0.1, tags=["latest"])
    write(path, *(step(i) for i in range(1, 40)), encode(ck), "{bad\n", step(40))
    whole = follow(path).poll()
    small = follow(path, chunk_bytes=7)
    assert small.poll() == whole
    assert len(whole) == 41 and small.line_no == 42 and small.malformed == 1
    assert small.malformed_lines[0].line == 41


# -----------------------------------------------------------------------------
# torn lines, truncation, rotation, replacement


def test_bounded_batches_return_everything_once(tmp_path, follow):
    path = tmp_path / "events.jsonl"
    write(path, *[step(i) for i in range(1, 1001)])
    f = follow(path)
    got, calls = [], 0
    while True:
        batch = f.poll(max_bytes=10_000)  # ~50 lines a call: a replay with bounded memory
        got += steps(batch)
        calls += 1
        assert len(batch) <= 10_000 // 150 + 1
        if not f.more:
            break
        assert f.wait(5.0) is True  # data is waiting: no sleeping on it
    assert got == list(range(1, 1001)) and calls > 10
    # a rotation waits until the old file is read to its end
    write(path, *[step(i) for i in range(1001, 1101)])
    os.rename(path, tmp_path / "old.jsonl")
    write(path, step(2000))
    got = []
    while True:
        got += steps(f.poll(max_bytes=4096))
        if not f.more:
            got += steps(f.poll(max_bytes=4096))
            break
    assert got == [*range(1001, 1101), 2000] and f.generation == 1


def test_torn_line_held_until_its_newline_then_returned_once(tmp_path, follow):
    path = tmp_path / "events.jsonl"
    write(path, step(1))
    f = follow(path)
    assert steps(f.poll()) == [1]
    line = step(2)
    write(path, line[:37])
    t0 = time.monotonic()
    polls = 0
    while time.monotonic() - t0 < 2.0:
        assert f.poll() == []
        polls += 1
        time.sleep(0.2)
    write(path, line[37:60])
    assert f.poll() == []
    write(path, line[60:], step(3)[:5])
    ev = f.poll()
    assert polls >= 8 and steps(ev) == [2] and ev[0]["loss"] == pytest.approx(2.998)
    assert f.poll() == [] and f.line_no == 2
    write(path, step(3)[5:])
    assert steps(f.poll()) == [3] and f.poll() == []


def test_truncation_starts_a_new_generation(tmp_path, follow):
    path = tmp_path / "events.jsonl"
    write(path, step(1), step(2), step(3))
    f = follow(path)
    assert steps(f.poll()) == [1, 2, 3]
    ino = os.stat(path).st_ino
    write(path, step(7), mode="w")
    assert os.stat(path).st_ino == ino  # truncated in place, not replaced
    assert steps(f.poll()) == [7]
    assert (f.generation, f.line_no) == (1, 1)
    write(path, step(8))
    assert steps(f.poll()) == [8] and f.generation == 1


def test_rotation_keeps_the_old_files_last_lines(tmp_path, follow):
    path = tmp_path / "events.jsonl"
    write(path, step(1), step(2))
    f = follow(path)
    assert steps(f.poll()) == [1, 2]
    writer = open(path, "ab")
    writer.write(step(3).encode())
    writer.flush()
    os.rename(path, tmp_path / "events.jsonl.1")
    writer.write(step(4).encode())  # still the old file: written after the rename
    writer.flush()
    assert steps(f.poll()) == [3, 4]  # nothing at the path yet: keep reading the old fd
    writer.write(step(5).encode())
    writer.close()
    write(path, step(6), step(7))
    assert steps(f.poll()) == [5, 6, 7]
    assert (f.generation, f.line_no) == (1, 2)
    write(path, step(8))
    assert steps(f.poll()) == [8]


def test_replacement_by_os_replace(tmp_path, follow):
    path = tmp_path / "events.jsonl"
    write(path, step(1))
    f = follow(path)
    assert steps(f.poll()) == [1]
    write(path, step(2))  # unread when the file is replaced: must not be lost
    tmp = tmp_path / "events.jsonl.tmp"
    write(tmp, step(10), step(11), step(12))
    os.replace(tmp, path)
    assert steps(f.poll()) == [2, 10, 11, 12]
    assert (f.generation, f.line_no) == (1, 3)
    write(tmp, step(20))
    os.replace(tmp, path)
    assert steps(f.poll()) == [20] and f.generation == 2


# -----------------------------------------------------------------------------
# malformed lines


def test_malformed_lines_skipped_with_line_numbers(tmp_path, follow):
    path = tmp_path / "events.jsonl"
    write(
        path,
        step(1),
        '{"v":1,"type":"step",\n',  # 2: invalid JSON
        step(2),
        "[1, 2, 3]\n",  # 4: not an object
        '{"v":1,"t":2.0}\n',  # 5: no type
        '{"v":1,"t":2.0,"type":7}\n',  # 6: type not a string
        '"step"\n',  # 7: a string
        "\n",  # 8: blank: skipped, not counted
        step(3),
    )
    f = follow(path)
    assert steps(f.poll()) == [1, 2, 3]
    assert f.malformed == 5 and f.line_no == 9
    assert list(f.malformed_lines) == [
        Malformed(2, "invalid JSON", '{"v":1,"type":"step",'),
        Malformed(4, "not an event object", "[1, 2, 3]"),
        Malformed(5, "not an event object", '{"v":1,"t":2.0}'),
        Malformed(6, "not an event object", '{"v":1,"t":2.0,"type":7}'),
        Malformed(7, "not an event object", '"step"'),
    ]
    write(path, "nope\n", step(4))
    assert steps(f.poll()) == [4]
    assert f.malformed == 6 and f.malformed_lines[-1] == Malformed(10, "invalid JSON", "nope")


def test_invalid_utf8_line(tmp_path, follow):
    path = tmp_path / "events.jsonl"
    write(path, step(1), b'{"v":1,"type":"sample","text":"\xff\xfe ok"}\n', step(2))
    f = follow(path)
    assert steps(f.poll()) == [1, 2]
    assert f.malformed == 1
    m = f.malformed_lines[0]
    assert (m.line, m.reason) == (2, "invalid UTF-8")
    assert m.preview == '{"v":1,"type":"sample","text":"\ufffd\ufffd ok"}'


def test_nan_and_infinity_literals_are_accepted(tmp_path, follow):
    path = tmp_path / "events.jsonl"
    write(
        path,
        '{"v":1,"t":1.0,"type":"step","step":1,"loss":NaN,"grad_norm":Infinity,"lr":-Infinity}\n',
        '{"v":1,"t":1.0,"type":"step","step":2,"loss":1.5}\n',
    )
    f = follow(path)
    ev = f.poll()
    assert steps(ev) == [1, 2] and f.malformed == 0
    assert math.isnan(ev[0]["loss"]) and ev[0]["grad_norm"] == math.inf and ev[0]["lr"] == -math.inf
    assert ev[1]["loss"] == 1.5 and f.line_no == 2


def test_huge_line_skipped_with_bounded_memory(tmp_path, follow):
    path = tmp_path / "events.jsonl"
    head = '{"v":1,"t":1.0,"type":"sample","text":"'
    pad = "x" * (10 << 20)
    huge = head + pad + '"}\n'
    write(path, step(1), huge[: 3 << 20])
    del pad
    f = follow(path, max_line_bytes=4 << 20, chunk_bytes=1 << 20)
    tracemalloc.start()
    try:
        assert steps(f.poll()) == [1]  # 3 MiB of the huge line held, torn
        write(path, huge[3 << 20 :], step(2))
        del huge
        tracemalloc.reset_peak()
        ev = f.poll()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert steps(ev) == [2]
    assert f.malformed == 1 and f.line_no == 3
    m = f.malformed_lines[0]
    assert (m.line, m.reason) == (2, "line longer than 4194304 bytes")
    assert m.preview == (head + "x" * 80)[:80]
    # holding the 10 MiB line whole would peak past 10 MiB; held line + one chunk is ~5 MiB
    assert peak < 7 << 20, peak
    write(path, step(3))
    assert steps(f.poll()) == [3]


# -----------------------------------------------------------------------------
# change notification


def _append_later(path, delay: float) -> dict:
    when = {}

    def go():
        when["t"] = time.monotonic()
        write(path, step(9))

    threading.Timer(delay, go).start()
    return when


@pytest.mark.parametrize("notify", [True, False])
def test_wait_notices_an_append(tmp_path, follow, notify):
    path = tmp_path / "events.jsonl"
    write(path, step(1))
    f = follow(path, notify=notify)
    if notify and f.notify_mode != "watchdog":
        pytest.skip("watchdog observer could not start here (inotify limits?)")
    assert f.notify_mode == ("watchdog" if notify else "polling")
    assert steps(f.poll()) == [1]
    f.wait(0)  # swallow the notification of the file's creation, if late
    t0 = time.monotonic()
    assert f.wait(0.3) is False
    assert 0.25 <= time.monotonic() - t0 < 1.0
    when = _append_later(path, 0.3)
    assert f.wait(3.0) is True
    assert time.monotonic() - when["t"] < 0.5
    assert steps(f.poll()) == [9]


def test_a_follower_switched_to_polling_stops_its_observer_and_still_notices(tmp_path, follow):
    path = tmp_path / "events.jsonl"
    write(path, step(1))
    f = follow(path, notify=True)
    before = {t.name for t in threading.enumerate()}
    f.use_polling(0.02)
    assert f.notify_mode == "polling" and f._observer is None
    assert len({t.name for t in threading.enumerate()}) <= len(before)
    assert steps(f.poll()) == [1]
    when = _append_later(path, 0.2)
    assert f.wait(3.0) is True
    assert time.monotonic() - when["t"] < 0.5  # a stat each 20 ms (a busy machine: margin)
    assert steps(f.poll()) == [9]


def test_observer_that_cannot_start_falls_back_to_polling(tmp_path, follow, monkeypatch):
    import cockpit.collect.follow as F

    class Refuses(F.Observer):
        def start(self):
            raise OSError(28, "inotify watch limit reached")

    monkeypatch.setattr(F, "Observer", Refuses)
    path = tmp_path / "events.jsonl"
    f = follow(path, notify=True)
    assert f.notify_mode == "polling"
    assert f.poll() == []
    when = _append_later(path, 0.2)
    assert f.wait(3.0) is True
    assert time.monotonic() - when["t"] < 0.5
    assert steps(f.poll()) == [9]


def test_poll_never_raises(tmp_path, follow):
    f = follow(tmp_path)  # a directory: os.read fails with EISDIR
    assert f.poll() == [] and f.poll() == []
    g = follow(tmp_path / "events.jsonl")
    write(tmp_path / "events.jsonl", step(1))
    g.close()
    g.close()
    assert g.poll() == [] and g.wait(0.05) is False


# -----------------------------------------------------------------------------
# a live writer in another process


def test_follows_a_live_writer_process(tmp_path, follow):
    path = tmp_path / "events.jsonl"
    script = textwrap.dedent(
        """
        import sys, time
        from core.events import JsonlSink, Step
        sink = JsonlSink(sys.argv[1])
        for i in range(1, 2001):
            sink.write(Step(step=i, epoch=0, loss=1.0, lr=1e-3, grad_norm=1.0, tokens=i,
                            step_ms=1.0, tokens_per_s=1.0))
            if i % 20 == 0:
                time.sleep(0.01)
        sink.close()
        """
    )
    f = follow(path, notify=True)
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], cwd=REPO)
    got: list[int] = []
    fed = 0  # polls that returned steps
    deadline = time.monotonic() + 30
    try:
        while (not got or got[-1] != 2000) and time.monotonic() < deadline:
            f.wait(0.25)
            new = steps(f.poll())
            got += new
            fed += bool(new)
    finally:
        proc.wait(10)
    assert proc.returncode == 0
    assert got == list(range(1, 2001))
    assert fed > 2  # followed live: steps came in several polls, not once at the end
    assert (f.malformed, f.generation, f.line_no) == (0, 0, 2000)
