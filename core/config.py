"""Run profiles: YAML mapped onto frozen dataclasses.

Every key has a default; a profile sets what differs. The loader collects
every problem (file, key path, line, what was expected) and raises one
ProfileError carrying all of them, never a traceback. `--set a.b=v` overrides
any key, the value parsed as YAML.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core import validators as V
from core.yamlmap import (
    ErrFn,
    Problem,
    ProfileError,
    _build,
    _parse_yaml,
    line_of,
    show,
    yaml_key,
)

__all__ = ["Profile", "Problem", "ProfileError", "load_profile", "config_hash", "gate_metric_names"]

PROFILES_DIR = Path("profiles")
NAME_RE = re.compile(r"[A-Za-z0-9._-]+")


# -----------------------------------------------------------------------------
# the schema (docs/architecture.md, "Profiles"); a string under each field says what it is


@dataclass(frozen=True)
class WalksConfig:
    n_nodes: int = 128
    "nodes in the random directed graph; node ids are the tokens"
    out_degree: int = 4
    "edges leaving each node"
    n_walks: int = 20000
    "walks in the corpus (train + val)"
    class_a_frac: float = 0.1
    "share of nodes in class A (rule triggers)"
    class_b_frac: float = 0.2
    "share of nodes in class B (rule targets)"
    rule_k: int = 4
    "the rule: a class-A node promises a class-B node exactly rule_k steps later; B is off limits while no promise is open"
    holdout_frac: float = 0.1
    "share of start nodes held out of training; val and gate walks start there"
    eval_walks: int = 250
    "walks generated greedily per gate evaluation (250 x 64 nodes hold about 1,200 promises: rule_compliance to about 0.01 near 0.8)"
    prompt_len: int = 4
    "tokens of a held-out walk given as the prompt (BOS + 3 nodes)"
    eval_nodes: int = 64
    "nodes generated after the prompt per gate walk (fewer when the context is shorter); a gate eval's time grows with eval_walks x eval_nodes"
    seed: int = 0
    "graph and corpus seed (independent of train.seed)"


@dataclass(frozen=True)
class DataConfig:
    source: str = "walks"
    "walks: synthetic graph walks made on the fly | files: text/parquet/jsonl on disk"
    paths: list[str] = field(default_factory=list)
    "files: paths or globs (.txt .md .py .jsonl .parquet)"
    text_column: str = "text"
    "parquet/jsonl column holding the text"
    context: int = 256
    "tokens per training window"
    stride: int = 256
    "step between window starts"
    val_fraction: float = 0.1
    "share of documents (or walks) held out for validation"
    generate: str | None = None
    "stdlib | json | c: when `paths` match nothing, write a built-in corpus there as parquet shards (stdlib: this Python's .py files; json, c: small generated documents)"
    cache_dir: str = "data/cache"
    "where tokenized memmap shards are cached, keyed by (data hash, tokenizer hash)"
    walks: WalksConfig = field(default_factory=WalksConfig)
    "walks: the graph and the rule"


@dataclass(frozen=True)
class TokenizerConfig:
    path: str | None = None
    "tokenizer.json (HF tokenizers); null for walks (node ids are tokens)"
    vocab_size: int = 8192
    "vocabulary size of the tokenizer and the model's embedding"
    train_if_missing: bool = True
    "train a byte-level BPE on the training files when `path` does not exist"


@dataclass(frozen=True)
class ModelConfig:
    n_layer: int = 4
    "transformer blocks"
    n_head: int = 4
    "attention heads; n_embd must divide by it"
    n_embd: int = 256
    "width of the residual stream"


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 16
    "sequences per micro-batch on each rank"
    grad_accum: int = 1
    "micro-batches per optimizer step"
    lr: float = 3.0e-4
    "peak learning rate of AdamW (with train.optimizer: muon, of the embedding/head and any gains)"
    min_lr: float = 3.0e-5
    "learning rate at the end of the cosine decay"
    warmup_frac: float = 0.1
    "share of total steps spent in linear warmup"
    weight_decay: float = 0.01
    "decoupled weight decay on matrices (not on norms): AdamW's, and Muon's under train.optimizer: muon"
    optimizer: str = "adamw"
    "adamw | muon: Muon (torch.optim.Muon, torch >= 2.9) for the 2-D weights inside the blocks, AdamW for the embedding, head and gains, as nanochat does"
    muon_lr: float = 0.02
    "peak learning rate of Muon (nanochat's 0.02); the schedule scales it as it scales train.lr"
    muon_momentum: float = 0.95
    "Muon's (Nesterov) momentum, nanochat's 0.95"
    grad_clip: float | None = 1.0
    "clip the global gradient norm to this; null = no clipping"
    max_steps: int | None = None
    "optimizer steps to run; one of max_steps / epochs"
    epochs: int | None = 50
    "passes over the training windows; one of max_steps / epochs"
    device: str = "auto"
    "auto | cpu | cuda"
    dtype: str = "auto"
    "auto (bf16 on cuda, fp32 on cpu) | float32 | bfloat16 (cuda only: on cpu the run is fp32, with a warning)"
    compile: bool | str = False
    "true | false | auto: torch.compile the model; auto times a few eager steps, then compiles when the steps left would repay the compile time (the decision is logged and kept in run.yaml)"
    parallel: str = "ddp"
    "ddp | fsdp: under torchrun, ddp keeps the whole model and optimizer on every rank; fsdp shards parameters, gradients and optimizer state over the ranks (FSDP2 fully_shard on each block, then the root). One process is world size 1 of either"
    reshard_after_forward: bool = True
    "fsdp: free each block's gathered parameters after its forward and gather again for the backward (ZeRO-3, least memory); false keeps them to the backward (ZeRO-2, less communication)"
    activation_checkpointing: bool = False
    "recompute each block's activations in the backward instead of keeping them: less memory for about a third more compute; with ddp or fsdp"
    seed: int = 1337
    "seed for init, data order and sampling"
    heartbeat_s: float = 5.0
    "seconds between heartbeat events, also inside a long step"
    print_every_s: float = 2.0
    "seconds between progress lines on stdout"
    peak_flops: float | None = None
    "one device's peak FLOP/s for MFU (e.g. 989.5e12); null = the data-sheet table for a GPU (core/peaks.py; an unlisted GPU's MFU is unknown), a timed matmul on a CPU"


@dataclass(frozen=True)
class SamplesConfig:
    prompts: list[str] = field(default_factory=list)
    "prompts sampled from at every eval"
    max_new_tokens: int = 64
    "tokens generated per sample"
    per_prompt: int = 1
    "samples per prompt"
    temperature: float = 0.8
    "sampling temperature; 0 = greedy"


@dataclass(frozen=True)
class EvalConfig:
    every_steps: int | None = None
    "evaluate every N optimizer steps"
    every_epoch: bool = True
    "evaluate at the end of every epoch"
    val_batches: int = 4
    "validation batches (of batch_size windows) per eval, the same at any world size; at the defaults one takes ~0.3 s on 2 CPU cores"
    patience: int | None = 3
    "evals without val improvement before early stop; null = never"
    min_delta: float = 1.0e-3
    "a val loss must fall by more than this to count as an improvement"
    validator: str | None = None
    "python | json | yaml | c | walks | module:function (core/validators.py); metrics valid_python, valid_json (+ schema_ok), valid_yaml, valid_c, valid_custom"
    json_schema: str | None = None
    "json: a JSON Schema file each sample is checked against (metric schema_ok)"
    samples: SamplesConfig = field(default_factory=SamplesConfig)
    "samples generated at every eval"


@dataclass(frozen=True)
class GateConfig:
    metrics: dict[str, float] = field(default_factory=dict)
    "metric name: minimum, e.g. edge_compliance: 0.95"
    stop_on_pass: bool = True
    "end the run as soon as every gate metric meets its minimum"


@dataclass(frozen=True)
class CheckpointConfig:
    every_steps: int | None = None
    "save every N optimizer steps"
    every_epoch: bool = True
    "save at the end of every epoch"
    keep_last: int = 3
    "newest checkpoints kept, besides best, gate-pass and final"
    format: str = "auto"
    "auto (dcp under train.parallel fsdp or with async, else file) | file (one step-NNNNNNN.pt, written by rank 0) | dcp (a step-NNNNNNN/ directory of shards, every rank writing its own; resumes at any world size)"
    async_: bool = False
    "YAML key `async`: write dcp checkpoints on a background thread while training goes on (torch.distributed.checkpoint.async_save); the pause is the copy to CPU memory"


@dataclass(frozen=True)
class Profile:
    name: str = "unnamed"
    "the profile's name; part of the run id"
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    checklist: str = "checklists/pretrain.yaml"
    "the pre-flight checklist for this profile"


def _check_values(p: Profile, err: ErrFn) -> None:
    """Bad values: types are right but the value cannot work."""

    def positive(key: str, v: float | int | None, allow_none: bool = False) -> None:
        if v is None:
            if not allow_none:
                err(key, "must be set")
        elif v <= 0:
            err(key, f"must be greater than 0, got {v}")

    d, t, m = p.data, p.train, p.model
    if not NAME_RE.fullmatch(p.name) or p.name in (".", ".."):
        # the run directory is logs/<time>-<name>: a '/' or '..' would put it elsewhere
        fix = re.sub(r"[^A-Za-z0-9._-]+", "-", p.name).strip(".-") or "my-run"
        err(
            "name",
            f"must be letters, digits, '.', '_' or '-' ([A-Za-z0-9._-]+, not '.' or '..'): "
            f"it names the run directory under logs/; got {show(p.name)}, try {fix!r}",
        )
    if d.source not in ("walks", "files"):
        err("data.source", f"expected 'walks' or 'files', got {d.source!r}")
    positive("data.context", d.context)
    if not (isinstance(t.compile, bool) or t.compile == "auto"):
        err("train.compile", f"expected true, false or auto, got {show(t.compile)}")
    positive("data.stride", d.stride)
    if not 0 < d.val_fraction < 1:
        err("data.val_fraction", f"must be between 0 and 1 (exclusive), got {d.val_fraction}")
    if d.generate not in (None, "stdlib", "json", "c"):
        err("data.generate", f"expected null, 'stdlib', 'json' or 'c', got {d.generate!r}")
    if d.source == "files":
        if not d.paths:
            err("data.paths", "data.source is 'files' but no paths are given; list files or globs")
        elif d.generate is None:
            for i, pat in enumerate(d.paths):
                if not glob.glob(os.path.expanduser(pat), recursive=True):
                    err(
                        f"data.paths[{i}]",
                        f"matches no file: {pat!r} (check the path, relative to {os.getcwd()})",
                    )
        tok = p.tokenizer
        if tok.path is None:
            err("tokenizer.path", "data.source is 'files': give a tokenizer.json path")
        elif not os.path.exists(tok.path) and not tok.train_if_missing:
            err(
                "tokenizer.path",
                f"no such file {tok.path!r} and train_if_missing is false; "
                "point it at a tokenizer.json or set train_if_missing: true",
            )
    w = d.walks
    for name in (
        "n_nodes",
        "out_degree",
        "n_walks",
        "rule_k",
        "eval_walks",
        "prompt_len",
        "eval_nodes",
    ):
        positive(f"data.walks.{name}", getattr(w, name))
    if d.source == "walks" and w.out_degree >= w.n_nodes:
        err("data.walks.out_degree", f"must be below n_nodes ({w.n_nodes}), got {w.out_degree}")
    if d.source == "walks" and w.prompt_len >= d.context:
        err("data.walks.prompt_len", f"must be below data.context ({d.context})")
    positive("tokenizer.vocab_size", p.tokenizer.vocab_size)
    positive("model.n_layer", m.n_layer)
    positive("model.n_head", m.n_head)
    positive("model.n_embd", m.n_embd)
    if m.n_head > 0 and m.n_embd % m.n_head:
        err("model.n_embd", f"must be divisible by model.n_head ({m.n_head}), got {m.n_embd}")
    elif m.n_head > 0 and (m.n_embd // m.n_head) % 2:
        err("model.n_embd", "n_embd / n_head must be even (rotary embeddings rotate pairs)")
    positive("train.batch_size", t.batch_size)
    positive("train.grad_accum", t.grad_accum)
    positive("train.lr", t.lr)
    if t.lr > 0 and not 0 <= t.min_lr <= t.lr:  # (a bad lr is reported once, not twice)
        err("train.min_lr", f"must be between 0 and train.lr ({t.lr}), got {t.min_lr}")
    if not 0 <= t.warmup_frac < 1:
        err("train.warmup_frac", f"must be in [0, 1), got {t.warmup_frac}")
    if t.weight_decay < 0:
        err("train.weight_decay", f"must be 0 or more, got {t.weight_decay}")
    positive("train.grad_clip", t.grad_clip, allow_none=True)
    if t.max_steps is None and t.epochs is None:
        err("train.max_steps", "set one of train.max_steps / train.epochs")
    positive("train.max_steps", t.max_steps, allow_none=True)
    positive("train.epochs", t.epochs, allow_none=True)
    if t.device not in ("auto", "cpu", "cuda"):
        err("train.device", f"expected auto, cpu or cuda, got {t.device!r}")
    if t.dtype not in ("auto", "float32", "bfloat16"):
        err("train.dtype", f"expected auto, float32 or bfloat16, got {t.dtype!r}")
    if t.parallel not in ("ddp", "fsdp"):
        err("train.parallel", f"expected ddp or fsdp, got {show(t.parallel)}")
    if t.optimizer not in ("adamw", "muon"):
        err("train.optimizer", f"expected adamw or muon, got {show(t.optimizer)}")
    positive("train.muon_lr", t.muon_lr)
    if not 0 <= t.muon_momentum < 1:
        err("train.muon_momentum", f"must be in [0, 1), got {t.muon_momentum}")
    positive("train.heartbeat_s", t.heartbeat_s)
    positive("train.print_every_s", t.print_every_s)
    positive("train.peak_flops", t.peak_flops, allow_none=True)
    e = p.eval
    positive("eval.every_steps", e.every_steps, allow_none=True)
    positive("eval.val_batches", e.val_batches)
    positive("eval.patience", e.patience, allow_none=True)
    if e.min_delta < 0:
        err("eval.min_delta", f"must be 0 or more, got {e.min_delta}")
    for key, message in V.profile_problems(e.validator, e.json_schema, d.source):
        err(key, message)
    positive("eval.samples.max_new_tokens", e.samples.max_new_tokens)
    positive("eval.samples.per_prompt", e.samples.per_prompt)
    if e.samples.temperature < 0:
        err("eval.samples.temperature", "must be 0 (greedy) or more")
    known = set(gate_metric_names(p))
    for name in p.gate.metrics:
        if name not in known:
            err(
                f"gate.metrics.{name}",
                f"no eval computes this metric; known here: {', '.join(sorted(known)) or 'none'}",
            )
    positive("checkpoint.every_steps", p.checkpoint.every_steps, allow_none=True)
    positive("checkpoint.keep_last", p.checkpoint.keep_last)
    ck = p.checkpoint
    if ck.format not in ("auto", "file", "dcp"):
        err("checkpoint.format", f"expected auto, file or dcp, got {ck.format!r}")
    elif ck.format == "file" and ck.async_:
        err(
            "checkpoint.async",
            "async saves write dcp checkpoints; set checkpoint.format: dcp (or auto), or async: false",
        )
    elif ck.format == "file" and getattr(t, "parallel", "ddp") == "fsdp":
        err(
            "checkpoint.format",
            "train.parallel fsdp shards the model over the ranks, so no rank holds it whole "
            "to write one file; use dcp (or auto)",
        )


def checkpoint_format(p: Profile) -> str:
    """file or dcp: what checkpoint.format auto means for this profile."""
    ck = p.checkpoint
    if ck.format != "auto":
        return ck.format
    return "dcp" if ck.async_ or getattr(p.train, "parallel", "ddp") == "fsdp" else "file"


def gate_metric_names(p: Profile) -> list[str]:
    """Metrics the eval computes for this profile (what a gate may name)."""
    names = []  # gate metrics are minimums, so lower-is-better val loss is not one
    if p.data.source == "walks":
        names += ["edge_compliance", "rule_compliance"]
    names += V.metric_names(p.eval.validator, p.eval.json_schema)
    return names


# -----------------------------------------------------------------------------
# overrides and the public entry points


def _set_path(d: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for part in parts[:-1]:
        nxt = d.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            d[part] = nxt
        d = nxt
    d[parts[-1]] = value


def resolve_profile_path(name_or_path: str) -> Path:
    """`demo-walks` → profiles/demo-walks.yaml; a path stays a path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists() or os.sep in name_or_path:
        return p
    return PROFILES_DIR / f"{name_or_path}.yaml"


