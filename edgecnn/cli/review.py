"""The `review` command: the review queue from a terminal (list it, label frames from a file, retrain)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from edgecnn.cli.process import user_errors
from edgecnn.cli.program import app
from edgecnn.cli.render import console, retrain_times, review_line, review_table, say, tell
from edgecnn.runtime.core.errors import EdgecnnError

EXAMPLE = "Example: edgecnn review runs/review --labels labels.csv --data runs/demo-data"


@app.command(epilog=EXAMPLE)
@user_errors
def review(
    folder: Annotated[Path, typer.Argument(help="The DIR of `camera --review DIR` (DIR/CAMERA/ANSWER/).")],
    list_frames: Annotated[bool, typer.Option("--list", help="One line per frame: id, answer, score, why.")
                           ] = False,
    labels: Annotated[Path | None, typer.Option(
        help="Labels file: `id,label` a line (CSV, header optional) or JSON lines; moves each frame into "
        "--data DATA/LABEL/.")] = None,
    data: Annotated[Path | None, typer.Option(
        file_okay=False, help="The training data folder (one subfolder per class) labelled frames go to.")
    ] = None,
    retrain: Annotated[bool, typer.Option(
        "--retrain", help="After --labels: fine-tune head-only on --data, export, and replace --bundle only "
        "if the gate accepts the new model (exit 1 when it refuses; docs/review.md).")] = False,
    bundle: Annotated[Path | None, typer.Option(
        file_okay=False, help="With --retrain: the live bundle, compared with and replaced.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output, a JSON line each.")
                        ] = False,
) -> None:
    """List the frames the camera queued for review, and move labelled ones into the training data."""
    from edgecnn.runtime.live.review_items import queued_frames

    if labels is not None and data is None:
        raise EdgecnnError("--labels moves frames into a training data folder: give --data DATA too")
    if retrain and (labels is None or bundle is None):
        raise EdgecnnError("--retrain trains on the frames --labels moves: give --labels FILE --data DATA "
                           "--bundle BUNDLE")
    if labels is not None:
        moved = _label(folder, labels, data, json_out and not retrain)
        if retrain:
            _retrain(data, bundle, moved, json_out)
        return
    frames = queued_frames(folder)
    if json_out:
        for frame in frames:
            typer.echo(json.dumps(asdict(frame) | {"image": str(frame.image)}))
    elif list_frames:
        for frame in frames:
            tell(review_line(frame))
    else:
        console.print(review_table(frames, folder))


def _label(folder: Path, labels: Path, data: Path, json_out: bool) -> list[Path]:
    """Move the frames the labels file lists; their new paths."""
    from edgecnn.runtime.live.review_items import label_frames, read_labels

    moved = label_frames(folder, read_labels(labels), data)
    if not json_out:
        tell(f"moved {len(moved)} frames into {data}")
    for one in moved if json_out else ():
        typer.echo(json.dumps(asdict(one) | {"image": str(one.image)}))
    return [one.image for one in moved]


def _retrain(data: Path, bundle: Path, labelled: list[Path], json_out: bool) -> None:
    from edgecnn.runtime.box.retrain import RetrainConfig, retrain

    result = retrain(RetrainConfig(data, bundle, tuple(labelled)), say)
    if json_out:
        typer.echo(json.dumps(asdict(result)))
    else:
        tell(f"{result.reason}; {retrain_times(result.seconds)}")
    if not result.accepted:
        raise typer.Exit(1)
