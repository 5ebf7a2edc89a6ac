"""The documented ways to write events from one's own loop run as written: the
example in core/events.py's docstring and the one in docs/events-from-your-loop.md."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import core.events as E
from tests.conftest import REPO


def docstring_example() -> str:
    lines = E.__doc__.splitlines()
    start = next(i for i, x in enumerate(lines) if x.startswith("    import "))
    end = next(i for i in range(start, len(lines)) if lines[i] and not lines[i].startswith("    "))
    return textwrap.dedent("\n".join(lines[start:end]))


def markdown_example() -> str:
    text = (REPO / "docs" / "events-from-your-loop.md").read_text()
    return re.search(r"```python\n(.*?)```", text, re.S)[1]


def run(code: str, cwd) -> list:
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    return E.read_events(cwd / "logs" / "my-run" / "events.jsonl")


def test_the_docstring_example_writes_a_whole_run(tmp_path):
    evs = run(docstring_example(), tmp_path)
    assert isinstance(evs[0], E.RunStart) and evs[0].total_steps == 100
    steps = [e for e in evs if isinstance(e, E.Step)]
    assert [s.step for s in steps] == list(range(1, 101))
    assert steps[-1].tokens == 100 * 4096 and steps[-1].grad_norm is None
    assert isinstance(evs[-1], E.RunEnd) and evs[-1].status == "completed"


def test_the_markdown_example_writes_steps_evals_and_the_end(tmp_path):
    evs = run(markdown_example(), tmp_path)
    assert isinstance(evs[0], E.RunStart) and evs[0].tokens_per_step == 16 * 256
    assert [e.step for e in evs if isinstance(e, E.Step)] == list(range(1, 201))
    assert [(e.step, round(e.val_loss, 4)) for e in evs if isinstance(e, E.Eval)] == [
        (100, 0.41),
        (200, round(4.1 / 200**0.5, 4)),
    ]
    assert isinstance(evs[-1], E.RunEnd) and evs[-1].step == 200
