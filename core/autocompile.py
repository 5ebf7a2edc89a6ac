"""train.compile: auto — compile when the run is long enough to repay the compile.

The core cannot know before it starts how fast eager steps are on this machine, so
it measures: the first WARM steps are dropped (allocator, caches), the next MEASURE
are timed eager. Then, with `left` steps to go at `eager_s` each, compiling pays when

    left * eager_s * GAIN > compile_s(model)

GAIN and compile_s are this machine's kind of figures (CPU, torch 2.13, measured
with bench/train_throughput.py and the demo/bench shapes: see the constants). After
compiling, MEASURE compiled steps are timed too; if they are not faster than eager
the run goes back to eager (the compile time is spent either way; a slower compiled
step would cost more over a long run). Every decision is returned as a sentence for
an `alert` (level info) and a dict for run.yaml."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

WARM = 2  # eager steps dropped before timing
MEASURE = 3  # steps timed for each of eager and compiled
# Measured on a shared 2-core CPU box, torch 2.13, fp32 (python /tmp script timing eager
# steps, torch.compile's first step and compiled steps of the core's model): the bench
# shape (4L/256d, context 256, batch 16) 16.3 s eager -> 10.9 s compiled a step, compile
# 177 s; the demo shape (2L/128d, context 32, batch 64) 3.52 -> 3.47 s, compile 325 s.
# Both under a load average of 9-12 (each figure several times an idle box's). The
# saving varies by shape (1% to 33%): GAIN is the idle-box figure at the bench
# shape (0.98x -> 1.05x a plain loop), and a compiled model that is not faster is dropped.
GAIN = 0.07  # share of a step's time torch.compile saves
COMPILE_S_BASE = 40.0  # seconds to compile forward + backward on an idle CPU: a base ...
COMPILE_S_PER_LAYER = 5.0  # ... plus a share per transformer block


def compile_cost_s(n_layer: int) -> float:
    """Estimated seconds torch.compile (inductor) takes for this model's first step."""
    return COMPILE_S_BASE + COMPILE_S_PER_LAYER * n_layer


@dataclass
class AutoCompile:
    total_steps: int
    n_layer: int
    state: str = "measuring"  # measuring -> compiled-measuring -> compiled | eager
    eager: list[float] = field(default_factory=list)
    compiled: list[float] = field(default_factory=list)
    seen: int = 0
    record: dict = field(default_factory=dict)

    def after_step(self, step: int, step_s: float) -> str | None:
        """Feed each step's time (step = steps done). Returns "compile", "eager",
        "keep" or "revert" when a decision falls due on this step, else None.
        The decision points depend on step counts only, so every rank reaches
        them together (rank 0's verdict is then shared)."""
        self.seen += 1
        if self.state == "measuring":
            if self.seen > WARM:
                self.eager.append(step_s)
            if len(self.eager) < MEASURE:
                return None
            eager_s = statistics.median(self.eager)
            left = self.total_steps - step
            cost = compile_cost_s(self.n_layer)
            saves = left * eager_s * GAIN
            self.record = {
                "mode": "auto",
                "eager_step_s": round(eager_s, 4),
                "steps_left": left,
                "est_compile_s": round(cost, 1),
                "est_saving_s": round(saves, 1),
            }
            if saves > cost:
                self.state = "compiled-measuring"
                self.record["decision"] = "compile"
                return "compile"
            self.state = "eager"
            self.record["decision"] = "eager"
            return "eager"
        if self.state == "compiled-measuring":
            self.compiled.append(step_s)
            if len(self.compiled) < MEASURE + 1:  # the first compiled step holds the compile
                return None
            first, rest = self.compiled[0], self.compiled[1:]
            comp_s = statistics.median(rest)
            self.record["compiled_step_s"] = round(comp_s, 4)
            self.record["compile_s"] = round(max(0.0, first - comp_s), 1)
            if comp_s < statistics.median(self.eager):
                self.state = "compiled"
                self.record["decision"] = "compile (kept: faster)"
                return "keep"
            self.state = "eager"
            self.record["decision"] = "compiled, then back to eager (not faster)"
            return "revert"
        return None

    def message(self) -> str:
        r = self.record
        what = {
            "compile": "compiling",
            "eager": "staying eager",
        }.get(r.get("decision", ""), r.get("decision", ""))
        line = (
            f"train.compile auto: {what}: eager step {r['eager_step_s'] * 1000:.0f} ms x "
            f"{r['steps_left']} steps left x {GAIN:.0%} saving = {r['est_saving_s']:.0f} s "
            f"against ~{r['est_compile_s']:.0f} s to compile"
        )
        if "compiled_step_s" in r:
            line += (
                f"; compiled step {r['compiled_step_s'] * 1000:.0f} ms, "
                f"compile took {r['compile_s']:.0f} s"
            )
        return line
