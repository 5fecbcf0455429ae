"""The one metadata schema: written into models by export, read back by the runtime.

Torch-free on purpose: the runtime on an edge device reads it with ONNX Runtime or OpenVINO alone.
A model carries everything needed to use it (labels, input size, how to fit a frame, accuracy), so
callers pass nothing but images.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgecnn.runtime.core.errors import EdgecnnError, upgrade_hint

SCHEMA_VERSION = 1
META_KEY = "edgecnn_meta"  # ONNX metadata_props key and OpenVINO rt_info key
MAX_META_CHARS = 64_000_000  # ImageNet-22k's labels are under 1 MB
MAX_SIDE = 16384  # input height/width
MAX_LABELS = 1_000_000
RESIZE_MODES = ("shorter_crop", "stretch")
INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "area")
PRECISIONS = ("fp32", "fp16", "int8", "")  # "" for a model built from --labels/--mean/--std
LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")  # what str.splitlines splits at


@dataclass(frozen=True)
class Preprocess:
    """How a uint8 frame is fitted to the model; normalisation lives inside edgecnn graphs."""

    input_size: tuple[int, int] = (224, 224)  # (height, width)
    resize: str = "shorter_crop"  # "shorter_crop": shorter side to size/crop_fraction, centre crop; "stretch"
    crop_fraction: float = 0.875
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # on the 0..1 scale
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    color_order: str = "RGB"
    layout: str = "NHWC"
    normalize_in_graph: bool = True  # False: caller feeds float NCHW normalised with mean/std

    @classmethod
    def from_dict(cls, data: Any, source: str = "model", where: str = "preprocess") -> Preprocess:
        """A checked Preprocess from JSON-like data: EdgecnnError naming the first wrong field."""
        fields = _Fields(data, source, where)
        height, width = fields.sizes("input_size", 2, 1, MAX_SIDE, (224, 224))
        return cls(
            input_size=(height, width), resize=fields.choice("resize", RESIZE_MODES, "shorter_crop"),
            crop_fraction=fields.number("crop_fraction", 0.875, low=0.0, high=1.0, low_open=True),
            interpolation=fields.choice("interpolation", INTERPOLATIONS, "bicubic"),
            mean=fields.numbers("mean", 3, (0.5, 0.5, 0.5)),
            std=fields.numbers("std", 3, (0.5, 0.5, 0.5), positive=True),
            color_order=fields.choice("color_order", ("RGB", "BGR"), "RGB"),
            layout=fields.choice("layout", ("NHWC", "NCHW"), "NHWC"),
            normalize_in_graph=fields.flag("normalize_in_graph", True))


# edgecnn/unknown.py
UNKNOWN_RULES = ("msp", "energy", "centroid", "knn", "mahalanobis", "knn+msp", "knn+imagenet")
MAX_THRESHOLD = 1e30


@dataclass(frozen=True)
class UnknownMeta:
    """The model's unknown detector: its graph output `unknown_score` (higher = more likely none of the
    labels) and the threshold above which an image counts as unknown."""

    rule: str  # one of UNKNOWN_RULES (see edgecnn/unknown.py)
    threshold: float
    accept_rate: float = 0.95  # share of the calibration images accepted as known at `threshold`
    calibration: str = ""  # which images set the threshold, in words
    calibration_images: int = 0
    output: str = "unknown_score"

    @classmethod
    def from_dict(cls, data: Any, source: str = "model") -> UnknownMeta | None:
        """A checked UnknownMeta from JSON-like data (None: no detector); EdgecnnError for a wrong field."""
        if data is None or data == {}:
            return None
        fields = _Fields(data, source, "unknown")
        return cls(rule=fields.choice("rule", UNKNOWN_RULES, "knn"),
                   threshold=fields.number("threshold", 0.0, -MAX_THRESHOLD, MAX_THRESHOLD),
                   accept_rate=fields.number("accept_rate", 0.95, 0.5, 1.0, low_open=True),
                   calibration=fields.text("calibration", ""),
                   calibration_images=fields.count("calibration_images", 0, 0, None),
                   output=fields.choice("output", ("unknown_score",), "unknown_score"))


@dataclass(frozen=True)
class ModelMeta:
    """What a model is: labels, preprocessing, provenance and measured accuracy."""

    labels: tuple[str, ...]
    preprocess: Preprocess = field(default_factory=Preprocess)
    arch: str = ""
    precision: str = "fp32"  # fp32 | fp16 | int8
    softmax_in_graph: bool = True
    accuracy: dict[str, float] = field(default_factory=dict)
    unknown: UnknownMeta | None = None  # None: no `unknown_score` output, unknown detection off
    edgecnn_version: str = ""
    created: str = ""
    schema_version: int = SCHEMA_VERSION

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def to_json(self) -> str:
        data = asdict(self)
        data["labels"] = list(self.labels)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> ModelMeta:
        """Parse and check the metadata once, here: every field typed and in range, or one EdgecnnError."""
        if len(text) > MAX_META_CHARS:
            raise EdgecnnError(f"{source} has {len(text) / 1e6:.0f} MB of edgecnn metadata, over the "
                               f"{MAX_META_CHARS // 10**6} MB limit; re-export it")
        try:
            data = json.loads(text, parse_constant=_no_constant)
        except RecursionError:
            raise EdgecnnError(f"{source} has unreadable edgecnn metadata (nested too deeply); "
                               "re-export it") from None
        except ValueError as exc:
            raise EdgecnnError(f"{source} has unreadable edgecnn metadata ({exc}); re-export it") from exc
        fields = _Fields(data, source)
        version = fields.count("schema_version", SCHEMA_VERSION, 1, None)
        if version > SCHEMA_VERSION:
            raise EdgecnnError(f"{source} was written by a newer edgecnn (metadata schema {version}); "
                               f"{upgrade_hint()}")
        checked = dict(
            labels=fields.labels("labels"),
            preprocess=Preprocess.from_dict(fields.get("preprocess", {}), source),
            arch=fields.text("arch", ""), precision=fields.choice("precision", PRECISIONS, "fp32"),
            softmax_in_graph=fields.flag("softmax_in_graph", True),
            accuracy=fields.figures("accuracy"), edgecnn_version=fields.text("edgecnn_version", ""),
            created=fields.text("created", ""), schema_version=version,
            unknown=UnknownMeta.from_dict(fields.get("unknown", None), source))
        # A field added to ModelMeta later and not checked above yet is passed through as read.
        added = {key: data[key] for key in cls.__dataclass_fields__ if key in data and key not in checked}
        return cls(**checked, **added)

    def stamped(self, **changes: Any) -> ModelMeta:
        """A copy with the version and creation time of now, plus `changes`."""
        from dataclasses import replace

        from edgecnn import __version__

        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return replace(self, edgecnn_version=__version__, created=now, **changes)

    # -- writing (export side) -------------------------------------------------------------
    def write_onnx(self, model: Any) -> None:
        """Store the metadata in an `onnx.ModelProto`'s metadata_props (replacing ours)."""
        kept = [p for p in model.metadata_props if p.key != META_KEY]
        del model.metadata_props[:]
        model.metadata_props.extend(kept)
        entry = model.metadata_props.add()
        entry.key, entry.value = META_KEY, self.to_json()

    def write_openvino(self, model: Any) -> None:
        """Store the metadata in an `openvino.Model`'s rt_info."""
        model.set_rt_info(self.to_json(), [META_KEY])

    # -- reading (runtime side) ------------------------------------------------------------
    @classmethod
    def from_mapping(cls, mapping: dict[str, str], source: str) -> ModelMeta | None:
        """Metadata from ONNX Runtime's custom_metadata_map; None when the model has none."""
        text = mapping.get(META_KEY)
        return None if text is None else cls.from_json(text, source)

    @classmethod
    def from_openvino(cls, model: Any, source: str) -> ModelMeta | None:
        if not model.has_rt_info([META_KEY]):
            return None
        value = model.get_rt_info([META_KEY])  # an OVAny: str() of it is "<OVAny class>", not the text
        return cls.from_json(value.astype(str) if hasattr(value, "astype") else str(value), source)

    @classmethod
    def read(cls, path: str | Path) -> ModelMeta | None:
        """Read the metadata of a `.onnx` or OpenVINO `.xml` file (None when it has none)."""
        path = Path(path)
        if path.suffix == ".onnx":
            from edgecnn.runtime.core.backends.onnxruntime import open_session

            session = open_session(path, providers=["CPUExecutionProvider"])
            return cls.from_mapping(session.get_modelmeta().custom_metadata_map, str(path))
        if path.suffix == ".xml":
            from edgecnn.runtime.core.backends.openvino import read_model

            return cls.from_openvino(read_model(path), str(path))
        raise EdgecnnError(f"{path} is not a model file; give a .onnx, an OpenVINO .xml or a bundle folder")


