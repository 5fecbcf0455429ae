"""`export_bundle`: checkpoint -> self-describing bundle of FP32/INT8 ONNX and OpenVINO models, with proof.

Everything is written into a temporary folder beside OUT and renamed into place when complete, so
an interrupted export never leaves a half bundle that looks whole. Failed gates keep the files
(marked failed in the report) and raise one EdgecnnError afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.export.checks import Candidate, compare_on_images, measure, median_latency_ms
from edgecnn.export.onnx import check_opset
from edgecnn.export.quantize import check_method
from edgecnn.export.source import Source, check_calibration_folder, checkpoint_source, pretrained_source
from edgecnn.runtime.core.bundle import LABELS_TXT, BundleReport, ModelReport, layout_path
from edgecnn.runtime.core.errors import EdgecnnError, raise_if_interrupted
from edgecnn.runtime.core.options import check_range
from edgecnn.runtime.core.outputs import (
    atomic_folder,
    check_distinct,
    check_output_path,
    check_writable,
    disk_full_is_one_line,
    output_lock,
    write_text_atomic,
)

FORMATS = ("onnx", "openvino")


class ExportFailed(EdgecnnError):
    """A gate failed; the bundle is written (models marked failed in `report`)."""

    def __init__(self, message: str, report: BundleReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class ExportConfig:
    checkpoint: Path | None = None
    out: Path = Path("bundle")
    pretrained: bool = False
    arch: str = "efficientnet_lite0"  # with `pretrained`: which ImageNet classifier
    formats: tuple[str, ...] = FORMATS
    int8: bool = False
    calibration: Path | None = None  # default: the checkpoint's training images (or sample photos)
    calibration_size: int = 300
    calibration_method: str = "auto"  # ONNX Runtime: auto searches quantize.RECIPES
    max_drop: float = 1.0  # allowed INT8 top-1 drop, percentage points (never less than one image)
    float_nodes: tuple[str, ...] = ()  # ONNX node names both quantisers keep in float (e.g. an extra output)
    opset: int = 17
    batch: int | None = None  # None: dynamic batch
    accept_rate: float = 0.95  # with `pretrained`: calibration images its unknown threshold accepts
    imgsz: int = 0  # square input size; 0: the architecture's own (pretrained) or the checkpoint's
    # PyTorch's latency and the unknown detector's figures on every image: the report's alone (no gate, no
    # model choice reads them); a retrain's export, whose report nobody reads, skips them
    full_report: bool = True
    force: bool = False
    progress: bool = True


def check_config(config: ExportConfig) -> None:
    """Every mistake we can see before spending minutes: one-line EdgecnnError each."""
    check_opset(config.opset)
    check_method(config.calibration_method)
    unknown = [f for f in config.formats if f not in FORMATS]
    if unknown or not config.formats:
        named = ", ".join(unknown) or "(none)"
        raise EdgecnnError(f"unknown format {named}; choose from onnx, openvino, all")
    if config.batch is not None and config.batch < 1:
        raise EdgecnnError(f"--batch must be 'dynamic' or a positive number, got {config.batch}")
    from edgecnn.unknown import check_accept_rate

    check_accept_rate(config.accept_rate)
    check_range("calibration_size", config.calibration_size)  # the options table's, as the CLI's
    if config.pretrained == (config.checkpoint is not None):
        raise EdgecnnError("give either a CHECKPOINT or --pretrained (not both, not neither)")
    if config.checkpoint is not None and not Path(config.checkpoint).exists():
        raise EdgecnnError(f"checkpoint {config.checkpoint} does not exist; "
                           "give the best.pt from `edgecnn finetune`")
    if config.calibration is not None:
        check_calibration_folder(Path(config.calibration))
    _check_out(Path(config.out), config.force)
    check_distinct({"--out": Path(config.out)},
                   {"CHECKPOINT": config.checkpoint, "--calibration": config.calibration}, replaced=True)


def _check_out(out: Path, force: bool) -> None:
    check_output_path(out, "--out", folder=True, replaced=True)
    if out.exists() and not force:
        raise EdgecnnError(f"{out} already exists; pass --force to replace it or choose another --out")
    if out.exists() and not out.is_dir():
        raise EdgecnnError(f"{out} exists and is not a folder; choose another --out")
    check_writable(out, "--out")


def export_bundle(config: ExportConfig) -> BundleReport:
    """Export, quantise, check and write the bundle at `config.out`; returns the report."""
    from edgecnn.export.progress import Steps
    from edgecnn.export.report import build_report, write_report
    from edgecnn.runtime.core.backends.onnxruntime import decline_telemetry

    decline_telemetry()  # before onnxslim and ORT's quantizer import onnxruntime
    check_config(config)
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(out, "--out"), Steps(config.progress) as steps:
        _check_out(out, config.force)  # again, under the lock: another export may have just finished
        steps.say("loading the model")
        source = _load_source(config)
        # an interrupted export (or one that fills the disk) never leaves a half bundle that looks whole
        with disk_full_is_one_line("--out", out), atomic_folder(out) as work:
            candidates, tried = _build_models(config, source, work, steps)
            measured, extra = measure_models(config, source, candidates, work, steps)
            report = build_report(config, source, measured, {**extra, "int8_recipes": tried})
            steps.say("writing metadata and report")
            _write_metadata(source, measured, work)
            from edgecnn.export.selftest import write_selftest
            from edgecnn.runtime.core.selftest import selftest_digest

            write_selftest(work, source.validation.paths, [m.path for m in measured])
            # the models name their self-test data: the bundle's check covers it (runtime/core/selftest.py)
            _write_metadata(source, measured, work, selftest_sha256=selftest_digest(work))
            write_text_atomic(work / LABELS_TXT, "\n".join(source.labels) + "\n")
            write_report(report, work)
            _drop_unrequested(config, work)
            raise_if_interrupted()  # never swap in a bundle whose export was interrupted
    problems = report.failures()
    if problems:
        raise ExportFailed(f"{'; '.join(problems)} (files kept in {out}, marked failed in report.md)", report)
    return report


def _load_source(config: ExportConfig) -> Source:
    if config.pretrained:
        return pretrained_source(config.arch, config.calibration, config.calibration_size, config.accept_rate,
                                 config.imgsz)
    return checkpoint_source(Path(config.checkpoint), config.calibration, config.calibration_size,
                             config.imgsz)


def _build_models(config: ExportConfig, source: Source, work: Path,
                  steps: Any) -> tuple[list[Candidate], dict[str, list[Any]]]:
    """Write the requested model files into `work`: candidates for checking, and the INT8 recipes tried
    per backend (ONNX FP32 is always built: OpenVINO and both quantisers start from it)."""
    from edgecnn.export.checks import onnx_predictor, openvino_predictor
    from edgecnn.export.int8 import Int8Job, quantize_onnx_searched, quantize_openvino_searched
    from edgecnn.export.onnx import deployable, export_onnx
    from edgecnn.export.openvino import convert_openvino

    steps.say("exporting ONNX")
    fp32 = export_onnx(deployable(source.model, source.preprocess, unknown_module(source)),
                       source.preprocess, work / layout_path("onnxruntime", "fp32"), opset=config.opset,
                       batch=config.batch)
    job = Int8Job(source.calibration, source.validation, source.preprocess, source.labelled, config.max_drop,
                  config.batch or 1, config.float_nodes, steps.say,
                  source.detector.threshold if source.detector is not None else None)
    found, tried = [], {}
    if "onnx" in config.formats:
        found.append(Candidate("onnx fp32", "onnxruntime", "fp32", fp32, onnx_predictor(fp32), (fp32,)))
    if config.int8 and "onnx" in config.formats:
        steps.say(f"quantising ONNX ({len(source.calibration)} calibration images)")
        int8 = work / layout_path("onnxruntime", "int8")
        tried["onnxruntime"] = quantize_onnx_searched(fp32, int8, job, config.calibration_method)
        found.append(Candidate("onnx int8", "onnxruntime", "int8", int8, onnx_predictor(int8), (int8,),
                               parent="onnx fp32", unknown_threshold=own_threshold(tried["onnxruntime"])))
    if "openvino" in config.formats:
        steps.say("converting to OpenVINO")
        xml = convert_openvino(fp32, work / layout_path("openvino", "fp32"))
        found.append(Candidate("openvino fp32", "openvino", "fp32", xml, openvino_predictor(xml),
                               (xml, xml.with_suffix(".bin"))))
        if config.int8:
            steps.say(f"quantising OpenVINO with NNCF ({len(source.calibration)} calibration images)")
            xml8 = work / layout_path("openvino", "int8")
            tried["openvino"] = quantize_openvino_searched(fp32, xml8, job, parent=xml)
            found.append(Candidate("openvino int8", "openvino", "int8", xml8, openvino_predictor(xml8),
                                   (xml8, xml8.with_suffix(".bin")), parent="openvino fp32",
                                   unknown_threshold=own_threshold(tried["openvino"])))
    return found, tried


def own_threshold(tries: list[Any]) -> float | None:
    """The unknown threshold fitted on the kept INT8 model's own scores, or None: it keeps FP32's."""
    kept = next((t for t in tries if t.kept), None)
    return kept.agreement.unknown_threshold if kept is not None and kept.agreement.unknown_refitted else None


def measure_models(config: ExportConfig, source: Source, candidates: list[Candidate], work: Path,
                   steps: Any) -> tuple[list[ModelReport], dict[str, Any]]:
    """Accuracy and parity of every model against PyTorch, plus batch-1 latency."""
    from edgecnn.export.checks import THREADS, openvino_predictor, torch_predictor
    from edgecnn.export.images import batches
    from edgecnn.export.onnx import deployable

    # no latency to report: one thread (2 busy cores, a retrain beside a camera: 700 ms an image, 82 on one)
    reference = torch_predictor(deployable(source.model, source.preprocess, unknown_module(source)),
                                THREADS if config.full_report else 1)
    # The shipped IR has FP16 weights; the conversion itself is proven on the same graph in f32.
    graph = [c for c in candidates if c.name == "openvino fp32"]
    if graph:
        from edgecnn.runtime.core.backends.openvino import import_openvino

        f32 = import_openvino().convert_model(str(work / layout_path("onnxruntime", "fp32")))
        graph = [Candidate("openvino fp32 graph", "openvino", "fp32", graph[0].path,
                           openvino_predictor(f32), ())]
    batch = config.batch or 1
    steps.say(f"checking {len(candidates)} model(s) on {len(source.validation)} validation images")
    tallies, reference_top1, targets = compare_on_images(reference, candidates + graph, source.validation,
                                                source.preprocess, batch)
    if not targets:
        raise EdgecnnError("none of the validation images could be read; check the data folder")
    frames = next(batches(source.validation, source.preprocess, batch))[0]
    latency = {}
    for candidate in candidates:
        steps.say(f"timing {candidate.name} (batch {batch}, 2 threads)")
        latency[candidate.name] = median_latency_ms(candidate.predict, frames)
    if config.full_report:
        latency["pytorch"] = median_latency_ms(reference, frames)
    measured = measure(candidates, tallies, reference_top1, targets, len(source.labels), source.labelled,
                       latency, root=work)
    if source.detector is not None:
        measured = unknown_gates(source, candidates, measured, batch)
    extra = {"openvino_fp32_graph_max_abs_diff": tallies[graph[0].name].max_abs_diff} if graph else {}
    extra["pytorch_latency_ms"] = latency.get("pytorch")
    if source.detector is not None and config.full_report:
        steps.say("checking the unknown detector of every model")
        extra["unknown"] = check_unknown(source, candidates, batch)
    return measured, extra


def check_unknown(source: Source, candidates: list[Candidate], batch: int) -> Any:
    """The detector as each model applies it to the validation + calibration images (UnknownCheck)."""
    from edgecnn.export.checks import unknown_agreement
    from edgecnn.export.images import ImageSet
    from edgecnn.runtime.core.bundle import UnknownCheck

    seen = ImageSet(source.validation.paths + source.calibration.paths)
    meta = source.detector.meta()
    return UnknownCheck(meta.rule, meta.threshold, meta.accept_rate, meta.calibration,
                        meta.calibration_images, checked_images=len(seen),
                        models=unknown_agreement(candidates, seen, source.preprocess, batch, meta.threshold))


def unknown_gates(source: Source, candidates: list[Candidate], measured: list[ModelReport],
                  batch: int) -> list[ModelReport]:
    """Each INT8 model's gate figures plus its known/unknown decisions against its parent's, on the
    validation images, at the threshold its search kept (export/unknown_gate.py)."""
    from dataclasses import replace

    from edgecnn.export.checks import scorer, unknown_scores
    from edgecnn.export.unknown_gate import at_threshold

    by_name, threshold = {c.name: c for c in candidates}, source.detector.threshold
    scores = {c.name: unknown_scores(scorer(c.backend, c.path), source.validation, source.preprocess, batch)
              for c in candidates}
    result = []
    for model in measured:
        c = by_name[model.name]
        if model.gate is not None and c.parent in scores:
            own = threshold if c.unknown_threshold is None else c.unknown_threshold
            model = replace(model, gate=at_threshold(model.gate, scores[c.parent], scores[c.name], threshold,
                                                     own, c.unknown_threshold is not None))
        result.append(model)
    return result


def unknown_module(source: Source) -> Any:
    """The score module traced into every model's graph, or None without a detector."""
    if source.detector is None:
        return None
    from edgecnn.unknown import score_module

    return score_module(source.detector.rule, source.detector.tensors)


