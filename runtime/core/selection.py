"""Which model file of a bundle to run, on which backend and device, and what its metadata is."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from edgecnn.runtime.core.backends import registry
from edgecnn.runtime.core.backends.base import Backend, BackendEntry, OpenRequest
from edgecnn.runtime.core.bundle import Bundle, BundleModel
from edgecnn.runtime.core.devices import Placement, place
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.files import regular_size
from edgecnn.runtime.core.metadata import ModelMeta, Preprocess, check_labels, none_class_of, read_labels

PRECISIONS = ("auto", "fp32", "fp16", "int8")


@dataclass(frozen=True)
class Choice:
    model_path: Path
    placement: Placement
    precision: str  # what the caller asked for, resolved: fp32 | fp16 | int8 | "" (single file)
    reason: str
    bundle: Path | None = None


def choose_model(path: Path, device: str, precision: str, backend: str) -> Choice:
    """Resolve a bundle folder, a model file or a served model (triton://...) to one model and a placement."""
    if precision not in PRECISIONS:
        raise EdgecnnError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    remote = registry.for_location(str(path))
    if remote is not None:
        return _choose_remote(remote, path, device, precision, backend)
    if path.is_dir():
        return _choose_in_bundle(path, device, precision, backend)
    if not path.exists():
        raise EdgecnnError(f"{path} does not exist; give {registry.file_kinds()}")
    regular_size(path, "model file")  # a FIFO would block the backend's open() forever
    readers = registry.for_file(path.suffix)
    if not readers and path.suffix.lower() in (".pt", ".pth"):  # what finetune writes: the usual first try
        raise EdgecnnError(f"{path} is a PyTorch checkpoint, which the runtime does not run; export it "
                           f"first, then give the bundle: edgecnn export {path} --out bundles/mine")
    if not readers:
        raise EdgecnnError(f"{path} is not a model file; give {registry.file_kinds()}")
    prefer = tuple(entry.name for entry in readers)
    if backend not in ("auto", *prefer) and backend in registry.NAMES:
        raise EdgecnnError(f"{path} is {registry.file_kind(path.suffix)}; use --backend "
                           f"{' or '.join(prefer)} (or auto)")
    placement = place(device, backend, prefer)
    return Choice(path, placement, precision if precision != "auto" else "", placement.reason)


def _choose_remote(entry: BackendEntry, path: Path, device: str, precision: str, backend: str) -> Choice:
    """A model on a server: the server picks device and precision, so only `auto` (or its name) is taken."""
    if backend not in ("auto", entry.name):
        raise EdgecnnError(f"a {entry.url_form} model runs on its server; use --backend {entry.name} "
                           "(or auto)")
    for option, value in (("--device", device), ("--precision", precision)):
        if value != "auto":
            raise EdgecnnError(f"{option} {value}: a {entry.url_form} model runs on the device and at the "
                               f"precision its server chose; leave {option} out")
    reason = f"{entry.name} as asked" if backend == entry.name else f"auto picked {entry.name} (served)"
    return Choice(path, Placement(entry.name, "auto", (str(path),), reason), "", reason)


def _choose_in_bundle(folder: Path, device: str, precision: str, backend: str) -> Choice:
    """The fastest model that passed export's accuracy check (report.json), among those that can run here."""
    models = Bundle(folder).models()
    # Without measurements: registry order (OpenVINO first on CPU/NPU); a backend `first_on` a device goes
    # first there (ONNX Runtime with TensorRT/CUDA on a GPU).
    prefer = [e.name for e in registry.local() if any(m.backend == e.name for m in models)]
    placement = place(device, backend, tuple(prefer))
    first = [e.name for e in registry.local() if e.name in prefer and placement.device in e.first_on]
    if backend == "auto" and first:
        rest = [name for name in prefer if name not in first]
        placement = place(placement.device, "auto", tuple(first + rest))
    wanted = "fp32" if precision == "fp16" else precision
    backends = [placement.backend]
    if backend == "auto":
        backends += [b for b in prefer if b != placement.backend and placement.device in _devices_of(b)]
    ranked = rank(models, backends, wanted)
    if not ranked:
        have = ", ".join(f"{m.backend} {m.precision}" for m in models)
        raise EdgecnnError(f"{folder} has no {wanted} model for {placement.backend}; it has: {have}")
    chosen = ranked[0]
    if chosen.backend != placement.backend:
        placement = place(placement.device, chosen.backend)
        placement = replace(placement, reason=f"auto picked {chosen.backend} on {placement.device}")
    why = f"{placement.reason}, {chosen.precision.upper()}"
    if precision == "auto" and len(ranked) > 1:
        measured = math.isfinite(chosen.latency_ms)
        why += (f" (fastest accurate in report.json: {chosen.latency_ms:.1f} ms; within {TIE:.0%} of the "
                "fastest is a tie, INT8 then backend order)") if measured else " (check passed)"
    return Choice(chosen.path, placement, precision if precision == "fp16" else chosen.precision, why, folder)


# Latencies within this share of the fastest are a tie: export measures them once, on whatever else the
# machine is doing, and a difference this small must not flip the pick between two exports of one model.
TIE = 0.15


def rank(models: list[BundleModel], backends: list[str], precision: str) -> list[BundleModel]:
    """The models that may run, best first: those within TIE of the fastest measured latency as a tie (INT8
    before FP32, then `backends` order, then latency), then the rest by latency.

    `precision` "auto" admits INT8 only when its accuracy check passed; "fp32"/"int8" admit only that.
    """
    allowed = [m for m in models if m.backend in backends and precision in ("auto", m.precision)
               and not (precision == "auto" and m.precision == "int8" and not m.passed)]
    order = sorted(allowed, key=lambda m: (m.latency_ms, m.precision != "int8", backends.index(m.backend)))
    if not order:
        return order
    fastest = order[0].latency_ms
    tied = [m for m in order if m.latency_ms <= fastest * (1.0 + TIE)]
    tied.sort(key=lambda m: (m.precision != "int8", backends.index(m.backend), m.latency_ms))
    return tied + [m for m in order if m not in tied]


def _devices_of(backend: str) -> list[str]:
    return registry.entry(backend).devices()


def open_backend(choice: Choice, threads: int | None, cache_dir: str | Path | None, hint: str,
                 streams: int | None = None, requests: int | None = None
                 ) -> tuple[Backend, ModelMeta | None]:
    """Open the chosen model on its backend and read its embedded metadata (None for a foreign model)."""
    source = str(choice.model_path)
    request = OpenRequest(choice.model_path, choice.placement.target, choice.precision, threads, cache_dir,
                          hint, streams, requests, location=source,
                          read_meta=lambda text: None if text is None else ModelMeta.from_json(text, source))
    return registry.entry(choice.placement.backend).open(request)


def resolve_meta(choice: Choice, runner: Backend, embedded: ModelMeta | None,
                 labels: str | Path | Sequence[str] | None, mean: Sequence[float] | None,
                 std: Sequence[float] | None) -> ModelMeta:
    """The model's own metadata, or one built from --labels/--mean/--std; labels must match the output."""
    spec = runner.input
    if spec.dtype not in ("uint8", "float32", "float16") or len(spec.shape) != 4:
        raise EdgecnnError(f"{choice.model_path} takes a {spec.dtype} input of rank {len(spec.shape)}; "
                           "edgecnn runs image classifiers with one uint8 or float NHWC/NCHW input")
    given = _labels_from(labels)
    if embedded is None:
        embedded = _foreign_meta(choice.model_path, runner, given, mean, std)
    elif given is not None:
        embedded = replace(embedded, labels=given)
    listed_file = Bundle(choice.bundle).labels_file() if choice.bundle is not None and given is None else None
    if listed_file is not None:
        listed = read_labels(listed_file)
        if len(listed) != len(embedded.labels):
            raise EdgecnnError(f"{choice.bundle}/labels.txt lists {len(listed)} labels but the model "
                               f"has {len(embedded.labels)}; export the bundle again")
        differ = [i for i, (a, b) in enumerate(zip(listed, embedded.labels, strict=True)) if a != b.strip()]
        if differ:  # the file a person reads must name what the model says
            first = differ[0]
            raise EdgecnnError(f"{choice.bundle}/labels.txt says {listed[first]!r} where the model's label "
                               f"{first} is {embedded.labels[first]!r}; export the bundle again")
    if spec.dtype == "uint8" and not embedded.preprocess.normalize_in_graph:
        raise EdgecnnError(f"{choice.model_path} takes uint8 pixels but its metadata says "
                           "normalize_in_graph: false (feed normalised floats), which would give wrong "
                           "probabilities; re-export it")
    if spec.size is not None and spec.size != tuple(embedded.preprocess.input_size):
        raise EdgecnnError(f"{choice.model_path} takes {spec.size[0]}x{spec.size[1]} images but its metadata "
                           f"says {embedded.preprocess.input_size[0]}x{embedded.preprocess.input_size[1]}; "
                           "export it again")
    if runner.num_outputs and runner.num_outputs != len(embedded.labels):
        raise EdgecnnError(f"{choice.model_path} outputs {runner.num_outputs} classes but has "
                           f"{len(embedded.labels)} labels; give a labels file with one line per class")
    return embedded


def _labels_from(labels: str | Path | Sequence[str] | None) -> tuple[str, ...] | None:
    if labels is None:
        return None
    if isinstance(labels, (str, Path)):
        return read_labels(labels)
    return check_labels(tuple(str(label) for label in labels), "labels")


def _foreign_meta(path: Path, runner: Backend, labels: tuple[str, ...] | None, mean: Sequence[float] | None,
                  std: Sequence[float] | None) -> ModelMeta:
    """Metadata for a model exported elsewhere: labels from the user, size and layout from the input."""
    spec = runner.input
    is_float = spec.dtype != "uint8"
    missing = [] if labels is not None else ["--labels FILE"]
    if is_float and (mean is None or std is None):
        missing.append("--mean R,G,B --std R,G,B (its input is float)")
    if missing:
        raise EdgecnnError(f"{path} has no edgecnn metadata; pass {' and '.join(missing)}")
    size = spec.size or (224, 224)
    pre = Preprocess(input_size=size, layout=spec.layout, normalize_in_graph=not is_float,
                     mean=_unit_scale(mean) if mean else Preprocess().mean,
                     std=_unit_scale(std) if std else Preprocess().std)
    return ModelMeta(labels=labels or (), preprocess=pre, arch="foreign", precision="",
                     softmax_in_graph=False, none_class=none_class_of(labels or ()))


def _unit_scale(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean/std on the 0..1 scale; values given on the 0..255 scale are converted."""
    values = tuple(float(v) for v in values)
    if len(values) != 3:
        raise EdgecnnError(f"--mean/--std take three numbers (R,G,B), got {len(values)}")
    return tuple(v / 255.0 for v in values) if max(values) > 1.0 else values  # type: ignore[return-value]


def parse_triplet(text: str | None, option: str) -> tuple[float, float, float] | None:
    """"0.485,0.456,0.406" -> three floats; None stays None."""
    if text is None:
        return None
    try:
        values = tuple(float(part) for part in text.replace(" ", ",").split(",") if part)
    except ValueError as exc:
        raise EdgecnnError(f"{option} takes three numbers like 0.485,0.456,0.406; got {text!r}") from exc
    if not all(math.isfinite(v) for v in values) or (option == "--std" and not all(v > 0 for v in values)):
        wanted = "three numbers above 0" if option == "--std" else "three finite numbers"
        raise EdgecnnError(f"{option} {text!r} would make every probability NaN; give {wanted}, "
                           "e.g. 0.229,0.224,0.225 for --std, 0.485,0.456,0.406 for --mean")
    return _unit_scale(values)