def read_labels(path: str | Path) -> tuple[str, ...]:
    """Labels from a text file, one per line (blank lines ignored)."""
    from edgecnn.runtime.core.files import read_bounded

    path = Path(path)
    try:
        text = read_bounded(path, MAX_META_CHARS, "labels file").decode("utf-8")
        labels = tuple(line.strip() for line in text.splitlines() if line.strip())
    except UnicodeDecodeError as exc:
        raise EdgecnnError(f"cannot read labels file {path}: {exc}") from exc
    if not labels:
        raise EdgecnnError(f"labels file {path} is empty; put one class name per line")
    return check_labels(labels, f"labels file {path}: label")


def check_labels(labels: Any, what: str) -> tuple[str, ...]:
    """Labels as a tuple of distinct one-line names; EdgecnnError saying which one is wrong."""
    if not isinstance(labels, (list, tuple)) or not 1 <= len(labels) <= MAX_LABELS:
        raise EdgecnnError(f"{what} must be a list of 1 to {MAX_LABELS} names, got {_short(labels)}")
    seen: dict[str, int] = {}
    for index, label in enumerate(labels):
        if not isinstance(label, str) or not label.strip() or len(label) > 1000:
            raise EdgecnnError(f"{what}[{index}] is {_short(label)}; every label must be a name of 1 to 1000 "
                               "characters")
        if LINE_BREAKS & set(label):
            raise EdgecnnError(f"{what}[{index}] {_short(label)} holds a line break; a label is one line "
                               "(rename the class folder)")
        if label in seen:
            raise EdgecnnError(f"{what} lists {_short(label)} twice (positions {seen[label]} and {index}); "
                               "every class needs its own label")
        seen[label] = index
    return tuple(labels)