def _write_metadata(source: Source, measured: list[ModelReport], work: Path,
                    selftest_sha256: str = "") -> None:
    """Store ModelMeta (labels, preprocessing, precision, measured accuracy, the self-test data's SHA-256)
    inside each model file."""
    import onnx
    from edgecnn.export.onnx import save_onnx
    from edgecnn.export.openvino import save_ir
    from edgecnn.runtime.core.backends.openvino import read_model
    from edgecnn.runtime.core.metadata import ModelMeta, none_class_of

    for model in measured:
        unknown = model_unknown(source, model)
        meta = ModelMeta(labels=source.labels, preprocess=source.preprocess, arch=source.arch,
                         unknown=unknown, none_class=none_class_of(source.labels)
                         ).stamped(precision=model.precision, accuracy=model.accuracy(),
                                   selftest_sha256=selftest_sha256)
        path = work / model.path
        if model.backend == "onnxruntime":
            proto = onnx.load(str(path))
            meta.write_onnx(proto)
            save_onnx(proto, path)
        else:
            ir = read_model(path)
            meta.write_openvino(ir)
            save_ir(ir, path)


def model_unknown(source: Source, model: ModelReport) -> Any:
    """The UnknownMeta one model carries: the detector's, with an INT8 model's own threshold if it has one."""
    if source.detector is None:
        return None
    from dataclasses import replace

    meta = source.detector.meta()
    gate = model.gate
    if gate is None or not gate.unknown_refitted or gate.unknown_threshold is None:
        return meta
    return replace(meta, threshold=gate.unknown_threshold,
                   calibration=f"{meta.calibration}; refitted on this INT8 model's own scores to accept the "
                               "share FP32's threshold accepts of the calibration and validation images")


def _drop_unrequested(config: ExportConfig, work: Path) -> None:
    if "onnx" not in config.formats:
        (work / "model.onnx").unlink(missing_ok=True)
