"""Each health alert triggered for real: a real trainer process under the
supervisor, the real session (follower, samplers, checkpoint watcher) and the
real checks. Stall and crash are in test_headless.py with the core itself;
these use a trainer that misbehaves on purpose (scripted_trainer.py).
Input-bound needs a GPU's utilisation and is covered on recorded streams only."""

from __future__ import annotations

import sys
import time

import pytest

from cockpit.model.health import HealthConfig
from cockpit.session import Session
from cockpit.supervisor import Trainer
from tests.conftest import REPO

SCRIPT = REPO / "tests" / "cockpit" / "scripted_trainer.py"

CASES = {
    "nan": ("nan_loss", HealthConfig()),
    "spike": ("loss_spike", HealthConfig()),
    "leak": (
        "memory_leak",
        HealthConfig(leak_window_s=10, leak_min_span_s=2, leak_mib_per_min=600),
    ),
    "overfit": ("overfitting", HealthConfig()),
    # free space "under a billion checkpoints": the same check, with a bar any disk fails
    "disk": ("disk_filling", HealthConfig(disk_checkpoints=1e9)),
}


@pytest.mark.parametrize("scenario", list(CASES))
def test_alert_fires_on_a_live_trainer(scenario, tmp_path):
    code, cfg = CASES[scenario]
    run_dir = tmp_path / scenario
    t = Trainer.launch([sys.executable, str(SCRIPT), str(run_dir), scenario], run_dir, cwd=REPO)
    s = Session(run_dir, t, cfg, sample_every_s=0.25, ckpt_every_s=0.25)
    try:
        s.replay()
        deadline = time.time() + 40
        while time.time() < deadline:
            s.tick()
            got = [a for a in s.model.alerts if a.code == code]
            if got:
                break
            assert t.alive(), (run_dir / "stdout.log").read_text()[-2000:]
            time.sleep(0.1)
        else:
            pytest.fail(f"no {code} alert; alerts: {[a.code for a in s.model.alerts]}")
        a = got[0]
        assert a.source == "cockpit" and a.level in ("warn", "error") and a.message
        # nothing else fired on the way (each script misbehaves in one way only)
        assert {x.code for x in s.model.alerts} == {code}
    finally:
        t.kill_group()
        t.wait(10)
        s.close()
