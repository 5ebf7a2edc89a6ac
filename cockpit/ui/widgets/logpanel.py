"""The tail of stdout.log: errors highlighted, `/` filters to the lines that
match (matches highlighted), page keys scroll back through the kept lines."""

from __future__ import annotations

import re
from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input

from cockpit.model.view import RunView
from cockpit.ui.widgets.base import ERROR, MUTED, WARN, Lines, Panel

ERROR_RE = re.compile(
    r"\b(error|exception|traceback|fatal|killed|out of memory|oom|nan|inf)\b", re.IGNORECASE
)
WARN_RE = re.compile(r"\b(warn|warning|deprecat\w*)\b", re.IGNORECASE)


def line_style(line: str) -> str:
    if ERROR_RE.search(line):
        return ERROR
    if WARN_RE.search(line):
        return WARN
    return ""


class LogLines(Panel):
    """The lines themselves, newest at the bottom."""

    MIN_INTERVAL_S = 1.0  # the figures panels show the step at once; the log can trail

    def __init__(self, **kw):
        super().__init__(**kw)
        self.query_text = ""
        self.back = 0  # lines scrolled back from the newest

    def key(self, v: RunView) -> object:
        return (v.log_seq, self.query_text, self.back, self.size)

    def draw(self, v: RunView, out: Lines) -> None:
        lines = list(v.log)
        q = self.query_text.lower()
        if q:
            lines = [x for x in lines if q in x.lower()]
        h = out.height or 0
        self.back = max(0, min(self.back, len(lines) - h))
        end = len(lines) - self.back
        shown = lines[max(0, end - h) : end]
        if not shown:
            what = f"no line matches {self.query_text!r}" if q else "stdout.log is empty so far"
            out.line((what, MUTED))
            return
        for x in shown:
            style = line_style(x)
            if not q:
                out.line((x, style))
                continue
            row, pos, low = [], 0, x.lower()
            while (i := low.find(q, pos)) >= 0:
                row += [(x[pos:i], style), (x[i : i + len(q)], "reverse " + style)]
                pos = i + len(q)
            out.line(*row, (x[pos:], style))


class LogPanel(Vertical, can_focus=True):
    """The log panel: the lines and a search box shown on `/`."""

    ALLOW_MAXIMIZE = True
    BINDINGS = [
        Binding("pageup", "scroll(1)", "older", show=False),
        Binding("pagedown", "scroll(-1)", "newer", show=False),
        Binding("end", "scroll(0)", "newest", show=False),
    ]

    @dataclass
    class SearchClosed(Message):
        """The search box closed (focus goes back to the screen)."""

    def compose(self) -> ComposeResult:
        yield LogLines()
        yield Input(placeholder="search the log (esc: clear)", id="log-search")

    def on_mount(self) -> None:
        self.border_title = "Log"
        self.query_one(Input).display = False

    def show(self, view: RunView) -> None:
        self.query_one(LogLines).show(view)

    def open_search(self) -> None:
        box = self.query_one(Input)
        box.display = True
        box.focus()

    def action_scroll(self, pages: int) -> None:
        lines = self.query_one(LogLines)
        step = max(1, lines.size.height - 1)
        lines.back = 0 if pages == 0 else max(0, lines.back + pages * step)
        lines.redraw(force=True)

    @on(Input.Changed, "#log-search")
    def _search(self, event: Input.Changed) -> None:
        lines = self.query_one(LogLines)
        lines.query_text, lines.back = event.value, 0
        self.border_subtitle = f"/{event.value}" if event.value else ""
        lines.redraw(force=True)

    @on(Input.Submitted, "#log-search")
    def _keep(self, event: Input.Submitted) -> None:
        self.query_one(Input).display = False
        self.post_message(self.SearchClosed())

    def key_escape(self) -> None:
        box = self.query_one(Input)
        if box.display:
            box.value = ""
            box.display = False
            self.post_message(self.SearchClosed())
