"""Reading a sharded (DCP) checkpoint without the machinery that writes one: its trainer
state, a check of its metadata, and its model's weights gathered in one process.
core.checkpoint (verify, load) and core.dcp (resume) both read through here, so the
writer can import core.checkpoint without a cycle back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp

TRAINER_STATE = "trainer.pt"  # rank 0's step, data position, RNGs and hashes


def load_trainer_state(path: Path) -> dict:
    """Rank 0's trainer state from a sharded checkpoint (no model, no optimizer)."""
    return torch.load(Path(path) / TRAINER_STATE, map_location="cpu", weights_only=True)


def _metadata(path: Path) -> Any:
    return dcp.FileSystemReader(str(path)).read_metadata()


def check_metadata(path: Path) -> None:
    """Raise unless DCP's metadata reads and every shard it names is in the directory."""
    md = _metadata(path)
    names = {info.relative_path for info in (md.storage_data or {}).values()}
    missing = sorted(n for n in names if not (Path(path) / n).is_file())
    if missing:
        raise ValueError(f"the metadata names {missing[0]}, which is missing")


def load_model_weights(path: Path) -> dict[str, torch.Tensor]:
    """The whole model's weights gathered from every shard, on the CPU, in one process
    (no process group): what sampling, the post-flight and an export need."""
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    md = _metadata(path)
    template: dict[str, torch.Tensor] = {}
    for key, m in md.state_dict_metadata.items():
        if key.startswith("model.") and isinstance(m, TensorStorageMetadata):
            template[key.removeprefix("model.")] = torch.empty(m.size, dtype=m.properties.dtype)
    if not template:
        raise ValueError(f"{Path(path).name}/: holds no model weights")
    state = {"model": template}
    dcp.load(state, checkpoint_id=Path(path), no_dist=True)
    return state["model"]
