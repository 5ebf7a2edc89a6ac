"""The training engine: python -m core.train --profile P [--run-dir D] [--resume auto|PATH] [--set k=v ...]

Writes logs/<run-id>/ as docs/architecture.md says: run.yaml, events.jsonl,
checkpoints/, result.json, report.md, stacks/ on SIGUSR2.
Exit codes: 0 completed / gate passed / early stopped, 1 diverged or failed,
2 bad profile or data, or the run directory in use by another trainer,
130 SIGINT, 143 SIGTERM (within seconds, from any phase: see runtime.Signals).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import traceback
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed
import yaml
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel as DDP

from core import checkpoint as C
from core import events as E
from core.autocompile import AutoCompile
from core.config import (
    Profile,
    ProfileError,
    checkpoint_format,
    config_hash,
    load_profile,
    to_dict,
)
from core.data import load_data
from core.dcp import ShardedSaver, load_sharded
from core.energy import EnergyMeter, gpu_indices, price_from_env
from core.errors import DataError
from core.evaluate import autocast, evaluate, record_eval
from core.model import GPT, GPTConfig
from core.optim import build_optimizers, support_problems
from core.ranklog import FwdTimer, rank_log
from core.report import write_report, write_result
from core.runstate import (
    LOCK,
    RunProgress,
    carry_position,
    load_resume,
    lock_run_dir,
    resolve_run_dir,
    resume_from,
    save_checkpoint,
)
from core.runtime import (
    HeartbeatThread,
    Interrupted,
    Signals,
    agree,
    checkpoint_blocks,
    end_dist,
    environment,
    gathered,
    local_rank_first,
    peak_flops,
    pick_dtype,
    setup_dist,
    share,
    wrap_ddp,
    wrap_fsdp,
)

# -----------------------------------------------------------------------------
# arguments and the run directory


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        p = load_profile(args.profile, args.set)
    except ProfileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    unsupported = support_problems(p)  # said before any rank starts, not at step 1
    for key, why in unsupported:
        print(f"error: {args.profile}: {key}: {why}", file=sys.stderr)
    if unsupported:
        return 2
    try:
        return run(args, p)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace, p: Profile) -> int:
    dist, device = setup_dist(p.train.device)
    dtype = pick_dtype(p.train.dtype, device)
    # rank 0's answer: another rank's clock may tick into the next second's run id
    run_dir, resume_path = share(dist, resolve_run_dir(args, p))
    holder = None
    if dist.master:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock, holder = lock_run_dir(run_dir)  # held (fd open) until the process ends
    holder = share(dist, holder)
    if holder:  # before anything is written: the run belongs to the other trainer
        if dist.master:
            print(
                f"error: {run_dir} is in use: another trainer (pid {holder}) holds "
                f"{run_dir / LOCK}. Two trainers writing one run directory interleave their "
                "events and checkpoints, so this one stops before writing anything (a --resume "
                f"into a live run is refused the same way). Wait for it to end, stop it "
                f"(kill -TERM {holder}: it saves and exits), or give this run another --run-dir.",
                file=sys.stderr,
            )
        end_dist(dist, sync=False)
        return 2
    ckpt_dir = run_dir / "checkpoints"
    # DDP: events, checkpoints, result and report are rank 0's; every rank writes its own
    # ranks/rank-N.jsonl (core/ranklog.py) and dumps its stacks on SIGUSR2
    sink = E.JsonlSink(run_dir / "events.jsonl") if dist.master else E.NullSink()
    ranks = rank_log(run_dir, dist.rank, dist.local_rank, dist.world_size, device)
    sig = Signals(stacks_dir=run_dir / "stacks" / ("" if dist.master else f"rank-{dist.rank}"))
    sig.install()
    t_start = time.time()
    # rank 0 meters this node's GPUs (NVML) and CPU packages (RAPL) for result.json
    local_ws = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    gpus = gpu_indices(local_ws) if device.type == "cuda" else None
    meter = EnergyMeter(gpus).start() if dist.master else None
    say = print if dist.master else (lambda *a, **k: None)
    say(f"run dir: {run_dir}")
    ended = False  # finish() ran
    sharded: ShardedSaver | None = None  # checkpoint.format dcp: every rank writes its shard

    def finish(
        status: str,
        reason: str,
        prog: RunProgress,
        code: int,
        extra: dict | None = None,
        sync: bool = True,
    ) -> int:
        nonlocal ended
        ended = True
        sig.set_abandonable(False)  # a signal now must not cut the ending short
        if sharded is not None:  # an async save in flight completes before the run ends
            try:  # after an error a peer may be gone, and its collectives with it
                sharded.close(timeout=None if sync else 60)
            except Exception as e:
                msg = f"the last checkpoint save failed ({type(e).__name__}: {e}); latest names the one before"
                print(f"warning: {msg}", file=sys.stderr)
                sink.write(E.Alert(level="error", code="checkpoint_failed", message=msg))
        wall = time.time() - t_start
        heart.close()
        ran = prog.step - summary.get("resumed_at_step", 0)  # this process's steps
        tokens = ran * summary.get("tokens_per_step", 0) or None
        energy = meter.stop(tokens, price_from_env()).to_dict() if meter is not None else None
        writes = [("ranks/", lambda: ranks.close(prog.step, status, code))]
        if dist.master:
            writes += [
                ("run_end", lambda: sink.write(
                    E.RunEnd(status=status, step=prog.step, reason=reason, wall_s=wall))),
                ("result.json", lambda: write_result(
                    run_dir, p, status, reason, prog, wall, summary, dict(extra or {}, energy=energy))),
                ("report.md", lambda: write_report(
                    run_dir, p, status, reason, prog, wall, summary, env, energy)),
            ]  # fmt: skip
        for what, write in writes:
            try:  # each on its own: a full disk or a bug in one must not lose the others
                write()
            except Exception as e:
                print(f"warning: could not write {what}: {type(e).__name__}: {e}", file=sys.stderr)
        say(f"run {status}: {reason} (step {prog.step}, {wall:.1f}s) -> {run_dir}")
        sink.close()
        end_dist(dist, sync)
        return code

    heart = HeartbeatThread(sink, p.train.heartbeat_s, sig)
    prog = RunProgress()
    summary: dict = {}
    env: dict = {}
    try:
        # until the loop, a stop ends the run at once: setting up writes nothing a
        # checkpoint holds, and tokenizing or generating a corpus can take minutes
        sig.set_abandonable(True)

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
        if p.train.max_steps:
            total = p.train.max_steps
        else:
            assert p.train.epochs is not None  # the profile check requires one of the two
            total = p.train.epochs * steps_per_epoch
        total_epochs = math.ceil(total / steps_per_epoch)
        context = p.data.context

        # --- model and optimizer -------------------------------------------------
        model = GPT(GPTConfig(vocab, context, p.model.n_layer, p.model.n_head, p.model.n_embd)).to(
            device
        )
        if p.train.activation_checkpointing:
            checkpoint_blocks(model)
        if p.train.parallel == "fsdp":  # sharded in place: the optimizer takes the shards
            wrap_fsdp(model, device, dtype, p.train.reshard_after_forward)
        opt = build_optimizers(model, p)
        peak, peak_src = peak_flops(device, dtype, p.train.peak_flops)
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
        if checkpoint_format(p) == "dcp":  # on every rank: it may make a process group
            sharded = ShardedSaver(ckpt_dir, dist, device, p.checkpoint.async_)
        if args.resume:  # rank 0 chooses (and verifies) the checkpoint; every rank loads it
            chosen = resume_from(resume_path, ckpt_dir, sink, say) if dist.master else None
            resume_path = share(dist, chosen)
            if resume_path is not None:
                prog = load_resume(resume_path, tok_hash, cfg_hash, model, opt, sink, say)
        carry_position(prog, [B, A, WS], steps_per_epoch, sink, say)
        summary["resumed_at_step"] = prog.step  # report.md's throughput counts this process's steps

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
                peak_flops=peak or None,
                peak_source=peak_src,
            )
        )
        raw_model = model
        net: torch.nn.Module = model
        if p.train.compile is True:  # auto: decided in the loop, after timing eager steps
            # an OptimizedModule (an nn.Module); torch types it as a plain callable
            net = torch.compile(model)  # type: ignore[assignment]
        if p.train.parallel == "ddp":  # fsdp sharded the model above
            net = wrap_ddp(net, dist, device)

        # --- the loop -------------------------------------------------------------
        def diverge(what: str) -> int:
            msg = f"{what}; stopping, the last good checkpoint is kept"
            say(f"error: {msg}")
            sink.write(E.Alert(level="error", code="nan_loss", message=msg))
            return finish("diverged", what, prog, 1)

        def save(tags: list[str], val_loss: float | None) -> Path | None:
            """Rank 0 saves a file, every rank its shard of a dcp checkpoint; returns the
            checkpoint's path (None on other ranks for a file)."""
            if sharded is None and not dist.master:
                return None
            try:
                return save_checkpoint(
                    ckpt_dir, p.checkpoint.keep_last, raw_model, opt, prog, tags, val_loss,
                    prog.step * tokens_per_step, (cfg_hash, tok_hash), sink, sharded,
                )  # fmt: skip
            except Exception as e:  # a full disk: torch raises RuntimeError, not OSError
                raise RuntimeError(
                    f"checkpoint save at step {prog.step} failed ({type(e).__name__}: {e}); "
                    "latest still names the last good checkpoint"
                ) from e

        def do_eval() -> tuple[str | None, float, bool]:
            """Evaluate; returns (a status that ends the run or None, val loss, improved)."""
            sink.write(E.Phase(name="eval", done=0, total=1))  # a gate eval can take seconds
            # gathered: fsdp's shards made whole for the eval's uneven forwards
            with sig.abandonable(), gathered(raw_model):  # a stop drops the eval unrecorded
                r = evaluate(
                    raw_model, val, p, device, dtype, prog.step, d.graph, d.val_walks, d.tok,
                    dist.rank, WS, sink,
                )  # fmt: skip
            sink.write(E.Phase(name="eval", done=1, total=1))
            verdict: tuple[str | None, bool, bool | None] = (None, False, None)
            if dist.master:
                status, improved, line = record_eval(r, prog, p, sink)
                say(line, flush=True)
                verdict = (status, improved, prog.gate.get("passed"))
            status, improved, passed = share(dist, verdict)  # rank 0 judged: all ranks go on as one
            if not dist.master:
                prog.gate = {"passed": passed}
            return status, r.val_loss, improved

        if resume_path is not None and C.is_sharded(resume_path):
            # after the wrap: set_state_dict loads FSDP's shards as it loads a plain module
            load_sharded(resume_path, raw_model, opt, sharded)

        sig.set_abandonable(False)  # from here a stop is read after the step or save under way
        heart.start()
        sink.write(E.Phase(name="train", done=prog.step, total=total))
        sig.step = prog.step
        net.train()
        fwd = FwdTimer(device)
        t_print = time.time()
        status = None
        perm = torch.empty(0, dtype=torch.long)  # replaced before the first step
        perm_epoch: int | None = None
        auto = AutoCompile(total, p.model.n_layer) if p.train.compile == "auto" else None
        if auto is not None:
            summary["compile"] = {"mode": "auto", "decision": "measuring eager steps"}
        while prog.step < total:
            if perm_epoch != prog.epoch:  # the data order is a pure function of (seed, epoch)
                perm_epoch = prog.epoch
                perm = torch.randperm(
                    len(train),
                    generator=torch.Generator().manual_seed(p.train.seed * 100_003 + prog.epoch),
                )
            t0 = time.perf_counter()
            lr = lr_at(prog.step, total, p)
            opt.set_lr(lr)  # every group at its own base lr's share (core/optim.py)
            loss_sum = torch.zeros((), device=device)
            for micro in range(A):
                fwd.start()
                # rank r's micro-batch is the window block after rank r-1's: the global batch
                # of a step is the same set of windows whatever the world size
                j = (prog.batch_in_epoch * A + micro) * WS + dist.rank
                rows = train.batch(perm[j * B : (j + 1) * B]).to(device, non_blocking=True)
                sync = micro == A - 1 or WS == 1
                # more than one rank: wrap_ddp gave a DDP
                # (fsdp reduce-scatters every micro-batch: it has no no_sync)
                ctx = net.no_sync() if (isinstance(net, DDP) and not sync) else nullcontext()
                with ctx, autocast(device, dtype):
                    loss = net(rows[:, :-1], rows[:, 1:]) / A
                fwd.stop()
                loss.backward()
                loss_sum += loss.detach()
            if WS > 1:
                torch.distributed.all_reduce(loss_sum)
                loss_sum /= WS
            stop, save_now = agree(dist, device, sig.stop, sig.save)
            clip = p.train.grad_clip if p.train.grad_clip is not None else float("inf")
            gn = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), clip)
            if isinstance(gn, DTensor):  # fsdp: the norm of sharded grads, replicated on every rank
                gn = gn.full_tensor()
            # loss and grad norm come to the host together: one device sync a step, not two
            loss_val, grad_norm = torch.stack((loss_sum, gn.to(loss_sum.dtype))).tolist()
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
            # tps counts every rank's tokens and `peak` is one device's: the world's peak is WS x
            mfu = flops_per_token * tps / (peak * WS) if peak else None
            prog.curves["train_loss"].append(loss_val)
            ranks.step(prog.step, dt * 1000, fwd.take_ms())
            if auto is not None and (verdict := auto.after_step(prog.step, dt)) is not None:
                verdict = share(dist, verdict)  # rank 0's timing decides for all
                if verdict == "compile":
                    eager_net = net
                    # an OptimizedModule (an nn.Module); torch types it as a plain callable
                    net = torch.compile(net)  # type: ignore[assignment]
                    sink.write(E.Phase(name="compile", done=0, total=1))
                elif verdict == "revert":
                    net = eager_net
                if verdict in ("keep", "revert"):
                    sink.write(E.Phase(name="compile", done=1, total=1))
                summary["compile"] = dict(auto.record)
                say(auto.message(), flush=True)
                sink.write(E.Alert(level="info", code="compile_auto", message=auto.message()))
                if dist.master:
                    C.atomic_write_text(
                        run_dir / "run.yaml",
                        yaml.safe_dump(
                            {"profile": to_dict(p), "environment": env, "summary": summary},
                            sort_keys=False,
                        ),
                    )
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
            cut = False  # a stop cut this step's eval short
            if (
                (p.eval.every_steps and prog.step % p.eval.every_steps == 0)
                or (p.eval.every_epoch and epoch_end)
                or last
            ):
                try:
                    status, vl, improved = do_eval()
                except Interrupted:
                    # nothing of the eval was recorded; model and optimizer change only in
                    # opt.step, so they hold this completed step: save it below and stop
                    stop, cut = sig.stop, True
            if epoch_end:
                prog.epoch += 1
                prog.batch_in_epoch = 0
            ending = (status is not None or last) and not cut
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
                saved = save(tags, vl)
                sig.save = False
                if not (stop or ending):
                    # a stop that came during the save: this checkpoint is the last completed
                    # step, so end on it (a second save of a big model would eat the grace)
                    stop, _ = agree(dist, device, sig.stop, False)
                    if stop and sharded is not None:
                        sharded.wait()  # an async save's sidecar comes when its files are written
                    if stop and saved is not None and dist.master:
                        C.add_tags(saved, ["interrupt"])
            if ending:
                break
            if stop:
                sig.stop = sig.stop or stop  # a rank the signal did not reach exits as the others
                where = "in the eval (dropped) " if cut else ""
                return finish(
                    "interrupted",
                    f"signal {stop}: stopped {where}after step {prog.step}, checkpoint saved",
                    prog,
                    sig.exit_code,
                    sync=not cut,  # ranks cut in the eval may be in different collectives
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
    except Interrupted as e:
        # data preparation or setup: nothing was trained here that a checkpoint lacks
        # (a resumed run's `latest` is where it resumed from), so nothing to save
        msg = f"signal {e.signum}: stopped before training started, at step {prog.step}"
        return finish("interrupted", msg, prog, sig.exit_code, sync=False)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return finish("failed", str(e), prog, 2, sync=False)
    except Exception as e:
        traceback.print_exc()
        sink.write(E.Alert(level="error", code="exception", message=f"{type(e).__name__}: {e}"))
        return finish("failed", f"{type(e).__name__}: {e}", prog, 1, sync=False)
    finally:
        if not ended:  # something escaped every handler above: still end the event log
            sig.set_abandonable(False)
            heart.close()
            exc = sys.exc_info()[1]
            why = f"{type(exc).__name__}: {exc}" if exc else "ended without a verdict"
            try:
                sink.write(
                    E.RunEnd(
                        status="failed", step=prog.step, reason=why, wall_s=time.time() - t_start
                    )
                )
            except Exception:
                pass  # the sink itself failed: nothing left to tell it
            sink.close()


if __name__ == "__main__":
    sys.exit(main())
