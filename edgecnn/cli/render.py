"""Everything the CLI draws on the terminal: the consoles, the Rich tables of each command's result, and
the one-line messages (the library returns records; this draws them)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from edgecnn.runtime.core.terminal import printable, visible

if TYPE_CHECKING:
    from edgecnn.export.report import BundleReport
    from edgecnn.finetune import FinetuneResult
    from edgecnn.runtime.live.camera_report import CameraSummary, SourceSummary
    from edgecnn.runtime.measure.predict import FilePrediction

console = Console()
err_console = Console(stderr=True)
if os.environ.get("JOURNAL_STREAM"):  # systemd: each line with its syslog priority (runtime/box/journal.py)
    from edgecnn.runtime.box.journal import JournalStream

    err_console.file = JournalStream()  # type: ignore[assignment]


def say(message: object) -> None:
    """A progress or status line on stderr, control characters written out, never styled."""
    err_console.print(printable(message), highlight=False)


def tell(message: object) -> None:
    """A result sentence on stdout, one line however long (also piped)."""
    console.print(printable(message), highlight=False, soft_wrap=True)


def warn(message: object) -> None:
    """A note on stderr, one line however long (also piped)."""
    err_console.print(printable(message), highlight=False, soft_wrap=True)


def show(json_out: bool, data: Any, table: Callable[[], Any]) -> None:
    """--json: `data` as one JSON line on stdout; else the Rich table `table()` makes."""
    if json_out:
        typer.echo(json.dumps(data))
    else:
        console.print(table())


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
        if row.none:  # the none class: nothing of interest, not a detection
            label = "[dim]none[/]" if best.label == "none" else f"[dim]none ({printable(best.label)})[/]"
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
    if unknown.get("calibration"):  # whether these images were held out when the threshold was set
        said += f"\nthreshold set on {unknown['calibration']}"
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
    for labels in _label_sets(data.get("model")):
        table.add_row("labels", phrases(_some_labels(labels)))
    return Fitted(table)


SHOWN_LABELS = 20  # ImageNet's 1000 would fill the screen; --json lists every one


def _label_sets(model: dict[str, Any] | None) -> list[tuple[str, ...]]:
    """The labels of the models, once per distinct list (a bundle's models share one)."""
    found: list[tuple[str, ...]] = []
    for _, entry in _models(model):
        labels = tuple((entry.get("metadata") or {}).get("labels") or ())
        if labels and labels not in found:
            found.append(labels)
    return found


def _some_labels(labels: Sequence[str]) -> list[str]:
    shown = [printable(label) for label in labels[:SHOWN_LABELS]]
    rest = len(labels) - len(shown)
    return shown + [f"... {rest} more (--json lists all)"] if rest else shown


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


def summary_table(summary: CameraSummary) -> Fitted:
    """The camera's end-of-run summary: one row per source, then the totals (several sources).

    Reconnects and recordings get a column only when a source had some, so one source's summary fits
    80 columns with every figure on one row."""
    rows = summary.sources
    shown = (any(row.reconnects for row in rows), any(row.recorded or row.recording_dropped for row in rows))
    table = Table(title=Phrases([printable(f"camera: {summary.source}"),
                                 printable(f"on {summary.backend} {summary.device}")]))
    table.add_column("source")
    for column in ("read / processed / dropped", "FPS", "cam->result ms (median / p95)",
                   *(["reconnects"] * shown[0]), *(["recorded (dropped)"] * shown[1]), "mostly"):
        table.add_column(column, justify="right")
    for row in rows:
        name = path_cell(row.source) if not row.error else Group(
            path_cell(row.source), Text.from_markup(f"[red]{printable(row.error)}[/red]"))
        table.add_row(name, *_figures(row, shown), whole(printable(_shares(row.recognised[:1]))))
    if len(rows) > 1:  # one source: its row is the total
        table.add_section()
        table.add_row("total", *_figures(summary, shown), "")
    table.caption = _caption(summary)
    return Fitted(table)


def _figures(row: SourceSummary | CameraSummary, shown: tuple[bool, bool]) -> list[Any]:
    """A summary row's figures, each kept whole; reconnects and recordings when `shown` says so."""
    from edgecnn.runtime.live.camera_report import CameraSummary

    sources = row.sources if isinstance(row, CameraSummary) else (row,)
    recorded = f"{sum(r.recorded for r in sources)} ({sum(r.recording_dropped for r in sources)})"
    cells = [f"{row.frames_read} / {row.frames_processed} / {row.frames_dropped}", f"{row.mean_fps:.1f}",
             f"{row.latency_ms_median:.1f} / {row.latency_ms_p95:.1f}",
             *([str(row.reconnects)] * shown[0]), *([recorded] * shown[1])]
    return [whole(cell) for cell in cells]


def _caption(summary: CameraSummary) -> Phrases:
    return phrases([
        printable(f"recognised (share of frames): {_shares(summary.recognised)}"),
        f"inference {summary.inference_ms_median:.1f} / {summary.inference_ms_p95:.1f} ms (median / p95) "
        f"per batch of {summary.batch_mean:.1f}, {summary.streams} at once",
        *([f"{summary.frames_skipped} frames skipped by --vid-stride"] if summary.frames_skipped else []),
        f"stopped by {summary.stopped_by}"], "; ")


def _shares(recognised: Sequence[tuple[str, float]]) -> str:
    return ", ".join(f"{label} {share:.0%}" for label, share in recognised)


def capture_line(summary: Any) -> str:
    """One sentence: how many frames were saved where, and why the capture stopped early if it did."""
    text = f"saved {summary.saved} of {summary.requested} frames to {summary.folder}"
    if summary.skipped_similar + summary.skipped_interval:
        text += (f" ({summary.skipped_similar} near-identical and {summary.skipped_interval} too-soon frames "
                 "skipped)")
    if summary.interrupted:
        text += "; interrupted, the saved frames are kept"
    elif summary.duration_reached:
        text += f"; --duration reached after {summary.frames_read} frames"
    elif summary.ended_early:
        text += f"; the source ended after {summary.frames_read} frames"
    return text


def print_report(report: BundleReport) -> None:
    """The table shown at the end of `edgecnn export`, then the speed ratios and the notes."""
    from edgecnn.export.report import COLUMNS, ratio_lines, rows

    table = Table(title=f"{printable(report.arch)} export ({report.validation_images} validation images)")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column in ("model", "status") else "right")
    for row in rows(report):
        table.add_row(*map(printable, row), style="red" if row[-1].startswith("failed") else None)
    console.print(Fitted(table))  # at 80 columns: no model name or figure split over two lines
    for line in ratio_lines(report.ratios) + list(report.notes):
        console.print(printable(line), highlight=False)


