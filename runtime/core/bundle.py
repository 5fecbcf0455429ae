"""A bundle folder: its layout, its typed report, and the one safe way to reach its files.

    model.onnx, model.int8.onnx                    ONNX Runtime, FP32 and INT8
    openvino/model.xml|.bin, model.int8.xml|.bin   OpenVINO IR, FP32 and INT8
    labels.txt                                     one class name per line
    report.json, report.md                         what export measured (`BundleReport`), for code and people

Export writes a bundle into a temporary folder and swaps it into place (`outputs.atomic_folder`);
everyone else opens it with `Bundle`, which refuses any file that leads outside the folder (symlinks,
`..`, absolute paths, ONNX external data). Torch-free.

report.json versioning (`REPORT_SCHEMA_VERSION`): a field added with a default keeps the version, and
readers ignore fields they do not know, so an older edgecnn still reads it. Renaming, removing or
changing the meaning of a field bumps the version, and `READABLE_SCHEMAS` says which older ones the
reader still takes (version 0: the unversioned report of the same fields, written before versioning).
A report from a newer schema is refused ("upgrade edgecnn"); one from an older schema that is no longer
readable (or none at all) reads as "nothing measured": selection then never auto-picks INT8, whose
accuracy check it cannot see. Readers never guess between spellings.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from edgecnn.runtime.core.backends.registry import BACKENDS
from edgecnn.runtime.core.errors import EdgecnnError, upgrade_hint
from edgecnn.runtime.core.files import check_external_data
from edgecnn.runtime.core.records import Origin, from_dict, read_json, spec

REPORT_SCHEMA_VERSION = 2  # 2: INT8 gate figures and recipe tries (calibration.onnx_tried removed)
# Older reports hold a subset of today's fields (0: written before the version field existed), so they
# read with defaults for what they lack: bundles on disk keep their measured, gated auto-pick.
READABLE_SCHEMAS = (0, 1, 2)
REPORT_JSON, REPORT_MD, LABELS_TXT = "report.json", "report.md", "labels.txt"
MAX_REPORT_BYTES = 64_000_000


@dataclass(frozen=True)
class ModelFile:
    """One model's place in the layout."""

    backend: str  # a registry name: "onnxruntime" | "openvino"
    precision: str  # "fp32" | "int8"
    path: str  # relative to the bundle folder, "/"-separated


# Each backend's entries, in registry order (OpenVINO first, INT8 first): the ranking's last key among equals.
LAYOUT = tuple(ModelFile(entry.name, precision, path) for entry in BACKENDS
               for precision, path in entry.layout)


def layout_path(backend: str, precision: str) -> str:
    """The bundle-relative file of `backend` at `precision`."""
    return next(f.path for f in LAYOUT if (f.backend, f.precision) == (backend, precision))


# -- the report -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Int8Agreement:
    """An INT8 model against its FP32 parent on the validation images, what the INT8 gate judges
    (export/gate.py). Percentages 0-100; intervals are 95 %."""

    images: int
    flips: int  # images whose top-1 differs from FP32's
    flip_rate_interval: tuple[float, float]  # Wilson interval of the flip rate, percent
    top1_agreement: float
    top5_overlap: float  # mean share of FP32's top-5 classes also in INT8's top-5
    # mean KL(FP32 || INT8) of the probabilities, nats (-1: the INT8 model failed to run; None: read back
    # from report.json where NaN outputs made it NaN, which to_json writes as null)
    mean_kl: float | None
    confident_images: int  # FP32 top-1 probability >= the gate's `confident_probability`
    confident_flips: int
    lost: int | None = None  # labelled: FP32 right, INT8 wrong
    gained: int | None = None  # labelled: FP32 wrong, INT8 right
    drop: float | None = None  # labelled: top-1 points lost, (lost - gained) / images
    drop_interval: tuple[float, float] | None = None  # Newcombe interval of the drop, points
    # the unknown decision (export/unknown_gate.py), on the same images; None: the model has no detector
    unknown_disagreements: int | None = None  # images whose known/unknown decision differs from FP32's
    unknown_agreement: float | None = None  # percent of images with FP32's known/unknown decision
    unknown_threshold: float | None = None  # the threshold this INT8 model applies (its ModelMeta's)
    unknown_refitted: bool = False  # True: fitted on this model's own scores, not FP32's threshold
    unknown_agreement_at_parent_threshold: float | None = None  # percent, before any refit


