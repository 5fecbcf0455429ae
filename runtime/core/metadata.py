"""The one metadata schema: written into models by export, read back by the runtime.

Torch-free on purpose: the runtime on an edge device reads it with ONNX Runtime or OpenVINO alone.
A model carries everything needed to use it (labels, input size, how to fit a frame, accuracy), so
callers pass nothing but images.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgecnn.runtime.core.backends.base import META_KEY  # the ONNX metadata_props / OpenVINO rt_info key
from edgecnn.runtime.core.errors import EdgecnnError, upgrade_hint
from edgecnn.runtime.core.records import Origin, from_dict, read_json, short, spec

SCHEMA_VERSION = 1
MAX_META_CHARS = 64_000_000  # ImageNet-22k's labels are under 1 MB
MAX_SIDE = 16384  # input height/width
MAX_LABELS = 1_000_000
MAX_TEXT = 1000  # characters of a label or a text field
RESIZE_MODES = ("shorter_crop", "stretch")
INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "area")
PRECISIONS = ("fp32", "fp16", "int8", "")  # "" for a model built from --labels/--mean/--std
LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")  # what str.splitlines splits at
# a class folder with one of these names (any case) is the none class: "nothing of interest", shown as "none"
NONE_CLASS_NAMES = ("none", "background")


def labels_problem(labels: Any) -> str | None:
    """What is wrong with `labels` (said after their name), or None: a list of distinct one-line names."""
    if not isinstance(labels, (list, tuple)) or not 1 <= len(labels) <= MAX_LABELS:
        return f" must be a list of 1 to {MAX_LABELS} names, got {short(labels)}"
    seen: dict[str, int] = {}
    for index, label in enumerate(labels):
        if not isinstance(label, str) or not label.strip() or len(label) > MAX_TEXT:
            return f"[{index}] is {short(label)}; every label must be a name of 1 to {MAX_TEXT} characters"
        if LINE_BREAKS & set(label):
            return (f"[{index}] {short(label)} holds a line break; a label is one line "
                    "(rename the class folder)")
        if label in seen:
            return (f" lists {short(label)} twice (positions {seen[label]} and {index}); every class needs "
                    "its own label")
        seen[label] = index
    return None


def none_class_of(labels: tuple[str, ...] | list[str]) -> str:
    """The label that is the none class (the first named like NONE_CLASS_NAMES), or "" when none is."""
    return next((label for label in labels if label.strip().lower() in NONE_CLASS_NAMES), "")


@dataclass(frozen=True)
class Preprocess:
    """How a uint8 frame is fitted to the model; normalisation lives inside edgecnn graphs."""

    input_size: tuple[int, int] = spec((224, 224), low=1, high=MAX_SIDE)  # (height, width)
    # "shorter_crop": shorter side to size/crop_fraction, centre crop; "stretch"
    resize: str = spec("shorter_crop", choices=RESIZE_MODES)
    crop_fraction: float = spec(0.875, low=0.0, high=1.0, low_open=True)
    interpolation: str = spec("bicubic", choices=INTERPOLATIONS)
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # on the 0..1 scale
    std: tuple[float, float, float] = spec((0.5, 0.5, 0.5), low=0, low_open=True)
    color_order: str = spec("RGB", choices=("RGB", "BGR"))
    layout: str = spec("NHWC", choices=("NHWC", "NCHW"))
    normalize_in_graph: bool = True  # False: caller feeds float NCHW normalised with mean/std


# edgecnn/unknown.py
UNKNOWN_RULES = ("msp", "energy", "centroid", "knn", "mahalanobis", "knn+msp", "knn+imagenet")
MAX_THRESHOLD = 1e30


@dataclass(frozen=True)
class UnknownMeta:
    """The model's unknown detector: its graph output `unknown_score` (higher = more likely none of the
    labels) and the threshold above which an image counts as unknown."""

    rule: str = spec(choices=UNKNOWN_RULES)  # see edgecnn/unknown.py
    threshold: float = spec(low=-MAX_THRESHOLD, high=MAX_THRESHOLD)
    # share of the calibration images accepted as known at `threshold`
    accept_rate: float = spec(0.95, low=0.5, high=1.0, low_open=True)
    calibration: str = spec("", length=(0, MAX_TEXT))  # which images set the threshold, in words
    calibration_images: int = 0
    output: str = spec("unknown_score", choices=("unknown_score",))



@dataclass(frozen=True)
class ModelMeta:
    """What a model is: labels, preprocessing, provenance and measured accuracy."""

    labels: tuple[str, ...] = spec(check=labels_problem)
    preprocess: Preprocess = field(default_factory=Preprocess)
    arch: str = spec("", length=(0, MAX_TEXT))
    precision: str = spec("fp32", choices=PRECISIONS)  # fp32 | fp16 | int8
    softmax_in_graph: bool = True
    accuracy: dict[str, float] = spec(factory=dict, length=(0, 100))
    unknown: UnknownMeta | None = None  # None: no `unknown_score` output, unknown detection off
    # the label meaning "nothing of interest" (a class folder named none/background); "": no none class
    none_class: str = spec("", length=(0, MAX_TEXT))
    # SHA-256 of the bundle's selftest.json, written at export: the self-test data is covered by the model
    # file it tests (altered weights change the outputs, an altered selftest.json breaks the digest)
    selftest_sha256: str = spec("", length=(0, 64))
    edgecnn_version: str = spec("", length=(0, MAX_TEXT))
    created: str = spec("", length=(0, MAX_TEXT))
    schema_version: int = spec(SCHEMA_VERSION, low=1)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def version(self) -> str:
        """Which model this is, in one short string (records and the page show it; a hot swap changes it):
        the export time, if stamped, and a digest of the metadata, which holds the self-test's digest."""
        digest = hashlib.sha256(self.to_json().encode()).hexdigest()[:12]
        return f"{self.created} {digest}" if self.created else digest

    def is_none_class(self, label: str) -> bool:
        """Whether `label` is this model's none class (shown as "none", never as a detection)."""
        return bool(self.none_class) and label == self.none_class

    def to_json(self) -> str:
        data = asdict(self)
        data["labels"] = list(self.labels)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> ModelMeta:
        """Parse and check the metadata once, here: every field typed and in range, or one EdgecnnError."""
        origin = metadata_origin(source)
        data = read_json(text, origin, MAX_META_CHARS)
        version = from_dict(_Versioned, data, origin).schema_version
        if version > SCHEMA_VERSION:
            raise EdgecnnError(f"{source} was written by a newer edgecnn (metadata schema {version}); "
                               f"{upgrade_hint()}")
        return from_dict(cls, data, origin)

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


def metadata_origin(source: str) -> Origin:
    """How a model's metadata names itself in an error."""
    return Origin(source, "has unreadable edgecnn metadata", "re-export the model", "the metadata")


@dataclass(frozen=True)
class _Versioned:
    """The schema version alone, read before the fields whose meaning it decides."""

    schema_version: int = spec(SCHEMA_VERSION, low=1)


def check_labels(labels: Any, what: str) -> tuple[str, ...]:
    """Labels as a tuple of distinct one-line names; EdgecnnError saying which one is wrong."""
    problem = labels_problem(labels)
    if problem is not None:
        raise EdgecnnError(f"{what}{problem}")
    return tuple(labels)

