"""Panels about the machine and the trainer's processes: threads, memory, GPU."""

from __future__ import annotations

import textwrap

from cockpit.fmt import fmt_mib, fmt_mib_short, fmt_num, fmt_pct, fmt_sig
from cockpit.model.health import HealthConfig
from cockpit.model.view import CurveView, RunView
from cockpit.ui.widgets.base import ACCENT, ERROR, GAP, MUTED, OK, PRIMARY, WARN, Lines, Panel
from cockpit.ui.widgets.chart import spark


def unsampled(v: RunView) -> str:
    """What a panel says before it has a sample: a run that ended with none recorded
    (no cockpit watched it live) will never have one; a live run soon will."""
    if v.ended and v.proc is None:
        return "no samples recorded: no cockpit watched this run live"
    return "not sampled yet"


class ThreadsPanel(Panel):
    """Thread count with history, and the trainer's threads (workers' too) by CPU%."""

    TITLE = "Threads"
    MIN_INTERVAL_S = 2.0  # samples come each second; a repaint every other one is plenty

    def key(self, v: RunView) -> object:
        return (id(v.proc), id(v.proc_threads), self.size)

    def draw(self, v: RunView, out: Lines) -> None:
        if v.proc is None:
            out.line((unsampled(v), MUTED))
            return
        proc = v.proc
        n = proc.get("num_threads") if proc.get("alive") else None
        w = max(0, out.width - 34)
        out.line(
            ("threads ", MUTED),
            (f"{n if n is not None else '–':>4}", "bold"),
            ("  cpu ", MUTED),
            (f"{fmt_pct(proc.get('cpu_pct')) if proc.get('alive') else '–':>5}", "bold"),
            (f"  procs {len(proc.get('procs') or []):<3} ", MUTED),
            (spark(v.curve("num_threads").recent(w), w), ACCENT),
        )
        if proc and not proc.get("alive"):
            out.line((f"trainer not running ({proc.get('error') or proc.get('status')})", MUTED))
        src = v.proc_threads or {}
        procs = src.get("procs") or []
        rows = []
        for k, p in enumerate(procs):
            who = "main" if k == 0 else f"w{k}"
            for th in p.get("threads") or []:
                rows.append((th.get("cpu_pct"), who, th.get("tid"), th.get("name") or "?"))
        if not rows:
            if not out.full and proc.get("alive"):
                out.line(("no thread list yet", MUTED))
            return
        rows.sort(key=lambda r: -1.0 if r[0] is None else r[0], reverse=True)
        out.line((f"{'cpu%':>6} {'proc':<5}{'tid':>8}  name", MUTED))
        shown = rows[: max(0, (out.left or 0) - (1 if len(rows) > (out.left or 0) else 0))]
        for cpu, who, tid, name in shown:
            busy = isinstance(cpu, int | float) and cpu >= 90
            out.line(
                (f"{fmt_num(cpu, '.0f'):>6} ", "bold " + WARN if busy else "bold"),
                (f"{who:<5}", MUTED),
                f"{tid:>8}  {name}",
            )
        if len(rows) > len(shown):
            out.line((f"… {len(rows) - len(shown)} more", MUTED))


