"""The monitor: one run's live panels. A thread worker drives the run's session
(cockpit.ui.pump) and posts a frozen view per change; the screen hands the view
down to its panels, which redraw only what changed: the header (step, status,
elapsed) and the alert bar with every view, the body's panels together in one
pass at most once a second. A frame that repaints one body panel renders them
all (Textual renders every widget of a container the frame touches), so one
body frame a second instead of one per panel's own pace. The keys act on the
trainer through the pump's queue (signals are sent from that thread)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer
from textual.worker import get_current_worker

from cockpit.fmt import clean
from cockpit.model.view import RunView
from cockpit.session import Session
from cockpit.ui.pump import Pump
from cockpit.ui.screens.dialogs import AlertsScreen, ConfirmScreen, TextScreen
from cockpit.ui.widgets.base import Panel, cockpit_app
from cockpit.ui.widgets.header import AlertBar, RunHeader
from cockpit.ui.widgets.logpanel import LogPanel
from cockpit.ui.widgets.machine import GpuPanel, MemoryPanel, RanksPanel, ThreadsPanel
from cockpit.ui.widgets.training import (
    CheckpointsPanel,
    EvalPanel,
    LossChart,
    LossPanel,
    ThroughputPanel,
)

Severity = Literal["information", "warning", "error"]
LEVELS: dict[str, Severity] = {"info": "information", "warn": "warning", "error": "error"}
SIGNALLING = ("save", "stop", "dump")  # the actions that signal the trainer
BODY_S = 1.0  # the body's panels redraw together about this often while the run goes on
EARLY_S = 0.15  # a view this close to the pass takes it: the pass joins the view's frame


class MonitorScreen(Screen):
    CSS_PATH = "../tcss/monitor.tcss"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]
    ESCAPE_TO_MINIMIZE = False  # esc first closes the log search; the back action minimizes
    BINDINGS = [
        Binding("s", "save", "save", tooltip="ask the trainer to save a checkpoint now"),
        Binding("x", "stop", "stop", tooltip="stop the run gracefully (asks first)"),
        Binding("d", "dump", "stacks", tooltip="dump the trainer's thread stacks and show them"),
        Binding("l", "log", "log", tooltip="the log full screen (esc: back)"),
        Binding("a", "alerts", "alerts", show=False, tooltip="every alert, with its details"),
        Binding("c", "compare", "compare", tooltip="compare this run with another"),
        Binding("slash", "search", "search log", show=False),
        Binding("e", "loss('smooth')", "EMA on/off", show=False),
        Binding("left_square_bracket", "strength(-0.05)", "EMA weaker", show=False),
        Binding("right_square_bracket", "strength(0.05)", "EMA stronger", show=False),
        Binding("g", "loss('log')", "log-y", show=False),
        Binding("t", "loss('time')", "x: step/time", show=False),
        Binding("z", "loss('zoom')", "zoom", show=False),
        Binding("escape", "back", "back", show=False),
    ]

    @dataclass
    class Updated(Message):
        """A new view of the run (a newer one replaces a pending one)."""

        view: RunView

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, MonitorScreen.Updated)

    @dataclass
    class Notice(Message):
        """Something the pump did or saw, to tell the user."""

        text: str
        level: str

    def __init__(
        self, session: Session, *, clock: Callable[[], float] = time.time, **kw: Any
    ) -> None:
        super().__init__(**kw)
        self.session = session
        self.pump = Pump(session, clock=clock)
        self.view: RunView | None = None
        self._dump_from: int | None = None  # alerts seen when a dump was asked for
        self._alerts_seen = 0
        self._live = False  # the history is in and the run goes on: new alerts pop up
        self._top: list[Panel] = []  # shown every view
        self._body: list[Panel] = []  # shown in a pass at most every BODY_S
        self._body_due = 0.0
        self._body_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield RunHeader(id="header")
        yield AlertBar(id="alertbar")
        with Container(id="body"):
            yield LossPanel(id="loss", classes="panel")
            yield ThroughputPanel(id="throughput", classes="panel")
            yield EvalPanel(id="eval", classes="panel")
            yield MemoryPanel(id="memory", classes="panel")
            yield RanksPanel(id="ranks", classes="panel")
            yield GpuPanel(id="gpu", classes="panel")
            yield ThreadsPanel(id="threads", classes="panel")
            yield CheckpointsPanel(id="checkpoints", classes="panel")
            yield LogPanel(id="log", classes="panel")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        body = self.query_one("#body")
        self._body = list(body.query(Panel))
        self._top = [p for p in self.query(Panel) if p not in self._body]
        self._follow()

    def on_unmount(self) -> None:
        self.workers.cancel_node(self)
        self.pump.wake()  # its wait returns now and sees the cancel

    @work(thread=True, exclusive=True, exit_on_error=False, group="session")
    def _follow(self) -> None:
        worker = get_current_worker()
        self.pump.run(
            lambda v: self.post_message(self.Updated(v)),
            lambda text, level: self.post_message(self.Notice(text, level)),
            lambda: worker.is_cancelled,
        )

    # --- views in ----------------------------------------------------------------

    def on_monitor_screen_updated(self, msg: Updated) -> None:
        old, v = self.view, msg.view
        self.view = v
        if old is None or old.handles != v.handles:
            self.refresh_bindings()  # s and d only for a trainer that handles them
        # under torchrun the ranks take the place of memory (compact) or threads (full)
        self.set_class(v.ranks is not None, "-ranks")
        if self.is_current:  # covered (runs, compare): the panels catch up on resume
            for p in self._top:
                p.show(v)
            now = time.monotonic()
            # a run over: its last state at once. A view a second (an idle run's clock)
            # arrives a little early or late: it takes the pass, one frame not two
            if now >= self._body_due - EARLY_S or v.ended:
                self._show_body()
            elif self._body_timer is None:  # if no view comes to take the pass
                self._body_timer = self.set_timer(self._body_due + EARLY_S - now, self._show_body)
        if self._dump_from is not None:
            dump = [a for a in v.alerts if a.seq > self._dump_from and a.code == "stack_dump"]
            if dump:
                self._dump_from = None
                self._alerts_seen = dump[-1].seq
                self.app.push_screen(TextScreen(f"Stacks · {v.run_id}", dump[-1].detail or ""))
        self._pop_up_alerts(v)

    def _show_body(self) -> None:
        """The body's pass: every panel sees the newest view; one that waits for its
        own interval (MIN_INTERVAL_S) gets the next pass, which a timer makes if no
        view comes to take it."""
        if self._body_timer is not None:
            self._body_timer.stop()
            self._body_timer = None
        self._body_due = time.monotonic() + BODY_S
        v = self.view
        if v is None or not self.is_current:
            return
        waiting = [p for p in self._body if not p.show(v, at_once=v.ended)]
        if waiting:  # the next view takes the next pass; this timer if none comes
            self._body_timer = self.set_timer(BODY_S + EARLY_S, self._show_body)

    def _pop_up_alerts(self, v: RunView) -> None:
        """Alerts that come while we watch pop up (a replayed history's do not)."""
        if v.loading is not None:
            return
        new = [a for a in v.alerts if a.seq > self._alerts_seen]
        self._alerts_seen = max(self._alerts_seen, v.n_alerts)
        live, self._live = self._live, self._live or not v.ended
        if not live:  # the history as replayed: its alerts are in the bar and on `a`
            return
        for a in new[-3:]:
            more = "  (a: details)" if a.detail else ""
            self.notify(  # a trainer's words: plain text, controls shown
                clean(f"{a.code}: {a.message}{more}"),
                title=clean(a.level.upper()),
                markup=False,
                severity=LEVELS.get(a.level, "information"),
                timeout=10,
            )

    def on_monitor_screen_notice(self, msg: Notice) -> None:
        level = LEVELS.get(msg.level, "information")
        self.notify(clean(msg.text), severity=level, timeout=6, markup=False)

    def on_screen_resume(self) -> None:
        v = self.view
        if v is not None:  # panels shown again after a resize or a screen on top
            for p in self.query(Panel):
                p.show(v, at_once=True)  # the views that came while it was covered
                p.redraw(force=True)

    @on(LogPanel.SearchClosed)
    def _search_closed(self) -> None:
        self.set_focus(None)

    # --- keys ----------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        """`s` (SIGUSR1) and `d` (SIGUSR2) are offered only when the trainer has a
        handler for them: their default action would kill it (a wrapped command).
        A read-only app (a served page without --allow-control) offers none of s, x, d."""
        if action in SIGNALLING and not cockpit_app(self).control:
            return False
        i = {"save": 0, "dump": 1}.get(action)
        if i is not None and self.view is not None and self.view.handles[i] is False:
            return False
        return True

    def action_save(self) -> None:
        if not cockpit_app(self).control:
            return
        self.pump.submit("save")

    def action_stop(self) -> None:
        if not cockpit_app(self).control:
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self.pump.submit("stop")

        self.app.push_screen(
            ConfirmScreen(
                "Stop the run?",
                "The trainer finishes its current step, saves a checkpoint (tagged "
                "'interrupt') and exits with code 130. You can resume it later.",
                "stop the run",
            ),
            answer,
        )

    def action_dump(self) -> None:
        if not cockpit_app(self).control:
            return
        v = self.view
        self._dump_from = v.n_alerts if v is not None else 0
        self.pump.submit("dump")

    def action_log(self) -> None:
        log = self.query_one(LogPanel)
        if self.maximized is log:
            self.minimize()
        else:
            self.maximize(log, container=False)
            log.focus()

    def action_search(self) -> None:
        self.query_one(LogPanel).open_search()

    def action_alerts(self) -> None:
        self.app.push_screen(AlertsScreen(self.view.alerts if self.view else ()))

    def action_compare(self) -> None:
        if self.view is not None and self.view.run_dir is not None:
            cockpit_app(self).pick_and_compare(self.view.run_dir, self.view)

    def action_loss(self, what: str) -> None:
        chart = self.query_one(LossChart)
        chart.toggle(what)
        self.query_one(LossPanel).border_subtitle = chart.settings()

    def action_strength(self, delta: float) -> None:
        chart = self.query_one(LossChart)
        chart.set_strength(delta)
        self.query_one(LossPanel).border_subtitle = chart.settings()

    def action_back(self) -> None:
        if self.maximized is not None:
            self.minimize()
            self.set_focus(None)
        elif len(self.app.screen_stack) > 1:
            self.app.pop_screen()  # a run opened from the runs screen