@dataclass(frozen=True)
class ModelReport:
    """What export measured for one model file, and its gate verdict."""

    name: str  # e.g. "onnx int8"
    backend: str
    precision: str
    path: str  # bundle-relative, as in LAYOUT
    top1: float | None = spec(None, low=0, high=100)  # percent; None when the images carry no labels
    top5: float | None = spec(None, low=0, high=100)  # percent; only with more than 5 classes
    agreement: float = spec(0.0, low=0, high=100)  # percent of images whose top-1 equals PyTorch's
    agreement_fp32: float | None = spec(None, low=0, high=100)  # INT8: percent agreeing with its FP32 parent
    max_abs_diff: float = 0.0  # largest probability difference against PyTorch (the shipped file)
    latency_ms: float | None = None  # median batch-1 latency at the report's `threads`
    size_bytes: int = 0
    val_images: int = 0
    parent: str | None = None  # INT8: the FP32 model it was quantised from
    parity_max_abs_diff: float | None = None  # FP32: what the parity gate judged
    drop: float | None = None  # INT8: top-1 points lost against the parent (unlabelled: disagreement)
    gate: Int8Agreement | None = None  # INT8: the figures its gate judged
    gate_rule: str = ""  # INT8: the gate rule that decided, in words
    status: str = spec("ok", choices=("ok", "failed"))
    problem: str = ""  # why it failed, one sentence
    # INT8 failing its gate on the unknown decisions alone (export/gate.py rule 4): status "failed", so
    # `auto` runs its FP32 parent, but it ships and the export does not fail for it
    held_back: bool = False

    @property
    def passed(self) -> bool:
        return self.status == "ok"

    def accuracy(self) -> dict[str, float]:
        """The accuracy dict stored in the model's own metadata."""
        figures = {"top1": self.top1, "top5": self.top5, "agreement": self.agreement,
                   "max_abs_diff": self.max_abs_diff, "val_images": float(self.val_images)}
        return {key: value for key, value in figures.items() if value is not None}


@dataclass(frozen=True)
class RecipeTry:
    """One INT8 recipe export tried (export/search.py): its figures, its time, and whether it was kept."""

    recipe: str  # e.g. "minmax, first conv float"
    seconds: float  # quantising + checking it
    latency_ms: float  # batch-1 median; the recipes of one search timed interleaved
    agreement: Int8Agreement
    passed: bool  # the INT8 gate's verdict
    problem: str = ""  # why the gate failed it
    float_nodes: tuple[str, ...] = ()  # nodes kept in float beyond preprocessing and softmax
    kept: bool = False


@dataclass(frozen=True)
class Calibration:
    images: int
    method: str  # the ONNX Runtime calibration asked for ("auto": the recipe search)
    recipes: dict[str, tuple[RecipeTry, ...]] = field(default_factory=dict)  # backend -> tries, in order


@dataclass(frozen=True)
class Int8GateRules:
    """The INT8 gate's settings, so a reader of report.json knows what `passed` meant."""

    confident_probability: float
    min_confident_images: int
    rules: tuple[str, ...]


@dataclass(frozen=True)
class UnknownCheck:
    """The bundle's unknown detector (as in every model's ModelMeta.unknown) and how each model applies
    it to the export's images: share called unknown, and for INT8 the share of decisions equal to FP32's."""

    rule: str
    threshold: float
    accept_rate: float
    calibration: str
    calibration_images: int
    checked_images: int = 0
    # per model name: unknown_percent, and for INT8 decision_agreement_fp32
    models: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class RunSplit:
    """The fine-tune run's images as paths relative to its data folder (the checkpoint's `split`): what
    `eval --split val|train` scores, so that training images are never counted as a test."""

    data_root: str = ""  # the run's data folder, where it was trained
    train: tuple[str, ...] = ()
    val: tuple[str, ...] = ()


@dataclass(frozen=True)
class BundleReport:
    """report.json: the export's settings, every model's figures and verdict, and the INT8/FP32 ratios."""

    models: tuple[ModelReport, ...]
    arch: str = ""
    source: str = ""  # where the model came from, in words
    num_classes: int = 0
    labelled: bool = True
    accuracy_basis: str = ""
    validation_images: int = 0
    calibration: Calibration | None = None  # None without --int8
    int8_gate: Int8GateRules | None = None  # None without --int8
    batch: int | str = spec("dynamic", low=1)
    opset: int = 17
    threads: int = 2
    max_drop: float = 1.0
    pytorch_latency_ms: float | None = None
    openvino_fp32_graph_max_abs_diff: float | None = None
    ratios: dict[str, Any] = field(default_factory=dict)
    unknown: UnknownCheck | None = None  # None: unknown detection off (checkpoint without a detector)
    split: RunSplit | None = None  # the checkpoint's train/val images; None: --pretrained, older bundles
    notes: tuple[str, ...] = ()
    passed: bool = False
    edgecnn_version: str = ""
    created: str = ""
    schema_version: int = REPORT_SCHEMA_VERSION

    def model(self, path: str) -> ModelReport | None:
        """The report of the model at bundle-relative `path`."""
        return next((m for m in self.models if m.path == path), None)

    def failures(self) -> list[str]:
        """Why the export failed: every failed model's problem except the held-back ones'."""
        return [m.problem for m in self.models if not m.passed and not m.held_back]

    def held_back(self) -> list[ModelReport]:
        return [m for m in self.models if m.held_back]

    def to_json(self) -> str:
        """Strict JSON (other tools read it): a NaN or infinite figure is written as null."""
        return json.dumps(_finite(asdict(self)), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any, source: str = REPORT_JSON) -> BundleReport | None:
        """The report; None when its older schema is no longer readable; EdgecnnError when newer or
        malformed."""
        origin = report_origin(source)
        version = from_dict(_Versioned, data, origin).schema_version
        if version > REPORT_SCHEMA_VERSION:
            raise EdgecnnError(f"{source} was written by a newer edgecnn (report schema {version}); "
                               f"{upgrade_hint()}")
        if version not in READABLE_SCHEMAS:
            return None
        # schema_version as written: 0 before versioning
        return replace(from_dict(cls, data, origin), schema_version=version)


