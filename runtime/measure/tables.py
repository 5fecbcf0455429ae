"""Rich renderings of runtime results for the CLI (the library returns records; this draws them)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from edgecnn.runtime.core.terminal import printable, visible
from edgecnn.runtime.measure.predict import FilePrediction
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text


class Phrases:
    """A cell that breaks only between its phrases, never inside one: Rich wraps at any space, which at
    80 columns (or piped) split `openvino fp32`, `tiger cat` or `3.21 / 3.50 ms` over two rows. Only a
    phrase longer than the whole column is wrapped (at its spaces, else folded): nothing is cut."""

    def __init__(self, parts: Sequence[str], gap: str = " ") -> None:
        self.parts = [Text.from_markup(part) for part in parts] or [Text("")]  # parts are printable()
        self.gap = gap

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        lengths = [part.cell_len for part in self.parts]
        whole = sum(lengths) + len(self.gap) * (len(lengths) - 1)
        return Measurement(max(lengths), whole).with_maximum(options.max_width)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = max(1, options.max_width)
        lines: list[Text] = []
        for part in self.parts:
            if lines and lines[-1].cell_len + len(self.gap) + part.cell_len <= width:
                lines[-1].append(self.gap)
                lines[-1].append_text(part)
            else:
                lines.append(part.copy())
        text = Text("\n").join(piece for line in lines for piece in (
            line.wrap(console, width, overflow="fold") if line.cell_len > width else [line]))
        text.no_wrap = True
        yield text


class Fitted:
    """A table sized for the terminal: when it is too wide, each column first gets the width of its
    longest phrase (so nothing is split), then what is left goes to the columns that want more, the
    most modest first. Rich would shrink the widest columns first, down to splitting a label."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self.table)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        columns = self.table.columns
        left, right = self.table.padding[3], self.table.padding[1]
        room = options.max_width - (len(columns) + 1) - (left + right) * len(columns)  # borders, padding
        sizes = [[Measurement.get(console, options, cell) for cell in [column.header, *column.cells]]
                 for column in columns]
        if sum(max(size.maximum for size in column) for column in sizes) <= room:
            yield self.table
            return
        widths = [max(size.minimum for size in column) for column in sizes]
        spare = room - sum(widths)
        wants = [max(0, max((size.maximum for size in column[1:]), default=0) - need)  # headers can wrap
                 for column, need in zip(sizes, widths, strict=True)]
        wanting = sorted((want, i) for i, want in enumerate(wants) if want)  # who wants least is served first
        for served, (want, i) in enumerate(wanting):
            given = min(want, max(0, spare) // (len(wanting) - served))  # the rest share what is left
            widths[i] += given
            spare -= given
        while sum(widths) > room and max(widths) > 1:  # too narrow even for the phrases: widest give way
            widths[widths.index(max(widths))] -= 1
        for column, width in zip(columns, widths, strict=True):
            column.width = width
        try:
            yield self.table
        finally:
            for column in columns:
                column.width = None


def phrases(items: Sequence[str], separator: str = ", ") -> Phrases:
    """`separator.join(items)` as a cell that breaks only between items (the separator stays at the end
    of a line)."""
    mark, gap = separator.rstrip(), separator[len(separator.rstrip()):]
    return Phrases([item + mark for item in items[:-1]] + list(items[-1:]), gap=gap)


def whole(text: str) -> Phrases:
    """A cell not broken over two rows (a label, a number with its unit) unless it is wider than the
    whole column."""
    return Phrases([text])


def path_cell(path: object) -> Phrases:
    """A path that breaks after a `/` (and folds a part longer than the column)."""
    return Phrases(path_parts(path), gap="")


def path_parts(path: object) -> list[str]:
    """A path's parts, each but the last ending in `/`, each printable."""
    parts = visible(path).split("/")
    return [printable(part + "/") for part in parts[:-1]] + [printable(parts[-1])]


def predictions_table(rows: Iterable[FilePrediction], title: str | None = None) -> Fitted:
    """One row per image; with an unknown detector, an `unknown` column (score, and UNKNOWN above the
    model's threshold: the top label is then only the nearest known class)."""
    rows = list(rows)
    scored = any(row.unknown_score is not None for row in rows)
    table = Table(title=printable(title) if title else None, title_justify="left")
    table.add_column("file")
    table.add_column("prediction")
    table.add_column("prob", justify="right")
    if scored:
        table.add_column("unknown", justify="right")
    table.add_column("next")
    for row in rows:
        best, *rest = row.predictions
        others = [f"{printable(p.label)} {_probability(p.probability, 2)}" for p in rest]
        label = f"[dim]{printable(best.label)}[/]" if row.unknown else printable(best.label)  # nearest class
        cells = [path_cell(row.file), whole(label), whole(_probability(best.probability, 3))]
        if scored:
            cells.append(unknown_cell(row.unknown_score, row.unknown))
        table.add_row(*cells, phrases(others))
    return Fitted(table)


def unknown_cell(score: float | None, unknown: bool) -> Phrases:
    """The score, after UNKNOWN when the model calls the image none of its labels (two lines when narrow)."""
    if score is None:
        return whole("-")
    return Phrases(["[bold yellow]UNKNOWN[/]", f"{score:.3f}"] if unknown else [f"{score:.3f}"])


SPLIT_WORDS = {"val": "of the run's validation split", "train": "of the run's training split (not a test)",
               "all": "(all of DATA)"}


def eval_table(report: Any) -> Any:
    """The figures, saying which images were scored (above the table, at the terminal's width: a title
    would be held to the table's), then a row per class."""
    from rich.console import Group

    missing = f", {report.split_missing} of the split not in DATA" if report.split_missing else ""
    lines = [f"{report.images} images {SPLIT_WORDS.get(report.split, report.split)}{missing}: "
             f"top-1 {report.top1:.3f}, top-5 {report.top5:.3f}"]
    if report.unknown is not None:
        lines += unknown_summary(report.unknown).splitlines()
    table = Table()
    table.add_column("class")
    for name in ("precision", "recall", "images"):
        table.add_column(name, justify="right")
    for label, precision, recall, support in zip(report.classes, report.precision, report.recall,
                                                 report.support, strict=True):
        table.add_row(whole(printable(label)), f"{precision:.3f}", f"{recall:.3f}", str(support))
    return Group(*(phrases([printable(part) for part in line.split(", ")]) for line in lines), Fitted(table))


def unknown_summary(unknown: dict[str, Any]) -> str:
    """The unknown detector's figures from an eval report, in one or two lines."""
    said = (f"unknown detector ({unknown['rule']}, threshold {unknown['threshold']:.4g}): accepts "
            f"{unknown['known_accepted']:.1%} of the known images, top-1 on those "
            f"{unknown['top1_accepted']:.3f}")
    if unknown.get("auroc") is not None:
        said += (f"\n{unknown['unknown_images']} unknown images: AUROC {unknown['auroc']:.3f}, "
                 f"{unknown['unknown_accepted']:.1%} accepted as known")
    return said


def bench_table(report: Any) -> Fitted:
    title = Phrases([printable(report.model), printable(f"on {report.backend} {report.device}"),
                     printable(f"({report.precision}, batch {report.batch},"),
                     printable(f"{report.threads or 'default'} threads)")])
    table = Table(title=title, title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    lat = report.latency_ms
    picked = Text(visible(report.picked))  # a sentence: it wraps at its spaces
    rows: list[tuple[str, Any]] = [
        ("picked", picked),
        ("load (read + compile)", f"{report.load_seconds * 1e3:.0f} ms"),
        ("compile", f"{report.compile_seconds * 1e3:.0f} ms"),
        ("first inference", f"{report.first_inference_ms:.1f} ms"),
        ("latency median / p90 / p99", f"{lat['median']:.2f} / {lat['p90']:.2f} / {lat['p99']:.2f} ms"),
        ("latency min / max", f"{lat['min']:.2f} / {lat['max']:.2f} ms"),
        ("throughput", (f"{report.throughput_fps:.1f} images/s", f"({report.streams} stream"
                        f"{'s' * (report.streams != 1)}, {report.requests} requests in flight)"))]
    cold = report.cold_start
    if cold and "error" not in cold:
        rows.append(("cold start (import + load + 1st result)",
                     (f"{cold['seconds']:.2f} s", f"({cold['process_seconds']:.2f} s with interpreter)")))
        rows.append(("cold start peak memory (RSS)", f"{cold['peak_rss_mb']:.0f} MiB"))
    elif cold:
        rows.append(("cold start", f"failed: {cold['error']}"))
    base = report.baseline
    if base:
        rows.append((f"{base['name']} latency median", f"{base['latency_ms']['median']:.2f} ms"))
        rows.append((f"{base['name']} throughput", f"{base['throughput_fps']:.1f} images/s"))
        rows.append(("latency ratio (ours / theirs)", _ratio(base.get("latency_ratio"))))
        rows.append(("throughput ratio (ours / theirs)", _ratio(base.get("throughput_ratio"))))
    for name, value in rows:  # a value: one phrase, phrases (a tuple) or a ready cell
        if isinstance(value, str | tuple):
            value = Phrases([printable(part) for part in ((value,) if isinstance(value, str) else value)])
        table.add_row(whole(printable(name)), value)
    return Fitted(table)


def info_table(data: dict[str, Any]) -> Fitted:
    table = Table(title="edgecnn info", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value")
    for name, backend in data["machine"]["backends"].items():
        usable = backend.get("providers_usable") or [f"{d}: {full}" for d, full in backend["devices"].items()]
        by_reason: dict[str, list[str]] = {}
        for provider, why in backend.get("providers_unusable", {}).items():
            by_reason.setdefault(why, []).append(provider.removesuffix("ExecutionProvider"))
        unusable = [f"{', '.join(names)}: {why}" for why, names in by_reason.items()]
        table.add_row(whole(printable(f"{name} {backend['version']}")),
                      phrases([printable(item) for item in usable] or ["no usable device"]))
        if unusable:
            table.add_row("  cannot run here", phrases([printable(item) for item in unusable], "; "))
    for name, model in _models(data.get("model")):
        meta = model.get("metadata")
        if meta is None:
            table.add_row(path_cell(name), phrases([f"{model['size_mb']} MB",
                                                              "no edgecnn metadata (pass --labels)"]))
            continue
        table.add_row(path_cell(name), phrases([printable(part) for part in _model_facts(model)]))
    return Fitted(table)


def _model_facts(model: dict[str, Any]) -> list[str]:
    """What info says about one model, as phrases: arch and precision, classes, input, size, checks."""
    meta = model["metadata"]
    pre = meta["preprocess"]
    facts = [f"{meta['arch']} {meta['precision']}", f"{len(meta['labels'])} classes",
             f"input {pre['input_size'][0]}x{pre['input_size'][1]}", f"{model['size_mb']} MB"]
    verdict = {True: "accuracy check passed", False: "accuracy check FAILED"}.get(
        model.get("accuracy_check_passed"))
    facts += [verdict] if verdict else []
    facts += [f"{k} {_number(v)}" for k, v in meta.get("accuracy", {}).items()]
    unknown = meta.get("unknown")
    facts.append(f"unknown if {unknown['rule']} score > {unknown['threshold']:.4g}" if unknown
                 else "unknown detection off")
    return facts


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
