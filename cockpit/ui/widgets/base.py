"""The panel every monitor area is: a widget that draws a RunView into its
size, and redraws only when what it shows changed. A panel's text is plain
text (Content parts, never markup), its control characters shown as
placeholders (cockpit.fmt.clean): a trainer's line cannot style or drive the
terminal."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, cast

from rich.segment import Segment
from textual.content import Content
from textual.dom import DOMNode
from textual.geometry import Region
from textual.strip import Strip
from textual.style import Style as VisualStyle
from textual.widget import Widget

from cockpit.fmt import clean
from cockpit.model.view import RunView


class CockpitApp(Protocol):
    """What screens ask of the app (cockpit.ui.app.CockpitApp), declared here so the
    widgets and screens the app imports need not import the app back."""

    logs: Path
    control: bool  # the keys that signal a trainer (save, stop, dump) are offered

    def open_run(self, run_dir: Path) -> None: ...
    def compare(self, runs: Sequence[Path], first: RunView | None = None) -> None: ...
    def pick_and_compare(self, run_dir: Path, view: RunView | None) -> None: ...
    def attach(self, session: Any) -> None: ...  # a Session (widgets do not import it)


MUTED, ACCENT, PRIMARY = "$text-muted", "$text-accent", "$text-primary"
OK, WARN, ERROR = "$text-success", "$text-warning", "$text-error"
LEVEL_STYLE = {"info": PRIMARY, "warn": WARN, "error": ERROR}
GAP = "  "  # between a value and the next label
SLACK_S = 0.25  # a pass a little early for a panel's MIN_INTERVAL_S still draws it


def cockpit_app(node: DOMNode) -> CockpitApp:
    """The app a screen or widget runs in, typed as ours (its modes and actions)."""
    return cast(CockpitApp, node.app)


def gaps_trail(row: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The same row with each part's leading spaces moved to the end of the part before:
    a run of text never starts with a gap, so no renderer (an SVG viewer that trims
    a text run's leading spaces) can close it and run a label into its value."""
    out: list[tuple[str, str]] = []
    for text, style in row:
        lead = len(text) - len(text.lstrip(" "))
        if lead and out and lead < len(text):
            prev, pstyle = out[-1]
            out[-1] = (prev + text[:lead], pstyle)
            text = text[lead:]
        out.append((text, style))
    return out


def plain(text: object) -> Content:
    """Foreign text (a run's name, a message, a path) for a Label, Static or Option:
    Content, so never read as markup, with its control characters shown."""
    return Content(clean(str(text)))


def plain_page(text: str) -> Content:
    """plain() of a page of lines (a stack dump, a log): its newlines kept."""
    return Content(clean(text, newlines=True))


class Lines:
    """Lines of (text, style) parts, each cropped to the width: what a panel draws."""

    def __init__(self, width: int, height: int | None = None):
        self.width, self.height = max(0, width), height
        self.rows: list[list[tuple[str, str]]] = []

    @property
    def full(self) -> bool:
        return self.height is not None and len(self.rows) >= self.height

    @property
    def left(self) -> int | None:
        return None if self.height is None else self.height - len(self.rows)

    def line(self, *parts: tuple[str, str] | str) -> Lines:
        if not self.full:
            row = [(clean(p), "") if isinstance(p, str) else (clean(p[0]), p[1]) for p in parts]
            self.rows.append(gaps_trail(row))
        return self

    def pairs(self, *pairs: tuple[str, str, str], tail: tuple[str, str] = ("", "")) -> Lines:
        """One line of (label, value, value style): `label value  label value`."""
        parts: list[tuple[str, str] | str] = []
        for i, (label, value, style) in enumerate(pairs):
            parts += [(label + " ", MUTED), (value + (GAP if i < len(pairs) - 1 else ""), style)]
        return self.line(*parts, tail)

    def kv(self, label: str, width: int, *value: tuple[str, str] | str) -> Lines:
        """A row of a key/value grid: the label padded to the grid's label column and
        a gap, then the value's parts."""
        return self.line((label.ljust(width) + GAP, MUTED), *value)

    def content(self) -> Content:
        out: list[tuple[str, str] | str] = []
        for i, row in enumerate(self.rows):
            if i:
                out.append("\n")
            room = self.width
            for text, style in row:
                if room <= 0:
                    break
                out.append((text[:room], style))
                room -= len(text[:room])
        return Content.assemble(*out)


