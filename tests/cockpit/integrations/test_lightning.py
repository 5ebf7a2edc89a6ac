"""Lightning with CockpitCallback: a real lightning.Trainer on a tiny next-token
model and random tokens writes the run directory itself; the step losses are the
values the module logged, float for float."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from core.events import read_events
from tests.conftest import REPO

pytest.importorskip("lightning")

SCRIPT = textwrap.dedent(
    """
    import json, sys, torch
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from cockpit.integrations.lightning import CockpitCallback

    run_dir, ckpts, fail = sys.argv[1], sys.argv[2], sys.argv[3]
    torch.manual_seed(0)

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.emb, self.head = torch.nn.Embedding(64, 32), torch.nn.Linear(32, 64)
            self.logged = []
        def forward(self, ids):
            return self.head(self.emb(ids))
        def _loss(self, ids):
            logits = self(ids[:, :-1])
            return torch.nn.functional.cross_entropy(logits.reshape(-1, 64), ids[:, 1:].reshape(-1))
        def training_step(self, batch, i):
            if fail == "error" and self.global_step == 3:
                raise RuntimeError("loss went NaN (pretend)")
            loss = self._loss(batch[0])
            self.log("train_loss", loss)
            self.logged.append((self.global_step + 1, loss.item()))
            return loss
        def validation_step(self, batch, i):
            self.log("val_loss", self._loss(batch[0]))
            self.log("val_acc", torch.tensor(0.5))
        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-3)

    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randint(0, 64, (64, 16), generator=g))
    val = torch.utils.data.TensorDataset(torch.randint(0, 64, (16, 16), generator=g))
    dl = lambda d: torch.utils.data.DataLoader(d, batch_size=4)
    model = Tiny()
    trainer = L.Trainer(
        max_steps=12, log_every_n_steps=1, val_check_interval=4, num_sanity_val_steps=0,
        enable_progress_bar=False, logger=False, accelerator="cpu", enable_model_summary=False,
        callbacks=[CockpitCallback(run_dir=run_dir, name="tiny-lm"),
                   ModelCheckpoint(dirpath=ckpts, every_n_train_steps=6, save_top_k=-1)],
    )
    trainer.fit(model, dl(data), dl(val))
    print("LOGGED " + json.dumps(model.logged))
    """
)


def run(tmp_path, fail: str = "no"):
    script = tmp_path / "train_pl.py"
    script.write_text(SCRIPT)
    rd = tmp_path / "run"
    r = subprocess.run(
        [sys.executable, str(script), str(rd), str(tmp_path / "ckpts"), fail],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    evs = [e.to_dict() if hasattr(e, "to_dict") else e for e in read_events(rd / "events.jsonl")]
    return r, evs


@pytest.mark.slow
def test_the_callback_writes_what_the_module_logged(tmp_path):
    r, evs = run(tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    logged = [tuple(x) for x in json.loads(r.stdout.split("LOGGED ", 1)[1])]
    steps = [(e["step"], e["loss"]) for e in evs if e["type"] == "step"]
    assert len(logged) == 12 and steps == logged  # every step, float for float
    evals = [e for e in evs if e["type"] == "eval"]
    assert [e["step"] for e in evals] == [4, 8, 12]
    assert all(e["val_loss"] > 0 and e["metrics"] == {"val_acc": 0.5} for e in evals)
    last = [e for e in evs if e["type"] == "step"][-1]
    assert last["tokens"] == 12 * 4 * 16 and last["tokens_per_s"] > 0 and last["lr"] == 1e-3
    ck = [e for e in evs if e["type"] == "checkpoint"]
    assert [c["step"] for c in ck] == [6, 12] and all(c["bytes"] > 1000 for c in ck)
    start, end = evs[0], evs[-1]
    assert start["type"] == "run_start" and start["total_steps"] == 12 and start["n_params"] > 0
    assert end["type"] == "run_end" and end["status"] == "completed" and end["step"] == 12


@pytest.mark.slow
def test_a_fit_that_raises_ends_failed_with_the_error(tmp_path):
    r, evs = run(tmp_path, "error")
    assert r.returncode != 0
    end = evs[-1]
    assert (
        end["type"] == "run_end" and end["status"] == "failed" and "loss went NaN" in end["reason"]
    )
    assert sum(e["type"] == "run_end" for e in evs) == 1
