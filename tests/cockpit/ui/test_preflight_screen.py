"""The pre-flight screen, driven with Pilot: steps turn PASS/FAIL live, a FAIL
stops the rest, fix and re-run work, a WARN must be accepted, Confirm launches a
real run and the monitor takes over; and SVG snapshots at 80x24 and 160x48."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path

import pytest

from cockpit.checks.engine import load_checklist
from cockpit.checks.preflight import prepare
from cockpit.session import Session
from cockpit.supervisor import Trainer, trainer_command
from cockpit.ui.app import CockpitApp
from cockpit.ui.screens.preflight import PreflightScreen
from tests.cockpit.checks.test_preflight_steps import leaky  # noqa: F401  (a fixture)
from tests.cockpit.checks.test_secrets import _assert_no_secret
from tests.conftest import REPO, TINY_WALKS, events

RECORDED = REPO / "tests" / "recorded" / "preflight"


def app_for(screen: PreflightScreen) -> CockpitApp:
    return CockpitApp("preflight", screens={"preflight": lambda: screen}, logs=Path("/nonexistent"))


async def settle(pilot, screen: PreflightScreen, timeout: float = 120.0) -> None:
    """Until the checklist worker has finished its pass (and the screen shows it)."""
    t0 = time.monotonic()
    await pilot.pause()
    while screen.running and time.monotonic() - t0 < timeout:
        await asyncio.sleep(0.05)
    assert not screen.running, "the checklist did not finish"
    await pilot.pause()


def statuses(screen: PreflightScreen) -> dict[str, str]:
    return {k: r.status for k, r in screen.shown.items()}


def test_steps_turn_pass_and_fail_a_fail_stops_and_rerun_goes_on(tmp_path):
    marker = tmp_path / "fixed-by-hand"
    cl_path = tmp_path / "cl.yaml"
    cl_path.write_text(
        f"""name: by-hand
steps:
  - {{id: first, title: always fine, run: "echo fine"}}
  - {{id: second, title: needs a file, run: "test -f {marker} || (echo no {marker.name}; exit 1)"}}
  - {{id: third, title: after it, run: "echo also fine"}}
