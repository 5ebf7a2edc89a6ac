"""Secrets in training data: find them, never show them, write redacted copies.

The pre-flight checklist scans every data file before a run. A finding names
the file, the line (``"row:line"`` inside a parquet/jsonl record), the kind and
a masked preview; the secret itself only ever exists here as a keyed hash
(HMAC-SHA256, see Allowlist), which is also what an allowlist names to suppress a
known false positive. Not a plain sha256: an IPv4's is reversed by brute force in
0.03 s.

Every pattern runs in linear time with the standard library's ``re``: quantifiers
are bounded or end where their character class ends, and a token's start is
checked by a fixed-width lookbehind placed after its literal prefix, so inside a
long run of a pattern's alphabet only the run's first position is tried. RE2
(google-re2) guarantees linear time too, but it has no lookaround, and on this
scanner's many short seed matches its Python binding measured slower (IPv4 seed:
37 MB/s vs 96 MB/s for ``re``), so it would buy nothing here but a dependency.

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
import hmac
import ipaddress
import itertools
import math
import os
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
    "url_credentials",
    "hex_secret",
    "high_entropy",
)


@dataclass(frozen=True)
class Allowlist:
    """The key that identifies findings, and the findings allowed (false positives).

    A finding's id is HMAC-SHA256(key, secret text): stable while the key is kept (so an
    allowlist entry stays valid), and not reversible by whoever reads a report or a
    manifest without the key. The key lives in its own file beside the allowlist (see
    secrets_files.load_allowlist), never beside the ids it keys."""

    key: bytes = dataclasses.field(repr=False)
    """The HMAC key (32 random bytes); never in a repr, a report or a manifest."""
    ids: frozenset[str] = frozenset()
    """Allowed findings: their id as reported, or the plain sha256 hex of the text."""
    key_file: str | None = None
    """Where the key is kept; None for a key that lives only in this process."""


SESSION = Allowlist(os.urandom(32))
"""For scans with no allowlist: ids agree within this process only."""


def finding_id(key: bytes, secret: bytes) -> str:
    return hmac.new(key, secret, hashlib.sha256).hexdigest()


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
    """HMAC-SHA256 hex of the secret text under the allowlist's key (Allowlist): what an
    allowlist names. The name stays for the reports that read it; it is no plain sha256."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    kind: str
    sha256: str  # the keyed id (finding_id)


# --- patterns -------------------------------------------------------------------------------
# Everything is matched on bytes: secrets are ASCII, and bytes.translate/find make the
# long-run prefilter for high-entropy blobs nearly free (see _b64_runs).

# (kind, literal anchors that must occur in the chunk for the pattern to run, pattern).
# The patterns start with a literal so the regex engine can skip to it. Right after it,
# a fixed-width lookbehind (_starts) says the token does not start mid-word: inside a long
# run of the pattern's alphabet every other position then fails at once, which keeps the
# scan linear (checked after the match instead, each position of the run would scan the
# rest of it: quadratic). An escaped newline or tab before a token (``\\nAKIA...``, text
# a trainer reads from escaped data) counts as a word start.


def _starts(prefix: bytes, width: int) -> bytes:
    """`prefix`, then: the `width` bytes just matched are not preceded by a word char."""
    any_ = b"[\\s\\S]" * width
    return prefix + rb"(?:(?<![\w-]" + any_ + rb")|(?<=\\[nrt]" + any_ + rb"))"


