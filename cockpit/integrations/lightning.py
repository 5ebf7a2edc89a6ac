"""Lightning writes the cockpit's run directory itself.

    from cockpit.integrations.lightning import CockpitCallback
    trainer = L.Trainer(..., callbacks=[CockpitCallback()])

A `step` event per optimizer step with the training loss the module logged (the
metric named `loss_key`, else the first logged `*loss*` metric that is not a
validation one, else the loss `training_step` returned), the learning rate, the
step's wall time and tokens from the batch's `input_ids` (or its first integer
tensor); an `eval` event per validation with every logged `val*` metric; a
`checkpoint` event for every file a ModelCheckpoint saves; `run_end` when fit
ends, raises or is interrupted. Rank 0 writes events.jsonl; under torchrun every
rank writes ranks/rank-N.jsonl.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback

from cockpit.integrations.writer import RunWriter, number

EVAL_PREFIXES = ("val", "valid", "eval")


def is_eval(key: str) -> bool:
    return key.split("/")[0].split("_")[0] in EVAL_PREFIXES


def batch_tokens(batch: Any) -> int | None:
    """Tokens in a batch: its input_ids, else its first 2-D integer tensor."""
    if isinstance(batch, dict):
        if "input_ids" in batch:
            return int(batch["input_ids"].numel())
        batch = list(batch.values())
    if not isinstance(batch, list | tuple):
        batch = [batch]
    for x in batch:
        if hasattr(x, "dtype") and getattr(x, "ndim", 0) == 2 and not x.dtype.is_floating_point:
            return int(x.numel())
    return None


class CockpitCallback(Callback):
    """A lightning Callback writing the run directory (see the module)."""

    def __init__(
        self,
        run_dir: str | os.PathLike | None = None,
        name: str | None = None,
        loss_key: str | None = None,
    ):
        self.run_dir_arg, self.name, self.loss_key = run_dir, name, loss_key
        self.w: RunWriter | None = None
        self.tokens = 0
        self._t: float | None = None
        self._batch_tokens = 0
        self._last_step = 0
        self._mark: tuple[float, int] = (0.0, 0)
        self._saved: set[str] = set()

    @property
    def run_dir(self) -> Path | None:
        return self.w.run_dir if self.w is not None else None

    def _loss(self, metrics: dict, outputs: Any) -> float | None:
        if self.loss_key is not None:
            return number(metrics.get(self.loss_key))
        keys = [k for k in metrics if "loss" in k and not is_eval(k) and not k.endswith("_epoch")]
        keys.sort(key=lambda k: (not k.endswith("_step"), len(k)))
        if keys:
            return number(metrics[keys[0]])
        if isinstance(outputs, dict):
            return number(outputs.get("loss"))
        return number(outputs)

    def _saves(self, trainer: Any) -> None:
        """A checkpoint event for each file a ModelCheckpoint wrote since the last look."""
        if self.w is None:
            return
        for cb in trainer.checkpoint_callbacks:
            best = getattr(cb, "best_model_path", "")
            paths = {getattr(cb, "last_model_path", ""), best, *getattr(cb, "best_k_models", {})}
            for p in sorted(x for x in paths if x and x not in self._saved and Path(x).exists()):
                self._saved.add(p)
                tags = ["latest"] + (["best"] if p == best else [])
                self.w.checkpoint_event(Path(p), trainer.global_step, tags)

    # --- Lightning's hooks ------------------------------------------------------

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.w = RunWriter(self.run_dir_arg, self.name or type(pl_module).__name__, "lightning")
        steps = trainer.estimated_stepping_batches
        self.w.start(
            device=str(pl_module.device),
            world_size=trainer.world_size,
            dtype="bfloat16"
            if "bf16" in str(trainer.precision)
            else "float16"
            if "16" in str(trainer.precision)
            else "float32",
            n_params=sum(p.numel() for p in pl_module.parameters()),
            total_steps=int(steps)
            if isinstance(steps, int | float) and math.isfinite(steps)
            else None,
            total_epochs=trainer.max_epochs
            if trainer.max_epochs and trainer.max_epochs > 0
            else None,
        )
        self._last_step = trainer.global_step
        self._mark = (time.time(), 0)

    def on_train_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: Any
    ) -> None:
        self._saves(trainer)
        if self._t is None:
            self._t = time.perf_counter()
        self._batch_tokens += batch_tokens(batch) or 0

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: Any
    ) -> None:
        step = trainer.global_step
        if self.w is None or step == self._last_step:
            return  # accumulating gradients: the optimizer step is not done yet
        self._last_step = step
        ms = (time.perf_counter() - self._t) * 1000 if self._t is not None else None
        self._t = None
        self.tokens += self._batch_tokens
        self._batch_tokens = 0
        now = time.time()
        tps = (self.tokens - self._mark[1]) / (now - self._mark[0]) if now > self._mark[0] else None
        self._mark = (now, self.tokens)
        opt = trainer.optimizers[0] if trainer.optimizers else None
        lr = opt.param_groups[0].get("lr") if opt is not None else None
        metrics = trainer.callback_metrics
        self.w.step_event(
            step,
            epoch=trainer.current_epoch,
            loss=self._loss(metrics, outputs),
            lr=number(lr),
            grad_norm=number(metrics.get("grad_norm")),
            tokens=self.tokens or None,
            step_ms=ms,
            tokens_per_s=tps if self.tokens else None,
        )
        self.w.rank_step(step, ms)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if self.w is None or trainer.sanity_checking:
            return
        evals = {k: number(v) for k, v in trainer.callback_metrics.items() if is_eval(k)}
        val = next(
            (
                evals.pop(k)
                for k in ("val_loss", "val/loss", "valid_loss", "eval_loss")
                if k in evals
            ),
            None,
        )
        metrics = {k: v for k, v in evals.items() if v is not None}
        self.w.eval_event(trainer.global_step, trainer.current_epoch, val, metrics)

    def on_exception(self, trainer: Any, pl_module: Any, exception: Any) -> None:
        if self.w is not None:
            self._saves(trainer)
            self.w.failed(exception)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        if self.w is not None:
            self._saves(trainer)
            self.w.end("completed", f"trained {trainer.global_step} steps")