"""
    )
    cl, ctx = prepare("demo-walks", [], str(cl_path))
    screen = PreflightScreen(cl, ctx)

    async def go():
        async with app_for(screen).run_test(size=(120, 36)) as pilot:
            await settle(pilot, screen)
            assert statuses(screen) == {"first": "PASS", "second": "FAIL", "third": "SKIP"}
            assert "no fixed-by-hand" in screen.shown["second"].message
            assert screen.query_one("#pf-rerun").disabled is False
            assert screen.query_one("#pf-fix").disabled is True  # a `run` step has no built-in fix
            marker.touch()  # the user fixes it outside
            await pilot.press("e")
            await settle(pilot, screen)
            assert statuses(screen) == {"first": "PASS", "second": "PASS", "third": "PASS"}
            assert screen.summary and screen.summary[-1][0] == "Command"

    asyncio.run(go())


def test_fix_writes_redacted_copies_and_the_screen_never_shows_a_secret(leaky):  # noqa: F811
    profile, checklist, data, _ = leaky
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in data.iterdir()}
    cl, ctx = prepare(str(profile), [], str(checklist))
    screen = PreflightScreen(cl, ctx)

    async def go():
        app = app_for(screen)
        async with app.run_test(size=(160, 48)) as pilot:
            await settle(pilot, screen)
            assert statuses(screen) == {"dataset": "PASS", "secrets": "FAIL"}
            _assert_no_secret(app.export_screenshot())  # findings are listed, masked
            assert screen.query_one("#pf-fix").disabled is False
            await pilot.click("#pf-fix")
            await settle(pilot, screen)
            r = screen.shown["secrets"]
            assert r.status == "PASS" and r.fixed and Path(r.fixed["path"]).is_dir()
            assert ctx.sets == [f'data.paths=["{r.fixed["path"]}"]']
            _assert_no_secret(app.export_screenshot())

    asyncio.run(go())
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in data.iterdir()} == before


@pytest.mark.slow
@pytest.mark.heavy  # one of the longest end-to-end runs: make test-heavy (CI runs it)
def test_a_warn_is_accepted_then_confirm_launches_a_real_run(tmp_path):
    # a model far too big for 1,200 walks: sizing WARNs (extreme overfitting risk)
    sets = [*TINY_WALKS, "train.epochs=1", "model.n_embd=256", "model.n_layer=4"]
    cl_path = tmp_path / "cl.yaml"
    cl_path.write_text(
        "name: quick\nsteps:\n"
        "  - {id: sizing, title: sizing, check: sizing,"
        " warn: {param_per_token: 5, param_per_token_severe: 10}}\n"
        "  - {id: gpu, title: gpu, check: gpu}\n"
    )
    cl, ctx = prepare("demo-walks", sets, str(cl_path))
    run_dir = tmp_path / "run"
    launched: list[Trainer] = []

    def launcher(ctx, results):
        from cockpit.checks.preflight import save

        save(run_dir, ctx, results)
        launched.append(Trainer.launch(trainer_command("demo-walks", run_dir, ctx.sets), run_dir))
        return Session(run_dir, launched[-1], notify=False)

    screen = PreflightScreen(cl, ctx, launcher)

    async def go():
        app = app_for(screen)
        async with app.run_test(size=(120, 36)) as pilot:
            await settle(pilot, screen)
            assert statuses(screen) == {"sizing": "WARN", "gpu": "PASS"}
            assert screen.shown["sizing"].figures["risk"] == "extreme"
            assert screen.query_one("#pf-confirm").disabled is True  # the WARN is not accepted
            await pilot.press("c")
            assert not launched
            table = screen.query_one("#pf-steps")
            table.move_cursor(row=0)
            await pilot.pause()
            await pilot.press("a")
            assert "sizing" in screen.accepted
            assert screen.query_one("#pf-confirm").disabled is False
            await pilot.press("c")
            await pilot.pause()
            assert launched and app.current_mode == "monitor"
            t0 = time.monotonic()
            while not any(e["type"] == "step" for e in events(run_dir)):
                assert time.monotonic() - t0 < 120, "no step from the launched run"
                await asyncio.sleep(0.2)

    asyncio.run(go())
    trainer = launched[0]
    assert trainer.wait(300) == 0  # detaching left it running; it finishes its epoch
    saved = json.loads((run_dir / "preflight.json").read_text())
    assert [s["status"] for s in saved["steps"]] == ["WARN", "PASS"]
    assert [e["status"] for e in events(run_dir) if e["type"] == "run_end"] == ["completed"]


def test_yes_shows_the_checks_then_launches_alone(tmp_path):
    """`cockpit run --yes` in a terminal: the screen runs, accepts WARNs, confirms."""
    cl_path = tmp_path / "cl.yaml"
    cl_path.write_text(
        "name: auto\nsteps:\n"
        "  - {id: sizing, title: sizing, check: sizing, warn: {param_per_token: 0.000001}}\n"
        '  - {id: shell, title: shell, run: "echo ok"}\n'
    )
    cl, ctx = prepare("demo-walks", [], str(cl_path))
    launched = []

    def launcher(ctx, results):
        launched.append([r.status for r in results])
        return Session(tmp_path / "run", None, notify=False)

    screen = PreflightScreen(cl, ctx, launcher, auto=True)

    async def go():
        app = app_for(screen)
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot, screen)
            await pilot.pause()
            assert launched == [["WARN", "PASS"]] and screen.accepted == {"sizing"}
            assert app.current_mode == "monitor"

    asyncio.run(go())


# -----------------------------------------------------------------------------
# snapshots, from recorded results (the checks' own timings would differ run to run)


def recorded_screen(name: str) -> PreflightScreen:
    saved = json.loads((RECORDED / name).read_text())
    cl = load_checklist("pretrain")
    _, ctx = prepare("tiny-text", [])
    return PreflightScreen(cl, ctx, launcher=lambda *a: None, recorded=saved)


async def _profiles_loaded(pilot) -> None:
    t0 = time.monotonic()
    while not pilot.app.screen.profiles_loaded and time.monotonic() - t0 < 60:
        await asyncio.sleep(0.05)
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_snapshot_a_failed_secrets_step(snap_compare, size):
    app = app_for(recorded_screen("tiny-text-secrets-fail.json"))
    assert snap_compare(app, terminal_size=size, run_before=_profiles_loaded)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_snapshot_the_summary_ready_to_confirm(snap_compare, size):
    app = app_for(recorded_screen("tiny-text-pass.json"))
    assert snap_compare(app, terminal_size=size, run_before=_profiles_loaded)