class Panel(Widget):
    """Set `show(view)` from the screen. A panel draws its rows when what it depends
    on (`key()`) changed, and asks Textual to repaint only when the rows differ
    from what is on screen: a view a second while a run idles costs almost nothing.
    A costly panel sets MIN_INTERVAL_S: it redraws at most that often; `show`
    then says the change is still to draw, and the screen shows it the view again
    later (the last view is never lost). A hidden panel (no size: another panel
    is maximized, or the layout leaves it out) only keeps the view, and draws it
    when it is shown."""

    DEFAULT_CSS = """
    Panel { height: 1fr; width: 1fr; text-wrap: nowrap; text-overflow: clip; }
    """
    TITLE = ""
    MIN_INTERVAL_S = 0.0

    def __init__(self, **kw):
        super().__init__(**kw)
        # a panel's text has no links: without this Textual re-makes every rendered
        # line looking for them, unpickling each part's style (a tenth of a frame)
        self.auto_links = False
        self.border_title = self.TITLE
        self.view: RunView | None = None
        self._key: object = object()
        self._rows: list | None = None
        self._rows_size: tuple[int, int] | None = None
        self._drawn = 0.0
        self._strips: dict[int, tuple[tuple, Strip]] = {}  # per row: its parts, its line
        self._strips_for: tuple = ()  # what the lines were rendered for (width, style, theme)
        self._styles: dict[str, VisualStyle] = {}  # a part's style name, resolved for those

    def show(self, view: RunView, *, at_once: bool = False) -> bool:
        """Take the newest view; False when a change waits for MIN_INTERVAL_S
        (at_once: draw it now whatever the interval)."""
        self.view = view
        if not self.size.area:
            self._key, self._rows = object(), None  # drawn once it has a size again
            return True
        key = self.key(view)
        if key == self._key:
            return True
        if not at_once and time.monotonic() + SLACK_S < self._drawn + self.MIN_INTERVAL_S:
            return False
        self._key = key
        self.redraw()
        return True

    def redraw(self, force: bool = False) -> None:
        """Draw the rows now; repaint the rows that changed (all of them when forced:
        settings). Refreshed whole, Textual would re-render every line of the panel,
        where a view that moves the step changes one row of the header."""
        self._drawn = time.monotonic()
        before, size = self._rows, self._rows_size
        rows = self._draw_rows()
        if not force and rows == before:
            return
        self._rows = rows
        if force or before is None or size != self._rows_size:
            self.refresh()
            return
        changed = [
            Region(0, y, self.size.width, 1)
            for y in range(max(len(rows), len(before)))
            if y >= len(rows) or y >= len(before) or rows[y] != before[y]
        ]
        self.refresh(*changed)

    def key(self, v: RunView) -> object:
        return v.version

    def _draw_rows(self) -> list:
        w, h = self.size
        self._rows_size = (w, h)
        if self.view is None:
            return [[("waiting for the run…", MUTED)]]
        if w <= 0 or h <= 0:
            return []  # hidden (another panel is maximized, or the layout leaves it out)
        out = Lines(w, h)
        self.draw(self.view, out)
        return out.rows

    def _rows_now(self) -> list:
        if self._rows is None or self._rows_size != tuple(self.size):
            self._rows = self._draw_rows()  # first paint, or a new size
        return self._rows

    def render(self) -> Content:
        out = Lines(*self.size)
        out.rows = self._rows_now()
        return out.content()

    def render_line(self, y: int) -> Strip:
        """One line on screen: a row whose parts did not change keeps the line it was
        rendered to (a view that moves the step re-renders the header's second row,
        not both). While text is selected, Textual renders the whole panel as usual."""
        if self.text_selection is not None:
            return super().render_line(y)
        rows, style = self._rows_now(), self.visual_style
        width = self.size.width
        made_for = (width, style, self.app.theme)
        if made_for != self._strips_for:
            self._strips_for, self._strips, self._styles = made_for, {}, {}
        if y >= len(rows):
            return Strip.blank(width, style.rich_style)
        parts = tuple(rows[y])
        got = self._strips.get(y)
        if got is not None and got[0] == parts:
            return got[1]
        strip = self._row_strip(parts, width, y, style)
        self._strips[y] = (parts, strip)
        return strip

    def _row_strip(self, parts: tuple, width: int, y: int, base: VisualStyle) -> Strip:
        """A row's parts as one line of segments, as Textual renders a line of Content
        (the panel's style under each part's, each segment knowing its place in the
        panel for a mouse selection), without Content's wrapping machinery: the rows
        are one line each, already cut to the width (a fifth of a header frame)."""
        styles = self._styles
        segments: list[Segment] = []
        x = 0
        for text, name in parts:
            text = text[: width - x]
            if not text:
                continue
            st = styles.get(name)
            if st is None:
                st = styles[name] = base + self._get_style(name) if name else base
            segments.append(Segment(text, st.rich_style_with_offset(x, y)))
            x += len(text)
        strip = Strip(segments)
        return strip.crop(0, width) if strip.cell_length > width else strip

    def draw(self, v: RunView, out: Lines) -> None:
        raise NotImplementedError
