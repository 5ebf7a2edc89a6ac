"""The Hugging Face Trainer writes the cockpit's run directory itself.

    from cockpit.integrations.hf import CockpitCallback
    trainer = Trainer(model=model, args=args, ..., callbacks=[CockpitCallback()])

Every value comes from the Trainer's own record: a `step` event per logged
training loss (the same floats as `trainer.state.log_history`; log every step with
`logging_steps=1`), an `eval` event per evaluation with every `eval_*` metric, a
`checkpoint` event per save with the folder's size, and `run_end` when training
ends, raises or is interrupted. Tokens come from `state.num_input_tokens_seen`
when the Trainer counts them (`include_num_input_tokens_seen`), else from the
shape of the `input_ids` the model is given. Rank 0 writes events.jsonl; under
torchrun every rank writes ranks/rank-N.jsonl.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from cockpit.integrations.writer import RunWriter, number

PREFIX = "eval_"


class CockpitCallback(TrainerCallback):
    """A transformers.TrainerCallback writing the run directory (see the module)."""

    def __init__(self, run_dir: str | os.PathLike | None = None, name: str | None = None):
        self.run_dir_arg, self.name = run_dir, name
        self.w: RunWriter | None = None
        self.tokens = 0  # counted from input_ids when the Trainer does not count them
        self._t_step: float | None = None
        self.step_ms: float | None = None
        self._mark: tuple[float, int] | None = None  # (time, tokens) at the last step event
        self._hook: Any = None

    @property
    def run_dir(self) -> Path | None:
        return self.w.run_dir if self.w is not None else None

    # --- the Trainer's hooks ----------------------------------------------------

    def on_train_begin(
        self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any
    ) -> None:
        name = self.name or (type(model).__name__ if model is not None else "hf")
        self.w = RunWriter(self.run_dir_arg, name, "hf")
        n_params = sum(p.numel() for p in model.parameters()) if model is not None else None
        dtype = "bfloat16" if args.bf16 else "float16" if args.fp16 else "float32"
        epochs = args.num_train_epochs
        self.w.start(
            device=str(args.device),
            world_size=args.world_size,
            dtype=dtype,
            n_params=n_params,
            total_steps=state.max_steps or None,
            total_epochs=math.ceil(epochs) if epochs and epochs > 0 else None,
        )
        if model is not None and args.include_num_input_tokens_seen not in (
            True,
            "all",
            "non_padding",
        ):
            self._hook = model.register_forward_pre_hook(self._count, with_kwargs=True)
        self._mark = (time.time(), 0)

    def _count(self, module: Any, args: tuple, kwargs: dict) -> None:
        if not module.training:
            return  # evaluation is not training tokens
        ids: Any = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and hasattr(ids, "numel"):
            self.tokens += int(ids.numel())

    def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self._t_step = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.w is not None:
            self.w.step = max(self.w.step, state.global_step)  # the step run_end names
        if self._t_step is not None:
            self.step_ms = (time.perf_counter() - self._t_step) * 1000
            if self.w is not None:
                self.w.rank_step(state.global_step, self.step_ms)

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
        if self.w is None or not logs:
            return
        step, epoch = state.global_step, int(state.epoch or 0)
        if "loss" in logs:
            tokens = state.num_input_tokens_seen or self.tokens or None
            tps = None
            now = time.time()
            if tokens and self._mark is not None and now > self._mark[0]:
                tps = (tokens - self._mark[1]) / (now - self._mark[0])
            self._mark = (now, tokens or 0)
            self.w.step_event(
                step,
                epoch=epoch,
                loss=number(logs["loss"]),
                lr=number(logs.get("learning_rate")),
                grad_norm=number(logs.get("grad_norm")),
                tokens=tokens,
                step_ms=self.step_ms,
                tokens_per_s=tps,
            )
        evals = {k[len(PREFIX) :]: number(v) for k, v in logs.items() if k.startswith(PREFIX)}
        if evals:
            val = evals.pop("loss", None)
            metrics = {k: v for k, v in evals.items() if v is not None}
            self.w.eval_event(step, epoch, val, metrics)

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.w is not None:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            tags = ["latest"] + (["best"] if state.best_model_checkpoint == str(folder) else [])
            self.w.checkpoint_event(folder, state.global_step, tags)

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self.w is not None:
            self.w.step = max(self.w.step, state.global_step)
            self.w.end("completed", f"trained {state.global_step} steps")
