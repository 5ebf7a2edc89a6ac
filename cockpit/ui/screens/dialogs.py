"""Screens pushed over the others: a confirmation, a page of text (stacks, an
alert's detail), every alert, the help."""

from __future__ import annotations

import time

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, OptionList, Static
from textual.widgets.option_list import Option

from cockpit.fmt import clean
from cockpit.model.runmodel import AlertRecord
from cockpit.ui.widgets.base import plain, plain_page


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question; y or enter on the button says yes, n or esc says no."""

    CSS_PATH = "../tcss/dialogs.tcss"
    BINDINGS = [
        Binding("y", "answer(True)", "yes"),
        Binding("n,escape", "answer(False)", "no"),
    ]

    def __init__(self, title: str, text: str, yes: str = "yes"):
        super().__init__()
        self.title_text, self.text, self.yes = title, text, yes

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(plain(self.title_text), id="dialog-title")
            yield Static(plain_page(self.text), id="dialog-text")
            with Horizontal(id="dialog-buttons"):
                yield Button(f"{self.yes} (y)", variant="error", id="yes")
                yield Button("cancel (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class TextScreen(ModalScreen[None]):
    """A page of text (a stack dump, a crash log), scrollable; esc or q closes it."""

    CSS_PATH = "../tcss/dialogs.tcss"
    BINDINGS = [Binding("escape,q", "dismiss", "close")]

    def __init__(self, title: str, text: str):
        super().__init__()
        self.title_text, self.text = title, text

    def compose(self) -> ComposeResult:
        with Vertical(id="page"):
            yield Label(plain(self.title_text), id="dialog-title")
            with VerticalScroll(id="page-body"):
                yield Static(plain_page(self.text or "(empty)"))

    # textual's is async and takes a result; this one always closes with None
    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)


def alert_line(a: AlertRecord) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(a.t))
    more = "  [details: enter]" if a.detail else ""
    return clean(f"{when} {a.level.upper():<5} {a.code}: {a.message}{more}")


class AlertsScreen(ModalScreen[None]):
    """Every alert of the run, newest first; enter shows one's detail (stacks, log)."""

    CSS_PATH = "../tcss/dialogs.tcss"
    BINDINGS = [Binding("escape,q,a", "dismiss", "close")]

    def __init__(self, alerts: tuple[AlertRecord, ...]):
        super().__init__()
        self.alerts = list(reversed(alerts))

    def compose(self) -> ComposeResult:
        with Vertical(id="page"):
            yield Label(f"Alerts ({len(self.alerts)})", id="dialog-title")
            if not self.alerts:
                yield Static("no alerts so far")
            else:
                options = (Option(alert_line(a)) for a in self.alerts)
                yield OptionList(*options, id="alert-list", markup=False)

    @on(OptionList.OptionSelected)
    def _open(self, event: OptionList.OptionSelected) -> None:
        a = self.alerts[event.option_index]
        self.app.push_screen(TextScreen(f"{a.level.upper()} {a.code}", a.detail or a.message))

    # textual's is async and takes a result; this one always closes with None
    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)


HELP = """\
Monitor keys
  q        detach: the cockpit quits, training keeps running
           (re-attach with `cockpit watch RUN_DIR`)
  s        ask the trainer to save a checkpoint now (SIGUSR1)
           (s and d only for a trainer that handles the signal;
           s, x and d not on a page of `cockpit serve` without
           --allow-control)
  x        stop the run gracefully after a confirmation (SIGINT: it
           saves a checkpoint tagged 'interrupt' and exits 130)
  d        dump the trainer's thread stacks (SIGUSR2) and show them
  l        the log full screen (esc: back); / searches it
  a        every alert, with details (a stall's stack dump, a crash's log)
  c        compare this run with another (overlaid loss, side-by-side figures)
  r        the runs screen: every run under logs/
  ?        this help;  ctrl+p  the command palette (themes, screenshot)

Loss chart
  e        smoothed train loss (EMA) on/off;  [ ]  weaker/stronger
  g        log-scale y;  t  x by step or by time;  z  zoom: whole run,
           last 100k/10k/1k/100 steps. The whole-run curve is
           downsampled with each bucket's min and max: spikes stay.

Runs screen
  enter    open the run;  space  mark it (up to 8);  c  compare the
           marked runs (and the one under the cursor)
  p        pin the run: pinned runs stay on top (kept in logs/.pins)
  /        filter: profile:NAME  status:live|ended|ok|bad|STATUS  words
           (esc clears it)

Compare screen (cockpit compare, or c)
  t  x by step or by time since each run's start;  e  EMA on/off,
  [ ]  weaker/stronger;  v  train + val, train, val;  g  log-y;
  h  leave the run under the cursor out of the chart;  enter  open it.
  Yellow columns are the settings that differ (run.yaml's profile, or
  a wrapped command's --options); ★ marks the best of a column.

Panels that do not fit collapse: below 120x36 the eval & gate and the
threads panels are left out (the header keeps the gate state).
Under torchrun a Ranks table (each rank's step, step and data+forward
ms, memory, state; straggler and failed ranks marked) takes the place
of the memory panel below 120x36, of the threads panel above.
NO_COLOR is honoured; themes come from the command palette.
"""


class HelpScreen(TextScreen):
    def __init__(self) -> None:
        super().__init__("Help", HELP)
