"""The record engine: the strict JSON reader and the declared field specs, on small records of our own
and on the real ones (report.json, model metadata)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from edgecnn.runtime.core.bundle import BundleReport, ModelReport
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.metadata import ModelMeta, Preprocess
from edgecnn.runtime.core.records import (
    MAX_DEPTH,
    SPEC,
    Origin,
    describe,
    from_dict,
    read_json,
    read_record,
    spec,
)

ORIGIN = Origin("report.json", "is unreadable", "export the bundle again", "the report")


@dataclass(frozen=True)
class Figure:
    name: str
    top1: float | None = spec(None, low=0, high=100)


@dataclass(frozen=True)
class Sample:
    figures: tuple[Figure, ...]
    size: tuple[int, int] = spec((224, 224), low=1, high=16384)
    mode: str = spec("fast", choices=("fast", "exact"))
    note: str = spec("", length=(0, 5))
    counts: dict[str, int] = field(default_factory=dict)
    best: Figure | None = None
    batch: int | str = spec("dynamic", low=1)


GOOD = {"figures": [{"name": "onnx fp32", "top1": 93}], "size": [32, 48]}

# name -> (JSON text, the words of the one-line error)
TEXTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "NaN token": ('{"figures": [{"name": "a", "top1": NaN}]}', ("NaN is not a number JSON allows",)),
    "Infinity token": ('{"figures": [], "x": Infinity}', ("Infinity is not a number JSON allows",)),
    "-Infinity token": ('{"figures": [], "x": -Infinity}', ("-Infinity is not a number JSON allows",)),
    "too deep for the guard": (
        "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), ("nested too deeply", "32 levels")),
    "too deep for the parser": ("[" * 100_000 + "]" * 100_000, ("nested too deeply",)),
    "too big": ('{"figures": [], "x": "' + "x" * 2_000_000 + '"}', ("2 MB, over the 1 MB limit",)),
    "not JSON": ("{oops", ("Expecting property name",)),
    "not an object": ("[1, 2]", ("the report is list, not an object",)),
    "wrong type": ('{"figures": [], "mode": 3}', ("mode is 3; expected one of 'fast', 'exact'",)),
    "wrong type in a list": ('{"figures": [{"name": 7}]}', ("figures[0].name is 7; expected a text",)),
    "out of range": (
        '{"figures": [{"name": "a"}, {"name": "b"}, {"name": "c", "top1": "x"}]}',
        ("figures[2].top1 is 'x'; expected a number from 0 to 100 or null",),
    ),
    "above the range": ('{"figures": [{"name": "a", "top1": 100.5}]}', ("figures[0].top1 is 100.5",)),
    "a number of a pair": (
        '{"figures": [], "size": [0, 32]}', ("size is [0, 32]", "2 whole numbers from 1 to 16384")),
    "a pair too long": ('{"figures": [], "size": [1, 2, 3]}', ("size is [1, 2, 3]",)),
    "a bool for a number": ('{"figures": [], "size": [true, 32]}', ("size is [True, 32]",)),
    "too long a text": ('{"figures": [], "note": "abcdef"}', ("note is 'abcdef'", "at most 5 characters")),
    "missing required": ("{}", ("figures is missing",)),
    "missing required nested": ('{"figures": [{"top1": 3}]}', ("figures[0].name is missing",)),
    "nested record path": ('{"figures": [], "best": {"name": "x", "top1": -1}}', ("best.top1 is -1",)),
    "record of the wrong kind": ('{"figures": [], "best": [1]}', ("best is [1]",)),
    "list where a list of records belongs": (
        '{"figures": {"a": 1}}', ("figures is {'a': 1}", "a list of objects")),
    "object values": (
        '{"figures": [], "counts": {"a": 1.5}}', ("counts is {'a': 1.5}", "names and whole numbers")),
    "a union neither": ('{"figures": [], "batch": 0}', ("batch is 0", "a whole number from 1 up or a text")),
    "a huge value is cut": ('{"figures": [], "mode": "' + "m" * 500 + '"}', ("mode is 'mmm",)),
}


@pytest.mark.parametrize("name", list(TEXTS))
def test_a_bad_record_is_one_line_naming_file_and_field(name: str) -> None:
    text, words = TEXTS[name]
    with pytest.raises(EdgecnnError) as caught:
        read_record(Sample, text, ORIGIN, 1_000_000)
    message = str(caught.value)
    assert message.startswith("report.json is unreadable: ") and message.endswith("; export the bundle again")
    assert "\n" not in message and len(message) < 300, message
    assert all(word in message for word in words), message


def test_a_good_record_reads_typed_with_defaults() -> None:
    read = read_record(Sample, json.dumps(GOOD), ORIGIN, 10_000)
    assert read == Sample(figures=(Figure("onnx fp32", 93.0),), size=(32, 48))
    assert isinstance(read.figures, tuple) and isinstance(read.figures[0].top1, float)


def test_unknown_extra_fields_are_ignored_at_every_level() -> None:
    data = {**GOOD, "added_later": {"deep": [1]}, "figures": [{"name": "a", "later": 1}]}
    assert from_dict(Sample, data, ORIGIN) == Sample(figures=(Figure("a"),), size=(32, 48))


def test_null_and_empty_object_read_as_no_optional_record() -> None:
    assert from_dict(Sample, {**GOOD, "best": None}, ORIGIN).best is None
    assert from_dict(Sample, {**GOOD, "best": {}}, ORIGIN).best is None
    assert from_dict(Sample, {**GOOD, "batch": 8}, ORIGIN).batch == 8


def test_python_tuples_read_like_json_lists() -> None:  # a checkpoint holds tuples, not lists
    assert from_dict(Preprocess, {"input_size": (32, 48)}, ORIGIN).input_size == (32, 48)


def test_overflowing_numbers_are_not_finite() -> None:  # 1e999 parses to inf without a constant token
    with pytest.raises(EdgecnnError, match=r"figures\[0\].top1 is inf"):
        read_record(Sample, '{"figures": [{"name": "a", "top1": 1e999}]}', ORIGIN, 1000)


def test_the_guard_allows_what_it_promises() -> None:
    depth = MAX_DEPTH
    text = "[" * depth + "]" * depth
    assert read_json(text, ORIGIN, 1000) == json.loads(text)


@pytest.mark.parametrize(("record", "data", "words"), [
    (ModelReport, {"name": "x", "backend": "onnxruntime", "precision": "int8", "path": "m", "top1": "x"},
     "models[2].top1 is 'x'; expected a number from 0 to 100 or null"),
    (ModelMeta, {"labels": ["a"], "preprocess": {"std": [1, 0, 1]}}, "preprocess.std is [1, 0, 1]"),
])
def test_real_records_name_their_nested_fields(record: type, data: dict, words: str) -> None:
    where = "models[2]" if record is ModelReport else ""
    with pytest.raises(EdgecnnError, match=words.replace("[", r"\[")):
        from_dict(record, data, ORIGIN, where)


def test_report_round_trips_through_the_engine() -> None:
    report = BundleReport(models=(ModelReport("onnx fp32", "onnxruntime", "fp32", "model.onnx", top1=90.0),),
                          batch=4, notes=("a",))
    assert BundleReport.from_dict(json.loads(report.to_json())) == report


@pytest.mark.parametrize(("kind", "rule", "words"), [
    (tuple[int, int], spec(low=1, high=9), "2 whole numbers from 1 to 9"),
    (float, spec(low=0, low_open=True), "a number above 0"),
    (float | None, spec(), "a finite number or null"),
    (tuple[str, ...], spec(length=(1, 3)), "a list of 1 to 3 texts"),
    (dict[str, float], spec(), "an object of names and finite numbers"),
    (bool, spec(), "true or false"),
])
def test_describe_says_the_spec_in_words(kind: object, rule: Any, words: str) -> None:
    assert describe(kind, rule.metadata[SPEC]) == words