_TOKEN_PATTERNS = [
    (
        "aws_access_key",
        (b"AKIA", b"ASIA"),
        re.compile(_starts(rb"A(?:KIA|SIA)", 4) + rb"[A-Z0-9]{16}(?![A-Z0-9])"),
    ),
    (
        "github_token",
        (b"gh",),
        re.compile(_starts(rb"gh[pousr]_", 4) + rb"[A-Za-z0-9]{36,255}(?!\w)"),
    ),
    (
        "github_token",
        (b"github_pat_",),
        re.compile(_starts(rb"github_pat_", 11) + rb"\w{22,255}(?!\w)"),
    ),
    # a greedy run that ends where its class ends needs no lookahead (and cannot backtrack)
    ("gitlab_token", (b"glpat-",), re.compile(_starts(rb"glpat-", 6) + rb"[\w-]{20,}")),
    # Dash-separated groups, no nested quantifier (the old (?:[A-Za-z0-9]+-?){2,} was
    # exponential); what follows the token does not matter: xoxb-...-..._old is a token.
    (
        "slack_token",
        (b"xox",),
        re.compile(_starts(rb"xox[abposr]-", 5) + rb"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*-?"),
    ),
    (
        "openai_key",
        (b"sk-",),
        re.compile(
            _starts(rb"sk-", 3)
            + rb"(?:(?:proj|svcacct|admin)-[\w-]{20,}|[A-Za-z0-9]{32,}(?![\w-]))"
        ),
    ),
    (
        "jwt",
        (b"eyJ",),
        re.compile(_starts(rb"eyJ", 3) + rb"[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{8,}"),
    ),
]
_SLACK_MIN = 7  # xoxb- and at least two characters, as the old pattern asked

# Private keys: the header, then the footer looked up among the footers found once per
# chunk (a lazy scan to the footer from every header was quadratic in headers).
_KEY_BEGIN = re.compile(rb"-----BEGIN[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----")
_KEY_END = re.compile(rb"-----END[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----")
_KEY_BODY = re.compile(rb"[A-Za-z0-9+/=:,\-\s]*")  # no footer: the base64 body that follows
_KEY_SPAN = 100_000

# Credentials in a URL: scheme://user:password@host; the password is the secret. Found
# from the literal '://', each part bounded and stopped by '/', so linear.
_URL_CRED = re.compile(rb"://[^\s/:@'\"<>]{0,256}:([^\s/@'\"<>]{1,256})@")
_PLACEHOLDERS = frozenset(
    b"password passwd pass pwd secret token xxx xxxx xxxxxx changeme user".split()
)

# A credential-looking key and its assignment, ending where a value would start.
_CRED_KEY = (
    rb"(?i:passw(?:or)?d|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|auth[_-]?key"
    rb"|credential|private[_-]?key|signing[_-]?key)"
)
_CRED_ASSIGNED = re.compile(_CRED_KEY + rb"[\w.-]{0,40}[\"']?\s{0,8}[:=]\s{0,8}[\"']?$")
_CRED_VALUE = re.compile(
    _CRED_KEY + rb"[\w.-]{0,40}[\"']?[ \t]{0,8}[:=][ \t]{0,8}[\"']?([^\s\"'`,;]{1,256})"
)
# the same words' cores, case-folded by hand: without IGNORECASE the engine skips to
# their first letters, 3x faster on the thousands of hashes in a MB of code
_CRED_WORD = re.compile(
    rb"[Pp](?:ass|ASS|wd|WD)|[Ss](?:ecret|ECRET)|[Tt](?:oken|OKEN)|[Kk](?:ey|EY)"
    rb"|[Cc](?:redential|REDENTIAL)"
)

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
        or (ip.version == 6 and ip.is_site_local)  # fec0::/10: deprecated, never routed
        or _alphabet_like(bytes(c for c in s if c != 0x2E))  # 123.45.67.89: a stand-in
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


def _seeded(
    seed: re.Pattern, full: re.Pattern, data: bytes, back: int, ahead: int
) -> Iterator[re.Match]:
    """Matches of `full` that hold a match of `seed` (a literal-led pattern the engine
    skips to fast), starting at most `back` bytes before it and ending at most `ahead`
    after it. Seeds whose windows touch share one, searched once: a long run of seeds
    (':::::...') costs its length, not its length times a window."""
    end, lo, hi, last = 0, 0, -(1 << 62), -1
    for s in itertools.chain(seed.finditer(data), (None,)):
        if s is not None and s.start() - back <= hi:
            hi, last = s.end() + ahead, s.start()
            continue
        pos = max(lo, end)
        # a match holds a seed, so it starts by the last one: past it, nothing is left
        while pos <= last and (m := full.search(data, pos, hi)):
            # search() with an end bound misjudges the lookahead: re-match on the full data
            m2 = full.match(data, m.start())
            if m2:
                end = pos = m2.end()
                yield m2
            else:
                pos = m.start() + 1
        if s is not None:
            lo, hi, last = max(0, s.start() - back), s.end() + ahead, s.start()


