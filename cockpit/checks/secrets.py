"""Secrets in training data: find them, never show them, write redacted copies.

The pre-flight checklist scans every data file before a run. A finding names
the file, the line (``"row:line"`` inside a parquet/jsonl record), the kind and
a masked preview; the secret itself only ever exists here as a sha256, which is
also what an allowlist names to suppress a known false positive.

Why not detect-secrets: it scans line by line through a plugin chain and
measured ~0.1-0.2 MB/s here (``bench/secrets_scan.py``), two orders of
magnitude under the 30 MB/s target. So: compiled patterns over whole ~1 MB
chunks with ``finditer``, the token patterns run only when their literal
anchor (``AKIA``, ``ghp_``, ``eyJ`` ...) is in the chunk, and line numbers are
counted from newline offsets only for matches.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import hashlib
import ipaddress
import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

TEXT_SUFFIXES = {".txt", ".md", ".py"}
CHUNK_BYTES = 1 << 20  # text files are read this much at a time (bounded memory)
PARQUET_BATCH_ROWS = 2048
_SEP = b"\x00"  # joins records of a batch; no pattern matches it, so no span crosses records

KINDS = (
    "aws_access_key",
    "aws_secret_key",
    "private_key",
    "github_token",
    "gitlab_token",
    "slack_token",
    "openai_key",
    "jwt",
    "ipv4",
    "ipv6",
    "high_entropy",
)


@dataclass(frozen=True)
class Finding:
    file: str
    """Path as given to the scanner."""
    line: str
    """"12" in a text file; "row:line" (both 1-based) in a parquet/jsonl record."""
    kind: str
    """One of KINDS."""
    preview: str
    """The line, secrets masked (at most the first 4 chars kept), cut to 100 chars."""
    sha256: str
    """sha256 hex of the secret text: what an allowlist names."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    kind: str
    sha256: str


# --- patterns -------------------------------------------------------------------------------
# Everything is matched on bytes: secrets are ASCII, and bytes.translate/find make the
# long-run prefilter for high-entropy blobs nearly free (see _b64_runs).

# (kind, literal anchors that must occur in the chunk for the pattern to run, pattern).
# The patterns start with a literal so the regex engine can skip to it; that a token does
# not start mid-word is checked after the match (_WORDISH), not by a costly lookbehind.
_TOKEN_PATTERNS = [
    (
        "private_key",
        (b"-----BEGIN",),
        re.compile(
            rb"-----BEGIN[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----"
            rb"(?:[^\x00]{0,100000}?-----END[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----"
            rb"|[A-Za-z0-9+/=:,\-\s]*)"
        ),
    ),
    (
        "aws_access_key",
        (b"AKIA", b"ASIA"),
        re.compile(rb"A(?:KIA|SIA)[A-Z0-9]{16}(?![A-Z0-9])"),
    ),
    (
        "github_token",
        (b"gh", b"github_pat_"),
        re.compile(rb"g(?:h[pousr]_[A-Za-z0-9]{36,255}|ithub_pat_\w{22,255})(?!\w)"),
    ),
    ("gitlab_token", (b"glpat-",), re.compile(rb"glpat-[\w-]{20,}(?![\w-])")),
    (
        "slack_token",
        (b"xox",),
        re.compile(rb"xox[abposr]-(?:[A-Za-z0-9]+-?){2,}(?![\w-])"),
    ),
    (
        "openai_key",
        (b"sk-",),
        re.compile(rb"sk-(?:(?:proj|svcacct|admin)-[\w-]{20,}|[A-Za-z0-9]{32,})(?![\w-])"),
    ),
    ("jwt", (b"eyJ",), re.compile(rb"eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{8,}(?![\w-])")),
]

