"""The runs list as a workspace: a filter (profile, status, words) and pins kept in
logs/.pins, on run rows as cockpit.model.runs reads them."""

from __future__ import annotations

from pathlib import Path

from cockpit.model.runs import RunFilter, RunRow, arrange, load_pins, save_pins


def row(run_id: str, profile: str, status: str) -> RunRow:
    return RunRow(Path(run_id), run_id, profile, status, 0, None, None, "–", None, None)


ROWS = [
    row("20260103-demo-walks", "demo-walks", "live"),
    row("20260102-small-20m", "small-20m", "diverged"),
    row("20260101-demo-walks", "demo-walks", "gate_passed"),
]


def ids(rows: list[RunRow]) -> list[str]:
    return [r.run_id for r in rows]


def test_filter_by_profile_status_and_words():
    assert ids(arrange(ROWS, set(), RunFilter.parse("profile:DEMO"))) == [
        ROWS[0].run_id,
        ROWS[2].run_id,
    ]
    assert ids(arrange(ROWS, set(), RunFilter.parse("status:bad"))) == [ROWS[1].run_id]
    assert ids(arrange(ROWS, set(), RunFilter.parse("s:live,gate_passed 0101"))) == [ROWS[2].run_id]
    assert arrange(ROWS, set(), RunFilter.parse("status:ok small")) == []
    assert arrange(ROWS, set(), RunFilter()) == ROWS


def test_pins_go_first_and_are_kept(tmp_path):
    assert load_pins(tmp_path) == set()  # no file yet
    save_pins({ROWS[2].run_id}, tmp_path)
    pins = load_pins(tmp_path)
    assert pins == {ROWS[2].run_id} and (tmp_path / ".pins").read_text() == ROWS[2].run_id + "\n"
    assert ids(arrange(ROWS, pins)) == [ROWS[2].run_id, ROWS[0].run_id, ROWS[1].run_id]
    # a filter applies to pinned runs too
    assert ids(arrange(ROWS, pins, RunFilter.parse("status:live"))) == [ROWS[0].run_id]
