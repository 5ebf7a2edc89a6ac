"""The core under torchrun: the command `cockpit run --nproc-per-node N` runs
(no launcher of our own).

Signals under torchrun: SIGINT/SIGTERM go to torchrun (it forwards them to every
rank, which finish the step together, save and exit 130/143; torchrun itself
then exits 1). SIGUSR1 (save) and SIGUSR2 (stacks) must go to the rank
processes (cockpit.ranks.running_pids): torchrun does not handle them, and
their default action would kill it and orphan the ranks. Each rank runs in a
session of its own, so a kill must reach the ranks by pid, not by torchrun's
process group.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from pathlib import Path

from cockpit.supervisor import trainer_command

SHUTDOWN_TIMEOUT_S = 300  # how long torchrun lets the ranks save after SIGINT before SIGKILL


@functools.lru_cache(maxsize=1)
def _torchrun_has(option: str) -> bool:
    """Whether the installed torchrun takes `option` (read from its source: no torch import)."""
    try:
        spec = importlib.util.find_spec("torch")
        src = Path(spec.origin).parent / "distributed" / "run.py"
        return f'"{option}"' in src.read_text(encoding="utf-8", errors="replace")
    except (AttributeError, TypeError, OSError, ValueError):
        return False


def torchrun_command(
    profile: str,
    run_dir: Path,
    sets: list[str],
    nproc_per_node: int,
    nnodes: int = 1,
    extra: Sequence[str] = (),
) -> list[str]:
    """The core under torchrun: `python -m torch.distributed.run ... -m core.train ...`.

    One node: `--standalone` (a free local port). Several: pass the rendezvous in
    `extra` (`--rdzv-endpoint=HOST:PORT --rdzv-id=ID`, or `--node-rank` with
    `--master-addr`) and run the same command on every node. Each rank's output
    reaches stdout.log with a `[rankN]:` prefix (N: the local rank, the global one
    on a single node) and is kept whole under run_dir/torchrun/."""
    run_dir = Path(run_dir)
    cmd = trainer_command(profile, run_dir, sets)
    tr = [cmd[0], "-m", "torch.distributed.run"]
    if nnodes == 1 and not any(str(a).startswith(("--rdzv", "--master")) for a in extra):
        tr.append("--standalone")
    tr += [f"--nnodes={nnodes}", f"--nproc-per-node={nproc_per_node}"]
    tr += ["--role=rank", "--tee=3", f"--log-dir={run_dir / 'torchrun'}"]
    if _torchrun_has("--shutdown-timeout"):
        tr.append(f"--shutdown-timeout={SHUTDOWN_TIMEOUT_S}")  # rank 0's save after a stop
    return tr + [str(a) for a in extra] + cmd[1:]
