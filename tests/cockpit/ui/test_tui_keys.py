"""Every key of the TUI does what it says, on the recorded runs (Pilot tests;
the keys that signal a live trainer are in test_tui_live.py)."""

from __future__ import annotations

import asyncio

from cockpit.ui.screens.compare import CompareScreen
from cockpit.ui.screens.dialogs import AlertsScreen, HelpScreen, TextScreen
from cockpit.ui.screens.monitor import MonitorScreen
from cockpit.ui.screens.runs import RunPicker, RunsScreen
from cockpit.ui.widgets.logpanel import LogLines, LogPanel
from cockpit.ui.widgets.training import LossChart
from tests.cockpit.ui.tuikit import CPU, GPU, in_repo, loaded, recorded_app, settle, until  # noqa: F401


def run(coro) -> None:
    asyncio.run(coro)


def test_help_log_search_and_loss_keys(in_repo):  # noqa: F811
    async def go():
        app = recorded_app("monitor", CPU)
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            monitor = app.screen
            # ?: the help, esc back
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen) and "detach" in app.screen.text
            await pilot.press("escape")
            assert app.screen is monitor
            # l: the log full screen; / filters it; esc clears, esc again leaves
            await pilot.press("l")
            log = monitor.query_one(LogPanel)
            assert monitor.maximized is log
            await pilot.press("slash", *"eval")
            lines = monitor.query_one(LogLines)
            await until(pilot, lambda: lines.query_text == "eval")
            shown = lines.render().plain.splitlines()
            assert shown and all("eval" in x for x in shown)
            assert lines.render().plain.count("eval step") == 3  # the three evals of the run
            await pilot.press("escape")
            assert lines.query_text == "" and "run gate_passed" in lines.render().plain
            await pilot.press("escape")
            assert monitor.maximized is None
            # the loss chart's keys: EMA, strength, log-y, x by time, zoom
            loss = monitor.query_one(LossChart)
            assert loss.smooth and loss.settings() == "ema 0.9"
            await pilot.press("right_square_bracket", "g", "t", "z")
            assert loss.settings() == "ema 0.95 · log-y · x time · last 100.0k steps"
            chart = loss.render().plain.splitlines()
            assert chart[-1].split() == ["0:01", "0:19"]  # the x axis in run time
            await pilot.press("e", "g", "t", "z", "z", "z")
            assert loss.settings() == "ema off · last 100 steps"
            assert loss.render().plain.splitlines()[-1].split() == ["80", "180"]  # the last 100

    run(go())


def test_alerts_runs_and_compare(in_repo):  # noqa: F811
    async def go():
        app = recorded_app("monitor", CPU)
        async with app.run_test(size=(160, 48)) as pilot:
            await settle(pilot)
            monitor = app.screen
            # a: every alert; enter: its detail
            await pilot.press("a")
            assert isinstance(app.screen, AlertsScreen)
            assert "loss_spike" in app.screen.query_one("#alert-list").get_option_at_index(0).prompt
            await pilot.press("enter")
            assert isinstance(app.screen, TextScreen) and "step 130" in app.screen.text
            await pilot.press("escape", "escape")
            assert app.screen is monitor
            # s on a run that is over: nothing to signal, and it says so
            await pilot.press("s")
            await until(pilot, lambda: any("not running" in n.message for n in app._notifications))
            # c: pick the run to compare with
            await pilot.press("c")
            await until(pilot, lambda: isinstance(app.screen, RunPicker) and app.screen.rows)
            assert [r.run_dir.name for r in app.screen.rows] == [GPU.name]
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, CompareScreen) and loaded(app))
            views = app.screen.views
            assert [v.run_id for v in views] == [CPU.name, GPU.name]
            assert views[0] is monitor.view  # the monitor's own view of a run over: not read again
            table = app.screen.query_one("#figures")
            statuses = [str(table.get_row_at(i)[1]) for i in range(table.row_count)]
            assert statuses == ["gate_passed (exit 0)", "interrupted (exit 130)"]
            await pilot.press("escape")
            assert app.screen is monitor
            # r: the runs screen; enter opens the other run over it; esc back; m: the monitor
            await pilot.press("r")
            await until(pilot, lambda: isinstance(app.screen, RunsScreen) and loaded(app))
            assert app.current_mode == "runs"
            assert [r.run_dir.name for r in app.screen.rows] == [GPU.name, CPU.name]
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, MonitorScreen) and loaded(app))
            assert app.screen is not monitor and app.screen.view.run_id == GPU.name
            assert "GPU0" in app.screen.query_one("#gpu").render().plain
            await pilot.press("escape")
            assert isinstance(app.screen, RunsScreen)
            # space marks, c compares the marked run with the one under the cursor
            await pilot.press("space", "down", "c")
            await until(pilot, lambda: isinstance(app.screen, CompareScreen) and loaded(app))
            assert [v.run_id for v in app.screen.views] == [
                GPU.name,
                CPU.name,
            ]
            await pilot.press("escape", "m")
            assert app.screen is monitor and app.current_mode == "monitor"

    run(go())


def test_no_color_is_honoured(in_repo, monkeypatch):  # noqa: F811
    monkeypatch.setenv("NO_COLOR", "1")

    async def go():
        app = recorded_app("monitor", GPU)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            assert app.no_color
            # levels and verdicts are words and marks, not only colours
            assert app.screen.query_one("#alertbar").render().plain.startswith("WARN loss_spike")
            assert "✓" in app.screen.query_one("#checkpoints").render().plain
            svg = app.export_screenshot()
            assert "interrupted (exit 130)" in svg.replace("&#160;", " ")

    run(go())


def test_the_command_palette_offers_the_keys(in_repo):  # noqa: F811
    async def go():
        app = recorded_app("monitor", CPU)
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            titles = [c.title for c in app.get_system_commands(app.screen)]
            for key in ("save (s)", "stop (x)", "stacks (d)", "detach (q)", "runs (r)", "help (?)"):
                assert any(t.startswith(key) for t in titles), (key, titles)

    run(go())


def test_panels_collapse_at_80x24_and_come_back_when_the_terminal_grows(in_repo):  # noqa: F811
    async def go():
        app = recorded_app("monitor", CPU)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            s = app.screen
            assert not s.query_one("#eval").display and not s.query_one("#threads").display
            for i in ("#loss", "#throughput", "#memory", "#gpu", "#checkpoints", "#log"):
                w = s.query_one(i)
                assert w.display and w.region.height >= 2, i
                assert w.region.right <= 80 and w.region.bottom <= 23, i  # nothing off screen
            regions = [
                s.query_one(i).region
                for i in ("#loss", "#throughput", "#memory", "#gpu", "#checkpoints", "#log")
            ]
            assert not any(a.overlaps(b) for k, a in enumerate(regions) for b in regions[k + 1 :])
            await pilot.resize_terminal(160, 48)
            await pilot.pause(0.3)
            assert (
                s.query_one("#eval").display
                and "gate: passed at step 180" in s.query_one("#eval").render().plain
            )

    run(go())
