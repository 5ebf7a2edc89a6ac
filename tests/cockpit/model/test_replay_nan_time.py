"""A replay merges events and system samples by time: a NaN time (json.loads reads
the NaN literal) in either file must not stop it. Session.replay compared NaN
with `<` and `<=`, both False, and looped forever on the same event: a NaN time
is read as no time."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

CHILD = """
import sys
from pathlib import Path
from cockpit.session import Session
s = Session(Path(sys.argv[1]), None, notify=False)
s.replay()
print(s.model.step, s.model.rss_mib.n)
s.close()
"""


@pytest.mark.parametrize(
    "events, system, want",
    [
        (  # a NaN time on an event, a system sample pending
            ['{"t":100.0,"type":"run_start","run_id":"x"}', '{"t":NaN,"type":"step","step":1}',
             '{"t":102.0,"type":"step","step":2}'],
            ['{"t":101.0,"proc":{"alive":true,"rss_mib":5}}'],
            "2 1",
        ),
        (  # a NaN time on a system sample: not a sample
            ['{"t":100.0,"type":"run_start","run_id":"x"}', '{"t":101.0,"type":"step","step":1}'],
            ['{"t":NaN,"proc":{"alive":true,"rss_mib":5}}', '{"t":100.5,"proc":{"alive":true,"rss_mib":6}}'],
            "1 1",
        ),
    ],
)  # fmt: skip
def test_a_nan_time_does_not_stop_a_replay(tmp_path, events, system, want):
    (tmp_path / "events.jsonl").write_text("".join(line + "\n" for line in events))
    (tmp_path / "system.jsonl").write_text("".join(line + "\n" for line in system))
    r = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,  # a loop that never ends fails here, not the whole suite
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split("\n")[-2] == want
