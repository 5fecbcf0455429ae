"""The proof that ships with a bundle: report.json, report.md and the table printed at the end.

Gates: FP32 models must match PyTorch (max abs probability difference <= 1e-3); INT8 models are judged
against their FP32 parent by export/gate.py (no confident answer changed; labelled: top-1 drop within
`max_drop`, never judged finer than one image). The report also says plainly when INT8 is no faster
than FP32 on this CPU, and lists every INT8 recipe tried with its figures and time.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgecnn.export.gate import CONFIDENT, MIN_CONFIDENT, judge
from edgecnn.export.search import SKIPPED
from edgecnn.export.unknown_gate import MAX_DISAGREEMENT
from edgecnn.runtime.core.bundle import (
    REPORT_JSON,
    REPORT_MD,
    BundleReport,
    Calibration,
    Int8GateRules,
    ModelReport,
    RecipeTry,
    UnknownCheck,
)
from edgecnn.runtime.core.outputs import write_text_atomic

PARITY_LIMIT = 1e-3
NO_SPEEDUP = 0.95  # INT8/FP32 latency above this is "no speed-up"
GATE = Int8GateRules(
    confident_probability=CONFIDENT, min_confident_images=MIN_CONFIDENT,
    rules=(f"fails when an answer FP32 gives with top-1 probability >= {CONFIDENT:g} changes",
           "labelled: fails when the top-1 drop exceeds --max-drop points, never judged finer than one image",
           f"unlabelled: with fewer than {MIN_CONFIDENT} confident images, overall disagreement is judged "
           "like a drop instead",
           f"with an unknown detector: fails when more than {MAX_DISAGREEMENT:g} % of the known/unknown "
           "decisions differ from FP32's (no one-image floor), at FP32's threshold or at one refitted on the "
           "INT8 model's own scores, which the model then carries; a model failing on this alone is held "
           "back: it ships, but `auto` runs its FP32 parent, and the export does not fail for it"))


def build_report(config: Any, source: Any, measured: list[ModelReport],
                 extra: dict[str, Any]) -> BundleReport:
    """Everything measured, the gates applied to it, and the INT8/FP32 ratios."""
    from edgecnn import __version__

    by_name = {m.name: m for m in measured}
    graph_diff = extra.get("openvino_fp32_graph_max_abs_diff")
    models = tuple(_judge(m, by_name, source.labelled, config.max_drop, graph_diff) for m in measured)
    calibration = Calibration(
        images=len(source.calibration), method=config.calibration_method,
        recipes={backend: tuple(tries) for backend, tries in extra.get("int8_recipes", {}).items()})
    report = BundleReport(
        models=models, arch=source.arch, source=source.description, num_classes=len(source.labels),
        labelled=source.labelled,
        accuracy_basis="top-1 on the labelled validation split" if source.labelled else
        "no labels: accuracy is top-1 agreement with the PyTorch model",
        validation_images=measured[0].val_images if measured else 0,
        calibration=calibration if config.int8 else None, int8_gate=GATE if config.int8 else None,
        batch=config.batch or "dynamic", opset=config.opset, threads=2, max_drop=config.max_drop,
        pytorch_latency_ms=extra.get("pytorch_latency_ms"), openvino_fp32_graph_max_abs_diff=graph_diff,
        ratios=ratios(measured), unknown=extra.get("unknown"), split=source.split,
        edgecnn_version=__version__, created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return replace(report, notes=tuple(notes(report)), passed=not report.failures())


def _judge(model: ModelReport, by_name: dict[str, ModelReport], labelled: bool, max_drop: float,
           graph_diff: float | None) -> ModelReport:
    """Add the verdict: the parity gate for FP32 models, the drop gate for INT8 ones."""
    problem, changes = "", {}
    if model.precision == "fp32":
        # The shipped IR stores FP16 weights; parity is checked on the same graph in f32.
        diff = (graph_diff or 0.0) if model.backend == "openvino" else model.max_abs_diff
        changes["parity_max_abs_diff"] = diff
        if diff > PARITY_LIMIT:
            problem = (f"{model.name} differs from PyTorch by {diff:.2g} in probability "
                       f"(limit {PARITY_LIMIT:g})")
    elif model.parent in by_name and model.gate is not None:
        verdict = judge(model.name, model.parent, model.gate, labelled, max_drop)
        changes["drop"] = model.gate.drop if labelled else round(100.0 - model.gate.top1_agreement, 3)
        changes["gate_rule"] = verdict.rule
        changes["held_back"] = verdict.unknown_only
        problem = verdict.problem
    return replace(model, status="failed" if problem else "ok", problem=problem, **changes)


def ratios(measured: list[ModelReport]) -> dict[str, Any]:
    """INT8/FP32 latency and file-size ratios per backend, and fastest INT8 / fastest FP32."""
    by_name = {m.name: m for m in measured}
    result: dict[str, Any] = {}
    for m in measured:
        if m.parent in by_name:
            parent = by_name[m.parent]
            result[m.backend] = {"latency": round(m.latency_ms / parent.latency_ms, 3),
                                 "size": round(m.size_bytes / parent.size_bytes, 3)}
    int8 = [m for m in measured if m.precision == "int8"]
    fp32 = [m for m in measured if m.precision == "fp32"]
    if int8 and fp32:
        fast8, fast32 = min(int8, key=lambda m: m.latency_ms), min(fp32, key=lambda m: m.latency_ms)
        small8, small32 = min(int8, key=lambda m: m.size_bytes), max(fp32, key=lambda m: m.size_bytes)
        result["fastest"] = {"int8": fast8.name, "fp32": fast32.name,
                             "latency": round(fast8.latency_ms / fast32.latency_ms, 3)}
        result["smallest_int8_vs_largest_fp32_size"] = round(small8.size_bytes / small32.size_bytes, 3)
    return result


def notes(report: BundleReport) -> list[str]:
    """Plain sentences for the reader: what accuracy means here and where INT8 does not pay."""
    said = [f"Accuracy basis: {report.accuracy_basis}."]
    by_name = {m.name: m for m in report.models}
    for m in report.models:
        if m.precision != "int8" or m.parent not in by_name:
            continue
        parent = by_name[m.parent]
        ratio = m.latency_ms / parent.latency_ms
        if ratio > NO_SPEEDUP:
            said.append(f"INT8 gives no speed-up for {m.backend} on this CPU: {m.name} takes "
                        f"{m.latency_ms:.1f} ms vs {parent.latency_ms:.1f} ms for {parent.name}; "
                        "prefer the faster model.")
        else:
            said.append(f"{m.name} runs {1 / ratio:.2f}x faster than {parent.name} on this CPU.")
    for backend, tries in (report.calibration.recipes if report.calibration else {}).items():
        said.append(f"INT8 recipes tried for {backend}: " + "; ".join(recipe_line(t) for t in tries) + ".")
    said += [gate_line(m) for m in report.models if m.gate is not None]
    said += [f"HELD BACK: {held_back_line(m)}" for m in report.held_back()]
    said.append(unknown_note(report.unknown))
    if any(m.backend == "openvino" and m.precision == "fp32" for m in report.models):
        said.append("openvino fp32 stores FP16-compressed weights (half the file); its PyTorch parity gate "
                    "is checked on the same graph in f32, and its max_abs_diff column is the shipped file's.")
    return said


def recipe_line(tried: RecipeTry) -> str:
    """One recipe try in words: its name, figures, time, and whether it was kept."""
    if tried.problem.startswith(SKIPPED):
        return f"{tried.recipe}: skipped, {tried.problem}"
    a = tried.agreement
    floats = f", float: {', '.join(tried.float_nodes)}" if tried.float_nodes else ""
    refitted = " (own threshold)" if a.unknown_refitted else ""
    unknown = ("" if a.unknown_disagreements is None else
               f", {a.unknown_disagreements} unknown decisions changed{refitted}")
    return (f"{tried.recipe}{' (kept)' if tried.kept else ''}: {a.flips} flips of {a.images}{unknown}, "
            f"top-5 overlap {a.top5_overlap:.1f} %, KL {a.mean_kl:.4f}, {tried.latency_ms:.1f} ms, "
            f"{tried.seconds:.0f} s{floats}")


def gate_line(model: ModelReport) -> str:
    """What the INT8 gate saw for one model, with the uncertainty a small set leaves."""
    g = model.gate
    low, high = g.flip_rate_interval
    line = (f"{model.name} vs {model.parent}: top-1 agreement {g.top1_agreement:.1f} % ({g.flips} of "
            f"{g.images} flipped; flip rate {low:.1f}-{high:.1f} % at 95 %), "
            f"{g.confident_images - g.confident_flips}/{g.confident_images} confident answers kept, "
            f"top-5 overlap {g.top5_overlap:.1f} %, mean KL {g.mean_kl:.4f}")
    if g.drop is not None and g.drop_interval is not None:
        low, high = g.drop_interval
        line += (f"; top-1 drop {g.drop:g} points ({g.lost} lost, {g.gained} gained; "
                 f"95 % interval {low:.1f} to {high:.1f})")
    return f"{line}{unknown_gate_line(g)}. Gate: {model.gate_rule}."


def held_back_line(model: ModelReport) -> str:
    """Why an INT8 model ships but never runs by default (export/gate.py rule 4), and how to run it."""
    return (f"{model.problem}. {model.name} is in the bundle but `--precision auto` runs {model.parent} "
            f"instead; `--precision int8` runs it anyway.")


def unknown_gate_line(g: Any) -> str:
    """The known/unknown decisions the gate compared, in words ("" without a detector)."""
    if g.unknown_disagreements is None:
        return ""
    line = (f"; unknown decisions agree on {g.images - g.unknown_disagreements} of {g.images} images "
            f"({g.unknown_agreement:.1f} %) at threshold {g.unknown_threshold:.4g}")
    if g.unknown_refitted:
        line += (f", refitted on its own scores (at FP32's threshold: "
                 f"{g.unknown_agreement_at_parent_threshold:.1f} %)")
    return line


def unknown_note(unknown: UnknownCheck | None) -> str:
    if unknown is None:
        return ("Unknown detection is off: this checkpoint has no detector (re-run `edgecnn finetune` "
                "for one).")
    agreements = ", ".join(f"{name} {entry['decision_agreement_fp32']:.1f} %"
                           + (f" (own threshold {entry['threshold']:.4g})"
                              if entry.get("threshold", unknown.threshold) != unknown.threshold else "")
                           for name, entry in unknown.models.items() if "decision_agreement_fp32" in entry)
    said = (f"Unknown detector: {unknown.rule}; output unknown_score > {unknown.threshold:.4g} means unknown "
            f"(accepts {unknown.accept_rate:.0%} of {unknown.calibration_images} {unknown.calibration})")
    if agreements:
        said += f"; INT8 unknown decisions agree with FP32 on {unknown.checked_images} images: {agreements}"
    return said + "."


def failures(report: BundleReport) -> list[str]:
    return report.failures()


def write_report(report: BundleReport, folder: Path) -> None:
    write_text_atomic(folder / REPORT_JSON, report.to_json())
    write_text_atomic(folder / REPORT_MD, markdown(report))


COLUMNS = ("model", "top-1 %", "top-5 %", "agree %", "max diff", "ms", "MB", "status")
LONG_COLUMNS = ("model", "top-1 %", "top-5 %", "agreement with PyTorch %", "max abs prob diff", "latency ms",
                "size MB", "status")


def rows(report: BundleReport) -> list[tuple[str, ...]]:
    """One row of text cells per model, shared by the Markdown and the Rich table."""
    def cell(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    return [(m.name, cell(m.top1, ".1f"), cell(m.top5, ".1f"), cell(m.agreement, ".1f"),
             cell(m.max_abs_diff, ".2g"), cell(m.latency_ms, ".1f"), cell(m.size_bytes / 1e6, ".2f"),
             _status(m)) for m in report.models]


def _status(model: ModelReport) -> str:
    if model.gate is None:
        return model.status
    if model.held_back:
        return f"held back ({model.gate.unknown_disagreements}/{model.gate.images} unknown moved)"
    if model.gate.drop is not None:
        return f"{model.status} (drop {model.gate.drop:g})"
    return f"{model.status} ({model.gate.flips}/{model.gate.images} flipped)"


def ratio_lines(ratios: dict[str, Any]) -> list[str]:
    """The INT8/FP32 ratios in words."""
    lines = [f"INT8/FP32 on {backend}: latency {r['latency']:.2f}x, file size {r['size']:.2f}x"
             for backend, r in ratios.items() if backend in ("onnxruntime", "openvino")]
    if "fastest" in ratios:
        fast = ratios["fastest"]
        lines.append(f"Fastest INT8 ({fast['int8']}) / fastest FP32 ({fast['fp32']}): "
                     f"latency {fast['latency']:.2f}x")
    return lines


def markdown(report: BundleReport) -> str:
    lines = [f"# Export report: {report.arch}", "", f"Source: {report.source}  ",
             f"Validation images: {report.validation_images}; batch {report.batch}, "
             f"{report.threads} threads; PyTorch latency {_ms(report.pytorch_latency_ms)}", "",
             "| " + " | ".join(LONG_COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows(report)]
    lines += ["", *[f"- {line}" for line in ratio_lines(report.ratios)], ""]
    lines += [f"- {note}" for note in report.notes]
    lines += [f"- FAILED: {problem}" for problem in report.failures()]
    lines.append(f"\nResult: {'passed' if report.passed else 'FAILED'}")
    return "\n".join(lines) + "\n"


def _ms(latency: float | None) -> str:
    return "not measured" if latency is None else f"{latency:.1f} ms"