# IPv4/IPv6 are found from a seed that starts with a literal ('.' or ':'), which the
# regex engine skips to quickly, then matched in full from a little way back.
_IPV4_SEED = re.compile(rb"\.\d{1,3}\.\d{1,3}\.\d")
# followed by a letter, '-' or '.word' it is part of a name (2.6.21.1dedibox, x.in-addr.arpa)
_IPV4 = re.compile(rb"(?<![\w.])\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?![\w-]|\.\w)")
# a version or a section number, not an address: v1.2.3.4, __version__ = "1.2.3.4",
# section 8.2.4.44, rfc7231#section-7.1.1.1
_IPV4_VERSION_BEFORE = re.compile(
    rb"(?:\b[vV]|(?i:version|release|section|chapter|rfc)\w*)[\s:=#'\"(-]*$"
)
_IPV6_SEED = re.compile(rb":[0-9A-Fa-f]{0,4}:")
_IPV6 = re.compile(rb"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:.])")
_HEX_ISH = re.compile(rb"[0-9A-Fa-f-]+")
_DIGIT = re.compile(rb"[0-9]")
_LETTER = re.compile(rb"[A-Za-z]")
_AWS_SECRET_HINT = re.compile(rb"aws|secret", re.IGNORECASE)
_B64_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-"
_B64_MAP = bytes(0x61 if b in _B64_CHARS else 0x20 for b in range(256))
_B64_MIN = 32
_WORDISH = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_DOC_NETS = [
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
]


@functools.lru_cache(maxsize=1 << 16)
def _public_ip(s: bytes) -> bool:
    if s[:3] in (b"10.", b"127", b"192", b"172", b"0.0"):  # cheap outs for the common ones
        if s.startswith((b"10.", b"127.", b"192.168.", b"0.")):
            return False
    try:
        ip = ipaddress.ip_address(s.decode("ascii"))
    except ValueError:
        return False
    if any(ip in n for n in _DOC_NETS if n.version == ip.version):
        return False
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or (ip.version == 4 and not ip.is_global)
    )


def _alphabet_like(s: bytes) -> bool:
    """An alphabet or a digit run (ABCDEFGHIJ..., 0123456789...): its entropy is maximal,
    yet it is a table in code, not a key. Half its neighbours ascending by one is enough;
    random text has about one in 64."""
    steps = sum(1 for a, b in zip(s, s[1:], strict=False) if b == a + 1)
    return steps * 2 >= len(s) - 1


def _entropy(s: bytes) -> float:
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def _has_digit_and_letter(s: bytes) -> bool:
    return bool(_DIGIT.search(s) and _LETTER.search(s))


def _b64_runs(data: bytes) -> Iterator[tuple[int, int]]:
    """(start, end) of every run of >= 32 base64/base64url chars (plus up to 2 '=')."""
    mask = data.translate(_B64_MAP)
    seed, pos = b"a" * _B64_MIN, 0
    while (i := mask.find(seed, pos)) >= 0:
        j = mask.find(b" ", i)
        j = len(data) if j < 0 else j
        pos = j
        while j - pos < 2 and data[j : j + 1] == b"=":
            j += 1
        yield i, j


def _seeded(seed: re.Pattern, full: re.Pattern, data: bytes, back: int) -> Iterator[re.Match]:
    end = 0
    for s in seed.finditer(data):
        if s.start() < end:
            continue
        lo = max(end, s.start() - back)
        m = full.search(data, lo, s.end() + 40)
        # search() with an end bound would misjudge the lookahead: re-match on the full data
        m = m and full.match(data, m.start())
        if m:
            end = m.end()
            yield m


# --- span finding ---------------------------------------------------------------------------


