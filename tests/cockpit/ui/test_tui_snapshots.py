"""SVG snapshots of the monitor, runs and compare screens at 80x24 and 160x48,
from the recorded runs in tests/recorded/ (a CPU-only run and one with GPU
samples), the clock frozen. Refresh on purpose with
`pytest tests/cockpit/ui/test_tui_snapshots.py --snapshot-update`."""

from __future__ import annotations

import pytest

from cockpit.ui.app import CockpitApp
from cockpit.ui.screens.compare import CompareScreen
from tests.cockpit.ui.compare_runs import CLOCK, write_runs
from tests.cockpit.ui.tuikit import CPU, GPU, in_repo, recorded_app, settle  # noqa: F401

SIZES = [(80, 24), (160, 48)]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("run", [CPU, GPU], ids=["cpu", "gpu"])
def test_monitor(snap_compare, in_repo, run, size):  # noqa: F811
    assert snap_compare(recorded_app("monitor", run), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_runs(snap_compare, in_repo, size):  # noqa: F811
    assert snap_compare(recorded_app("runs"), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_compare(snap_compare, in_repo, size, tmp_path):  # noqa: F811
    """Four runs: three of ours that differ in lr and depth, one wrapped nanoGPT command."""
    runs = write_runs(tmp_path)
    app = CockpitApp(
        "compare",
        logs=tmp_path,
        screens={"compare": lambda: CompareScreen(runs, clock=lambda: CLOCK)},
        clock=lambda: CLOCK,
    )
    assert snap_compare(app, terminal_size=size, run_before=settle)
