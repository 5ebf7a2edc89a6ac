"""Up to 8 runs side by side: their loss curves overlaid (cockpit.ui.widgets.overlay)
over a table of their figures, one row a run, with the settings that differ
between them highlighted. A worker follows the runs (cockpit.ui.comparefeed):
live ones keep moving. The figures table is also what `cockpit compare` prints."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label
from textual.worker import get_current_worker

from cockpit.fmt import clean, fmt_duration, fmt_num, fmt_rate, run_tone
from cockpit.model.compare import config_diff
from cockpit.model.view import RunView
from cockpit.ui.comparefeed import MAX_RUNS, CompareFeed
from cockpit.ui.widgets.base import cockpit_app, plain
from cockpit.ui.widgets.header import gate_short, status_text
from cockpit.ui.widgets.overlay import OverlayChart, colour, letter

# -----------------------------------------------------------------------------
# the figures table: one row a run (display-free: the screen and `cockpit compare` share it

FIGURES = ("run", "status", "step", "best val", "val", "train", "tokens/s", "MFU", "wall", "gate")
TONES = {"ok": "green", "done": "cyan", "warn": "yellow", "error": "red", "plain": ""}
DIFF = "bold yellow"  # a setting that differs between the runs
BEST = "bold green"  # the best figure of its column


@dataclass(frozen=True)
class Cell:
    text: str
    tone: str = ""  # a rich style: the status's, BEST, DIFF, or the run's colour


def figure_cells(i: int, v: RunView) -> list[Cell]:
    f = v.figures
    step = f"{f.step:,}/{f.total_steps:,}" if f.total_steps else f"{f.step:,}"
    mfu = f"{100 * f.mfu:.1f}%" if isinstance(f.mfu, int | float) else "–"
    return [
        Cell(f"{letter(i)} {v.run_id}", "bold " + colour(i)),
        Cell(status_text(v), TONES[run_tone(v.status)]),
        Cell(step),
        Cell(fmt_num(v.best_val)),
        Cell(fmt_num(f.val_loss)),
        Cell(fmt_num(f.loss)),
        Cell(fmt_rate(f.tokens_per_s)),
        Cell(mfu),
        Cell(fmt_duration(v.elapsed_s)),
        Cell(gate_short(v)[0].removeprefix("gate ")),
    ]


def figures_table(
    views: Sequence[RunView | None], configs: Sequence[dict[str, str] | None]
) -> tuple[list[str], list[list[Cell]]]:
    """(column names, a row of cells per run): the figures, then one column for each
    setting whose value differs between the runs. A run not read yet is a row of …"""
    diffs = config_diff([c or {} for c in configs])
    columns = [*FIGURES, *(k for k, _ in diffs)]
    rows: list[list[Cell]] = []
    for i, v in enumerate(views):
        if v is None:
            rows.append([Cell(f"{letter(i)} reading…", "bold " + colour(i))])
            rows[-1] += [Cell("…")] * (len(columns) - 1)
            continue
        cells = figure_cells(i, v)
        cells += [Cell(vals[i] or "–", DIFF) for _, vals in diffs]
        rows.append(cells)
    _mark_best(rows, views, FIGURES.index("best val"), lambda v: v.best_val, min)
    _mark_best(rows, views, FIGURES.index("tokens/s"), lambda v: v.figures.tokens_per_s, max)
    return columns, rows


def _mark_best(
    rows: list[list[Cell]],
    views: Sequence[RunView | None],
    col: int,
    get: Callable[[RunView], float | None],
    best: Callable,
) -> None:
    vals = {i: get(v) for i, v in enumerate(views) if v is not None}
    vals = {i: x for i, x in vals.items() if isinstance(x, int | float)}
    if len(vals) < 2:
        return
    b = best(vals.values())
    for i, x in vals.items():
        if x == b:
            rows[i][col] = Cell(rows[i][col].text + " ★", BEST)


def table_text(columns: list[str], rows: list[list[Cell]]) -> str:
    """The table as plain text (`cockpit compare` off a terminal): columns padded,
    a key that differs marked with its values in the same columns."""
    columns = [clean(h) for h in columns]  # a setting's name comes from the run's run.yaml
    cells = [[clean(c.text) for c in r] for r in rows]
    widths = [
        max([len(h)] + [len(r[k]) for r in cells if k < len(r)]) for k, h in enumerate(columns)
    ]
    lines = ["  ".join(h.ljust(widths[k]) for k, h in enumerate(columns)).rstrip()]
    lines += ["  ".join(t.ljust(widths[k]) for k, t in enumerate(r)).rstrip() for r in cells]
    return "\n".join(lines)


# -----------------------------------------------------------------------------
# the screen


class CompareScreen(Screen):
    CSS_PATH = "../tcss/compare.tcss"
    BINDINGS = [
        Binding("t", "chart('time')", "x: step/time"),
        Binding("e", "chart('smooth')", "EMA on/off"),
        Binding("left_square_bracket", "strength(-0.05)", "EMA weaker", show=False),
        Binding("right_square_bracket", "strength(0.05)", "EMA stronger", show=False),
        Binding("v", "chart('curves')", "train/val"),
        Binding("g", "chart('log')", "log-y"),
        Binding("h", "hide", "hide run", tooltip="leave the run under the cursor out of the chart"),
        Binding("escape", "back", "back"),
    ]

    @dataclass
    class Updated(Message):
        """A new view of one compared run (a newer one of the same run replaces it)."""

        index: int
        view: RunView
        config: dict[str, str]

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, CompareScreen.Updated) and message.index == self.index

    def __init__(
        self,
        runs: Sequence[Path],
        first: RunView | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        if not 1 <= len(runs) <= MAX_RUNS:
            raise ValueError(f"compare takes 1 to {MAX_RUNS} runs, not {len(runs)}")
        self.paths, self.first, self.clock = [Path(p) for p in runs], first, clock
        self.views: list[RunView | None] = [None] * len(self.paths)
        self.configs: list[dict[str, str] | None] = [None] * len(self.paths)

    def compose(self) -> ComposeResult:
        n = len(self.paths)
        yield Label(
            plain(
                f"Comparing {n} runs · yellow columns: the settings that differ · "
                "★ best of its column · live runs keep moving"
            ),
            id="compare-title",
        )
        yield OverlayChart(n, id="overlay", classes="panel")
        yield DataTable(id="figures", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        skip = []
        if self.first is not None:
            self.views[0] = self.first
            if self.first.ended:
                skip.append(0)  # over: the monitor's view is all there is
        self.query_one(DataTable).fixed_columns = 1
        self._show()
        self._follow(skip)

    def on_unmount(self) -> None:
        self.workers.cancel_node(self)

    @work(thread=True, exclusive=True, exit_on_error=False, group="compare")
    def _follow(self, skip: list[int]) -> None:
        from cockpit.model.compare import run_config  # reads run.yaml: on this thread

        worker = get_current_worker()
        configs: dict[int, dict[str, str]] = {}

        def post(i: int, v: RunView) -> None:
            if i not in configs:
                configs[i] = run_config(v.run_dir or self.paths[i], v.info)
            self.post_message(self.Updated(i, v, configs[i]))

        if 0 in skip and self.first is not None:
            post(0, self.first)
        CompareFeed(self.paths, clock=self.clock, skip=skip).run(post, lambda: worker.is_cancelled)

    def on_compare_screen_updated(self, msg: Updated) -> None:
        self.views[msg.index], self.configs[msg.index] = msg.view, msg.config
        self._show()

    def _show(self) -> None:
        chart = self.query_one(OverlayChart)
        chart.views = list(self.views)
        chart.refresh()
        t = self.query_one(DataTable)
        columns, rows = figures_table(self.views, self.configs)
        at = t.cursor_row
        t.clear(columns=True)
        for k, name in enumerate(columns):
            diff = k >= len(FIGURES)
            width = max([len(name)] + [len(r[k].text) + 2 * (k == 0) for r in rows if k < len(r)])
            t.add_column(Text(clean(name), style=DIFF if diff else ""), width=width)
        for i, r in enumerate(rows):
            cells = [Text(clean(c.text), style=c.tone) for c in r]
            cells[0] = Text.assemble(("━ ", r[0].tone), cells[0])  # its colour in the chart
            t.add_row(*cells, key=str(i))
        t.move_cursor(row=min(max(at, 0), len(rows) - 1))

    # --- keys ----------------------------------------------------------------------

    def action_chart(self, what: str) -> None:
        self.query_one(OverlayChart).toggle(what)

    def action_strength(self, delta: float) -> None:
        self.query_one(OverlayChart).set_strength(delta)

    def action_hide(self) -> None:
        chart = self.query_one(OverlayChart)
        i = self.query_one(DataTable).cursor_row
        chart.hidden ^= {i}
        chart.refresh()

    @on(DataTable.RowSelected)
    def _open(self, event: DataTable.RowSelected) -> None:
        """enter: the run under the cursor, in the monitor (esc comes back here)."""
        i = event.cursor_row
        if 0 <= i < len(self.paths):
            cockpit_app(self).open_run(self.paths[i])

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()
        else:  # `cockpit compare`: this screen is a mode of its own
            self.app.switch_mode("runs")
