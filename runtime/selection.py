"""Which model file of a bundle to run, on which backend and device, and what its metadata is."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgecnn.runtime.devices import Placement, place
from edgecnn.runtime.errors import EdgecnnError
from edgecnn.runtime.metadata import META_KEY, ModelMeta, Preprocess, read_labels

PRECISIONS = ("auto", "fp32", "fp16", "int8")
# Bundle layout (export writes it): (backend, precision) -> file.
BUNDLE_FILES = {
    ("openvino", "int8"): "openvino/model.int8.xml",
    ("openvino", "fp32"): "openvino/model.xml",
    ("onnxruntime", "int8"): "model.int8.onnx",
    ("onnxruntime", "fp32"): "model.onnx",
}


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


def _choose_in_bundle(bundle: Path, device: str, precision: str, backend: str) -> Choice:
    """The fastest model that passed export's accuracy check (report.json), among those that can run here."""
    present = {key: bundle / rel for key, rel in BUNDLE_FILES.items() if bundle_file(bundle, rel)}
    if not present:
        raise EdgecnnError(f"{bundle} holds no model.onnx or openvino/model.xml; is it an edgecnn bundle?")
    report = bundle_report(bundle)
    # Without measurements: OpenVINO first on CPU/NPU, ONNX Runtime (TensorRT/CUDA) first on GPU.
    prefer = [b for b in ("openvino", "onnxruntime") if any(k[0] == b for k in present)]
    placement = place(device, backend, tuple(prefer))
    if backend == "auto" and placement.device == "gpu" and "onnxruntime" in prefer:
        placement = place("gpu", "auto", ("onnxruntime", "openvino"))
    wanted = "fp32" if precision == "fp16" else precision
    backends = [placement.backend]
    if backend == "auto":
        backends += [b for b in prefer if b != placement.backend and placement.device in _devices_of(b)]
    ranked = []
    for key, path in present.items():
        entry = report.get(BUNDLE_FILES[key], {})
        if key[0] not in backends or wanted not in ("auto", key[1]):
            continue
        if wanted == "auto" and key[1] == "int8" and not entry.get("passed", False):
            continue  # INT8 only when its accuracy check passed
        latency = entry.get("latency_ms")
        ranked.append((latency if isinstance(latency, (int, float)) else float("inf"),
                       key[1] != "int8", backends.index(key[0]), key, path, latency))
    if not ranked:
        have = ", ".join(f"{b} {p}" for b, p in present)
        raise EdgecnnError(f"{bundle} has no {wanted} model for {placement.backend}; it has: {have}")
    *_, (chosen_backend, prec), path, latency = min(ranked)
    if chosen_backend != placement.backend:
        placement = place(placement.device, chosen_backend)
        placement = replace(placement, reason=f"auto picked {chosen_backend} on {placement.device}")
    why = f"{placement.reason}, {prec.upper()}"
    if precision == "auto" and len(ranked) > 1:
        why += f" (fastest accurate in report.json: {latency:.1f} ms)" if latency else " (check passed)"
    return Choice(path, placement, precision if precision == "fp16" else prec, why, bundle)


def bundle_file(bundle: Path, rel: str) -> Path | None:
    """`bundle/rel` when it is a file; EdgecnnError when it (or an .xml's .bin) leads outside the bundle."""
    path = bundle / rel
    if not path.is_file():
        return None
    root = bundle.resolve()
    for item in (path, path.with_suffix(".bin")) if path.suffix == ".xml" else (path,):
        if (item.exists() or item.is_symlink()) and not item.resolve().is_relative_to(root):
            raise EdgecnnError(f"{item} links outside the bundle folder {bundle}; refusing to read it "
                               "(an untrusted bundle?): replace the link with the file itself")
    return path


def _devices_of(backend: str) -> list[str]:
    from edgecnn.runtime.devices import backend_devices

    return backend_devices(backend)


