"""Validators: is a generated sample the kind of text the run trains for?

`eval.validator` names one: python | json | yaml | c | walks | module:function.
The eval (a gate metric and each sample's `valid`) and the post-flight judge
samples through `validator_for`; the profile loader checks a name with
`profile_problems` so a bad one is a profile error, never an eval-time crash.

walks is scored on the graph by core.walks (edges and the rule), not here.
No torch in this module: the profile loader imports it.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

BUILTIN = ("python", "json", "yaml", "c", "walks")


@dataclass(frozen=True)
class Verdict:
    valid: bool
    "the sample's verdict (json with a schema: valid JSON and schema_ok)"
    checks: dict[str, bool] = field(default_factory=dict)
    "each metric's verdict for this sample, e.g. {'valid_json': True, 'schema_ok': False}"
    note: str = ""
    "what a reader should know: the first error, trailing text ignored, the checker used"


@dataclass(frozen=True)
class Validator:
    name: str
    "as the profile names it"
    label: str
    "what judged, for reports: e.g. 'c (cc -fsyntax-only)'"
    metrics: tuple[str, ...]
    "the eval metrics it computes (shares of samples), the names a gate may use"
    judge: Callable[[str, str], Verdict]
    "(prompt, text) -> Verdict"

    def rates(self, verdicts: list[Verdict]) -> dict[str, float]:
        """Each metric as the share of samples that pass it."""
        if not verdicts:
            return {}
        return {m: sum(v.checks[m] for v in verdicts) / len(verdicts) for m in self.metrics}


# -----------------------------------------------------------------------------
# the truncation rule: the token budget cuts a sample anywhere, so judge its complete lines


def complete_lines(code: str) -> str:
    """The sample up to its last newline (all of it when it has none)."""
    if "\n" in code and not code.endswith("\n"):
        code = code[: code.rfind("\n") + 1]
    return code


# -----------------------------------------------------------------------------
# python


def python_is_valid(prompt: str, text: str) -> bool:
    """Does the sample parse as Python? Judge its complete lines, and let a block
    opened on the last line be closed with `pass` ("generated code is valid"
    means it parses)."""
    import ast  # stdlib, cheap

    code = complete_lines(prompt + text)
    last = next((ln for ln in reversed(code.splitlines()) if ln.strip()), "")
    indent = last[: len(last) - len(last.lstrip())]
    for candidate in (code, f"{code}\n{indent}    pass\n"):
        try:
            ast.parse(candidate)
            return True
        except (SyntaxError, ValueError):
            continue
    return False


def _python(prompt: str, text: str) -> Verdict:
    ok = python_is_valid(prompt, text)
    return Verdict(ok, {"valid_python": ok})


# -----------------------------------------------------------------------------
# json: one complete top-level value; trailing text after it is ignored (and said)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python's json reads NaN/Infinity; JSON does not


def json_verdict(prompt: str, text: str, schema: dict | None = None) -> Verdict:
    doc = (prompt + text).lstrip()
    checks = {"valid_json": False} | ({"schema_ok": False} if schema is not None else {})
    try:
        value, end = json.JSONDecoder(parse_constant=_no_constant).raw_decode(doc)
    except json.JSONDecodeError as e:
        return Verdict(False, checks, f"not JSON: {e.msg} (line {e.lineno}, column {e.colno})")
    except ValueError as e:
        return Verdict(False, checks, f"not JSON: {e}")
    rest = doc[end:].strip()
    notes = [f"trailing text after the JSON value ignored: {rest[:40]!r}"] if rest else []
    checks["valid_json"] = True
    if schema is not None:
        import jsonschema  # lazy: only profiles with eval.json_schema need it

        err = jsonschema.exceptions.best_match(
            jsonschema.validators.validator_for(schema)(schema).iter_errors(value)
        )
        checks["schema_ok"] = err is None
        if err is not None:
            where = "/".join(str(p) for p in err.absolute_path) or "the top level"
            notes.append(f"schema: {err.message[:200]} (at {where})")
    return Verdict(all(checks.values()), checks, "; ".join(notes))


def load_schema(path: str) -> dict:
    """The JSON Schema at `path`, checked. Raises ValueError saying what is wrong."""
    import jsonschema  # lazy: only profiles with eval.json_schema need it

    try:
        schema = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"no such file {path!r} (relative to {os.getcwd()})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read {path!r}: {e}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not JSON ({e.msg})") from None
    if not isinstance(schema, dict):
        raise ValueError(f"{path}: a JSON Schema is an object, got {type(schema).__name__}")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.exceptions.SchemaError as e:
        raise ValueError(f"{path}: not a valid JSON Schema: {e.message}") from None
    return schema


# -----------------------------------------------------------------------------
# yaml: a mapping or a sequence (a bare scalar is any text at all)


def _yaml(prompt: str, text: str) -> Verdict:
    code = complete_lines(prompt + text)
    try:
        value = yaml.safe_load(code)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        return Verdict(False, {"valid_yaml": False}, f"not YAML: {problem}{where}")
    ok = isinstance(value, (dict, list))
    note = "" if ok else f"parses as a {type(value).__name__}, not a mapping or sequence"
    return Verdict(ok, {"valid_yaml": ok}, note)


# -----------------------------------------------------------------------------
# c: the system compiler in syntax-only mode, or a tree-sitter C grammar without one


def open_braces(code: str) -> int:
    """Braces left open, outside comments, strings and character literals (linear scan)."""
    depth, i, n = 0, 0, len(code)
    while i < n:
        c = code[i]
        if c == "/" and code.startswith("//", i):
            j = code.find("\n", i)
            i = n if j < 0 else j
        elif c == "/" and code.startswith("/*", i):
            j = code.find("*/", i + 2)
            i = n if j < 0 else j + 2
            continue
        elif c in "\"'":
            i += 1
            while i < n and code[i] != c and code[i] != "\n":
                i += 2 if code[i] == "\\" else 1
        elif c == "{":
            depth += 1
        elif c == "}":
            depth = max(0, depth - 1)
        i += 1
    return depth


def c_candidates(prompt: str, text: str) -> list[str]:
    """The sample's complete lines, then the same with every open block closed."""
    code = complete_lines(prompt + text)
    depth = open_braces(code)
    return [code] + ([code + "\n" + "}\n" * depth] if depth else [])


