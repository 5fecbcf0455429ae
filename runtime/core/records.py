"""The one way a record is read back: a strict JSON reader, and each field's type and range declared once.

Every record we read from a file or a model (ModelMeta, report.json, the checkpoint's fields, the
camera's --jsonl frames) is a dataclass whose annotations give each field's type and whose `spec(...)`
gives its range; `from_dict` reads any of them, checking every field and naming the first wrong one by
its path (`models[2].top1`) in one line. Fields a record does not know are ignored (a later edgecnn of
the same schema added them); a missing field takes its default, or is an error when it has none; an
empty object where an optional record belongs reads as none. Torch- and numpy-free.
"""

from __future__ import annotations

import functools
import json
import math
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass, replace
from typing import Any, TypeVar

from edgecnn.runtime.core.errors import EdgecnnError

MAX_DEPTH = 32  # containers within containers; ours nest 7 deep at most (report.json's recipe tries)
MAX_WHOLE = 2**53  # whole numbers above it lose digits in JavaScript and other JSON readers
SPEC = "edgecnn_spec"  # a dataclass field's metadata key
NONE = type(None)
UNIONS = (typing.Union, types.UnionType)
T = TypeVar("T")


@dataclass(frozen=True)
class Origin:
    """Where a record came from, for its one-line errors: `{source} {trouble}: {detail}; {fix}`."""

    source: str  # the file, e.g. "model.onnx" or "/bundles/cup/report.json"
    trouble: str = "is unreadable"
    fix: str = ""  # what to do about it
    root: str = "the record"  # what the top-level object is called in a message

    def error(self, detail: str) -> EdgecnnError:
        return EdgecnnError(f"{self.source} {self.trouble}: {detail}" + (f"; {self.fix}" if self.fix else ""))


@dataclass(frozen=True)
class Spec:
    """A field's range beyond its annotated type. Bounds and choices apply to the numbers and texts in
    it (each of `input_size`'s two), `length` to the field itself (a text's characters, a list's items)."""

    low: float | None = None  # whole numbers default to 0 .. MAX_WHOLE
    high: float | None = None
    low_open: bool = False  # `low` itself is out of range
    length: tuple[int, int] | None = None  # (fewest, most)
    choices: tuple[Any, ...] | None = None
    finite: bool = True  # False: NaN and infinity allowed (never in JSON; a diverged loss in a checkpoint)
    check: Callable[[Any], str | None] | None = None  # first: a problem said after the field's name, or None
    raw: bool = False  # taken as read, type unchecked (a checkpoint's tensors)


PLAIN = Spec()


def spec(default: Any = MISSING, *, factory: Any = MISSING, low: float | None = None,
         high: float | None = None, low_open: bool = False, length: int | tuple[int, int] | None = None,
         choices: tuple[Any, ...] | None = None, finite: bool = True,
         check: Callable[[Any], str | None] | None = None, raw: bool = False) -> Any:
    """A dataclass field with its range: `top1: float | None = spec(None, low=0, high=100)`."""
    span = (length, length) if isinstance(length, int) else length
    rule = Spec(low, high, low_open, span, choices, finite, check, raw)
    return field(default=default, default_factory=factory, metadata={SPEC: rule})


class _Wrong(Exception):
    """A value that breaks its field's spec; the message is the detail after the file's name."""


# -- the reader ------------------------------------------------------------------------------------------
def read_json(text: str | bytes, origin: Origin, limit: int) -> Any:
    """Parsed JSON of at most `limit` characters, without NaN/Infinity and nested at most MAX_DEPTH deep;
    one-line EdgecnnError otherwise."""
    if len(text) > limit:
        raise origin.error(f"{len(text) / 1e6:.0f} MB, over the {limit // 10**6} MB limit")
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise origin.error("nested too deeply") from None
    except ValueError as exc:  # UnicodeDecodeError included
        raise origin.error(str(exc)) from exc
    level, containers = 0, [data] if isinstance(data, (dict, list)) else []
    while containers:
        level += 1
        if level > MAX_DEPTH:
            raise origin.error(f"nested too deeply (over {MAX_DEPTH} levels)")
        containers = [item for container in containers
                      for item in (container.values() if isinstance(container, dict) else container)
                      if isinstance(item, (dict, list))]
    return data


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def from_dict(cls: type[T], data: Any, origin: Origin, where: str = "") -> T:
    """`cls` (a dataclass) from JSON-like `data`, every field checked against its annotation and spec;
    `where` is the path of `data` inside its file ("" for the top level)."""
    if not isinstance(data, dict):
        raise origin.error(f"{where or origin.root} is {type(data).__name__}, not an object")
    try:
        return _record(cls, data, where)
    except _Wrong as wrong:
        raise origin.error(str(wrong)) from None


