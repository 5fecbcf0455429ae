"""Rich renderings of runtime results for the CLI (the library returns records; this draws them)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from edgecnn.runtime.predict import FilePrediction
from edgecnn.runtime.terminal import printable
from rich.table import Table


def predictions_table(rows: Iterable[FilePrediction], title: str | None = None) -> Table:
    """One row per image; with an unknown detector, an `unknown` column (score, and UNKNOWN above the
    model's threshold: the top label is then only the nearest known class)."""
    rows = list(rows)
    scored = any(row.unknown_score is not None for row in rows)
    table = Table(title=printable(title) if title else None, title_justify="left")
    table.add_column("file", overflow="fold")
    table.add_column("prediction")
    table.add_column("prob", justify="right")
    if scored:
        table.add_column("unknown", justify="right")
    table.add_column("next", overflow="fold")
    for row in rows:
        best, *rest = row.predictions
        others = ", ".join(f"{printable(p.label)} {_probability(p.probability, 2)}" for p in rest)
        label = f"[dim]{printable(best.label)}[/]" if row.unknown else printable(best.label)  # nearest class
        cells = [printable(row.file), label, _probability(best.probability, 3)]
        if scored:
            cells.append(unknown_cell(row.unknown_score, row.unknown))
        table.add_row(*cells, others)
    return table


def unknown_cell(score: float | None, unknown: bool) -> str:
    if score is None:
        return "-"
    return f"[bold yellow]UNKNOWN[/] {score:.3f}" if unknown else f"{score:.3f}"


def eval_table(report: Any) -> Table:
    title = f"{report.images} images: top-1 {report.top1:.3f}, top-5 {report.top5:.3f}"
    if report.unknown is not None:
        title += "\n" + unknown_summary(report.unknown)
    table = Table(title=title, title_justify="left")
    table.add_column("class")
    for name in ("precision", "recall", "images"):
        table.add_column(name, justify="right")
    for label, precision, recall, support in zip(report.classes, report.precision, report.recall,
                                                 report.support, strict=True):
        table.add_row(printable(label), f"{precision:.3f}", f"{recall:.3f}", str(support))
    return table


def unknown_summary(unknown: dict[str, Any]) -> str:
    """The unknown detector's figures from an eval report, in one or two lines."""
    said = (f"unknown detector ({unknown['rule']}, threshold {unknown['threshold']:.4g}): accepts "
            f"{unknown['known_accepted']:.1%} of the known images, top-1 on those "
            f"{unknown['top1_accepted']:.3f}")
    if unknown.get("auroc") is not None:
        said += (f"\n{unknown['unknown_images']} unknown images: AUROC {unknown['auroc']:.3f}, "
                 f"{unknown['unknown_accepted']:.1%} accepted as known")
    return said


def bench_table(report: Any) -> Table:
    table = Table(title=printable(f"{report.model} on {report.backend} {report.device} ({report.precision}, "
                                  f"batch {report.batch}, {report.threads or 'default'} threads)"),
                  title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    lat = report.latency_ms
    rows = [("picked", report.picked),
            ("load (read + compile)", f"{report.load_seconds * 1e3:.0f} ms"),
            ("compile", f"{report.compile_seconds * 1e3:.0f} ms"),
            ("first inference", f"{report.first_inference_ms:.1f} ms"),
            ("latency median / p90 / p99", f"{lat['median']:.2f} / {lat['p90']:.2f} / {lat['p99']:.2f} ms"),
            ("latency min / max", f"{lat['min']:.2f} / {lat['max']:.2f} ms"),
            ("throughput", f"{report.throughput_fps:.1f} images/s ({report.streams} stream"
                           f"{'s' * (report.streams != 1)}, {report.requests} requests in flight)")]
    cold = report.cold_start
    if cold and "error" not in cold:
        rows.append(("cold start (import + load + 1st result)", f"{cold['seconds']:.2f} s "
                     f"({cold['process_seconds']:.2f} s with interpreter)"))
        rows.append(("cold start peak memory (RSS)", f"{cold['peak_rss_mb']:.0f} MiB"))
    elif cold:
        rows.append(("cold start", f"failed: {cold['error']}"))
    base = report.baseline
    if base:
        rows.append((f"{base['name']} latency median", f"{base['latency_ms']['median']:.2f} ms"))
        rows.append((f"{base['name']} throughput", f"{base['throughput_fps']:.1f} images/s"))
        rows.append(("latency ratio (ours / theirs)", _ratio(base.get("latency_ratio"))))
        rows.append(("throughput ratio (ours / theirs)", _ratio(base.get("throughput_ratio"))))
    for name, value in rows:
        table.add_row(printable(name), printable(value))
    return table


def info_table(data: dict[str, Any]) -> Table:
    table = Table(title="edgecnn info", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", overflow="fold")
    for name, backend in data["machine"]["backends"].items():
        usable = backend.get("providers_usable") or [f"{d}: {full}" for d, full in backend["devices"].items()]
        by_reason: dict[str, list[str]] = {}
        for provider, why in backend.get("providers_unusable", {}).items():
            by_reason.setdefault(why, []).append(provider.removesuffix("ExecutionProvider"))
        unusable = [f"{', '.join(names)}: {why}" for why, names in by_reason.items()]
        table.add_row(printable(f"{name} {backend['version']}"),
                      printable(", ".join(usable) or "no usable device"))
        if unusable:
            table.add_row("  cannot run here", printable("; ".join(unusable)))
    for name, model in _models(data.get("model")):
        meta = model.get("metadata")
        if meta is None:
            table.add_row(printable(name), f"{model['size_mb']} MB, no edgecnn metadata (pass --labels)")
            continue
        pre = meta["preprocess"]
        verdict = {True: ", accuracy check passed", False: ", accuracy check FAILED"}.get(
            model.get("accuracy_check_passed"), "")
        accuracy = ", ".join(f"{k} {_number(v)}" for k, v in meta.get("accuracy", {}).items())
        unknown = meta.get("unknown")
        detector = (f"; unknown if {unknown['rule']} score > {unknown['threshold']:.4g}" if unknown
                    else "; unknown detection off")
        table.add_row(printable(name), printable(
            f"{meta['arch']} {meta['precision']}, {len(meta['labels'])} classes, "
            f"input {pre['input_size'][0]}x{pre['input_size'][1]}, {model['size_mb']} MB"
            f"{verdict}{'; ' + accuracy if accuracy else ''}{detector}"))
    return table


def _models(model: dict[str, Any] | None) -> list[tuple[str, dict[str, Any]]]:
    if model is None:
        return []
    if "models" in model:
        return list(model["models"].items())
    return [(model["model"], model)]


def _probability(value: float, digits: int) -> str:
    """A probability as a number; a NaN (a float model fed the wrong --mean/--std) says so."""
    return f"{value:.{digits}f}" if value == value else "NaN (check --mean/--std)"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _number(value: object) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.3g}"
    return str(value)
