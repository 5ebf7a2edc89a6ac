"""The cockpit's per-rank tick at 64-1024 simulated ranks.

    python bench/ranks_scale.py [--ranks 64,256,1024] [--ticks 10] [--per-node 8]

Each simulated rank is a real core.ranklog.RankLog (the writer the core uses), 8 to a
node (GROUP_RANK), stepping at 2 steps/s with a 1 s flush; between two ticks every
rank takes 2 steps and flushes. A tick is what the session does once a second under
torchrun: RankReader.sample (read what was appended, judge stragglers and failures)
plus running_pids. Printed: the median and worst tick in ms, reading the node files
(what a run writes now) and reading the rank files alone (what the reader does for
a run without node files, as every run before them). The first node's ranks say
they run on this machine and the others on other hosts, as on a real cluster: the
cockpit checks the pids of this machine's ranks only.
"""

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import core.ranklog  # noqa: E402
from cockpit.collect.ranks import RankReader, running_pids  # noqa: E402
from core.ranklog import RankLog  # noqa: E402

HERE = core.ranklog.socket.gethostname()


class _Host:
    """What a simulated rank takes for its host: node 0 is this machine, the others
    are elsewhere (the cockpit checks the pids of this machine's ranks only)."""

    name = HERE

    @classmethod
    def gethostname(cls) -> str:
        return cls.name


class _Clock:
    """The writers' clock, one simulated second a tick: each RankLog flushes when its
    own policy says (once a second, every world/256 s past 256 ranks, spread by rank)."""

    now = 1000.0

    @classmethod
    def monotonic(cls) -> float:
        return cls.now

    @classmethod
    def time(cls) -> float:
        return 1.7e9 + cls.now


core.ranklog.socket = _Host  # type: ignore[assignment]
core.ranklog.time = _Clock  # type: ignore[assignment]


def simulate(n: int, per_node: int, ticks: int, node_files: bool) -> list[float]:
    run = Path(tempfile.mkdtemp(prefix="ranks-scale-")) / "run"
    logs = []
    for r in range(n):
        os.environ["GROUP_RANK"] = str(r // per_node)
        _Host.name = HERE if r < per_node else f"node-{r // per_node}"
        logs.append(RankLog(run, r, r % per_node, n, "cpu"))
    if not node_files:
        for p in (run / "ranks").glob("node-*.jsonl"):
            p.unlink()
    reader = RankReader(run)
    out, step = [], 0
    for _ in range(ticks + 8):
        for _ in range(2):  # 2 steps/s a rank
            step += 1
            _Clock.now += 0.5
            for r, lg in enumerate(logs):
                lg.step(step, 500.0 + r % 7, 200.0 + r % 5)
        if not node_files:
            for p in (run / "ranks").glob("node-*.jsonl"):
                p.unlink()
        t0 = time.perf_counter()
        snap = reader.sample("")
        running_pids(reader.states)
        out.append((time.perf_counter() - t0) * 1000)
        assert len(snap.ranks) == n and snap.error is None, snap.error
    for lg in logs:
        lg.close(step, "completed", 0)
    return out[8:]  # the first ticks read the start lines and fill the windows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", default="64,256,1024")
    ap.add_argument("--ticks", type=int, default=10)
    ap.add_argument("--per-node", type=int, default=8)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 1 << 16), hard))  # 2 files a rank
    print(
        f"{'ranks':>6}  {'node files: median / worst ms':>30}  {'rank files: median / worst ms':>30}"
    )
    for n in (int(x) for x in a.ranks.split(",")):
        node = simulate(n, a.per_node, a.ticks, True)
        rank = simulate(n, a.per_node, a.ticks, False)
        print(
            f"{n:>6}  {statistics.median(node):>19.1f} / {max(node):>7.1f}"
            f"  {statistics.median(rank):>19.1f} / {max(rank):>7.1f}"
        )


if __name__ == "__main__":
    main()