def _find_spans(data: bytes, allow: frozenset[str]) -> list[_Span]:
    """Every secret in `data`, sorted by start, non-overlapping, allowlisted ones dropped."""
    taken: list[tuple[int, int, str]] = []
    for kind, anchors, pat in _TOKEN_PATTERNS:
        if any(a in data for a in anchors):
            for m in pat.finditer(data):
                if kind != "private_key" and m.start() and data[m.start() - 1] in _WORDISH:
                    continue
                if kind == "openai_key" and not _has_digit_and_letter(m.group()[3:]):
                    continue
                taken.append((m.start(), m.end(), kind))
    for m in _seeded(_IPV4_SEED, _IPV4, data, 3):
        if _public_ip(m.group()) and not _IPV4_VERSION_BEFORE.search(
            data, max(0, m.start() - 24), m.start()
        ):
            taken.append((m.start(), m.end(), "ipv4"))
    for m in _seeded(_IPV6_SEED, _IPV6, data, 40):
        if m.group().count(b":") >= 2 and _public_ip(m.group()):
            taken.append((m.start(), m.end(), "ipv6"))
    for i, j in _b64_runs(data):
        s = data[i:j].rstrip(b"=")
        if _HEX_ISH.fullmatch(s) or not _has_digit_and_letter(s):
            continue  # SHA-256/git hashes, UUIDs, long words and identifiers
        if (b"/" in s or b"+" in s) and (b"-" in s or b"_" in s):
            continue  # both base64 alphabets at once is no encoding: a path, a URL, a name
        if len(s) == 40 and b"_" not in s and b"-" not in s:
            ls = data.rfind(b"\n", 0, i) + 1
            if _AWS_SECRET_HINT.search(data, max(ls, i - 60), i):
                taken.append((i, j, "aws_secret_key"))
                continue
        if _entropy(s) >= 4.5 and not _alphabet_like(s):
            taken.append((i, j, "high_entropy"))
    # A token found by a specific pattern is not also a high_entropy blob: specific kinds
    # are placed first, and of overlapping spans the one placed first wins.
    taken.sort(key=lambda t: (t[2] == "high_entropy", t[0]))
    out: list[_Span] = []
    starts: list[int] = []
    for start, e, kind in taken:
        i = bisect.bisect_left(starts, start)
        if (i > 0 and out[i - 1].end > start) or (i < len(out) and out[i].start < e):
            continue
        sha = hashlib.sha256(data[start:e]).hexdigest()
        starts.insert(
            i, start
        )  # an allowlisted span still covers its text: nothing inside it counts
        out.insert(i, _Span(start, e, kind, sha))
    return [sp for sp in out if sp.sha256 not in allow] if allow else out


def _mask(secret: bytes) -> bytes:
    keep = min(4, len(secret) // 4)
    return secret[:keep] + b"*" * (len(secret) - keep)


def _preview(data: bytes, spans: list[_Span], i: int) -> str:
    """The line holding spans[i], every secret on it masked, cut to 100 chars around it."""
    sp = spans[i]
    ls = data.rfind(b"\n", 0, sp.start) + 1
    le = data.find(b"\n", sp.start)
    le = len(data) if le < 0 else le
    j = i
    while j > 0 and spans[j - 1].end > ls:
        j -= 1
    parts, pos, ms = [], ls, 0
    for o in spans[j:]:
        if o.start >= le:
            break
        s, e = max(o.start, ls), min(o.end, le)
        parts.append(data[pos:s])
        if o is sp:
            ms = sum(map(len, parts))
        parts.append(_mask(data[o.start : o.end])[: e - s] if o.start >= ls else b"*" * (e - s))
        pos = e
    parts.append(data[pos:le])
    line = b"".join(parts).rstrip(b"\r")
    lo = max(0, min(ms - 30, len(line) - 100))
    return line[lo : lo + 100].decode("utf-8", "replace")


def _line_numbers(data: bytes, spans: list[_Span], first: int = 1) -> list[int]:
    out, pos, line = [], 0, first
    for sp in spans:
        line += data.count(b"\n", pos, sp.start)
        pos = sp.start
        out.append(line)
    return out


def scan_text(
    text: str, file: str, *, row: int | None = None, allow: frozenset[str] = frozenset()
) -> list[Finding]:
    """Findings in one text (a whole file, or one record when `row` is given)."""
    data = text.encode("utf-8", "surrogateescape")
    return _findings(data, _find_spans(data, allow), file, row, 1)


def _findings(
    data: bytes, spans: list[_Span], file: str, row: int | None, first_line: int
) -> list[Finding]:
    lines = _line_numbers(data, spans, first_line)
    return [
        Finding(
            file=file,
            line=str(n) if row is None else f"{row}:{n}",
            kind=sp.kind,
            preview=_preview(data, spans, i),
            sha256=sp.sha256,
        )
        for i, (sp, n) in enumerate(zip(spans, lines, strict=True))
    ]