class MemoryPanel(Panel):
    """RSS/USS with history and the leak trend, system RAM and swap."""

    TITLE = "Memory"
    MIN_INTERVAL_S = 2.0  # samples come each second; a repaint every other one is plenty

    def key(self, v: RunView) -> object:
        return (id(v.proc), id(v.system), self.size)

    def draw(self, v: RunView, out: Lines) -> None:
        if v.proc is None and v.system is None:
            out.line((unsampled(v), MUTED))
            return
        f, proc, sysd = v.figures, v.proc or {}, v.system or {}
        w = max(0, out.width - 22)
        uss = proc.get("uss_mib") if proc.get("alive") else None
        out.kv(
            "RSS",
            5,
            (fmt_mib(f.rss_mib).rjust(10) + GAP, "bold"),
            (spark(v.curve("rss_mib").recent(w), w), ACCENT),
        )
        out.kv(
            "USS", 5, fmt_mib(uss).rjust(10) + GAP, (spark(v.curve("uss_mib").recent(w), w), MUTED)
        )
        trend = v.leak_mib_per_1k_steps
        if trend is not None:
            out.kv("trend", 5, (f"{trend:+.1f} MiB/1k steps", WARN if trend > 10 else ""))
        elif v.curve("rss_mib").n:
            # the memory_leak check's own warm-up: start-up growth is not a trend
            mins = HealthConfig().leak_min_span_s / 60
            out.kv("trend", 5, (f"warming up ({mins:.0f} min of samples)", MUTED))
        if sysd:
            ram = f"{fmt_mib(sysd.get('ram_used_mib'))}/{fmt_mib(sysd.get('ram_total_mib'))}"
            swap = f"{fmt_mib(sysd.get('swap_used_mib'))}/{fmt_mib(sysd.get('swap_total_mib'))}"
            out.kv(
                "RAM", 5, f"{ram} ({fmt_pct(sysd.get('ram_pct'))})" + GAP, ("swap ", MUTED), swap
            )