def read_record(cls: type[T], text: str | bytes, origin: Origin, limit: int) -> T:
    """`cls` from JSON text: `read_json` then `from_dict`."""
    return from_dict(cls, read_json(text, origin, limit), origin)


# -- the field spec --------------------------------------------------------------------------------------
@functools.cache
def _fields(cls: type) -> tuple[tuple[Field[Any], Any, Spec], ...]:
    """Each field of `cls` with its resolved type and spec (annotations are strings here)."""
    specs = {f.name: f.metadata.get(SPEC, PLAIN) for f in fields(cls) if f.init}
    holder = types.SimpleNamespace(__annotations__={f.name: f.type for f in fields(cls)
                                                    if f.name in specs and not specs[f.name].raw})
    hints = typing.get_type_hints(holder, globalns=vars(sys.modules[cls.__module__]))
    return tuple((f, hints.get(f.name, Any), specs[f.name]) for f in fields(cls) if f.name in specs)


def _record(cls: type[T], data: Any, path: str) -> T:
    if not isinstance(data, dict):
        raise _Wrong(f"{path} is {type(data).__name__}, not an object")
    values = {}
    for each, kind, rule in _fields(cls):
        name = f"{path}.{each.name}" if path else each.name
        if each.name in data:
            values[each.name] = _field(data[each.name], kind, rule, name)
        elif each.default is MISSING and each.default_factory is MISSING:
            raise _Wrong(f"{name} is missing")
    return cls(**values)


def _field(value: Any, kind: Any, rule: Spec, name: str) -> Any:
    if rule.check is not None and (problem := rule.check(value)) is not None:
        raise _Wrong(f"{name}{problem}")
    read = _value(value, kind, rule, name)
    if rule.length is not None and isinstance(read, (str, list, tuple, dict)) \
            and not rule.length[0] <= len(read) <= rule.length[1]:
        raise _Wrong(_is(name, value, kind, rule))
    return read


