"""The Textual app: modes, global keys, CSS. Thin on purpose: the screens
(cockpit/ui/screens/) do the work, the widgets (cockpit/ui/widgets/) only format.

Modes: `monitor` (one run, live or replayed; added when there is a session),
`runs` (every run under logs/), and any a caller adds through `screens=`:
the pre-flight screen is meant to be one, started first; once it has launched
the trainer it calls `app.attach(session)` and the monitor takes over.

    run_tui("monitor", run_dir=d, trainer=t)   # cockpit run / cockpit watch
    run_tui("runs", logs=Path("logs"))         # cockpit runs
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from cockpit.fmt import final_rows
from cockpit.model.runmodel import ENDED, status_code
from cockpit.model.view import RunView, ViewBuilder
from cockpit.session import Session
from cockpit.supervisor import LOGS, Trainer
from cockpit.ui.screens.dialogs import HelpScreen
from cockpit.ui.screens.monitor import MonitorScreen

if TYPE_CHECKING:
    from cockpit.checks.base import Context
    from cockpit.checks.engine import Checklist, StepResult
    from cockpit.model.health import HealthConfig
    from cockpit.ui.screens.preflight import PreflightScreen

# The monitor is what opens first most often: the screens it does not show at
# start (pre-flight, runs, compare) are imported when first shown, which keeps
# the checklist's imports out of the time to a run's first paint.


def _runs_screen() -> Screen:
    from cockpit.ui.screens.runs import RunsScreen

    return RunsScreen()


class CockpitApp(App):
    CSS_PATH = "tcss/cockpit.tcss"
    TITLE = "cockpit"
    MODES = {"runs": _runs_screen}
    BINDINGS = [
        Binding("q", "detach", "detach", tooltip="quit the cockpit; training keeps running"),
        Binding("r", "runs", "runs", tooltip="every run under logs/"),
        Binding("m", "monitor", "monitor", tooltip="back to the run this cockpit follows"),
        Binding("question_mark", "help", "help", tooltip="keys and panels"),
    ]

    def __init__(
        self,
        mode: str = "monitor",
        *,
        session: Session | None = None,
        logs: Path = LOGS,
        screens: dict[str, Callable[[], Screen]] | None = None,
        clock: Callable[[], float] = time.time,
        control: bool = True,
    ):
        super().__init__()
        self.start_mode, self.logs, self.clock = mode, Path(logs), clock
        self.control = control  # False (a served page): no key signals a trainer
        self.session: Session | None = None
        if session is not None:
            self.attach(session, switch=False)
        for name, factory in (screens or {}).items():
            self.add_mode(name, factory)  # e.g. "preflight"

    def on_mount(self) -> None:
        self.switch_mode(self.start_mode)

    # --- what screens call ------------------------------------------------------

    def attach(self, session: Session, switch: bool = True) -> None:
        """Follow this run in the monitor mode (the hook a pre-flight screen calls
        once it has launched the trainer)."""
        self.session = session
        self.add_mode("monitor", lambda: MonitorScreen(session, clock=self.clock))
        if switch:
            self.switch_mode("monitor")

    def open_run(self, run_dir: Path) -> None:
        """Show a run: the monitor mode if it is the one it follows, else a monitor
        of its own on top of the runs screen (esc goes back)."""
        s = self.session
        if s is not None and Path(run_dir).resolve() == s.run_dir.resolve():
            self.switch_mode("monitor")
            return
        run_dir = Path(run_dir)
        self.push_screen(MonitorScreen(Session(run_dir, Trainer.find(run_dir)), clock=self.clock))

    def compare(self, runs: Sequence[Path], first: RunView | None = None) -> None:
        """Up to 8 runs side by side; `first`: the first run's view, when one is at hand."""
        from cockpit.ui.screens.compare import CompareScreen

        self.push_screen(CompareScreen(runs, first, clock=self.clock))

    def pick_and_compare(self, run_dir: Path, view: RunView | None) -> None:
        def picked(other: Path | None) -> None:
            if other is not None:
                self.compare([run_dir, other], view)

        from cockpit.ui.screens.runs import RunPicker

        self.push_screen(RunPicker(self.logs, exclude=run_dir), picked)

    # --- global keys ------------------------------------------------------------

    def action_detach(self) -> None:
        self.exit()

    def action_runs(self) -> None:
        if self.current_mode == "runs":
            while len(self.screen_stack) > 1:
                self.pop_screen()
        else:
            self.switch_mode("runs")

    def action_monitor(self) -> None:
        if self.session is not None:
            self.switch_mode("monitor")

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "monitor":
            return self.session is not None and self.current_mode != "monitor"
        return True

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The command palette offers every key of the screen too."""
        yield from super().get_system_commands(screen)
        for active in screen.active_bindings.values():
            b = active.binding
            if b.description and active.enabled:
                run = functools.partial(self.run_action, b.action, active.node)
                label = self.get_key_display(b)
                yield SystemCommand(f"{b.description} ({label})", b.tooltip or b.description, run)


# -----------------------------------------------------------------------------
# the entry point the CLI calls


def run_tui(
    mode: str = "monitor",
    *,
    session: Session | None = None,
    run_dir: Path | None = None,
    trainer: Trainer | None = None,
    health: HealthConfig | None = None,
    logs: Path = LOGS,
    screens: dict[str, Callable[[], Screen]] | None = None,
    clock: Callable[[], float] = time.time,
) -> int:
    """Run the TUI until the user quits; the exit code for the CLI.

    mode: "monitor" (needs a session, or run_dir [+ trainer, health] to make one),
    "runs", or a mode given in `screens` (a pre-flight screen). Quitting (`q`)
    never stops training: with the run still going this prints how to re-attach
    and returns 0; once the run has ended it prints the run's summary and returns
    the trainer's exit code, as the headless display does."""
    if session is None and run_dir is not None:
        run_dir = Path(run_dir)
        session = Session(
            run_dir, trainer if trainer is not None else Trainer.find(run_dir), health
        )
    if mode == "monitor" and session is None:
        raise ValueError("run_tui('monitor') needs a session or a run_dir")
    app = CockpitApp(mode, session=session, logs=logs, screens=screens, clock=clock)
    app.run()
    if app.return_code not in (0, None):
        return app.return_code
    return farewell(app.session)


