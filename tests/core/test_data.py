"""Files on disk → tokens: real parquet/jsonl/text, a real BPE, real errors."""

import json
import math
import os
import sysconfig
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.data import TokenWindows, expand_paths, read_documents
from tests.conftest import events, result, run_core, sets

STDLIB = Path(sysconfig.get_paths()["stdlib"])
SOURCES = [
    "json/decoder.py",
    "json/encoder.py",
    "textwrap.py",
    "string.py",
    "bisect.py",
    "heapq.py",
    "shlex.py",
    "fnmatch.py",
    "glob.py",
    "queue.py",
    "abc.py",
    "colorsys.py",
    "keyword.py",
    "calendar.py",
    "difflib.py",
    "argparse.py",
    "dataclasses.py",
    "functools.py",
    "typing.py",
    "inspect.py",
    "pathlib.py",
    "tarfile.py",
    "zipfile.py",
    "ast.py",
    "enum.py",
    "csv.py",
]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """~1 MB of real Python in every supported format, plus a shared tokenizer path."""
    d = tmp_path_factory.mktemp("corpus")
    texts = [(STDLIB / s).read_text() for s in SOURCES]
    pq.write_table(pa.table({"text": texts[:12]}), d / "a.parquet")
    with open(d / "b.jsonl", "w") as f:
        for t in texts[12:20]:
            f.write(json.dumps({"text": t}) + "\n")
    for i, t in enumerate(texts[20:]):
        (d / f"c{i}.py").write_text(t)
    (d / "notes.md").write_text("# notes\n\nSome *markdown* text.\n")
    return d


def files_cfg(corpus: Path, tmp: Path, vocab: int = 1024) -> list[str]:
    return [
        "data.source=files",
        f"data.paths=['{corpus}/*']",
        f"data.cache_dir={tmp / 'cache'}",
        "data.context=64",
        "data.stride=64",
        "data.val_fraction=0.1",
        f"tokenizer.path={corpus / f'tok{vocab}.json'}",
        f"tokenizer.vocab_size={vocab}",
        "model.n_layer=1",
        "model.n_head=2",
        "model.n_embd=32",
        "train.batch_size=4",
        "train.max_steps=4",
        "train.epochs=null",
        "eval.every_steps=2",
        "eval.every_epoch=false",
        "eval.val_batches=2",
        "eval.validator=python",
        "eval.samples.prompts=['def ','class ','import ']",
        "eval.samples.max_new_tokens=8",
        "gate.metrics={}",
        "checkpoint.every_epoch=false",
    ]


def test_reads_every_format(corpus):
    files = expand_paths([f"{corpus}/*"])
    assert {f.suffix for f in files} == {".parquet", ".jsonl", ".py", ".md"}
    n = sum(len(list(read_documents(f, "text"))) for f in files)
    assert n == len(SOURCES) + 1


@pytest.mark.heavy  # over 10 s on 2 cores: make test stays under 10 min; CI runs it
def test_text_run_trains_a_tokenizer_reports_valid_python_and_reuses_the_cache(corpus, tmp_path):
    cfg = files_cfg(corpus, tmp_path)
    rd = tmp_path / "run"
    run_core("--profile", "tiny-text", "--run-dir", str(rd), *sets(*cfg), check_rc=0)
    res = result(rd)
    assert res["status"] == "completed" and len(res["curves"]["train_loss"]) == 4
    assert "valid_python" in res["curves"] and len(res["curves"]["valid_python"]) == 2
    evs = events(rd)
    phases = {e["name"] for e in evs if e["type"] == "phase"}
    assert "tokenize" in phases
    samples = [e for e in evs if e["type"] == "sample"]
    assert len(samples) == 2 * 3 * 4 and all(isinstance(s["valid"], bool) for s in samples)
    assert (corpus / "tok1024.json").exists()
    ev = [e for e in evs if e["type"] == "eval"][-1]
    assert ev["val_ppl"] > 1 and "valid_python" in ev["metrics"]
    # second run: same data, same tokenizer -> the cached shards, no tokenize phase
    rd2 = tmp_path / "run2"
    run_core("--profile", "tiny-text", "--run-dir", str(rd2), *sets(*cfg), check_rc=0)
    assert "tokenize" not in {e["name"] for e in events(rd2) if e["type"] == "phase"}
    assert result(rd2)["curves"]["train_loss"] == res["curves"]["train_loss"]


