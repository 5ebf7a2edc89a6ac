"""Secrets scanner: planted fakes found at the right file/line, look-alikes ignored,
secret text never in any output, redacted copies clean and originals untouched."""

import base64
import hashlib
import json
import random
import string

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cockpit.checks.secrets import Allowlist, finding_id, scan_text
from cockpit.checks.secrets_files import load_allowlist, redact_copies, scan_files

_rng = random.Random(7)
_ALNUM = string.ascii_letters + string.digits


def _tok(n):
    return "".join(_rng.choices(_ALNUM, k=n))


# All fake. (kind, secret, the line it is planted in)
PLANTED = [
    ("aws_access_key", "AKIAIOSFODNN7EXAMPLE", "aws_access_key_id = {}"),
    ("aws_secret_key", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "aws_secret_access_key = {}"),
    ("github_token", "ghp_" + _tok(36), "token: {}"),
    ("gitlab_token", "glpat-" + _tok(20), "GITLAB={}"),
    ("slack_token", "xoxb-1234567890-0987654321-" + _tok(24), "slack {} here"),
    ("openai_key", "sk-" + _tok(48), "OPENAI_API_KEY='{}'"),
    ("openai_key", "sk-proj-" + _tok(40) + "_" + _tok(20), "key {}"),
    (
        "jwt",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0." + _tok(43),
        "Authorization: Bearer {}",
    ),
    ("ipv4", "8.8.4.4", "connect to {} now"),
    ("ipv6", "2606:4700:4700::1111", "dns [{}]:53"),
    ("high_entropy", base64.b64encode(random.Random(3).randbytes(48)).decode(), "blob {}"),
]
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA"
    + _tok(60)
    + "\n"
    + _tok(64)
    + "\n-----END RSA PRIVATE KEY-----"
)
OPENSSH = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA"
    + _tok(40)
    + "\n-----END OPENSSH PRIVATE KEY-----"
)
SECRETS = [s for _, s, _ in PLANTED] + [PEM, OPENSSH]

LOOKALIKES = [
    "server at 10.0.0.1 and 192.168.1.20 and 172.16.4.2 and 127.0.0.1 and 169.254.1.1",
    "docs use 192.0.2.7, 198.51.100.3 and 203.0.113.9; ipv6 fe80::1 ::1 2001:db8::5 and ::",
    "installed version 1.2.3.4 and v1.2.3.4, Version: 4.3.2.1 and 1.2.3.4.5 too",
    "id 123e4567-e89b-12d3-a456-426614174000 at 12:30:45 in a:b:c",
    "sha " + hashlib.sha256(b"x").hexdigest() + " git " + hashlib.sha1(b"y").hexdigest(),
    "b64 "
    + base64.b64encode(b"password").decode()
    + " "
    + base64.b64encode(b"hello world").decode(),
    "a_very_long_python_identifier_name_for_config_values = ask-the-team-later",
    "task-force-management-plan-and-more-words here; desk-top",
]


def _doc():
    """Lines 1..: filler, then one planted secret per line, look-alikes between."""
    lines = ["# training notes", "plain prose line about loss curves"]
    where = {}
    for kind, secret, fmt in PLANTED:
        lines.append(LOOKALIKES[len(lines) % len(LOOKALIKES)])
        lines.append(fmt.format(secret))
        where[secret] = (len(lines), kind)
    lines.append("key material:")
    where[PEM] = (len(lines) + 1, "private_key")
    lines.extend(PEM.split("\n"))
    where[OPENSSH] = (len(lines) + 1, "private_key")
    lines.extend(OPENSSH.split("\n"))
    lines.extend(LOOKALIKES)
    return "\n".join(lines) + "\n", where


KEY = Allowlist(b"a fixed key for these tests only")


def _sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


def _id(s):
    """A finding's id under KEY."""
    return finding_id(KEY.key, s.encode())


def _assert_no_secret(blob: str):
    for s in SECRETS:
        assert s not in blob
        for part in s.split("\n"):  # no line of a key block either
            assert len(part) < 16 or part.startswith("-----") or part not in blob


def test_every_kind_found_at_its_line_and_nothing_else(tmp_path):
    text, where = _doc()
    f = tmp_path / "notes.txt"
    f.write_text(text)
    found = scan_files([f], allow=KEY)
    got = {(x.line, x.kind, x.sha256) for x in found}
    want = {(str(line), kind, _id(s)) for s, (line, kind) in where.items()}
    assert got == want
    assert all(x.file == str(f) for x in found)
    _assert_no_secret(json.dumps([x.to_dict() for x in found]))
    aws = next(x for x in found if x.kind == "aws_access_key")
    # a credential key's value is masked whole; elsewhere the first 4 characters show
    assert aws.preview == "aws_access_key_id = " + "*" * 20
    gl = next(x for x in found if x.kind == "gitlab_token")
    assert gl.preview == "GITLAB=glpa" + "*" * 22