# --- span finding ---------------------------------------------------------------------------


def _private_keys(data: bytes) -> Iterator[tuple[int, int]]:
    ends = [m.span() for m in _KEY_END.finditer(data)]
    starts = [e[0] for e in ends]
    pos = 0
    for h in _KEY_BEGIN.finditer(data):
        if h.start() < pos:
            continue  # inside the last key's span
        k = bisect.bisect_left(starts, h.end())
        if k < len(ends) and ends[k][0] - h.end() <= _KEY_SPAN:
            pos = ends[k][1]
        else:
            body = _KEY_BODY.match(data, h.end())
            pos = body.end() if body else h.end()
        yield h.start(), pos


def _placeholder(value: bytes) -> bool:
    """A template's or a document's stand-in, not a password: ${PASS}, <password>, ***."""
    return value[:1] in b"$<{%*[" or value.lower() in _PLACEHOLDERS or len(set(value)) == 1


def _find_spans(data: bytes, allow: Allowlist = SESSION) -> list[_Span]:
    """Every secret in `data`, sorted by start, non-overlapping, allowlisted ones dropped."""
    taken: list[tuple[int, int, str]] = []
    if b"-----BEGIN" in data:
        taken += [(s, e, "private_key") for s, e in _private_keys(data)]
    for kind, anchors, pat in _TOKEN_PATTERNS:
        if any(a in data for a in anchors):
            for m in pat.finditer(data):
                if kind == "openai_key" and not _has_digit_and_letter(m.group()[3:]):
                    continue
                if kind == "slack_token" and m.end() - m.start() < _SLACK_MIN:
                    continue
                taken.append((m.start(), m.end(), kind))
    if b"://" in data:
        for m in _URL_CRED.finditer(data):
            if not _placeholder(m.group(1)):
                taken.append((m.start(1), m.end(1), "url_credentials"))
    for m in _seeded(_IPV4_SEED, _IPV4, data, 3, 3):
        if _public_ip(m.group()) and not _IPV4_VERSION_BEFORE.search(
            data, max(0, m.start() - 24), m.start()
        ):
            taken.append((m.start(), m.end(), "ipv4"))
    for m in _seeded(_IPV6_SEED, _IPV6, data, 40, 40):
        if m.group().count(b":") >= 2 and _public_ip(m.group()):
            taken.append((m.start(), m.end(), "ipv6"))
    for i, j in _b64_runs(data):
        run = data[i:j].rstrip(b"=")
        if _HEX_ISH.fullmatch(run):
            # a hash or a UUID, unless it is assigned to a credential key: api_key = <hex>
            if len(run) >= 32 and b"-" not in run:
                lo = max(0, i - 80)  # bounded: a long line of hashes stays linear
                ls = data.rfind(b"\n", lo, i) + 1 or lo  # the key is on the hash's line
                if _CRED_WORD.search(data, ls, i) and _CRED_ASSIGNED.search(data, ls, i):
                    taken.append((i, i + len(run), "hex_secret"))
            continue
        if not _has_digit_and_letter(run):
            continue  # long words and identifiers
        if (b"/" in run or b"+" in run) and (b"-" in run or b"_" in run):
            continue  # both base64 alphabets at once is no encoding: a path, a URL, a name
        if len(run) == 40 and b"_" not in run and b"-" not in run:
            lo = max(0, i - 60)
            if _AWS_SECRET_HINT.search(data, data.rfind(b"\n", lo, i) + 1 or lo, i):
                taken.append((i, j, "aws_secret_key"))
                continue
        if _entropy(run) >= 4.5 and not _alphabet_like(run):
            taken.append((i, j, "high_entropy"))
    # A token found by a specific pattern is not also a high_entropy blob: specific kinds
    # are placed first, and of overlapping spans the one placed first wins.
    taken.sort(key=lambda t: (t[2] == "high_entropy", t[0]))
    out: list[_Span] = []
    starts: list[int] = []
    dropped: set[int] = set()
    for s, e, kind in taken:
        i = bisect.bisect_left(starts, s)
        if (i > 0 and out[i - 1].end > s) or (i < len(out) and out[i].start < e):
            continue
        text = data[s:e]
        hid = finding_id(allow.key, text)
        starts.insert(i, s)  # an allowlisted span still covers its text: nothing inside it counts
        out.insert(i, _Span(s, e, kind, hid))
        if allow.ids and (hid in allow.ids or hashlib.sha256(text).hexdigest() in allow.ids):
            dropped.add(s)
    return [sp for sp in out if sp.start not in dropped] if dropped else out


