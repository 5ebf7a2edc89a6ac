"""The runs screen: every run under logs/ with its status (cockpit.model.runs reads
them, in a worker). Open one; mark up to 8 and compare them; pin the ones to
keep on top (logs/.pins); filter by profile, status or words. Also the picker
the monitor's `c` uses to choose the run to compare with."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from cockpit.fmt import clean, fmt_duration, fmt_num, run_mark, run_tone
from cockpit.model.runs import RunFilter, RunRow, arrange, list_runs, load_pins, save_pins
from cockpit.ui.comparefeed import MAX_RUNS
from cockpit.ui.widgets.base import cockpit_app, plain

# what matters first stays in view at 80 columns (the rest scrolls sideways)
COLUMNS = ("run", "status", "step", "best val", "gate", "wall", "started", "profile")
TONE_STYLE = {"ok": "green", "done": "cyan", "warn": "yellow", "error": "red", "plain": ""}


def status_cell(status: str) -> Text:
    return Text(clean(f"{run_mark(status)} {status}"), style=TONE_STYLE[run_tone(status)])


def row_cells(r: RunRow, marked: bool, pinned: bool = False) -> tuple:
    step = f"{r.step:,}/{r.total_steps:,}" if r.total_steps else f"{r.step:,}"
    started = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started)) if r.started else "–"
    return (
        # a str cell is markup: Text. ◆ marked for compare, ★ pinned
        Text(clean(("◆" if marked else " ") + ("★ " if pinned else "  ") + r.run_id)),
        status_cell(r.status),
        Text(step, justify="right"),
        Text(fmt_num(r.best_val), justify="right"),
        Text(clean(r.gate)),
        Text(fmt_duration(r.wall_s), justify="right"),
        Text(started),
        Text(clean(r.profile)),
    )


class RunsLoaded(Message):
    """The runs under logs/ and the pinned ones, read by a worker."""

    def __init__(self, rows: list[RunRow], pins: set[str] | None = None):
        super().__init__()
        self.rows, self.pins = rows, pins or set()


class RunsScreen(Screen):
    CSS_PATH = "../tcss/runs.tcss"
    AUTO_FOCUS = "#runs"
    BINDINGS = [
        Binding("enter", "open", "open", priority=True),
        Binding("space", "mark", "mark"),
        Binding("c", "compare", "compare"),
        Binding("p", "pin", "pin", tooltip="keep the run on top of the list (logs/.pins)"),
        Binding("slash", "filter", "filter", tooltip="profile:P status:S words"),
        Binding("escape", "clear_filter", "clear filter", show=False),
        Binding("f5,u", "reload", "reload"),
    ]

    def __init__(self, logs: Path | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self._logs = logs
        self.all_rows: list[RunRow] = []  # every run, newest first
        self.rows: list[RunRow] = []  # the ones shown: filtered, pinned first
        self.marked: list[Path] = []
        self.pins: set[str] = set()
        self.filter = RunFilter()
        self.loaded = False

    @property
    def logs(self) -> Path:
        """Where the runs are: as given, else the app's."""
        return Path(self._logs if self._logs is not None else cockpit_app(self).logs)

    def compose(self) -> ComposeResult:
        yield Label(plain(f"Runs under {self.logs}/"), id="runs-title")
        yield Input(
            placeholder="filter: profile:NAME status:live|ended|ok|bad|STATUS words…",
            id="runs-filter",
        )
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Static("", id="runs-hint")
        yield Footer()

    def on_mount(self) -> None:
        self._logs = self.logs  # the worker thread reads it
        self.action_reload()

    def on_screen_resume(self) -> None:
        if self.loaded:
            self.action_reload()

    def action_reload(self) -> None:
        self.query_one("#runs-hint", Static).update("reading the runs…")
        self._load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="runs")
    def _load(self) -> None:
        rows = list(reversed(list_runs(self.logs)))  # newest first
        self.post_message(RunsLoaded(rows, load_pins(self.logs)))

    def on_runs_loaded(self, msg: RunsLoaded) -> None:
        self.all_rows, self.pins, self.loaded = msg.rows, msg.pins, True
        self._fill()

    def _fill(self) -> None:
        self.rows = arrange(self.all_rows, self.pins, self.filter)
        t = self.query_one("#runs", DataTable)
        at = t.cursor_row
        t.clear(columns=True)
        rows = [row_cells(r, r.run_dir in self.marked, r.run_id in self.pins) for r in self.rows]
        for i, label in enumerate(COLUMNS):
            # fixed widths, measured here: the table draws right the first time
            width = max([len(label)] + [len(str(row[i])) for row in rows])
            t.add_column(label, width=width)
        for r, cells in zip(self.rows, rows, strict=True):
            t.add_row(*cells, key=str(r.run_dir))
        if self.rows:
            t.move_cursor(row=min(max(at, 0), len(self.rows) - 1))
        self.query_one("#runs-hint", Static).update(plain(self._hint()))

    def _hint(self) -> str:
        if not self.all_rows:
            return f"no runs under {self.logs}/ yet; start one with: cockpit run"
        shown = ""
        if self.filter:
            shown = f"{len(self.rows)} of {len(self.all_rows)} runs: {self.filter.describe()} · "
            if not self.rows:
                return shown + "no run matches (esc: clear the filter)"
        marked = f"{len(self.marked)} marked · " if self.marked else ""
        return (
            f"{shown}{marked}enter: open · space: mark (up to {MAX_RUNS}) · "
            "c: compare the marked runs (and the one under the cursor) · p: pin · /: filter"
        )

    def _current(self) -> RunRow | None:
        t = self.query_one("#runs", DataTable)
        if not self.rows or t.cursor_row < 0:
            return None
        return self.rows[min(t.cursor_row, len(self.rows) - 1)]

    def action_open(self) -> None:
        if self.query_one("#runs-filter", Input).has_focus:
            self.query_one("#runs", DataTable).focus()  # enter ends the filter's typing
            return
        r = self._current()
        if r is not None:
            cockpit_app(self).open_run(r.run_dir)

    def action_mark(self) -> None:
        r = self._current()
        if r is None:
            return
        if r.run_dir in self.marked:
            self.marked.remove(r.run_dir)
        elif len(self.marked) >= MAX_RUNS:
            self.notify(f"{MAX_RUNS} runs are marked already: unmark one first", severity="warning")
            return
        else:
            self.marked = [*self.marked, r.run_dir]
        self._fill()

    def action_compare(self) -> None:
        r = self._current()
        runs = list(self.marked)
        if len(runs) < MAX_RUNS and r is not None and r.run_dir not in runs:
            runs.append(r.run_dir)
        if len(runs) < 2:
            self.notify("mark a run with space, then press c on another", severity="warning")
            return
        cockpit_app(self).compare(runs)

    def action_pin(self) -> None:
        r = self._current()
        if r is None:
            return
        pins = self.pins ^ {r.run_id}
        try:
            save_pins(pins, self.logs)
        except OSError as e:
            self.notify(f"cannot write {self.logs / '.pins'}: {e.strerror or e}", severity="error")
            return
        self.pins = pins
        self._fill()
        self._cursor_to(r)

    def _cursor_to(self, r: RunRow) -> None:
        if r in self.rows:
            self.query_one("#runs", DataTable).move_cursor(row=self.rows.index(r))

    # --- the filter ----------------------------------------------------------------

    def action_filter(self) -> None:
        box = self.query_one("#runs-filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#runs-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter = RunFilter.parse(event.value)
        self._fill()

    @on(Input.Submitted, "#runs-filter")
    def _filter_done(self) -> None:
        self.query_one("#runs", DataTable).focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#runs-filter", Input)
        if not box.display:
            return
        box.value = ""
        box.display = False
        self.filter = RunFilter()
        self._fill()
        self.query_one("#runs", DataTable).focus()


# -----------------------------------------------------------------------------
# picking a run to compare with


class RunPicker(ModalScreen[Path | None]):
    CSS_PATH = "../tcss/dialogs.tcss"
    BINDINGS = [Binding("escape,q", "cancel", "cancel")]

    @dataclass
    class Found(Message):
        """The runs to choose from."""

        rows: list[RunRow]

    def __init__(self, logs: Path, exclude: Path | None = None):
        super().__init__()
        self.logs, self.exclude = Path(logs), exclude
        self.rows: list[RunRow] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="page"):
            yield Label("Compare with which run?", id="dialog-title")
            yield OptionList(id="pick", markup=False)

    def on_mount(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="runs")
    def _load(self) -> None:
        rows = [r for r in reversed(list_runs(self.logs)) if r.run_dir != self.exclude]
        self.post_message(self.Found(rows))

    def on_run_picker_found(self, msg: Found) -> None:
        self.rows = msg.rows
        ol = self.query_one(OptionList)
        for r in self.rows:
            ol.add_option(
                Option(
                    plain(f"{r.run_id}  {r.status}  step {r.step}  best val {fmt_num(r.best_val)}")
                )
            )
        if not self.rows:
            ol.add_option(Option(plain(f"no other run under {self.logs}/"), disabled=True))
        else:
            ol.highlighted = 0
        ol.focus()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.rows[event.option_index].run_dir)

    def action_cancel(self) -> None:
        self.dismiss(None)
