"""Write a standard Triton Inference Server model repository from a bundle.

    REPO/<name>/config.pbtxt, labels.txt, 1/model.onnx                 onnxruntime backend, CPU or GPU
    REPO/<name>_openvino/config.pbtxt, labels.txt, 1/model.xml|.bin    openvino backend, CPU

The models keep the bundle's contract (uint8 NHWC `images` in, softmax `probabilities` out), so any
Triton client can send raw fitted pixels; `label_filename` lets Triton's classification extension
(`class_count` on an output) answer with label names. A model with an unknown detector also exposes
`unknown_score` (one float per image; the threshold is in the model's metadata, ModelMeta.unknown).
Torch-free: it only reads the bundle.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from edgecnn.runtime.core.bundle import Bundle, layout_path
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.files import regular_size
from edgecnn.runtime.core.metadata import ModelMeta
from edgecnn.runtime.core.outputs import atomic_folder, check_distinct

KINDS = {"cpu": "KIND_CPU", "gpu": "KIND_GPU"}
PRECISIONS = ("fp32", "int8")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\Z")  # \Z, not $: '$' lets a trailing newline in


@dataclass(frozen=True)
class TritonRepoConfig:
    """Where to write, under which name, and how Triton should schedule the model."""

    bundle: Path
    repo: Path
    name: str | None = None  # default: the bundle folder's name
    kind: str = "cpu"  # instance_group of the ONNX model: cpu | gpu (OpenVINO runs on CPU only)
    max_batch: int = 16
    instances: int = 1
    precision: str = "fp32"  # which bundle models: fp32 | int8
    queue_delay_us: int = 2000  # how long the dynamic batcher waits to fill a batch
    force: bool = False  # replace REPO/<name> folders written before (hand-tuned ones included)


def write_triton_repo(config: TritonRepoConfig) -> list[Path]:
    """Write the ONNX and OpenVINO model folders (replacing earlier ones only with `force`); returns them.

    Everything is checked before the first folder is made, so a refusal leaves nothing behind."""
    onnx_file, xml = _check(config)
    name = model_name(config)
    meta = ModelMeta.read(onnx_file)  # checked on load: only typed, in-range values reach config.pbtxt
    if meta is None:
        raise EdgecnnError(f"{onnx_file} has no edgecnn metadata; re-export the bundle")
    models = {name: ("onnxruntime", [onnx_file])}
    if xml is not None:
        models[f"{name}_openvino"] = ("openvino", [xml, xml.with_suffix(".bin")])
    for model, (backend, _) in models.items():
        _check_model_folder(config, model)
        kind = config.kind if backend == "onnxruntime" else "cpu"
        config_pbtxt(model, meta, backend, kind, config.max_batch, config.instances, config.queue_delay_us)
    config.repo.mkdir(parents=True, exist_ok=True)
    return [_write_model(config, model, meta, backend, files) for model, (backend, files) in models.items()]


def _check_model_folder(config: TritonRepoConfig, model: str) -> None:
    """REPO/MODEL is outside the bundle, holds no part of it, and is replaced only with `force`."""
    folder = config.repo / model
    check_distinct({"REPO": config.repo}, {"BUNDLE": config.bundle})
    check_distinct({f"REPO/{model}": folder}, {"BUNDLE": config.bundle}, replaced=True)
    if not config.force and (folder.is_symlink() or folder.exists()):
        raise EdgecnnError(f"{folder} already exists (its config.pbtxt and versions would be replaced); "
                           "pass --force to replace it, or choose another --name or REPO")


def model_name(config: TritonRepoConfig) -> str:
    name = config.name or re.sub(r"[^A-Za-z0-9_.-]", "_", config.bundle.resolve().name)
    if not NAME_PATTERN.match(name):
        raise EdgecnnError(f"model name {name!r} is not valid for Triton; use letters, digits, '_', '-', '.'")
    return name


def config_pbtxt(name: str, meta: ModelMeta, backend: str, kind: str, max_batch: int, instances: int,
                 queue_delay_us: int) -> str:
    """The model configuration in protobuf text format (Triton's ModelConfig).

    Built from checked, typed values only: names match NAME_PATTERN, numbers are ints in range, so
    nothing read from a bundle can add text of its own to the configuration.
    """
    height, width = meta.preprocess.input_size
    for label, value in (("model name", name), ("backend", backend)):
        if not isinstance(value, str) or not NAME_PATTERN.match(value):
            raise EdgecnnError(f"{label} {value!r} is not valid for Triton; use letters, digits, '_', "
                               "'-', '.'")
    counts = (("input height", height, 1 << 14), ("input width", width, 1 << 14),
              ("class count", meta.num_classes, 1 << 20), ("--max-batch", max_batch, 1 << 16),
              ("--instances", instances, 1024), ("queue delay", queue_delay_us, 10**8))
    for label, value, high in counts:
        if type(value) is not int or not 1 <= value <= high:
            raise EdgecnnError(f"{label} {value!r} is out of range for Triton; give a whole number from 1 "
                               f"to {high}")
    lines = [
        f'name: "{name}"',
        f'backend: "{backend}"',
        f"max_batch_size: {max_batch}",
        "input [",
        f'  {{ name: "images" data_type: TYPE_UINT8 format: FORMAT_NHWC dims: [ {height}, {width}, 3 ] }}',
        "]",
        "output [",
        f'  {{ name: "probabilities" data_type: TYPE_FP32 dims: [ {meta.num_classes} ] '
        'label_filename: "labels.txt" }' + ("," if meta.unknown is not None else ""),
        # the graph's [batch] output: one value per image, so dims [ 1 ] reshaped to a scalar
        *([f'  {{ name: "{meta.unknown.output}" data_type: TYPE_FP32 dims: [ 1 ] '
            'reshape: { shape: [ ] } }'] if meta.unknown is not None else []),
        "]",
        f"dynamic_batching {{ max_queue_delay_microseconds: {queue_delay_us} }}",
        f"instance_group [ {{ count: {instances} kind: {KINDS[kind]} }} ]",
    ]
    if backend == "openvino":  # throughput streams: the dynamic batcher hands it whole batches
        lines.append('parameters { key: "PERFORMANCE_HINT" value: { string_value: "THROUGHPUT" } }')
    return "\n".join(lines) + "\n"


def _check(config: TritonRepoConfig) -> tuple[Path, Path | None]:
    """The bundle's ONNX file and OpenVINO IR (None when absent) at the asked precision, safely resolved."""
    if config.kind not in KINDS:
        raise EdgecnnError(f"unknown --kind {config.kind!r}; choose one of {', '.join(KINDS)}")
    if config.precision not in PRECISIONS:
        raise EdgecnnError(f"unknown --precision {config.precision!r}; choose one of {', '.join(PRECISIONS)}")
    if config.max_batch < 1 or config.instances < 1:
        raise EdgecnnError("--max-batch and --instances must be at least 1")
    onnx_rel = layout_path("onnxruntime", config.precision)
    onnx_file = Bundle(config.bundle).file(onnx_rel) if config.bundle.is_dir() else None
    if onnx_file is None:
        raise EdgecnnError(f"{config.bundle} holds no {onnx_rel}; give a bundle folder written by `edgecnn "
                           "export`" + (" --int8" if config.precision == "int8" else ""))
    if config.repo.exists() and not config.repo.is_dir():
        raise EdgecnnError(f"{config.repo} is a file; give a folder for the model repository")
    return onnx_file, Bundle(config.bundle).file(layout_path("openvino", config.precision))


def _write_model(config: TritonRepoConfig, name: str, meta: ModelMeta, backend: str,
                 files: list[Path]) -> Path:
    """Build the model folder under a temporary name beside its place, then swap it in."""
    kind = config.kind if backend == "onnxruntime" else "cpu"
    with atomic_folder(config.repo / name) as work:
        (work / "1").mkdir()
        for source in files:  # resolved by Bundle.file: inside the bundle; regular files only
            regular_size(source, "bundle file")
            shutil.copyfile(source, work / "1" / f"model{source.suffix}")
        (work / "labels.txt").write_text("\n".join(meta.labels) + "\n", encoding="utf-8")
        text = config_pbtxt(name, meta, backend, kind, config.max_batch, config.instances,
                            config.queue_delay_us)
        (work / "config.pbtxt").write_text(text, encoding="utf-8")  # the folder swap makes it atomic
    return config.repo / name
