"""Panels about the machine and the trainer's processes: threads, memory, GPU."""

from __future__ import annotations

from cockpit.headless import fmt_num
from cockpit.view import RunView
from cockpit.widgets.base import ACCENT, ERROR, MUTED, OK, PRIMARY, WARN, Lines, Panel
from cockpit.widgets.chart import fmt_mib, fmt_sig, spark


def _mib(x) -> str:
    return f"{fmt_num(x, '.0f')} MiB" if x is not None else "–"


def _pct(x) -> str:
    return f"{x:.0f}%" if isinstance(x, int | float) else "–"


class ThreadsPanel(Panel):
    """Thread count with history, and the trainer's threads (workers' too) by CPU%."""

    TITLE = "Threads"
    MIN_INTERVAL_S = 2.0  # samples come each second; a repaint every other one is plenty

    def key(self, v: RunView) -> object:
        return (id(v.proc), id(v.proc_threads), self.size)

    def draw(self, v: RunView, out: Lines) -> None:
        proc = v.proc or {}
        n = proc.get("num_threads") if proc.get("alive") else None
        w = max(0, out.width - 34)
        out.line(
            ("threads ", MUTED),
            (f"{n if n is not None else '–':>4}", "bold"),
            ("  cpu ", MUTED),
            (f"{_pct(proc.get('cpu_pct')) if proc.get('alive') else '–':>5}", "bold"),
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
        f, proc, sysd = v.figures, v.proc or {}, v.system or {}
        w = max(0, out.width - 20)
        uss = proc.get("uss_mib") if proc.get("alive") else None
        rss = f.get("rss_mib")
        out.line(
            (f"{'RSS':<5}", MUTED),
            (_mib(rss).rjust(13) + "  ", "bold"),
            (spark(v.curve("rss_mib").recent(w), w), ACCENT),
        )
        out.line(
            (f"{'USS':<5}", MUTED),
            (_mib(uss).rjust(13) + "  ", ""),
            (spark(v.curve("uss_mib").recent(w), w), MUTED),
        )
        trend = v.leak_mib_per_1k_steps
        style = WARN if trend is not None and trend > 10 else ""
        out.line(
            ("trend ", MUTED),
            (f"{trend:+.1f} MiB/1k steps" if trend is not None else "–", style),
        )
        if sysd:
            ram = f"{fmt_mib(sysd.get('ram_used_mib'))}/{fmt_mib(sysd.get('ram_total_mib'))}"
            out.line(
                ("RAM   ", MUTED),
                f"{ram} ({_pct(sysd.get('ram_pct'))})",
                ("  swap ", MUTED),
                f"{fmt_mib(sysd.get('swap_used_mib'))}/{fmt_mib(sysd.get('swap_total_mib'))}",
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
            out.line(("not sampled yet", MUTED))
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

            def sp(k: str, hist=hist) -> str:
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
                    (f"{_pct(util):>4} ", ustyle),
                    (sp("util_pct") + " ", ACCENT),
                    f"{mem} {temp} {power}",
                )
                continue
            mine = d.get("proc_mem_mib")
            out.line(
                (f"GPU{i} ", "bold"),
                (d.get("name") or "?", MUTED),
                ("  trainer ", MUTED),
                fmt_mib(mine) if isinstance(mine, int | float) else "–",
                (f"  throttle: {', '.join(d['throttle'])}" if d.get("throttle") else "", ERROR),
            )
            out.line(
                ("  util ", MUTED),
                (f"{_pct(util):>4} ", ustyle),
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