@functools.lru_cache(maxsize=1)
def c_checker() -> tuple[str, Callable[[str], tuple[bool, str]]] | None:
    """(label, check(code) -> (ok, first error)) or None: cc/gcc/clang on PATH first,
    else the tree-sitter C grammar when its wheels are installed."""
    cc = next((c for c in (shutil.which(x) for x in ("cc", "gcc", "clang")) if c), None)
    if cc is not None:
        name = Path(cc).name

        def compile_c(code: str) -> tuple[bool, str]:
            r = subprocess.run(
                [cc, "-fsyntax-only", "-x", "c", "-"],
                input=code,
                capture_output=True,
                text=True,
                timeout=20,
                env={**os.environ, "LC_ALL": "C"},
            )
            errs = [ln for ln in r.stderr.splitlines() if "error" in ln]
            return r.returncode == 0, (errs[0] if errs else r.stderr.strip()[:200])

        return f"c ({name} -fsyntax-only)", compile_c
    try:
        import tree_sitter  # lazy, optional: the fallback when no C compiler is installed
        import tree_sitter_c  # lazy, optional: the grammar for it
    except ImportError:
        return None
    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_c.language()))

    def parse_c(code: str) -> tuple[bool, str]:
        root = parser.parse(code.encode()).root_node
        return not root.has_error, "tree-sitter: syntax error" if root.has_error else ""

    return "c (tree-sitter-c, syntax only)", parse_c


C_UNAVAILABLE = (
    "c validator unavailable: no C compiler (cc, gcc or clang) on PATH and no tree-sitter C "
    "grammar; install a compiler, or `pip install tree-sitter tree-sitter-c`"
)


def _c(check: Callable[[str], tuple[bool, str]]) -> Callable[[str, str], Verdict]:
    def judge(prompt: str, text: str) -> Verdict:
        cands = c_candidates(prompt, text)
        first = ""
        for k, code in enumerate(cands):
            ok, msg = check(code)
            if ok:
                return Verdict(True, {"valid_c": True}, "open blocks closed" if k else "")
            first = first or msg
        return Verdict(False, {"valid_c": False}, first)

    return judge