_MASK_ALL = frozenset({"url_credentials"})  # a password's first characters help guess it


def _mask_credential_values(line: bytes) -> bytes:
    """`password = hunter2` -> `password = *******`: a credential key's value is never
    shown, found by a pattern or not."""
    if b"=" not in line and b":" not in line:
        return line  # no assignment: the common case, without the regex
    parts, pos = [], 0
    for m in _CRED_VALUE.finditer(line):
        parts += [line[pos : m.start(1)], b"*" * (m.end(1) - m.start(1))]
        pos = m.end(1)
    parts.append(line[pos:])
    return b"".join(parts)


_VIEW = 100  # bytes of a line shown
_CONTEXT = 400  # bytes before the view searched for a credential key whose value reaches in


def _masked(data: bytes, o: _Span, s: int, e: int) -> bytes:
    """data[s:e], inside span `o`, as its mask shows it (its first few bytes, then '*')."""
    keep = 0 if o.kind in _MASK_ALL else min(4, (o.end - o.start) // 4)
    shown = data[s : max(s, min(e, o.start + keep))]
    return shown + b"*" * (e - s - len(shown))


def _preview(data: bytes, spans: list[_Span], ends: list[int], i: int) -> str:
    """About 100 bytes of the line holding spans[i], from 30 before it, every secret in
    them masked and every credential key's value too. Only a window around the finding is
    read, so many findings on one long line cost their number, not its square."""
    sp = spans[i]
    back = max(0, sp.start - _CONTEXT - _VIEW)
    ls = data.rfind(b"\n", back, sp.start) + 1 or back
    le = data.find(b"\n", sp.start, sp.start + _VIEW + 1)
    le = min(len(data), sp.start + _VIEW) if le < 0 else le
    if le > ls and data[le - 1] == 0x0D:
        le -= 1
    start = max(ls, min(sp.start - 30, le - _VIEW))
    end = min(le, start + _VIEW)
    w0 = max(ls, start - _CONTEXT)
    parts, pos = [], w0
    k = bisect.bisect_right(ends, w0)
    while k < len(spans) and spans[k].start < end:
        o = spans[k]
        s, e = max(o.start, w0), min(o.end, end)
        parts += [data[pos:s], _masked(data, o, s, e)]
        pos = e
        k += 1
    parts.append(data[pos:end])
    view = _mask_credential_values(b"".join(parts))  # lengths kept: offsets still hold
    return view[start - w0 :].decode("utf-8", "replace")


def _line_numbers(data: bytes, spans: list[_Span], first: int = 1) -> list[int]:
    out, pos, line = [], 0, first
    for sp in spans:
        line += data.count(b"\n", pos, sp.start)
        pos = sp.start
        out.append(line)
    return out


def scan_text(
    text: str, file: str, *, row: int | None = None, allow: Allowlist = SESSION
) -> list[Finding]:
    """Findings in one text (a whole file, or one record when `row` is given)."""
    data = encode(text)
    return _findings(data, _find_spans(data, allow), file, row, 1)


def encode(text: str) -> bytes:
    """A text's UTF-8 bytes, lone surrogates kept (decode(): back to the same text)."""
    return text.encode("utf-8", "surrogatepass")


def decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogatepass")


def _findings(
    data: bytes, spans: list[_Span], file: str, row: int | None, first_line: int
) -> list[Finding]:
    lines = _line_numbers(data, spans, first_line)
    ends = [sp.end for sp in spans]
    return [
        Finding(
            file=file,
            line=str(n) if row is None else f"{row}:{n}",
            kind=sp.kind,
            preview=_preview(data, spans, ends, i),
            sha256=sp.sha256,
        )
        for i, (sp, n) in enumerate(zip(spans, lines, strict=True))
    ]