def report_origin(source: str) -> Origin:
    """How report.json names itself in an error."""
    return Origin(source, "is unreadable", "export the bundle again", "the report")


@dataclass(frozen=True)
class _Versioned:
    """The schema version alone, read before the fields whose meaning it decides (0: before versioning)."""

    schema_version: int = 0


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


# -- reading a bundle -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class BundleModel:
    """A model file present in a bundle, with what export measured for it (None: not in the report)."""

    backend: str
    precision: str
    rel: str  # bundle-relative path
    path: Path
    report: ModelReport | None = None

    @property
    def passed(self) -> bool:
        """Whether export's accuracy gate passed (False when nothing was measured)."""
        return self.report is not None and self.report.passed

    @property
    def latency_ms(self) -> float:
        """Measured latency, or infinity when nothing was measured (ranks last)."""
        latency = self.report.latency_ms if self.report is not None else None
        return latency if latency is not None and math.isfinite(latency) else math.inf


class Bundle:
    """A bundle folder opened for reading."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise EdgecnnError(f"{self.root} is not a folder; "
                               "give a bundle folder written by `edgecnn export`")

    def file(self, rel: str, external_data: bool = True) -> Path | None:
        """`rel` inside the bundle when it is a file, None when it is absent; EdgecnnError when it (an
        .xml's .bin, an .onnx's external data) leads outside the folder. `external_data=False` skips
        reading a whole .onnx for its external-data entries, for files that are only listed (ONNX
        Runtime's `open_session` checks the one it opens)."""
        parts = PurePosixPath(rel.replace("\\", "/"))
        if parts.is_absolute() or ".." in parts.parts or Path(rel).is_absolute():
            raise EdgecnnError(f"{rel!r} is not a path inside the bundle {self.root}; refusing to read it")
        path = self.root.joinpath(*parts.parts)
        if not path.is_file():
            return None
        inside(path, self.root)
        if path.suffix == ".xml":
            inside(path.with_suffix(".bin"), self.root)
        if path.suffix == ".onnx" and external_data:
            check_external_data(path, self.root)
        return path

    @functools.cached_property
    def report(self) -> BundleReport | None:
        """report.json as a typed record; None when it is missing or from a schema no longer readable."""
        path = self.file(REPORT_JSON)
        if path is None:
            return None
        from edgecnn.runtime.core.files import read_bounded

        text = read_bounded(path, MAX_REPORT_BYTES, "report")
        return BundleReport.from_dict(read_json(text, report_origin(str(path)), MAX_REPORT_BYTES), str(path))

    def models(self) -> list[BundleModel]:
        """Every model file present, in LAYOUT order, with its report; EdgecnnError when there is none.

        Links are checked here; an .onnx file's external data when it is opened (or with `file(rel)`):
        reading every model in full would slow each load on an edge device's storage."""
        present = [(f, path) for f in LAYOUT for path in [self.file(f.path, external_data=False)]
                   if path is not None]
        if not present:
            raise EdgecnnError(f"{self.root} holds no model.onnx or openvino/model.xml; "
                               "is it an edgecnn bundle?")
        report = self.report
        found = [BundleModel(f.backend, f.precision, f.path, path, report.model(f.path) if report else None)
                 for f, path in present]
        return found

    def labels_file(self) -> Path | None:
        return self.file(LABELS_TXT)


def inside(path: Path, root: Path) -> Path:
    """`path` unless it (through links) lies outside `root`: EdgecnnError then."""
    if (path.exists() or path.is_symlink()) and not path.resolve().is_relative_to(root.resolve()):
        raise EdgecnnError(f"{path} links outside the bundle folder {root}; refusing to read it "
                           "(an untrusted bundle?): replace the link with the file itself")
    return path