def result_table(result: FinetuneResult) -> Table:
    """The end-of-run summary of `edgecnn finetune`: best validation top-1 and where every file is."""
    from edgecnn.plots import best_epoch_text

    table = Table(title=f"fine-tuned on {result.train_images} images, validated on {result.val_images}",
                  show_header=False)
    table.add_row("best val top-1", f"[bold]{result.best_top1:.1%}[/] ({best_epoch_text(result)}, "
                  f"val loss {result.best_val_loss:.3f})")
    if result.skipped:
        count, names = len(result.skipped), ", ".join(result.skipped[:3])
        table.add_row("skipped", f"{count} unreadable image{'s' * (count > 1)}: {printable(names)}")
    if result.groups:
        table.add_row("split groups", f"{result.groups} (near-duplicates kept together: in train or in val)")
    if result.unknown:
        table.add_row("unknown detector", result.unknown)
    for name, path in result.paths.items():
        table.add_row(name.replace("_", " "), printable(path))
    table.add_row("time", f"{result.seconds:.1f} s")
    return table


def models_table(found: Sequence[Any]) -> Table:
    """`edgecnn models`: one row per architecture, what is here offline and what it costs."""
    table = Table(title="--arch choices (any timm classifier name works too)", title_justify="left")
    for name, justify in (("arch", "left"), ("weights here", "left"), ("input", "right"),
                          ("params", "right"), ("CPU ms", "right")):
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for info in found:
        table.add_row(info.arch, "yes" if info.weights else "no (download)",
                      f"{info.input_size[0]}x{info.input_size[1]}", f"{info.params_m:.1f} M",
                      "-" if info.latency_ms is None else f"{info.latency_ms:.1f}")
    return table


def review_table(frames: Sequence[Any], folder: object) -> Table:
    """`edgecnn review DIR`: queued frames per camera and answer."""
    counts: dict[tuple[str, str], int] = {}
    for frame in frames:
        counts[frame.camera, frame.answer] = counts.get((frame.camera, frame.answer), 0) + 1
    table = Table(title=f"review queue {visible(folder)}: {len(frames)} frames")
    for column in ("camera", "answer", "frames"):
        table.add_column(column, justify="right" if column == "frames" else "left")
    for (camera, answer), count in sorted(counts.items()):
        table.add_row(visible(camera), visible(answer), str(count))
    return table


def review_line(frame: Any) -> str:
    """`edgecnn review DIR --list`: one frame, `id answer score why`."""
    return printable(f"{frame.id}  {frame.answer}  {frame.score:.3f}  {frame.why}")


def retrain_times(seconds: dict[str, float]) -> str:
    """`total 24.1 s (features 6.0, training 0.9, export 15.2, gate 2.0)`."""
    parts = ", ".join(f"{name} {value:.1f}" for name, value in seconds.items() if name != "total")
    return f"total {seconds.get('total', 0.0):.1f} s ({parts})"
