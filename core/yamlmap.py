"""YAML onto frozen dataclasses with line numbers, collecting every problem.

The machinery behind core.config.load_profile: compose the YAML node tree to
know each key path's line, then coerce plain data into the dataclass schema,
reporting each problem (file, key path, line, what was expected) instead of
stopping at the first.
"""

from __future__ import annotations

import dataclasses
import difflib
import keyword
import math
import reprlib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

# -----------------------------------------------------------------------------
# errors

ErrFn = Callable[[str, str], None]
"(key path, message): how a problem found while mapping is reported"


@dataclass(frozen=True)
class Problem:
    file: str
    key: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} {self.message}"


class ProfileError(Exception):
    """Every problem found in one profile (or checklist), reported together."""

    def __init__(self, problems: list[Problem], what: str = "profile"):
        self.problems = problems
        n = len(problems)
        head = f"{n} problem{'s' if n != 1 else ''} in {what} {problems[0].file}:"
        super().__init__("\n".join([head] + [f"  {p}" for p in problems]))


# -----------------------------------------------------------------------------
# YAML with line numbers: compose the node tree, keep each key path's line


def _line_map(node: yaml.Node, prefix: str, lines: dict[str, int], seen: set[int]) -> None:
    # An alias is the anchored node itself, so walking every path would expand
    # aliases of aliases exponentially (a 300-byte "billion laughs"). Each node is
    # walked once: keys under a second use of an anchor have no line of their own,
    # and their problems are reported at the line of the key that uses the alias.
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = f"{prefix}.{k.value}" if prefix else str(k.value)
            lines[key] = k.start_mark.line + 1
            _line_map(v, key, lines, seen)
    elif isinstance(node, yaml.SequenceNode):  # list items: steps[2].check
        for i, v in enumerate(node.value):
            key = f"{prefix}[{i}]"
            lines[key] = v.start_mark.line + 1
            _line_map(v, key, lines, seen)


def line_of(lines: dict[str, int], key: str) -> int | None:
    """The line of `key`, else of its nearest parent that has one (a key under an
    alias, a list item of a flow list): `a.b[2].c` tries a.b[2].c, a.b[2], a.b, a."""
    while key:
        if key in lines:
            return lines[key]
        cut = max(key.rfind("."), key.rfind("["))
        key = key[:cut] if cut > 0 else ""
    return None


def _parse_yaml(text: str, file: str) -> tuple[Any, dict[str, int]]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        line = mark.line + 1 if mark else None
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ProfileError(
            [Problem(file, "", line, f"malformed YAML ({what}); fix the syntax at that line")]
        ) from None
    lines: dict[str, int] = {}
    if node is not None:
        _line_map(node, "", lines, set())
    return data, lines


# -----------------------------------------------------------------------------
# mapping plain data onto the dataclasses, collecting problems

# a value quoted in a message is cut short: a list of aliases prints like it expands
_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxlist, _repr.maxdict, _repr.maxstring, _repr.maxother = 2, 4, 4, 80, 80


def show(value: Any, width: int = 100) -> str:
    text = _repr.repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args) + " or null"
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        k, v = typing.get_args(tp)
        return f"a mapping of {_type_name(k)} to {_type_name(v)}"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, str(tp)
    )


def _coerce(value: Any, tp: Any, key: str, err: ErrFn) -> Any:
    """Value converted to type `tp`, or an error reported and None returned."""
    if tp is Any:
        return value  # free-form (a checklist step's parameters): its kind checks it
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key, err) if len(inner) == 1 else value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build(tp, value, key, err)
    if origin is list:
        if not isinstance(value, list):
            err(key, f"expected {_type_name(tp)}, got {show(value)}")
            return None
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, f"{key}[{i}]", err) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            err(key, f"expected {_type_name(tp)}, got {show(value)}")
            return None
        _, vt = typing.get_args(tp)
        return {str(k): _coerce(v, vt, f"{key}.{k}", err) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        number = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            # YAML 1.1 reads `1e-4` (no dot) as a string; people mean a number.
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None:
            if math.isfinite(number):
                return number
            # no field here means anything by nan or inf: a budget, a rate or a
            # threshold that is not a number fails later, and far from its cause
            err(key, f"expected a finite number, got {show(value)}; write a plain number, e.g. 0.5")
            return None
    elif tp is str:
        if isinstance(value, str):
            return value
    err(key, f"expected {_type_name(tp)}, got {show(value)}")
    return None


def yaml_key(name: str) -> str:
    """A field's key in YAML: `async_` (a Python keyword cannot be a field) is `async`."""
    base = name[:-1]
    return base if name.endswith("_") and keyword.iskeyword(base) else name


def _build(cls: type, raw: Any, prefix: str, err: ErrFn) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        err(prefix, f"expected a mapping, got {show(raw)}")
        return cls()
    fields = {yaml_key(f.name): f.name for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for k, v in raw.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if k not in fields:
            close = difflib.get_close_matches(str(k), fields, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            err(key, f"unknown key (known here: {', '.join(fields)}){hint}")
            continue
        value = _coerce(v, hints[fields[k]], key, err)
        if value is not None or v is None:
            kwargs[fields[k]] = value
    try:
        return cls(**kwargs)
    except TypeError as e:  # pragma: no cover - every field has a default
        err(prefix, str(e))
        return cls()