# -----------------------------------------------------------------------------
# module:function: a user's f(prompt, text) -> bool


def resolve_callable(ref: str) -> Callable[[str, str], object]:
    """`pkg.mod:fn` imported from the path (the working directory included).
    Raises ValueError saying what is wrong."""
    mod_name, _, fn_name = ref.partition(":")
    if not mod_name or not fn_name or ":" in fn_name:
        raise ValueError(f"expected module:function, got {ref!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())  # a validator beside the profiles, as `python -m` finds it
    try:
        mod = importlib.import_module(mod_name)
    except Exception as e:  # the user's module may raise anything while importing
        raise ValueError(f"cannot import module {mod_name!r}: {type(e).__name__}: {e}") from None
    fn = getattr(mod, fn_name, None)
    if fn is None:
        raise ValueError(f"module {mod_name!r} has no attribute {fn_name!r}")
    if not callable(fn):
        raise ValueError(f"{ref} is a {type(fn).__name__}, not a function f(prompt, text) -> bool")
    return fn


def _custom(fn: Callable[[str, str], object]) -> Callable[[str, str], Verdict]:
    def judge(prompt: str, text: str) -> Verdict:
        try:
            ok = bool(fn(prompt, text))
        except Exception as e:  # the user's code: an error judges this sample, not the run
            return Verdict(False, {"valid_custom": False}, f"raised {type(e).__name__}: {e}")
        return Verdict(ok, {"valid_custom": ok})

    return judge


# -----------------------------------------------------------------------------
# the entry points


def metric_names(name: str | None, json_schema: str | None = None) -> list[str]:
    """The eval metrics a text validator computes (walks' are core.walks')."""
    if name in (None, "walks"):
        return []
    if name == "json":
        return ["valid_json"] + (["schema_ok"] if json_schema else [])
    if name in BUILTIN:
        return [f"valid_{name}"]
    return ["valid_custom"]


def profile_problems(
    name: str | None, json_schema: str | None, source: str
) -> list[tuple[str, str]]:
    """(key, message) for every problem with eval.validator / eval.json_schema."""
    out: list[tuple[str, str]] = []
    if name is None:
        pass
    elif name == "walks":
        if source != "walks":
            out.append(("eval.validator", "walks judges graph walks: needs data.source: walks"))
    elif name in BUILTIN:
        if source == "walks":
            out.append(("eval.validator", f"{name!r} judges text; walks data is judged by 'walks'"))
        if name == "c" and c_checker() is None:
            out.append(("eval.validator", C_UNAVAILABLE))
    elif ":" in name:
        try:
            resolve_callable(name)
        except ValueError as e:
            out.append(("eval.validator", str(e)))
    else:
        out.append(
            (
                "eval.validator",
                f"expected null, {', '.join(BUILTIN)} or module:function, got {name!r}",
            )
        )
    if json_schema is not None:
        if name != "json":
            out.append(("eval.json_schema", "only the json validator reads a schema"))
        else:
            try:
                load_schema(json_schema)
            except ValueError as e:
                out.append(("eval.json_schema", str(e)))
    return out


@functools.lru_cache(maxsize=8)
def validator_for(name: str | None, json_schema: str | None = None) -> Validator | None:
    """The text validator a profile names; None for none and for walks. Assumes the
    profile passed profile_problems (a bad name raises ValueError here)."""
    if name in (None, "walks"):
        return None
    metrics = tuple(metric_names(name, json_schema))
    if name == "python":
        return Validator(name, "python", metrics, _python)
    if name == "json":
        schema = load_schema(json_schema) if json_schema else None
        label = f"json + schema {Path(json_schema).name}" if json_schema else "json"
        return Validator(name, label, metrics, lambda p, t: json_verdict(p, t, schema))
    if name == "yaml":
        return Validator(name, "yaml (mapping or sequence)", metrics, _yaml)
    if name == "c":
        found = c_checker()
        if found is None:
            raise ValueError(C_UNAVAILABLE)
        label, check = found
        return Validator(name, label, metrics, _c(check))
    assert name is not None
    return Validator(name, name, metrics, _custom(resolve_callable(name)))