def run_wizard(
    checklist: Checklist,
    ctx: Context,
    launcher: Callable[[Context, list[StepResult]], Session] | None = None,
    auto: bool | str = False,
    **tui: Any,
) -> int:
    """The pre-flight screen in the TUI. Without a launcher (`cockpit preflight`): exit
    0, or 1 when a step failed. With one (`cockpit run`): Confirm launches and the
    monitor follows the run; leaving before Confirm launches nothing (exit 1)."""
    from cockpit.ui.screens.preflight import PreflightScreen

    made: list[PreflightScreen] = []

    def make() -> PreflightScreen:
        made.append(PreflightScreen(checklist, ctx, launcher, auto=auto))
        return made[-1]

    code = run_tui("preflight", screens={"preflight": make}, **tui)
    screen = made[-1] if made else None
    if launcher is not None:
        if screen is None or not screen.launched:
            print("cockpit: pre-flight not confirmed; nothing launched")
            return 1
        return code
    return 1 if screen is None or screen.status == "FAIL" else 0


def farewell(session: Session | None) -> int:
    """What the terminal shows once the TUI is gone, and the exit code."""
    if session is None:
        return 0
    m, d = session.model, session.run_dir
    if m.status in ENDED and m.proc_alive is not True:
        print(f"run {m.run_id}")
        for k, text in final_rows(ViewBuilder().build(m, time.time())):
            print(f"  {k:<12} {text}")
        return m.exit_code if m.exit_code is not None else status_code(m.status)
    t = session.trainer
    who = f" (pid {t.pid})" if t is not None and m.proc_alive else ""
    print(f"cockpit: detached from {d}; training goes on{who}")
    print(f"cockpit: re-attach with: cockpit watch {d}   (log: {d / 'stdout.log'})")
    return 0
