"""The training engine: python -m core.train --profile P [--run-dir D] [--resume auto|PATH] [--set k=v ...]

Writes logs/<run-id>/ as DESIGN.md says: run.yaml, events.jsonl,
checkpoints/, result.json, report.md, stacks/ on SIGUSR2.
Exit codes: 0 completed / gate passed / early stopped, 1 diverged or failed,
2 bad profile or data, 130 SIGINT, 143 SIGTERM.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import traceback
from contextlib import nullcontext

import torch
import torch.distributed
import yaml

from core import events as E
from core.config import Profile, ProfileError, config_hash, load_profile, to_dict
from core.data import load_data
from core.errors import DataError
from core.evaluate import autocast, evaluate, record_eval
from core.model import GPT, GPTConfig, param_groups
from core.ranklog import FwdTimer, rank_log
from core.report import write_report, write_result
from core.runstate import (
    RunProgress,
    carry_position,
    load_resume,
    resolve_run_dir,
    resume_from,
    save_checkpoint,
)
from core.runtime import (
    HeartbeatThread,
    Signals,
    agree,
    end_dist,
    environment,
    local_rank_first,
    peak_flops,
    pick_dtype,
    setup_dist,
    share,
    wrap_ddp,
)

# -----------------------------------------------------------------------------
# arguments and the run directory


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m core.train", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--profile", default="demo-walks", help="profile name (profiles/NAME.yaml) or path"
    )
    ap.add_argument("--run-dir", help="run directory (default logs/<YYYYmmdd-HHMMSS>-<profile>)")
    ap.add_argument(
        "--resume", help="auto (newest checkpoint that verifies) or a checkpoint/run-dir path"
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a profile key (YAML value)",
    )
    return ap.parse_args(argv)


def lr_at(step: int, total: int, p: Profile) -> float:
    """Linear warmup to lr, then cosine down to min_lr (step counts from 0)."""
    t = p.train
    warm = int(t.warmup_frac * total)
    if step < warm:
        return t.lr * (step + 1) / warm
    frac = (step - warm) / max(1, total - warm)
    return t.min_lr + 0.5 * (t.lr - t.min_lr) * (1 + math.cos(math.pi * min(1.0, frac)))


# -----------------------------------------------------------------------------
# main


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        p = load_profile(args.profile, args.set)
    except ProfileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        return run(args, p)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run(args, p: Profile) -> int:
    dist, device = setup_dist(p.train.device)
    dtype = pick_dtype(p.train.dtype, device)
    # rank 0's answer: another rank's clock may tick into the next second's run id
    run_dir, resume_path = share(dist, resolve_run_dir(args, p))
    if dist.master:
        run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = run_dir / "checkpoints"
    # DDP: events, checkpoints, result and report are rank 0's; every rank writes its own
    # ranks/rank-N.jsonl (core/ranklog.py) and dumps its stacks on SIGUSR2
    sink = E.JsonlSink(run_dir / "events.jsonl") if dist.master else E.NullSink()
    ranks = rank_log(run_dir, dist.rank, dist.local_rank, dist.world_size, device)
    sig = Signals(stacks_dir=run_dir / "stacks" / ("" if dist.master else f"rank-{dist.rank}"))
    sig.install()
    t_start = time.time()
    say = print if dist.master else (lambda *a, **k: None)
    say(f"run dir: {run_dir}")

    def finish(
        status: str, reason: str, prog: RunProgress, code: int, extra=None, sync=True
    ) -> int:
        wall = time.time() - t_start
        heart.close()
        ranks.close(prog.step, status, code)
        if dist.master:
            sink.write(E.RunEnd(status=status, step=prog.step, reason=reason, wall_s=wall))
            write_result(run_dir, p, status, reason, prog, wall, summary, extra or {})
            write_report(run_dir, p, status, reason, prog, wall, summary, env)
        say(f"run {status}: {reason} (step {prog.step}, {wall:.1f}s) -> {run_dir}")
        sink.close()
        end_dist(dist, sync)
        return code

    heart = HeartbeatThread(sink, p.train.heartbeat_s, sig)
    prog = RunProgress()
    summary: dict = {}
    env: dict = {}
    try:
        # --- data ----------------------------------------------------------------
        torch.manual_seed(p.train.seed)  # the same on every rank: DDP starts from one model
        with local_rank_first(dist):
            d = load_data(p, sink)
        train, val, vocab, tok_hash = d.train, d.val, d.vocab, d.tok_hash
        B, A, WS = p.train.batch_size, p.train.grad_accum, dist.world_size
        steps_per_epoch = len(train) // (B * A * WS)
        if steps_per_epoch == 0:
            raise DataError(
                f"too few training windows ({len(train)}) for one batch of {B * A * WS} "
                "(train.batch_size x grad_accum x world size); add data or lower train.batch_size"
            )
        total = p.train.max_steps or p.train.epochs * steps_per_epoch
        total_epochs = math.ceil(total / steps_per_epoch)
        context = p.data.context

        # --- model and optimizer -------------------------------------------------
        model = GPT(GPTConfig(vocab, context, p.model.n_layer, p.model.n_head, p.model.n_embd)).to(
            device
        )
        opt = torch.optim.AdamW(
            param_groups(model, p.train.weight_decay),
            lr=p.train.lr,
            betas=(0.9, 0.95),
            fused=True,
        )
        peak, peak_src = peak_flops(device, dtype)
        env = environment(device, dtype, dist, peak, peak_src)
        if p.train.dtype not in ("auto", env["dtype"]):  # bfloat16 asked on a CPU
            msg = (
                f"train.dtype {p.train.dtype} needs cuda (autocast); "
                f"on {device} the run computes in {env['dtype']}"
            )
            say(f"warning: {msg}")
            sink.write(E.Alert(level="warn", code="dtype_fallback", message=msg))
        cfg_hash = config_hash(p)
        tokens_per_step = B * A * WS * context
        flops_per_token = model.flops_per_token()
        summary = {
            "n_params": model.n_params(),
            "n_params_non_embedding": model.n_params_non_embedding(),
            "vocab_size": vocab,
            "tokens_per_step": tokens_per_step,
            "total_steps": total,
            "steps_per_epoch": steps_per_epoch,
            "config_hash": cfg_hash,
            "tokenizer_hash": tok_hash,
            "data": d.figures,
        }
        say(
            f"model: {model.n_params() / 1e6:.2f}M parameters ({model.n_params_non_embedding() / 1e6:.2f}M non-embedding), "
            f"vocab {vocab}, {device} {env['dtype']}; {total} steps, {steps_per_epoch} per epoch"
        )

        # --- resume --------------------------------------------------------------
        if args.resume:  # rank 0 chooses (and verifies) the checkpoint; every rank loads it
            chosen = resume_from(resume_path, ckpt_dir, sink, say) if dist.master else None
            resume_path = share(dist, chosen)
            if resume_path is not None:
                prog = load_resume(resume_path, tok_hash, cfg_hash, model, opt, sink, say)
        carry_position(prog, [B, A, WS], steps_per_epoch, sink, say)

        if dist.master:
            (run_dir / "run.yaml").write_text(
                yaml.safe_dump(
                    {"profile": to_dict(p), "environment": env, "summary": summary}, sort_keys=False
                )
            )
        sink.write(
            E.RunStart(
                run_id=run_dir.name,
                profile=p.name,
                pid=os.getpid(),
                device=str(device),
                world_size=WS,
                dtype=env["dtype"],
                n_params=model.n_params(),
                tokens_per_step=tokens_per_step,
                total_steps=total,
                total_epochs=total_epochs,
            )
        )
        raw_model = model
        if p.train.compile:
            model = torch.compile(model)
        model = wrap_ddp(model, dist, device)

        # --- the loop -------------------------------------------------------------
        def diverge(what: str) -> int:
            msg = f"{what}; stopping, the last good checkpoint is kept"
            say(f"error: {msg}")
            sink.write(E.Alert(level="error", code="nan_loss", message=msg))
            return finish("diverged", what, prog, 1)

        def save(tags: list[str], val_loss: float | None) -> None:
            if dist.master:
                save_checkpoint(
                    ckpt_dir, p.checkpoint.keep_last, raw_model, opt, prog, tags, val_loss,
                    prog.step * tokens_per_step, (cfg_hash, tok_hash), sink,
                )  # fmt: skip

        def do_eval() -> tuple[str | None, float, bool]:
            """Evaluate; returns (a status that ends the run or None, val loss, improved)."""
            sink.write(E.Phase(name="eval", done=0, total=1))  # a gate eval can take seconds
            r = evaluate(
                raw_model, val, p, device, dtype, prog.step, d.graph, d.val_walks, d.tok,
                dist.rank, WS,
            )  # fmt: skip
            sink.write(E.Phase(name="eval", done=1, total=1))
            verdict = (None, False, None)
            if dist.master:
                status, improved, line = record_eval(r, prog, p, sink)
                say(line, flush=True)
                verdict = (status, improved, prog.gate.get("passed"))
            status, improved, passed = share(dist, verdict)  # rank 0 judged: all ranks go on as one
            if not dist.master:
                prog.gate = {"passed": passed}
            return status, r.val_loss, improved

        heart.start()
        sig.training = True
        sink.write(E.Phase(name="train", done=prog.step, total=total))
        sig.step = prog.step
        model.train()
        fwd = FwdTimer(device)
        t_print = time.time()
        status = None
        perm, perm_epoch = None, None
        while prog.step < total:
            if perm_epoch != prog.epoch:  # the data order is a pure function of (seed, epoch)
                perm_epoch = prog.epoch
                perm = torch.randperm(
                    len(train),
                    generator=torch.Generator().manual_seed(p.train.seed * 100_003 + prog.epoch),
                )
            t0 = time.perf_counter()
            lr = lr_at(prog.step, total, p)
            for g in opt.param_groups:
                g["lr"] = lr
            loss_sum = torch.zeros((), device=device)
            for micro in range(A):
                fwd.start()
                # rank r's micro-batch is the window block after rank r-1's: the global batch
                # of a step is the same set of windows whatever the world size
                j = (prog.batch_in_epoch * A + micro) * WS + dist.rank
                rows = train.batch(perm[j * B : (j + 1) * B]).to(device, non_blocking=True)
                sync = micro == A - 1 or WS == 1
                ctx = model.no_sync() if (WS > 1 and not sync) else nullcontext()
                with ctx, autocast(device, dtype):
                    loss = model(rows[:, :-1], rows[:, 1:]) / A
                fwd.stop()
                loss.backward()
                loss_sum += loss.detach()
            if WS > 1:
                torch.distributed.all_reduce(loss_sum)
                loss_sum /= WS
            loss_val = loss_sum.item()
            stop, save_now = agree(dist, device, sig.stop, sig.save)
            clip = p.train.grad_clip if p.train.grad_clip is not None else float("inf")
            grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), clip).item()
            if not (math.isfinite(loss_val) and math.isfinite(grad_norm)):
                # stop before the optimizer step: the weights (and any save) stay finite
                prog.step += 1  # the step was taken as far as its loss; count it, keep its loss
                prog.curves["train_loss"].append(loss_val)
                return diverge(f"loss {loss_val}, grad norm {grad_norm} at step {prog.step}")
            opt.step()
            opt.zero_grad(set_to_none=True)
            prog.step += 1
            prog.batch_in_epoch += 1
            sig.step = prog.step
            dt = time.perf_counter() - t0
            tps = tokens_per_step / dt
            mfu = flops_per_token * tps / peak if peak else None
            prog.curves["train_loss"].append(loss_val)
            ranks.step(prog.step, dt * 1000, fwd.take_ms())
            sink.write(
                E.Step(
                    step=prog.step,
                    epoch=prog.epoch,
                    loss=loss_val,
                    lr=lr,
                    grad_norm=grad_norm,
                    tokens=prog.step * tokens_per_step,
                    step_ms=dt * 1000,
                    tokens_per_s=tps,
                    mfu=mfu,
                )
            )
            if time.time() - t_print >= p.train.print_every_s:
                t_print = time.time()
                eta = (
                    total - prog.step
                ) * dt  # to the step budget; a gate or early stop may end sooner
                say(
                    f"step {prog.step}/{total} | epoch {prog.epoch} | loss {loss_val:.4f} | lr {lr:.2e} | "
                    f"{tps / 1e3:.1f}k tok/s | {dt * 1000:.0f} ms | mfu {100 * (mfu or 0):.1f}% | budget in {int(eta // 60)}m{int(eta % 60):02d}s",
                    flush=True,
                )

            epoch_end = prog.batch_in_epoch >= steps_per_epoch
            last = prog.step >= total
            improved, vl = False, None  # vl stays None unless this step evaluated
            if (
                (p.eval.every_steps and prog.step % p.eval.every_steps == 0)
                or (p.eval.every_epoch and epoch_end)
                or last
            ):
                status, vl, improved = do_eval()
            if epoch_end:
                prog.epoch += 1
                prog.batch_in_epoch = 0
            ending = status is not None or last
            due = (p.checkpoint.every_steps and prog.step % p.checkpoint.every_steps == 0) or (
                p.checkpoint.every_epoch and epoch_end
            )
            due = due or improved  # the best weights are saved when found, whatever the cadence
            if (ending or due or save_now or stop) and not all(
                q.isfinite().all() for q in raw_model.parameters()
            ):
                # a non-finite state is never saved: it would become `latest` and evict a good one
                return diverge(f"weights became non-finite at step {prog.step}")
            if ending or due or save_now or stop:
                tags = (["final"] if ending else []) + (
                    ["gate"] if vl is not None and prog.gate.get("passed") else []
                )
                tags += (["interrupt"] if stop and not ending else []) + (
                    ["best"] if improved else []
                )
                save(tags, vl)
                sig.save = False
            if ending:
                break
            if stop:
                sig.stop = sig.stop or stop  # a rank the signal did not reach exits as the others
                return finish(
                    "interrupted",
                    f"signal {stop}: stopped after step {prog.step}, checkpoint saved",
                    prog,
                    sig.exit_code,
                )
        if status is None:
            status = "completed"
        reasons = {
            "completed": f"budget of {total} steps done",
            "gate_passed": "every gate metric met its minimum",
            "early_stopped": f"val loss did not improve for {p.eval.patience} evals",
        }
        extra = {}
        if p.gate.metrics and status != "gate_passed":
            extra["failure"] = {"reason": "gate not passed", "gate": prog.gate}
        return finish(status, reasons[status], prog, 0, extra)
    except KeyboardInterrupt:
        msg = "interrupted before training started"
        return finish("interrupted", msg, prog, sig.exit_code, sync=False)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return finish("failed", str(e), prog, 2, sync=False)
    except Exception as e:
        traceback.print_exc()
        sink.write(E.Alert(level="error", code="exception", message=f"{type(e).__name__}: {e}"))
        return finish("failed", f"{type(e).__name__}: {e}", prog, 1, sync=False)


if __name__ == "__main__":
    sys.exit(main())
