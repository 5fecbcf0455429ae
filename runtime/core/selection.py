"""Which model file of a bundle to run, on which backend and device, and what its metadata is."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgecnn.runtime.core.backends.base import Backend
from edgecnn.runtime.core.bundle import Bundle, BundleModel
from edgecnn.runtime.core.devices import Placement, place
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.files import regular_size
from edgecnn.runtime.core.metadata import META_KEY, ModelMeta, Preprocess, check_labels, read_labels

PRECISIONS = ("auto", "fp32", "fp16", "int8")


@dataclass(frozen=True)
class Choice:
    model_path: Path
    placement: Placement
    precision: str  # what the caller asked for, resolved: fp32 | fp16 | int8 | "" (single file)
    reason: str
    bundle: Path | None = None


def choose_model(path: Path, device: str, precision: str, backend: str) -> Choice:
    """Resolve a bundle folder or a model file to one file plus a placement."""
    if precision not in PRECISIONS:
        raise EdgecnnError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if path.is_dir():
        return _choose_in_bundle(path, device, precision, backend)
    if not path.exists():
        raise EdgecnnError(f"{path} does not exist; give a bundle folder, a .onnx or an OpenVINO .xml")
    regular_size(path, "model file")  # a FIFO would block the backend's open() forever
    suffix = path.suffix.lower()
    if suffix == ".xml":
        if backend == "onnxruntime":
            raise EdgecnnError(f"{path} is an OpenVINO IR; use --backend openvino (or auto)")
        prefer: tuple[str, ...] = ("openvino",)
    elif suffix == ".onnx":
        prefer = ("onnxruntime", "openvino")  # OpenVINO reads ONNX too, when asked
    else:
        raise EdgecnnError(f"{path} is not a model file; give a bundle folder, a .onnx or an OpenVINO .xml")
    placement = place(device, backend, prefer)
    return Choice(path, placement, precision if precision != "auto" else "", placement.reason)


def _choose_in_bundle(folder: Path, device: str, precision: str, backend: str) -> Choice:
    """The fastest model that passed export's accuracy check (report.json), among those that can run here."""
    models = Bundle(folder).models()
    # Without measurements: OpenVINO first on CPU/NPU, ONNX Runtime (TensorRT/CUDA) first on GPU.
    prefer = [b for b in ("openvino", "onnxruntime") if any(m.backend == b for m in models)]
    placement = place(device, backend, tuple(prefer))
    if backend == "auto" and placement.device == "gpu" and "onnxruntime" in prefer:
        placement = place("gpu", "auto", ("onnxruntime", "openvino"))
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
        why += f" (fastest accurate in report.json: {chosen.latency_ms:.1f} ms)" if measured \
            else " (check passed)"
    return Choice(chosen.path, placement, precision if precision == "fp16" else chosen.precision, why, folder)


def rank(models: list[BundleModel], backends: list[str], precision: str) -> list[BundleModel]:
    """The models that may run, best first: measured latency, then INT8 before FP32, then `backends` order.

    `precision` "auto" admits INT8 only when its accuracy check passed; "fp32"/"int8" admit only that.
    """
    allowed = [m for m in models if m.backend in backends and precision in ("auto", m.precision)
               and not (precision == "auto" and m.precision == "int8" and not m.passed)]
    return sorted(allowed, key=lambda m: (m.latency_ms, m.precision != "int8", backends.index(m.backend)))


def _devices_of(backend: str) -> list[str]:
    from edgecnn.runtime.core.devices import backend_devices

    return backend_devices(backend)


def open_backend(choice: Choice, threads: int | None, cache_dir: str | Path | None, hint: str,
                 streams: int | None = None, requests: int | None = None
                 ) -> tuple[Backend, ModelMeta | None]:
    """Compile the chosen file and read its embedded metadata (None for a foreign model)."""
    placement = choice.placement
    if placement.backend == "onnxruntime":
        if choice.precision == "fp16":
            raise EdgecnnError("--precision fp16 is for OpenVINO (FP16 execution); use fp32 with onnxruntime")
        from edgecnn.runtime.core.backends.onnxruntime import OnnxRuntimeBackend

        runner = OnnxRuntimeBackend(choice.model_path, list(placement.target), threads,
                                    _cache(cache_dir), streams)
        return runner, ModelMeta.from_mapping(runner.metadata(), str(choice.model_path))
    from edgecnn.runtime.core.backends.openvino import OpenVinoBackend, cache_dir_from, read_model

    start = time.perf_counter()
    model = read_model(choice.model_path) if choice.model_path.suffix == ".xml" else _ov_read_onnx(choice)
    read_seconds = time.perf_counter() - start
    meta = ModelMeta.from_openvino(model, str(choice.model_path))
    if meta is None and model.has_rt_info(["framework", META_KEY]):  # an ONNX file's metadata_props
        text = model.get_rt_info(["framework", META_KEY]).astype(str)
        meta = ModelMeta.from_json(text, str(choice.model_path))
    int8 = meta is not None and meta.precision == "int8"
    precision = "f32" if choice.precision in ("fp32", "") and not int8 else ""
    runner = OpenVinoBackend(choice.model_path, placement.target[0], hint, precision, threads,
                             cache_dir_from(cache_dir), model=model, read_seconds=read_seconds,
                             streams=streams, requests=requests)
    return runner, meta


def _ov_read_onnx(choice: Choice) -> Any:
    from edgecnn.runtime.core.backends.openvino import core
    from edgecnn.runtime.core.bundle import check_external_data

    check_external_data(choice.model_path)
    try:
        return core().read_model(str(choice.model_path))
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1][:200]  # OpenVINO: the last line says what is wrong
        raise EdgecnnError(f"{choice.model_path} is not a loadable ONNX model: {reason}") from exc


def _cache(cache_dir: str | Path | None) -> Path | None:
    from edgecnn.runtime.core.backends.openvino import cache_dir_from

    folder = cache_dir_from(cache_dir)
    return folder.parent if folder is not None and folder.name == "openvino" else folder


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
    if spec.dtype == "uint8" and not embedded.preprocess.normalize_in_graph:
        raise EdgecnnError(f"{choice.model_path} takes uint8 pixels but its metadata says "
                           "normalize_in_graph: false (feed normalised floats), which would give wrong "
                           "probabilities; re-export it")
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
                     softmax_in_graph=False)


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
