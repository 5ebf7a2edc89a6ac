"""The runs screen: every run under logs/ with its status (cockpit.model.runs reads
them, in a worker); open one, or mark two and compare them. Also the picker the
monitor's `c` uses to choose the run to compare with."""

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
from textual.widgets import DataTable, Footer, Label, OptionList, Static
from textual.widgets.option_list import Option

from cockpit.fmt import clean, fmt_duration, fmt_num, run_mark, run_tone
from cockpit.model.runs import RunRow, list_runs
from cockpit.ui.widgets.base import cockpit_app, plain

# what matters first stays in view at 80 columns (the rest scrolls sideways)
COLUMNS = ("run", "status", "step", "best val", "gate", "wall", "started", "profile")
TONE_STYLE = {"ok": "green", "done": "cyan", "warn": "yellow", "error": "red", "plain": ""}


def status_cell(status: str) -> Text:
    return Text(clean(f"{run_mark(status)} {status}"), style=TONE_STYLE[run_tone(status)])


def row_cells(r: RunRow, marked: bool) -> tuple:
    step = f"{r.step:,}/{r.total_steps:,}" if r.total_steps else f"{r.step:,}"
    started = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started)) if r.started else "–"
    return (
        Text(clean(("◆ " if marked else "  ") + r.run_id)),  # a str cell is markup: Text
        status_cell(r.status),
        Text(step, justify="right"),
        Text(fmt_num(r.best_val), justify="right"),
        Text(clean(r.gate)),
        Text(fmt_duration(r.wall_s), justify="right"),
        Text(started),
        Text(clean(r.profile)),
    )


class RunsLoaded(Message):
    """The runs under logs/, read by a worker."""

    def __init__(self, rows: list[RunRow]):
        super().__init__()
        self.rows = rows


class RunsScreen(Screen):
    CSS_PATH = "../tcss/runs.tcss"
    BINDINGS = [
        Binding("enter", "open", "open", priority=True),
        Binding("space", "mark", "mark"),
        Binding("c", "compare", "compare"),
        Binding("f5,u", "reload", "reload"),
    ]

    def __init__(self, logs: Path | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self._logs = logs
        self.rows: list[RunRow] = []
        self.marked: list[Path] = []

    @property
    def logs(self) -> Path:
        """Where the runs are: as given, else the app's."""
        return Path(self._logs if self._logs is not None else cockpit_app(self).logs)

    def compose(self) -> ComposeResult:
        yield Label(plain(f"Runs under {self.logs}/"), id="runs-title")
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Static("", id="runs-hint")
        yield Footer()

    def on_mount(self) -> None:
        self._logs = self.logs  # the worker thread reads it
        self.action_reload()

    def on_screen_resume(self) -> None:
        if self.rows:
            self.action_reload()

    def action_reload(self) -> None:
        self.query_one("#runs-hint", Static).update("reading the runs…")
        self._load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="runs")
    def _load(self) -> None:
        self.post_message(RunsLoaded(list(reversed(list_runs(self.logs)))))  # newest first

    def on_runs_loaded(self, msg: RunsLoaded) -> None:
        self.rows = msg.rows
        self._fill()

    def _fill(self) -> None:
        t = self.query_one(DataTable)
        at = t.cursor_row
        t.clear(columns=True)
        rows = [row_cells(r, r.run_dir in self.marked) for r in self.rows]
        for i, label in enumerate(COLUMNS):
            # fixed widths, measured here: the table draws right the first time
            width = max([len(label)] + [len(str(row[i])) for row in rows])
            t.add_column(label, width=width)
        for r, cells in zip(self.rows, rows, strict=True):
            t.add_row(*cells, key=str(r.run_dir))
        if self.rows:
            t.move_cursor(row=min(at, len(self.rows) - 1))
        hint = (
            "enter: open · space: mark · c: compare the marked run with the one under the cursor"
            if self.rows
            else f"no runs under {self.logs}/ yet; start one with: cockpit run"
        )
        self.query_one("#runs-hint", Static).update(plain(hint))

    def _current(self) -> RunRow | None:
        t = self.query_one(DataTable)
        if not self.rows or t.cursor_row < 0:
            return None
        return self.rows[min(t.cursor_row, len(self.rows) - 1)]

    def action_open(self) -> None:
        r = self._current()
        if r is not None:
            cockpit_app(self).open_run(r.run_dir)

    def action_mark(self) -> None:
        r = self._current()
        if r is None:
            return
        if r.run_dir in self.marked:
            self.marked.remove(r.run_dir)
        else:
            self.marked = [*self.marked, r.run_dir][-2:]
        self._fill()

    def action_compare(self) -> None:
        r = self._current()
        pair = list(self.marked)
        if len(pair) < 2 and r is not None and r.run_dir not in pair:
            pair.append(r.run_dir)
        if len(pair) < 2:
            self.notify("mark a run with space, then press c on another", severity="warning")
            return
        cockpit_app(self).compare(pair[0], pair[1])


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