class _Fields:
    """Typed reads of one JSON object; each read checks its field and names it when it is wrong."""

    def __init__(self, data: Any, source: str, where: str = "") -> None:
        if not isinstance(data, dict):
            raise EdgecnnError(f"{source} has unreadable edgecnn metadata ({where or 'the metadata'} is "
                               f"{type(data).__name__}, not an object); re-export it")
        self.data, self.source, self.where = data, source, where

    def get(self, key: str, default: Any) -> Any:
        return self.data.get(key, default)

    def wrong(self, key: str, value: Any, expected: str) -> EdgecnnError:
        name = f"{self.where}.{key}" if self.where else key
        return EdgecnnError(f"{self.source} has bad edgecnn metadata: {name} is {_short(value)}; "
                            f"expected {expected}; re-export the model")

    def count(self, key: str, default: int, low: int, high: int | None) -> int:
        value = self.data.get(key, default)
        if type(value) is not int or value < low or (high is not None and value > high):
            raise self.wrong(key, value, f"a whole number from {low}" + (f" to {high}" if high else " up"))
        return value

    def sizes(self, key: str, length: int, low: int, high: int, default: tuple[int, ...]) -> tuple[int, ...]:
        value = self.data.get(key, default)
        if (not isinstance(value, (list, tuple)) or len(value) != length
                or any(type(v) is not int or not low <= v <= high for v in value)):
            raise self.wrong(key, value, f"{length} whole numbers from {low} to {high}")
        return tuple(value)

    def number(self, key: str, default: float, low: float, high: float, low_open: bool = False) -> float:
        value = self.data.get(key, default)
        if not _is_number(value) or not (low < value if low_open else low <= value) or value > high:
            raise self.wrong(key, value, f"a number {'above' if low_open else 'from'} {low} to {high}")
        return float(value)

    def numbers(self, key: str, length: int, default: tuple[float, ...], positive: bool = False
                ) -> tuple[float, ...]:
        value = self.data.get(key, default)
        if (not isinstance(value, (list, tuple)) or len(value) != length
                or not all(_is_number(v) and (v > 0 or not positive) for v in value)):
            raise self.wrong(key, value, f"{length} finite numbers" + (" above 0" if positive else ""))
        return tuple(float(v) for v in value)

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.data.get(key, default)
        if value not in choices or not isinstance(value, str):
            raise self.wrong(key, value, "one of " + ", ".join(repr(c) for c in choices))
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self.wrong(key, value, "true or false")
        return value

    def text(self, key: str, default: str) -> str:
        value = self.data.get(key, default)
        if not isinstance(value, str) or len(value) > 1000:
            raise self.wrong(key, value, "a text of at most 1000 characters")
        return value

    def labels(self, key: str) -> tuple[str, ...]:
        if key not in self.data:
            raise self.wrong(key, None, "a list of class names")
        return check_labels(self.data[key], f"{self.source}: edgecnn metadata {key}")

    def figures(self, key: str) -> dict[str, float]:
        value = self.data.get(key, {})
        if (not isinstance(value, dict) or len(value) > 100
                or not all(isinstance(k, str) and _is_number(v) for k, v in value.items())):
            raise self.wrong(key, value, "an object of names and finite numbers")
        return {k: float(v) for k, v in value.items()}


def _is_number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def _short(value: Any) -> str:
    """A wrong value for a message: repr, cut to 60 characters (metadata can be megabytes)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
