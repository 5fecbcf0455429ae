"""`predict_files`: classify image files and folders; bad files in folders are skipped with a warning."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgecnn.runtime.engine import Engine, Prediction
from edgecnn.runtime.errors import EdgecnnError
from edgecnn.runtime.images import iter_image_files, read_image
from edgecnn.runtime.terminal import visible

log = logging.getLogger("edgecnn")


@dataclass(frozen=True)
class FilePrediction:
    file: str
    predictions: tuple[Prediction, ...]
    unknown_score: float | None = None  # None: the model has no unknown detector
    unknown: bool = False  # none of the labels, by the model's unknown threshold

    def to_dict(self) -> dict[str, object]:
        return {"file": self.file, "predictions": [
            {"index": p.index, "label": p.label, "probability": p.probability} for p in self.predictions],
            "unknown_score": self.unknown_score, "unknown": self.unknown}


def image_files(inputs: Sequence[Path]) -> Iterator[tuple[Path, bool]]:
    """(file, named explicitly) for files given and images found in folders given."""
    for item in inputs:
        if item.is_dir():
            found = False
            for file in iter_image_files(item):
                found = True
                yield file, False
            if not found:
                raise EdgecnnError(f"{item} holds no images ({', '.join(sorted(_suffixes()))})")
        elif item.exists():
            yield item, True
        else:
            raise EdgecnnError(f"{item} does not exist; give image files or folders")


def predict_files(engine: Engine, inputs: Sequence[Path], top_k: int = 5,
                  skipped: list[str] | None = None) -> Iterator[FilePrediction]:
    """Top-k per image; an unreadable file named explicitly is an error, one inside a folder a warning."""
    engine.check_top_k(top_k)
    missing = [str(item) for item in inputs if not item.exists()]
    if missing:
        raise EdgecnnError(f"{', '.join(missing)} does not exist; give image files or folders")
    for file, explicit in image_files(inputs):
        try:
            image = read_image(file)
        except EdgecnnError as exc:
            if explicit:
                raise
            if skipped is None:
                log.warning("skipped %s", visible(exc))
            else:
                skipped.append(str(exc))
            continue
        result = engine.classify(image, top_k=top_k)[0]
        yield FilePrediction(str(file), result.predictions, result.unknown_score, result.unknown)


def _suffixes() -> set[str]:
    from edgecnn.runtime.images import IMAGE_SUFFIXES

    return set(IMAGE_SUFFIXES)