@pytest.mark.heavy  # over 10 s on 2 cores: make test stays under 10 min; CI runs it
@pytest.mark.parametrize("profile", ["small-20m", "d12"])
def test_gpu_profiles_load_report_params_and_run_two_steps_on_cpu(profile, corpus, tmp_path):
    cfg = files_cfg(corpus, tmp_path, vocab=8192)
    # keep the profile's model and vocab; shrink only what the CPU cannot afford
    cfg = [c for c in cfg if not c.startswith(("model.", "tokenizer.vocab_size"))]
    cfg += [
        "train.max_steps=2",
        "train.batch_size=2",
        "train.compile=false",
        "train.device=cpu",
        "eval.every_steps=2",
        "eval.samples.prompts=[]",
        "checkpoint.every_steps=null",
    ]
    rd = tmp_path / "run"
    r = run_core("--profile", profile, "--run-dir", str(rd), *sets(*cfg), timeout=600, check_rc=0)
    expected = {"small-20m": "17.30M parameters", "d12": "91.23M parameters"}[profile]
    assert expected in r.stdout
    res = result(rd)
    assert res["summary"]["steps"] == 2 and res["summary"]["vocab_size"] == 8192
    losses = res["curves"]["train_loss"]  # a NaN is stored as null: None fails here too
    assert losses and all(isinstance(x, float) and math.isfinite(x) for x in losses)


# --- bad data: exit 2, a paragraph naming the file, nothing written over


def _bad(tmp_path, corpus_dir, *extra):
    cfg = files_cfg(corpus_dir, tmp_path) + list(extra)
    r = run_core("--profile", "tiny-text", "--run-dir", str(tmp_path / "run"), *sets(*cfg))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    return r.stderr


def test_unreadable_parquet_is_named(tmp_path, corpus):
    d = tmp_path / "data"
    d.mkdir()
    (d / "good.txt").write_text((STDLIB / "textwrap.py").read_text())
    bad = d / "broken.parquet"
    bad.write_bytes(os.urandom(4096))
    before = bad.read_bytes()
    err = _bad(tmp_path, d, f"tokenizer.path={corpus / 'tok1024.json'}")
    assert str(bad) in err and "not a readable parquet file" in err
    assert bad.read_bytes() == before


def test_truncated_parquet_is_named(tmp_path, corpus):
    d = tmp_path / "data"
    d.mkdir()
    whole = (corpus / "a.parquet").read_bytes()
    (d / "cut.parquet").write_bytes(whole[: len(whole) // 2])
    err = _bad(tmp_path, d, f"tokenizer.path={corpus / 'tok1024.json'}")
    assert "cut.parquet" in err


def test_missing_text_column_names_file_and_columns(tmp_path, corpus):
    d = tmp_path / "data"
    d.mkdir()
    pq.write_table(pa.table({"body": ["x = 1\n"] * 10}), d / "x.parquet")
    err = _bad(tmp_path, d, f"tokenizer.path={corpus / 'tok1024.json'}")
    assert (
        f"{d / 'x.parquet'}: no column 'text' (columns: body)" in err and "data.text_column" in err
    )


def test_bad_jsonl_line_is_named_with_its_line(tmp_path, corpus):
    d = tmp_path / "data"
    d.mkdir()
    (d / "x.jsonl").write_text('{"text": "a = 1"}\n{"text": oops}\n')
    err = _bad(tmp_path, d, f"tokenizer.path={corpus / 'tok1024.json'}")
    assert f"{d / 'x.jsonl'}:2: not valid JSON" in err


def test_empty_corpus(tmp_path, corpus):
    d = tmp_path / "data"
    d.mkdir()
    (d / "empty.txt").write_text("")
    err = _bad(tmp_path, d, f"tokenizer.path={corpus / 'tok1024.json'}")
    assert "corpus is empty" in err and str(d) in err


def test_too_few_tokens_for_one_batch(tmp_path, corpus):
    d = tmp_path / "data"
    d.mkdir()
    (d / "small.py").write_text("x = 1\n" * 300)
    err = _bad(tmp_path, d, f"tokenizer.path={corpus / 'tok1024.json'}", "train.batch_size=64")
    assert "too few" in err and "batch" in err


def test_token_windows_cover_the_stream_by_stride():
    import numpy as np

    w = TokenWindows(np.arange(100, dtype=np.uint16), context=10, stride=5)
    assert len(w) == (100 - 11) // 5 + 1
    b = w.batch(np.array([0, 3]))
    assert b.shape == (2, 11) and b[1, 0].item() == 15 and b[1, -1].item() == 25


def test_one_big_document_still_splits_into_train_and_val():
    from core.data import _is_val, _pieces

    doc = "".join(f"line {i} = {i * 7}\n" for i in range(60000))  # ~1 MB, one file
    pieces = _pieces(doc)
    assert "".join(pieces) == doc and len(pieces) > 10
    assert all(p.endswith("\n") for p in pieces)
    flags = [_is_val(p, 0.1) for p in pieces]
    assert any(flags) and not all(flags)