class GpuPanel(Panel):
    """Per device: utilisation, memory, temperature, power, with history; the trainer's
    GPU memory. A machine without a GPU says so plainly (it is not an error)."""

    TITLE = "GPU"
    MIN_INTERVAL_S = 2.0  # samples come each second; a repaint every other one is plenty

    def key(self, v: RunView) -> object:
        return (id(v.gpu), self.size)

    def draw(self, v: RunView, out: Lines) -> None:
        g = v.gpu
        if g is None:
            out.line((unsampled(v), MUTED))
            return
        if not g.get("available"):
            out.line(("no GPU", "bold " + PRIMARY), (f": {g.get('reason') or 'none found'}", MUTED))
            out.line(("training runs on the CPU; nothing to show here", MUTED))
            return
        devs = g.get("devices") or []
        compact = (out.left or 0) < 3 * len(devs)
        w = max(0, (out.width - 34) // (1 if compact else 2))
        for d in devs:
            i = d.get("index")
            hist = v.gpu_dev.get(i, {})

            def sp(k: str, hist: dict[str, CurveView] = hist) -> str:
                c = hist.get(k)
                return spark(c.recent(w), w) if c is not None else ""

            used, total = d.get("mem_used_mib"), d.get("mem_total_mib")
            mem = f"{fmt_mib(used)}/{fmt_mib(total)}"
            temp = f"{d['temp_c']:.0f}°C" if isinstance(d.get("temp_c"), int | float) else "–"
            power = f"{fmt_sig(d.get('power_w'), 3)}/{fmt_sig(d.get('power_limit_w'), 3)} W"
            util = d.get("util_pct")
            ustyle = "bold " + (OK if isinstance(util, int | float) and util >= 50 else WARN)
            if compact:
                out.line(
                    (f"GPU{i} ", "bold"),
                    (f"{fmt_pct(util):>4} ", ustyle),
                    (sp("util_pct") + " ", ACCENT),
                    f"{mem} {temp} {power}",
                )
                continue
            mine = d.get("proc_mem_mib")
            out.line(
                (f"GPU{i} ", "bold"),
                ((d.get("name") or "?") + GAP, MUTED),
                ("trainer ", MUTED),
                fmt_mib(mine) if isinstance(mine, int | float) else "–",
                (f"  throttle: {', '.join(d['throttle'])}" if d.get("throttle") else "", ERROR),
            )
            out.line(
                ("  util ", MUTED),
                (f"{fmt_pct(util):>4} ", ustyle),
                (sp("util_pct"), ACCENT),
                ("  mem ", MUTED),
                f"{mem} ",
                (sp("mem_used_mib"), ACCENT),
            )
            out.line(
                ("  temp ", MUTED),
                f"{temp:>5} ",
                (sp("temp_c"), ACCENT),
                ("  power ", MUTED),
                f"{power} ",
                (sp("power_w"), ACCENT),
            )


class RanksPanel(Panel):
    """Under torchrun: a row per rank (its step, median step and forward times over
    the recent steps, memory, state), straggler and failed ranks marked and, when
    the panel is short, listed first; below, how the first rank failed and what
    makes the straggler one. Narrow,
    a row has the compared time, memory and state only. Shown in place of another
    panel only when the run has rank files (cockpit.collect.ranks)."""

    TITLE = "Ranks"
    MIN_INTERVAL_S = 2.0  # rank files are read once a second
    WIDE = 50  # columns for the full table

    def key(self, v: RunView) -> object:
        return (v.ranks.t if v.ranks is not None else None, self.size)  # a new read, a new t

    def draw(self, v: RunView, out: Lines) -> None:
        snap = v.ranks
        if snap is None or not snap.ranks:
            out.line((snap.error if snap is not None and snap.error else "no rank files", MUTED))
            return
        slow = {s.rank: s for s in snap.stragglers}
        failed = {f.rank: f for f in snap.failures}
        rows = list(snap.ranks)
        room = (out.left or len(rows) + 1) - 1
        if len(rows) > room:  # the ranks in trouble first, then by rank
            rows.sort(key=lambda r: (r.rank not in failed, r.rank not in slow, r.rank))
            rows = sorted(rows[: max(0, room - 1)], key=lambda r: r.rank)
        wide = out.width >= self.WIDE
        mem = "cuda peak" if any(r.mem_kind == "cuda_max_alloc" for r in snap.ranks) else "rss"
        key = snap.stragglers[0].key if snap.stragglers else "fwd_ms"
        if not any(r.median_fwd_ms is not None for r in snap.ranks):
            key = "step_ms"
        if wide:
            out.line(
                (f"{'rank':<5}{'step':>7} {'step ms':>7} {'fwd ms':>6} {mem:>9}  state", MUTED)
            )
        else:
            mem = "peak" if mem == "cuda peak" else mem
            out.line((f"{'rank':<4}{key.replace('_', ' '):>7} {mem:>6} state", MUTED))
        for r in rows:
            if r.rank in failed:
                f = failed[r.rank]
                code = f" {f.exit_code}" if f.exit_code is not None else ""
                state = (f"failed{code}", "bold " + ERROR)
            elif r.rank in slow:
                state = ("straggler", "bold " + WARN)
            else:
                state = (r.status, OK if r.status == "running" else MUTED)
            med = r.median_fwd_ms if key == "fwd_ms" else r.median_step_ms
            if wide:
                figs = (
                    f"{r.step:>7} {fmt_num(r.median_step_ms, '.0f'):>7} "
                    f"{fmt_num(r.median_fwd_ms, '.0f'):>6} {fmt_mib(r.mem_mib):>9}  "
                )
            else:
                figs = f"{fmt_num(med, '.0f'):>7} {fmt_mib_short(r.mem_mib):>6} "
            out.line((f"r{r.rank:<4}" if wide else f"r{r.rank:<3}", "bold"), figs, state)
        if len(rows) < len(snap.ranks):
            out.line((f"… {len(snap.ranks) - len(rows)} more ranks", MUTED))
        for f in snap.failures[:1]:  # torchrun's root cause comes first
            for part in textwrap.wrap(
                f.reason + (" (a: its log)" if f.log else ""), max(8, out.width)
            ):
                out.line((part, ERROR))
        for s in [s for s in snap.stragglers if s.rank not in failed][:1]:
            out.line(
                (f"r{s.rank}: ", "bold " + WARN),
                f"{s.key[:-3]} {s.median_ms:.0f} ms vs {s.others_ms:.0f} ms on the others ",
                (f"({s.ratio:.2f}x)", "bold " + WARN),
            )
