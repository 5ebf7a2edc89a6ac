"""How long a checkpoint pauses training: one file, sharded (DCP) sync, and DCP async.

    python bench/checkpoint_async.py [--profile small-20m] [--saves 3] [--dir DIR]

The profile's model and AdamW (one step taken, so the optimizer holds its state:
about 3x the parameters' bytes), saved --saves times each way through the core's
own savers, as a run saves them (sidecar, `latest`, retention included):

    file    core.checkpoint.save: torch.save of the whole state, then hash
    dcp     core.dcp.ShardedSaver, sync: dcp.save, then hash every shard
    async   core.dcp.ShardedSaver, async: dcp.async_save; training steps go on
            while the files are written (counted), the next save waits for it

It prints, per way, the median (and the least, the better figure on a busy
machine) of `blocked_s` (what the checkpoint event reports: how long the
training loop was held) and of `seconds` (until the checkpoint was complete and
`latest` named it), and for async the training steps taken while the files were
being written. One process on the CPU; on a GPU the async staging
copy goes into pinned memory.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from core import checkpoint as C  # noqa: E402
from core.config import load_profile  # noqa: E402
from core.dcp import ShardedSaver  # noqa: E402
from core.model import GPT, GPTConfig  # noqa: E402
from core.runtime import Dist  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="small-20m")
    ap.add_argument("--saves", type=int, default=3)
    ap.add_argument("--dir", help="where to write (default a temporary folder)")
    args = ap.parse_args()
    p = load_profile(args.profile)
    m = p.model
    cfg = GPTConfig(p.tokenizer.vocab_size, p.data.context, m.n_layer, m.n_head, m.n_embd)
    torch.manual_seed(0)
    model = GPT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = torch.randint(0, cfg.vocab_size, (2, 65))
    seq = min(64, cfg.context)

    def step() -> None:
        loss = model(batch[:, :seq], batch[:, 1 : seq + 1])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    state_mib = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    state_mib += sum(
        v.numel() * v.element_size()
        for s in opt.state.values()
        for v in s.values()
        if isinstance(v, torch.Tensor)
    )
    state_mib /= 2**20
    t0 = time.perf_counter()
    for _ in range(3):
        step()
    step_s = (time.perf_counter() - t0) / 3
    print(
        f"{args.profile}: {model.n_params() / 1e6:.1f}M parameters, model + AdamW state "
        f"{state_mib:.0f} MiB; a training step here (batch 2 x {seq}) takes {step_s:.2f}s; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="ckpt-bench-"))
    rows = []
    try:
        for way in ("file", "dcp", "async"):
            d = root / way
            blocked, seconds, during = [], [], []
            saver = ShardedSaver(d, Dist(), torch.device("cpu"), way == "async")
            for i in range(args.saves):
                meta = dict(step=i + 1, epoch=0, tokens=0, val_loss=None, tags=["latest"])
                meta |= dict(config_hash="c", tokenizer_hash="t")
                trainer = {"step": i + 1, "config_hash": "c", "tokenizer_hash": "t"}
                got: list[C.Saved] = []
                if way == "file":
                    state = {"model": model.state_dict(), "optimizer": opt.state_dict()}
                    got.append(C.save(d, state | trainer, meta))
                else:
                    saver.save(model, opt, trainer, meta, got.append)
                n = 0
                while saver.in_flight():  # training goes on while the files are written
                    step()
                    n += 1
                saver.wait()
                C.retain(d, keep_last=2)
                s = got[0]
                blocked.append(s.seconds if s.blocked_s is None else s.blocked_s)
                seconds.append(s.seconds)
                during.append(n)
            saver.close()
            rows.append((way, blocked, seconds, during))
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    print(
        f"\n{'way':<6} {'blocked_s':>10} {'(min)':>7} {'seconds':>9} {'(min)':>7}"
        "  training steps while writing"
    )
    for way, b, s, during in rows:
        figures = f"{statistics.median(b):>10.3f} {min(b):>7.3f} {statistics.median(s):>9.3f}"
        steps = ", ".join(map(str, during)) if way == "async" else "-"
        print(f"{way:<6} {figures} {min(s):>7.3f}  {steps}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