def load_profile(name_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> Profile:
    """Load, override, type-check and value-check a profile. Raises ProfileError
    with every problem found."""
    path = resolve_profile_path(name_or_path)
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        known = sorted(q.stem for q in PROFILES_DIR.glob("*.yaml"))
        raise ProfileError(
            [Problem(file, "", None, f"no such profile file; known profiles: {', '.join(known)}")]
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ProfileError([Problem(file, "", None, f"cannot read the file: {e}")]) from None
    raw, lines = _parse_yaml(text, file)
    problems: list[Problem] = []
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ProfileError([Problem(file, "", 1, "the profile must be a YAML mapping of keys")])
    set_keys: dict[str, str] = {}
    for ov in overrides:
        if "=" not in ov:
            problems.append(Problem(file, ov, None, "--set expects key=value, e.g. train.lr=3e-4"))
            continue
        k, v = ov.split("=", 1)
        try:
            value = yaml.safe_load(v) if v != "" else None
        except yaml.YAMLError:
            value = v
        _set_path(raw, k.strip(), value)
        set_keys[k.strip()] = ov

    def err(key: str, message: str) -> None:
        line = line_of(lines, key)
        origin = next((s for k, s in set_keys.items() if key == k or key.startswith(k + ".")), None)
        if origin:
            message += f" (from --set {origin})"
            line = None
        problems.append(Problem(file, key, line, message))

    if "name" not in raw:
        raw["name"] = path.stem
    profile = _build(Profile, raw, "", err)
    # a field of the wrong type kept its default, so value checks stay meaningful
    _check_values(profile, err)
    if problems:
        raise ProfileError(problems)
    return profile


def to_dict(p: Any) -> Any:
    """The profile as plain data, keys as the YAML spells them (`async`, not `async_`)."""
    return _yaml_keys(dataclasses.asdict(p))


def _yaml_keys(d: Any) -> Any:
    if isinstance(d, dict):
        return {yaml_key(k): _yaml_keys(v) for k, v in d.items()}
    return d


def config_hash(p: Profile) -> str:
    """Hash of what shapes the training trajectory (budget and cadence excluded,
    so a resumed run may extend max_steps or change how often it prints)."""
    d = to_dict(p)
    for k in ("max_steps", "epochs", "heartbeat_s", "print_every_s", "peak_flops"):
        d["train"].pop(k, None)
    for k in ("format", "async"):  # how checkpoints are written, not what is trained
        d["checkpoint"].pop(k, None)
    blob = json.dumps(d, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
