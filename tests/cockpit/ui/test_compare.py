"""The workspace of runs: the compare screen (up to 8 runs overlaid, a figures
table with the settings that differ), `cockpit compare` off a terminal, and the
runs screen's filter, pins and marks. Runs from compare_runs.py (three of ours,
one wrapped nanoGPT command) and, for a live one, the scripted trainer."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from cockpit.cli import main
from cockpit.model.compare import command_options, config_diff, run_config
from cockpit.model.runs import RunFilter, list_runs, load_pins
from cockpit.supervisor import Trainer
from cockpit.ui.app import CockpitApp
from cockpit.ui.screens.compare import CompareScreen, figures_table
from cockpit.ui.screens.monitor import MonitorScreen
from cockpit.ui.screens.runs import RunsScreen
from cockpit.ui.widgets.overlay import OverlayChart
from tests.cockpit.ui.compare_runs import CLOCK, write_runs
from tests.cockpit.ui.tuikit import CPU, loaded, recorded_app, until
from tests.conftest import REPO

SCRIPT = REPO / "tests" / "cockpit" / "scripted_trainer.py"


def run(coro) -> None:
    asyncio.run(coro)


def compare_app(runs, logs) -> CockpitApp:
    return CockpitApp(
        "compare",
        logs=logs,
        screens={"compare": lambda: CompareScreen(runs, clock=lambda: CLOCK)},
        clock=lambda: CLOCK,
    )


def rows_of(table) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


# -----------------------------------------------------------------------------
# what differs


def test_a_wrapped_command_reads_as_settings():
    opts = command_options(["python", "train.py", "cfg.py", "--lr=6e-4", "--batch_size", "12",
                            "--compile", "--n_layer=6"])  # fmt: skip
    assert opts == {
        "command": "python train.py cfg.py", "arg.lr": "6e-4", "arg.batch_size": "12",
        "arg.compile": "true", "arg.n_layer": "6",
    }  # fmt: skip
    other = command_options(["python", "train.py", "cfg.py", "--lr=1e-3", "--batch_size", "12"])
    # only what differs, among the runs that have the key
    assert config_diff([opts, other]) == [("arg.lr", ["6e-4", "1e-3"])]


def test_settings_that_differ_and_those_only_one_run_has(tmp_path):
    runs = write_runs(tmp_path)
    configs = [run_config(d) for d in runs[:3]]
    assert configs[0]["train.lr"] == "0.0003" and configs[0]["train.min_lr"] == "3e-05"
    diff = dict(config_diff(configs))
    assert diff == {  # every run's value, in the runs' order
        "model.n_layer": ["4", "4", "6"],
        "train.lr": ["0.0003", "0.001", "0.003"],
        "train.min_lr": ["3e-05", "0.0001", "0.0003"],
    }
    # the wrapped run has no run.yaml: its settings come from its command (run_start)
    wrapped = run_config(runs[3], {"wrapped": {"format": "nanogpt", "command": ["python", "t.py",
                                               "--learning_rate=6e-4"]}})  # fmt: skip
    assert wrapped == {"command": "python t.py", "arg.learning_rate": "6e-4",
                       "wrapped.format": "nanogpt"}  # fmt: skip
    # next to ours, nothing of its own is "a difference" (no key is shared): it shows –
    assert dict(config_diff([*configs, wrapped])) == {k: [*v, None] for k, v in diff.items()}


# -----------------------------------------------------------------------------
# the compare screen


def test_compare_overlays_runs_with_their_figures_side_by_side(tmp_path):
    runs = write_runs(tmp_path)

    async def go():
        app = compare_app(runs, tmp_path)
        async with app.run_test(size=(160, 48)) as pilot:
            await until(pilot, lambda: loaded(app), what="every run read")
            s = app.screen
            assert isinstance(s, CompareScreen)
            table = s.query_one("#figures")
            columns = [str(c.label) for c in table.columns.values()]
            assert columns[-3:] == ["model.n_layer", "train.lr", "train.min_lr"]
            rows = rows_of(table)
            assert [r[0].split()[1] for r in rows] == list("ABCD")
            assert rows[1][3] == "1.7698 ★"  # B has the best val loss
            assert rows[3][4 + 2].endswith("★")  # D, the wrapped run: the best tokens/s
            assert rows[2][-3:] == ["6", "0.003", "0.0003"] and rows[3][-3:] == ["–", "–", "–"]
            assert rows[2][1] == "early_stopped (exit 0)"
            chart = s.query_one(OverlayChart)
            assert len([x for x in chart.series() if x.points]) == 8  # 4 runs: train and val
            text = chart.render().plain
            assert "━ A" in text and "━ D" in text
            x_axis = text.splitlines()[-1].split()
            assert x_axis == ["1", "600"]
            # t: time since each run's start; v: train only; e: the raw curve; h: hide one
            await pilot.press("t", "v", "e")
            assert chart.render().plain.splitlines()[-1].split() == ["0:00", "0:34"]
            assert chart.settings() == "train · ema off · x: time since start"
            assert chart.border_subtitle == chart.settings()  # what the frame says
            assert len([x for x in chart.series() if x.points]) == 4
            await pilot.press("down", "h")
            assert chart.hidden == {1} and len([x for x in chart.series() if x.points]) == 3
            # enter: that run in the monitor; esc back
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, MonitorScreen) and loaded(app))
            assert app.screen.view.run_id == runs[1].name
            await pilot.press("escape")
            assert app.screen is s

    run(go())


@pytest.mark.heavy  # a real trainer, and a few of the compare screen's ticks (4 s)
def test_a_live_run_keeps_moving(tmp_path):
    runs = write_runs(tmp_path / "logs")
    live = tmp_path / "logs" / "20260301-120000-scripted"
    t = Trainer.launch([sys.executable, str(SCRIPT), str(live), "steady"], live, cwd=REPO)

    async def go():
        app = CockpitApp("compare", logs=tmp_path / "logs",
                         screens={"compare": lambda: CompareScreen([runs[0], live])})  # fmt: skip
        async with app.run_test(size=(120, 30)) as pilot:
            await until(pilot, lambda: loaded(app), what="both runs read")
            s = app.screen
            seen = set()
            t0 = time.monotonic()
            while len(seen) < 3:
                assert time.monotonic() - t0 < 30, f"the live run did not move: {seen}"
                v = s.views[1]
                seen.add(v.figures.step)
                await pilot.pause(0.3)
            assert s.views[1].status == "running" and s.views[0].status == "completed"
            row = rows_of(s.query_one("#figures"))[1]
            assert row[1] == "running" and int(row[2].split("/")[0].replace(",", "")) > 0
        # comparing records nothing: a `cockpit watch` of that run can take its system samples
        assert not (live / "system.jsonl").exists()

    try:
        while not (live / "events.jsonl").exists():
            time.sleep(0.05)
        run(go())
    finally:
        t.kill_group()
        t.wait(10)


@pytest.mark.heavy  # over 10 s on 2 cores: make test stays under 10 min; CI runs it
def test_cockpit_compare_prints_the_table_off_a_terminal(tmp_path, capsys):
    runs = write_runs(tmp_path)
    assert main(["compare", *map(str, runs)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[-3:] == ["model.n_layer", "train.lr", "train.min_lr"]
    assert lines[2].startswith("B 20260105-081000-demo-walks") and "1.7698 ★" in lines[2]
    assert "settings that differ: model.n_layer, train.lr, train.min_lr" in out
    # run ids under --logs work too; a wrong one is a clear error (exit 2)
    assert main(["compare", "--logs", str(tmp_path), runs[0].name, runs[1].name]) == 0
    capsys.readouterr()
    assert main(["compare", "--logs", str(tmp_path), runs[0].name, str(tmp_path / "nope")]) == 2
    assert "nope is not a run directory" in capsys.readouterr().err
    assert main(["compare", str(runs[0])]) == 2 and main(["compare", *map(str, runs * 3)]) == 2
    assert "compare takes 2 to 8 runs, not 12" in capsys.readouterr().err


def test_the_table_of_a_run_not_read_yet():
    columns, rows = figures_table([None, None], [None, None])
    assert rows[0][0].text == "A reading…" and len(rows[0]) == len(columns)


# -----------------------------------------------------------------------------
# the runs screen: filter, pins, marks


def test_filter_text():
    f = RunFilter.parse("profile:demo status:ok,live lr")
    assert f.profile == "demo" and "gate_passed" in f.statuses and "live" in f.statuses
    assert f.words == ("lr",) and f.describe().startswith("profile ~ demo")
    assert not RunFilter.parse("  ")


def test_runs_screen_filters_pins_and_compares_many(tmp_path):
    runs = write_runs(tmp_path)
    ids = [d.name for d in runs]

    async def go():
        app = CockpitApp("runs", logs=tmp_path, clock=lambda: CLOCK)
        async with app.run_test(size=(160, 40)) as pilot:
            await until(pilot, lambda: loaded(app), what="the runs listed")
            s = app.screen
            assert isinstance(s, RunsScreen)
            assert [r.run_id for r in s.rows] == ids[::-1]  # newest first
            # /: the filter, as you type
            await pilot.press("slash", *"nanogpt")
            assert [r.run_id for r in s.rows] == [ids[3]]
            await pilot.press(*["backspace"] * len("nanogpt"), *"status:ok")
            await pilot.press("enter")
            assert {r.status for r in s.rows} <= {"completed", "gate_passed", "early_stopped"}
            assert "of 4 runs" in str(s.query_one("#runs-hint").render())
            await pilot.press("escape")
            assert len(s.rows) == 4
            # p: pin the oldest run; it goes on top and stays there (logs/.pins)
            await pilot.press("down", "down", "down", "p")
            assert s.rows[0].run_id == ids[0] and load_pins(tmp_path) == {ids[0]}
            assert "★" in str(s.query_one("#runs").get_row_at(0)[0])
            # space marks (up to 8); c compares the marked ones and the one under the cursor
            await pilot.press("home", "space", "down", "space", "down", "c")
            await until(pilot, lambda: isinstance(app.screen, CompareScreen) and loaded(app))
            assert [v.run_id for v in app.screen.views] == [ids[0], ids[3], ids[2]]

    run(go())
    # the pin is kept for the next cockpit
    assert load_pins(tmp_path) == {ids[0]} and len(list_runs(tmp_path)) == 4


# -----------------------------------------------------------------------------
# a served page is read-only


def test_a_read_only_app_offers_no_key_that_signals(in_repo):  # noqa: F811
    async def go():
        app = recorded_app("monitor", CPU)
        app.control = False
        async with app.run_test(size=(160, 48)) as pilot:
            await until(pilot, lambda: loaded(app), what="the run replayed")
            keys = {b.binding.action for b in app.screen.active_bindings.values() if b.enabled}
            assert not keys & {"save", "stop", "dump"} and "log" in keys
            await pilot.press("x", "s", "d")
            assert isinstance(app.screen, MonitorScreen)  # no "stop the run?" question
            assert not any("SIGUSR" in n.message for n in app._notifications)

    run(go())


@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)
