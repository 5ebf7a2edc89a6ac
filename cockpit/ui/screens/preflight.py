"""The pre-flight screen: the checklist on the left with each step's status
changing live, the selected step's figures, messages and findings on the right;
the first FAIL stops it and offers that step's fix or a re-run; a WARN is
explained and accepted; the last row is the summary (data, tokenizer, model,
param/token, epochs, time) and the exact command, and Confirm launches the run
(the monitor takes over).

The checklist runs in a thread worker; results reach the screen only as
messages carrying copies, so the screen never reads what the worker writes."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Label, ProgressBar, Select, Static

from cockpit.checks import preflight as pf
from cockpit.checks.base import Context
from cockpit.checks.engine import Checklist, StepResult, fix_and_rerun, overall, run_checklist
from cockpit.checks.registry import all_kinds
from cockpit.fmt import STEP_ICONS, STEP_STYLES, clean
from cockpit.session import Session
from cockpit.ui.widgets.base import cockpit_app, plain
from cockpit.ui.widgets.steps import step_view, summary_view

SUMMARY = "summary"
PROGRESS_EVERY_S = 0.05  # a fast scan reports progress per chunk; 20 repaints a second do


@dataclass
class StepUpdated(Message):
    """A copy of one step's result, as the worker left it."""

    result: StepResult


@dataclass
class ChecklistDone(Message):
    """The worker finished a pass over the checklist (the context's figures are final)."""

    summary: list[tuple[str, str]]


@dataclass
class ProfilesLoaded(Message):
    """The profiles for the picker, read (and sized) by a worker."""

    choices: list