def bundle_report(bundle: Path) -> dict[str, dict[str, Any]]:
    """Bundle-relative model path -> {"passed": bool, "latency_ms": float | None} from report.json."""
    report_path = bundle / "report.json"
    if not bundle_file(bundle, "report.json"):
        return {}
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EdgecnnError(f"{report_path} is unreadable ({exc}); export the bundle again") from exc
    entries = {}
    for rel, entry in _model_entries(report).items():
        passed = entry["status"] == "ok" if "status" in entry else bool(entry.get("passed", False))
        entries[rel] = {"passed": passed, "latency_ms": entry.get("latency_ms")}
    return entries


def report_passed(bundle: Path) -> dict[str, bool]:
    """Bundle-relative model path -> whether export's accuracy check passed."""
    return {rel: entry["passed"] for rel, entry in bundle_report(bundle).items()}


def _model_entries(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    models = report.get("models", [])
    if isinstance(models, dict):
        models = [dict(entry, path=entry.get("path", key)) for key, entry in models.items()]
    entries = {}
    for entry in models:
        if isinstance(entry, dict) and (entry.get("path") or entry.get("file")):
            entries[str(entry.get("path") or entry.get("file")).replace("\\", "/")] = entry
    return entries


def open_backend(choice: Choice, threads: int | None, cache_dir: str | Path | None, hint: str
                 ) -> tuple[Any, ModelMeta | None]:
    """Compile the chosen file and read its embedded metadata (None for a foreign model)."""
    placement = choice.placement
    if placement.backend == "onnxruntime":
        if choice.precision == "fp16":
            raise EdgecnnError("--precision fp16 is for OpenVINO (FP16 execution); use fp32 with onnxruntime")
        from edgecnn.runtime.backends.onnxruntime import OnnxRuntimeBackend

        runner = OnnxRuntimeBackend(choice.model_path, list(placement.target), threads,
                                    _cache(cache_dir))
        return runner, ModelMeta.from_mapping(runner.metadata(), str(choice.model_path))
    from edgecnn.runtime.backends.openvino import OpenVinoBackend, cache_dir_from, read_model

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
                             cache_dir_from(cache_dir), model=model, read_seconds=read_seconds)
    return runner, meta


def _ov_read_onnx(choice: Choice) -> Any:
    from edgecnn.runtime.backends.onnxruntime import check_external_data
    from edgecnn.runtime.backends.openvino import core

    check_external_data(choice.model_path)
    try:
        return core().read_model(str(choice.model_path))
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1][:200]  # OpenVINO: the last line says what is wrong
        raise EdgecnnError(f"{choice.model_path} is not a loadable ONNX model: {reason}") from exc


def _cache(cache_dir: str | Path | None) -> Path | None:
    from edgecnn.runtime.backends.openvino import cache_dir_from

    folder = cache_dir_from(cache_dir)
    return folder.parent if folder is not None and folder.name == "openvino" else folder


def resolve_meta(choice: Choice, runner: Any, embedded: ModelMeta | None,
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
    if choice.bundle is not None and given is None and bundle_file(choice.bundle, "labels.txt"):
        listed = read_labels(choice.bundle / "labels.txt")
        if len(listed) != len(embedded.labels):
            raise EdgecnnError(f"{choice.bundle}/labels.txt lists {len(listed)} labels but the model "
                               f"has {len(embedded.labels)}; export the bundle again")
    if runner.num_outputs and runner.num_outputs != len(embedded.labels):
        raise EdgecnnError(f"{choice.model_path} outputs {runner.num_outputs} classes but has "
                           f"{len(embedded.labels)} labels; give a labels file with one line per class")
    return embedded


def _labels_from(labels: str | Path | Sequence[str] | None) -> tuple[str, ...] | None:
    if labels is None:
        return None
    if isinstance(labels, (str, Path)):
        return read_labels(labels)
    return tuple(str(label) for label in labels)


def _foreign_meta(path: Path, runner: Any, labels: tuple[str, ...] | None, mean: Sequence[float] | None,
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
    return _unit_scale(values)