@pytest.mark.parametrize("line", LOOKALIKES)
def test_lookalikes_not_flagged(line):
    assert scan_text(line, "x.txt") == []


def test_records_in_parquet_and_jsonl_give_row_and_line(tmp_path):
    text, where = _doc()
    rows = ["nothing here", "still nothing\n" + LOOKALIKES[0], text, "tail 8.8.8.8"]
    pq.write_table(
        pa.table({"id": list(range(4)), "text": rows}), tmp_path / "d.parquet", row_group_size=2
    )
    (tmp_path / "d.jsonl").write_bytes(b"".join(orjson.dumps({"text": r}) + b"\n" for r in rows))
    want = {(f"3:{line}", kind) for _, (line, kind) in where.items()} | {("4:1", "ipv4")}
    for name in ("d.parquet", "d.jsonl"):
        seen = []
        found = scan_files([tmp_path / name], progress=lambda d, t, seen=seen: seen.append((d, t)))
        assert {(x.line, x.kind) for x in found} == want, name
        assert seen[-1][0] == seen[-1][1]
        _assert_no_secret(json.dumps([x.to_dict() for x in found]))


def test_allowlist_suppresses_by_hash(tmp_path):
    al = tmp_path / "allow.txt"
    assert load_allowlist(tmp_path / "missing").ids == frozenset()
    key = load_allowlist(al).key
    ids = {x.sha256 for x in scan_text("a 9.9.9.9", "f", allow=load_allowlist(al))}
    al.write_text(f"# known test fixture\n{_sha('8.8.4.4')}  # dns\n\n{ids.pop()}\n")
    allow = load_allowlist(al)
    found = scan_text("a 8.8.4.4 b 1.1.1.1 c 9.9.9.9", "f", allow=allow)
    assert [(x.kind, x.sha256) for x in found] == [("ipv4", finding_id(key, b"1.1.1.1"))]


def test_preview_masks_every_secret_on_the_line():
    a, b = "ghp_" + _tok(36), "AKIAIOSFODNN7EXAMPLE"
    found = scan_text(f"x {a} y {b} " + "z" * 300, "f", row=5)
    assert [x.line for x in found] == ["5:1", "5:1"]
    for x in found:
        assert a not in x.preview and b not in x.preview and len(x.preview) <= 100
        assert a[4:12] not in x.preview and b[4:12] not in x.preview


def test_redacted_copies_clean_originals_untouched(tmp_path):
    text, where = _doc()
    src = tmp_path / "src"
    src.mkdir()
    (src / "notes.txt").write_text(text)
    (src / "clean.md").write_text("nothing secret\n")
    rows = ["ok", text]
    pq.write_table(pa.table({"text": rows, "n": [1, 2]}), src / "d.parquet")
    (src / "d.jsonl").write_bytes(b"".join(orjson.dumps({"text": r, "n": 1}) + b"\n" for r in rows))
    paths = sorted(src.iterdir())
    before = {p: p.read_bytes() for p in paths}

    out = tmp_path / "out"
    m = redact_copies(paths, out)
    assert {p: p.read_bytes() for p in paths} == before
    assert m["rescan_findings"] == 0
    assert scan_files([out / p.name for p in paths]) == []
    manifest = (out / "manifest.json").read_text()
    assert json.loads(manifest) == m
    _assert_no_secret(manifest)
    for p in paths:
        _assert_no_secret((out / p.name).read_bytes().decode("utf-8", "replace"))
    by = {e["source"]: e for e in m["files"]}
    assert by[str(src / "clean.md")]["redactions"] == []
    assert (out / "clean.md").read_bytes() == before[src / "clean.md"]
    notes = by[str(src / "notes.txt")]
    assert notes["source_sha256"] == hashlib.sha256(before[src / "notes.txt"]).hexdigest()
    assert {(r["line"], r["kind"]) for r in notes["redactions"]} == {
        (str(line), kind) for line, kind in where.values()
    }
    assert "[REDACTED:aws_access_key]" in (out / "notes.txt").read_text()
    red = pq.read_table(out / "d.parquet").to_pydict()
    assert red["n"] == [1, 2] and red["text"][0] == "ok" and "[REDACTED:jwt]" in red["text"][1]
    assert len(by[str(src / "d.jsonl")]["redactions"]) == len(where)

    with pytest.raises(FileExistsError):
        redact_copies(paths, out)  # not empty
    with pytest.raises(ValueError):
        redact_copies([src / "clean.md"], src / "x" / "..")  # would overwrite the original