class PreflightScreen(Screen):
    CSS_PATH = "../tcss/preflight.tcss"
    BINDINGS = [
        Binding("f", "fix", "fix", tooltip="apply the failed step's fix and re-run it"),
        Binding("e", "rerun", "re-run", tooltip="re-run from the failed step (fixed by hand)"),
        Binding("a", "accept", "accept WARN", tooltip="accept the selected warning"),
        Binding("c", "confirm", "confirm", tooltip="launch the run"),
        Binding("p", "pick", "profile", tooltip="choose another profile"),
    ]

    def __init__(
        self,
        checklist: Checklist,
        ctx: Context,
        launcher: Callable[[Context, list[StepResult]], Session] | None = None,
        *,
        recorded: dict | None = None,
        auto: bool | str = False,
        **kw: Any,
    ) -> None:
        """`recorded`: a saved preflight.json to show instead of running the checklist.
        `auto` (`cockpit run --yes`): accept WARNs and launch once nothing failed, and
        apply a failed step's fix once (`--fix`) when `auto == "fix"`."""
        super().__init__(**kw)
        self.checklist, self.ctx, self.launcher = checklist, ctx, launcher
        self.recorded, self.auto = recorded, auto
        self._auto_fixed = False
        self.profiles_loaded = False
        self._fresh()
        self.accepted: set[str] = set()
        self.running = False
        self.launched = False
        self.summary: list[tuple[str, str]] = []
        self._last_progress = 0.0

    def _fresh(self) -> None:
        self.results = [StepResult(s.id, s.title or s.id) for s in self.checklist.steps]  # worker's
        self.shown = {r.id: copy.deepcopy(r) for r in self.results}  # the screen's copies

    # --- layout ---------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Label(plain(self._title()), id="pf-title")
        with Horizontal(id="pf-body"):
            with Vertical(id="pf-left"):
                yield Select([], prompt="profile", id="pf-profile", allow_blank=True)
                yield Label("", id="pf-profile-desc")
                yield DataTable(id="pf-steps", cursor_type="row", zebra_stripes=False)
                yield ProgressBar(id="pf-progress", show_eta=False)
            with VerticalScroll(id="pf-detail", classes="panel"):
                yield Static(id="pf-detail-body")
        with Horizontal(id="pf-buttons"):
            yield Button("Fix", id="pf-fix", variant="warning")
            yield Button("Re-run", id="pf-rerun")
            yield Button("Accept WARN", id="pf-accept")
            yield Button("Confirm", id="pf-confirm", variant="success")
        yield Footer()

    def _title(self) -> str:
        what = "then launch" if self.launcher else "checks only"
        return f"Pre-flight · {self.checklist.name} · profile {self.ctx.profile.name} · {what}"

    def on_mount(self) -> None:
        t = self.query_one("#pf-steps", DataTable)
        t.add_column(" ", key="icon", width=1)
        t.add_column("step", key="step")
        t.add_column("status", key="status", width=8)
        t.add_column("s", key="s", width=5)
        self._fill_table()
        self.query_one("#pf-progress", ProgressBar).display = False
        self.query_one("#pf-confirm").display = self.launcher is not None
        self._load_profiles()
        if self.recorded is not None:
            self._show_recorded(self.recorded)
        else:
            self._start(0)
        self._refresh_controls()

    def _show_recorded(self, saved: dict) -> None:
        for d in saved["steps"]:
            r = StepResult(d["id"], d["title"], d["status"], d["message"], d["figures"])
            r.findings, r.fixed = d["findings"], d.get("fixed")
            self.shown[r.id] = r
            self.ctx.figures[r.id] = r.figures
            self.post_message(StepUpdated(r))
        self.ctx.sets = list(saved.get("sets", []))
        ok = saved["status"] != "FAIL"
        self.post_message(ChecklistDone(pf.summary_rows(self.ctx) if ok else []))

    def _fill_table(self) -> None:
        t = self.query_one("#pf-steps", DataTable)
        t.clear()
        for r in self.shown.values():
            t.add_row(*self._cells(r), key=r.id)
        t.add_row(" ", Text(SUMMARY, style="bold"), "", "", key=SUMMARY)

    def _cells(self, r: StepResult) -> tuple:
        style = STEP_STYLES.get(r.status, "")
        status = r.status + ("✓" if r.status == "WARN" and r.id in self.accepted else "")
        secs = f"{r.seconds:.1f}" if r.seconds is not None else ""
        icon, name = Text(STEP_ICONS[r.status], style=style), Text(clean(r.id))  # str: markup
        return (icon, name, Text(status, style=style), secs)

    # --- the worker -----------------------------------------------------------------

    def _start(self, start: int, fix_first: bool = False) -> None:
        self.running = True
        self._refresh_controls()
        self._run(start, fix_first)

    @work(thread=True, exclusive=True, exit_on_error=False, group="checklist")
    def _run(self, start: int, fix_first: bool) -> None:
        def update(r: StepResult) -> None:
            now = time.monotonic()
            if (
                r.status == "RUNNING"
                and r.progress
                and now - self._last_progress < PROGRESS_EVERY_S
            ):
                return  # coalesce a fast scan's progress
            self._last_progress = now
            self.post_message(StepUpdated(copy.deepcopy(r)))

        spec, r = self.checklist.steps[start], self.results[start]
        if fix_first:
            fix_and_rerun(spec, self.ctx, r, update)
            if r.status == "FAIL":
                self.post_message(ChecklistDone([]))
                return
            start += 1
        run_checklist(self.checklist, self.ctx, update, results=self.results, start=start)
        ok = overall(self.results) != "FAIL"
        self.post_message(ChecklistDone(pf.summary_rows(self.ctx) if ok else []))

    @work(thread=True, exclusive=True, exit_on_error=False, group="profiles")
    def _load_profiles(self) -> None:
        self.post_message(ProfilesLoaded(pf.profile_choices()))

    @on(StepUpdated)
    def _step_updated(self, m: StepUpdated) -> None:
        r = m.result
        self.shown[r.id] = r
        t = self.query_one("#pf-steps", DataTable)
        for col, cell in zip(("icon", "step", "status", "s"), self._cells(r), strict=True):
            t.update_cell(r.id, col, cell)
        bar = self.query_one("#pf-progress", ProgressBar)
        bar.display = r.status == "RUNNING"
        if r.status == "RUNNING":
            done, total = r.progress or (0, None)
            bar.update(total=total, progress=done)
            t.move_cursor(row=t.get_row_index(r.id))
        elif r.status == "FAIL":
            t.move_cursor(row=t.get_row_index(r.id))
        self._show_detail()

    @on(ChecklistDone)
    def _done(self, m: ChecklistDone) -> None:
        self.running = False
        self.summary = m.summary
        self.query_one("#pf-progress", ProgressBar).display = False
        if m.summary and not self._first("FAIL"):
            t = self.query_one("#pf-steps", DataTable)
            t.move_cursor(row=t.get_row_index(SUMMARY))
        self._refresh_controls()
        self._show_detail()
        if self.auto and self.recorded is None:
            self._go_on_alone()

    def _go_on_alone(self) -> None:
        """--yes: nobody is asked. A FAIL stays on screen (after one fix with --fix)."""
        if self._first("FAIL"):
            if self.auto == "fix" and not self._auto_fixed and self._can("fix"):
                self._auto_fixed = True
                self.action_fix()
            return
        self.accepted |= {r.id for r in self.shown.values() if r.status == "WARN"}
        self.action_confirm()

    @on(ProfilesLoaded)
    def _profiles(self, m: ProfilesLoaded) -> None:
        sel = self.query_one("#pf-profile", Select)
        opts = []
        self.choices = {c.ref: c for c in m.choices}
        for c in m.choices:
            size = f"{c.params / 1e6:,.1f}M" if c.params else "?"
            opts.append((f"{c.name} · {size} · {c.budget}", c.ref))
        with self.prevent(Select.Changed):
            sel.set_options(opts)
            refs = [c.ref for c in m.choices]
            if self.ctx.profile_ref in refs:
                sel.value = self.ctx.profile_ref
        self._describe()
        self.profiles_loaded = True

    def _describe(self) -> None:
        c = getattr(self, "choices", {}).get(self.ctx.profile_ref)
        self.query_one("#pf-profile-desc", Label).update(plain(c.description if c else ""))

    @on(Select.Changed, "#pf-profile")
    def _profile_changed(self, m: Select.Changed) -> None:
        if m.value in (Select.BLANK, self.ctx.profile_ref) or self.running or self.launched:
            return
        try:
            self.checklist, self.ctx = pf.prepare(str(m.value), [], logs=self.ctx.logs)
        except pf.ProfileError as e:
            self.notify(clean(str(e)), severity="error", timeout=10, markup=False)
            return
        self._fresh()
        self.accepted.clear()
        self.summary = []
        self.query_one("#pf-title", Label).update(plain(self._title()))
        self._describe()
        self._fill_table()
        self._start(0)

    # --- the detail pane -------------------------------------------------------------

    @on(DataTable.RowHighlighted, "#pf-steps")
    def _highlighted(self, m: DataTable.RowHighlighted) -> None:
        self._show_detail()
        self._refresh_controls()

    def _selected(self) -> str | None:
        t = self.query_one("#pf-steps", DataTable)
        if t.row_count == 0:
            return None
        return t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value

    def _show_detail(self) -> None:
        body = self.query_one("#pf-detail-body", Static)
        sid = self._selected()
        if sid == SUMMARY:
            if self.running:
                body.update(Text("the checklist is still running…", style="dim"))
                return
            failed = self._first("FAIL")
            warn = [
                r.id
                for r in self.shown.values()
                if r.status == "WARN" and r.id not in self.accepted
            ]
            body.update(
                summary_view(
                    self.summary,
                    list(self.shown.values()),
                    failed,
                    warn,
                    self.launcher is not None,
                )
            )
            return
        r = self.shown.get(sid or "")
        if r is not None:
            spec = next(s for s in self.checklist.steps if s.id == r.id)
            body.update(step_view(r, spec.fix))

    # --- actions --------------------------------------------------------------------

    def _first(self, status: str) -> str | None:
        return next((r.id for r in self.shown.values() if r.status == status), None)

    def _index(self, sid: str) -> int:
        return [s.id for s in self.checklist.steps].index(sid)

    def _can(self, action: str) -> bool:
        if self.running or self.launched:
            return False
        failed, sel = self._first("FAIL"), self._selected()
        if action == "fix":
            if failed is None:
                return False

            kind = all_kinds().get(self.checklist.steps[self._index(failed)].check or "")
            return kind is not None and kind.fixer is not None
        if action == "rerun":
            return failed is not None
        if action == "accept":
            r = self.shown.get(sel or "")
            return r is not None and r.status == "WARN" and r.id not in self.accepted
        if action == "confirm":
            if self.launcher is None or failed is not None or not self.summary:
                return False
            return all(r.id in self.accepted for r in self.shown.values() if r.status == "WARN")
        return True

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action in ("fix", "rerun", "accept", "confirm"):
            return self._can(action)
        if action == "pick":
            return not self.running and not self.launched
        return True

    def _refresh_controls(self) -> None:
        for action in ("fix", "rerun", "accept", "confirm"):
            self.query_one(f"#pf-{action}", Button).disabled = not self._can(action)
        self.refresh_bindings()

    @on(Button.Pressed)
    async def _pressed(self, m: Button.Pressed) -> None:
        await self.run_action((m.button.id or "").removeprefix("pf-"))

    def action_fix(self) -> None:
        if self._can("fix"):
            failed = self._first("FAIL")
            assert failed is not None  # _can('fix') says one failed
            self._start(self._index(failed), fix_first=True)

    def action_rerun(self) -> None:
        if self._can("rerun"):
            failed = self._first("FAIL")
            assert failed is not None  # _can('rerun') says one failed
            self._start(self._index(failed))

    def action_accept(self) -> None:
        if self._can("accept"):
            sid = self._selected()
            assert sid is not None  # _can('accept') says a WARN is selected
            self.accepted.add(sid)
            self.query_one("#pf-steps", DataTable).update_cell(
                sid, "status", self._cells(self.shown[sid])[2]
            )
            self._refresh_controls()
            self._show_detail()

    def action_pick(self) -> None:
        self.query_one("#pf-profile", Select).focus()
        self.query_one("#pf-profile", Select).expanded = True

    def action_confirm(self) -> None:
        if not self._can("confirm"):
            return
        self.launched = True
        self._refresh_controls()
        assert self.launcher is not None  # _can('confirm') says there is one
        session = self.launcher(self.ctx, self.results)
        cockpit_app(self).attach(session)

    @property
    def status(self) -> str:
        """PASS/WARN/FAIL of what has run (what `cockpit preflight` exits with)."""
        return overall(list(self.shown.values()))