def _value(value: Any, kind: Any, rule: Spec, name: str) -> Any:
    """`value` read as `kind`; _Wrong naming `name` when it is not one."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any or rule.raw:
        return value
    if origin in UNIONS:
        return _union(value, kind, rule, name)
    if is_dataclass(kind):
        return _record(kind, value, name)
    if origin in (tuple, list):
        return _sequence(value, kind, rule, name)
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
            raise _Wrong(_is(name, value, kind, rule))
        return dict(zip(value, _items(value.items(), args[1], rule, name, (value, kind)), strict=True))
    if _scalar(value, kind, rule):
        return float(value) if kind is float else value
    raise _Wrong(_is(name, value, kind, rule))


def _scalar(value: Any, kind: Any, rule: Spec) -> bool:
    """Whether `value` is a `kind` (bool, int, float or str) within `rule`."""
    if kind is bool:
        return type(value) is bool
    if kind is str:
        return isinstance(value, str) and (rule.choices is None or value in rule.choices)
    if kind is int:
        low, high = rule.low if rule.low is not None else 0, rule.high if rule.high is not None else MAX_WHOLE
        return type(value) is int and low <= value <= high and (not rule.low_open or value > low)
    if kind is not float:
        raise TypeError(f"a record field cannot be of type {kind!r}")  # a declaration bug, not a data error
    if type(value) not in (int, float) or (rule.finite and not math.isfinite(value)):
        return False
    above = rule.low is None or (value > rule.low if rule.low_open else value >= rule.low)
    return above and (rule.high is None or value <= rule.high)


def _sequence(value: Any, kind: Any, rule: Spec, name: str) -> Any:
    args = typing.get_args(kind)
    variable = typing.get_origin(kind) is list or (len(args) == 2 and args[1] is Ellipsis)
    if not isinstance(value, (list, tuple)) or (not variable and len(value) != len(args)):
        raise _Wrong(_is(name, value, kind, rule))
    if variable or len(set(args)) == 1:
        items = _items(enumerate(value), args[0], rule, name, (value, kind))
    else:  # tuple[int, str]: each item its own kind
        items = [_value(item, of, replace(rule, length=None), f"{name}[{index}]")
                 for index, (item, of) in enumerate(zip(value, args, strict=True))]
    return items if typing.get_origin(kind) is list else tuple(items)


def _items(pairs: Any, kind: Any, rule: Spec, name: str, whole: tuple[Any, Any]) -> list[Any]:
    """The items of a list or object (key, item): a wrong record or list names its own path
    (`models[2].top1`), a wrong number or text the whole field (`input_size is [0, 32]`)."""
    inner = replace(rule, length=None)
    if _nested(kind):
        return [_value(item, kind, inner, f"{name}[{_key(key)}]") for key, item in pairs]
    if kind in (bool, int, float, str):  # the common case, fast: a million labels
        items = [item for _, item in pairs]
        if not all(_scalar(item, kind, inner) for item in items):
            raise _Wrong(_is(name, whole[0], whole[1], rule))
        return [float(item) for item in items] if kind is float else items
    try:
        return [_value(item, kind, inner, name) for _, item in pairs]
    except _Wrong:
        raise _Wrong(_is(name, whole[0], whole[1], rule)) from None


def _key(key: Any) -> str:
    return str(key) if isinstance(key, int) else short(key)


def _nested(kind: Any) -> bool:
    members = typing.get_args(kind) if typing.get_origin(kind) in UNIONS else (kind,)
    return any(is_dataclass(m) or typing.get_origin(m) in (tuple, list, dict) for m in members)


def _union(value: Any, kind: Any, rule: Spec, name: str) -> Any:
    members = [m for m in typing.get_args(kind) if m is not NONE]
    optional = len(members) < len(typing.get_args(kind))
    if value is None and optional:
        return None
    records = [m for m in members if is_dataclass(m)]
    if isinstance(value, dict) and records:
        return None if optional and not value else _record(records[0], value, name)
    for member in members:
        try:
            return _value(value, member, rule, name)
        except _Wrong:
            continue
    raise _Wrong(_is(name, value, kind, rule))


# -- messages --------------------------------------------------------------------------------------------
def _is(name: str, value: Any, kind: Any, rule: Spec) -> str:
    return f"{name} is {short(value)}; expected {describe(kind, rule)}"


def describe(kind: Any, rule: Spec = PLAIN, plural: bool = False) -> str:
    """What a field of `kind` under `rule` must be, in words: "2 whole numbers from 1 to 16384"."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    inner = replace(rule, length=None)
    if origin in UNIONS:
        words = [describe(m, inner, plural) for m in args if m is not NONE]
        return " or ".join(words + (["null"] if NONE in args else []))
    if origin in (tuple, list):
        if origin is list or (len(args) == 2 and args[1] is Ellipsis):
            span = f"{rule.length[0]} to {rule.length[1]} " if rule.length else ""
            return _noun("a list", "lists", plural) + f" of {span}{describe(args[0], inner, True)}"
        return f"{len(args)} {describe(args[0], inner, True)}"
    if origin is dict:
        most = f"at most {rule.length[1]} " if rule.length else ""
        return _noun("an object", "objects", plural) + f" of {most}names and {describe(args[1], inner, True)}"
    return _scalar_words(kind, rule, plural)


def _scalar_words(kind: Any, rule: Spec, plural: bool) -> str:
    if is_dataclass(kind) or kind is Any:
        return _noun("an object", "objects", plural)
    if kind is bool:
        return "true or false"
    if kind is str:
        if rule.choices is not None:
            return "one of " + ", ".join(repr(c) for c in rule.choices)
        most = f" of at most {rule.length[1]} characters" if rule.length else ""
        return _noun("a text", "texts", plural) + most
    if kind is int:
        low = rule.low if rule.low is not None else 0
        return _noun("a whole number", "whole numbers", plural) + f" from {low}" + (
            f" to {rule.high}" if rule.high is not None else " up")
    if rule.low is None and rule.high is None:
        return _noun("a finite number", "finite numbers", plural) if rule.finite else _noun(
            "a number", "numbers", plural)
    low = "" if rule.low is None else f" {'above' if rule.low_open else 'from'} {rule.low}"
    high = f" up to {rule.high}" if low == "" else f" to {rule.high}" if rule.high is not None else ""
    return _noun("a number", "numbers", plural) + low + (high or ("" if rule.low_open else " up"))


def _noun(one: str, many: str, plural: bool) -> str:
    return many if plural else one


def short(value: Any) -> str:
    """A wrong value for a message: repr, cut to 60 characters (a record can be megabytes)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
