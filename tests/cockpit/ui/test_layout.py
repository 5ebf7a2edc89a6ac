"""Labels and values stay apart however a screen is drawn.

The screenshots are SVGs the app saves; viewers such as rsvg trim the leading
spaces of each text run, so a gap written at the start of a run closes and a
label runs into its value (`train 2.3336ema`, `Param/Token0.481`). The panels
put every gap at the end of a run instead. These tests read the saved screens as
such a viewer draws them, and check the panels' rows directly."""

from __future__ import annotations

import html
import re
from collections import defaultdict
from pathlib import Path

import pytest

from cockpit.ui.widgets.base import Lines, gaps_trail

SNAPSHOTS = Path(__file__).parent / "__snapshots__"
# a figure or a closing bracket glued to the label that follows it, or a label glued
# to the figure after it: what the screenshots showed
RUN_IN = re.compile(
    r"[0-9)%](?:ema|val|best|lr|ppl|trainer|swap|mem|power|temp|util)\b"
    r"|(?:Param/Token|compression|bytes_per_token|params|RSS|USS)[0-9]"
)


def drawn_lines(svg: str) -> list[str]:
    """Each line of a saved screen as a viewer that trims a run's leading spaces
    draws it: the runs placed at their x, in character cells."""
    runs = re.findall(
        r'<text class="[^"]*" x="([\d.]+)" y="([\d.]+)" textLength="([\d.]+)"[^>]*>([^<]*)</text>',
        svg,
    )
    lines: dict[float, list[tuple[float, str]]] = defaultdict(list)
    cell = None
    for x, y, length, text in runs:
        t = html.unescape(text).replace("\xa0", " ")
        if t and cell is None:
            cell = float(length) / len(t)
        lines[float(y)].append((float(x), t.lstrip(" ")))
    out = []
    for y in sorted(lines):
        row: list[str] = []
        for x, t in sorted(lines[y]):
            col = round(x / cell) if cell else len(row)
            while len(row) < col:
                row.append(" ")
            row[col : col + len(t)] = list(t)
        out.append("".join(row))
    return out


SVGS = sorted(SNAPSHOTS.glob("*/*.svg"))


@pytest.mark.parametrize("path", SVGS, ids=lambda p: p.name)
def test_no_label_runs_into_its_value_in_a_saved_screen(path):
    assert len(SVGS) >= 12
    for line in drawn_lines(path.read_text()):
        m = RUN_IN.search(line)
        assert m is None, f"{path.name}: {m.group(0)!r} in {line.strip()!r}"


def test_the_checker_sees_a_run_in_when_a_gap_leads_a_run():
    svg = (
        '<text class="a" x="0" y="10" textLength="60">train&#160;</text>'
        '<text class="b" x="60" y="10" textLength="72">2.3336</text>'
        '<text class="a" x="120" y="10" textLength="50">&#160;&#160;ema</text>'
    )
    assert drawn_lines(svg) == ["train 2.3336ema"]
    assert RUN_IN.search(drawn_lines(svg)[0])


def test_gaps_move_to_the_end_of_the_run_before():
    row = [("train ", "m"), ("2.33", "b"), ("  ema ", "m"), ("2.44", ""), ("   ", "x")]
    assert gaps_trail(row) == [
        ("train ", "m"),
        ("2.33  ", "b"),
        ("ema ", "m"),
        ("2.44", ""),
        ("   ", "x"),
    ]
    out = Lines(80).pairs(("train", "2.33", "b"), ("ema", "2.44", ""))
    assert [p[0] for p in out.rows[0]] == ["train ", "2.33  ", "ema ", "2.44", ""]
    out = Lines(80).kv("RSS", 5, "1.1 GiB")
    assert out.rows[0][0][0] == "RSS    " and out.rows[0][1][0] == "1.1 GiB"
