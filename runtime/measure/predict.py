"""`predict_files`: classify image files, folders and globs; bad files in folders or globs are skipped with
a warning; with `save_to`, an annotated copy of each image (runtime/live/annotated.py)."""

from __future__ import annotations

import glob
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgecnn.runtime.core.engine import Engine, Prediction
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.images import is_image_file, iter_image_files, read_image
from edgecnn.runtime.core.terminal import visible

log = logging.getLogger("edgecnn")


@dataclass(frozen=True)
class FilePrediction:
    file: str
    predictions: tuple[Prediction, ...]
    unknown_score: float | None = None  # None: the model has no unknown detector
    unknown: bool = False  # none of the labels, by the model's unknown threshold
    saved: str | None = None  # the annotated copy (predict --save)

    @property
    def none(self) -> bool:
        """Top-1 is the model's none class (nothing of interest), and the image is not unknown."""
        return not self.unknown and bool(self.predictions) and self.predictions[0].none

    def to_dict(self) -> dict[str, object]:
        return {"file": self.file, "predictions": [
            {"index": p.index, "label": p.label, "probability": p.probability} for p in self.predictions],
            "none": self.none, "unknown_score": self.unknown_score, "unknown": self.unknown,
            "saved": self.saved}


def expand_globs(inputs: Sequence[Path]) -> list[tuple[Path, bool]]:
    """(path, from a glob) for each argument: a path that exists is itself; one with * ? [ that does not
    is a glob, expanded here (sorted, `**` recursive: quoted, it reached us unexpanded by the shell)."""
    expanded = []
    for item in inputs:
        pattern = str(item)
        if item.exists() or not glob.has_magic(pattern):
            expanded.append((item, False))
            continue
        found = [Path(p) for p in sorted(glob.glob(pattern, recursive=True))]
        found = [p for p in found if p.is_dir() or is_image_file(p)]
        if not found:
            raise EdgecnnError(f"{pattern} matches no image files or folders; check the pattern")
        expanded.extend((path, True) for path in found)
    return expanded


def image_files(inputs: Sequence[Path]) -> list[tuple[Path, bool]]:
    """(file, named explicitly) for files given and images found in folders and globs given."""
    files = []
    for item, globbed in expand_globs(inputs):
        if item.is_dir():
            found = [(file, False) for file in iter_image_files(item)]
            if not found:
                raise EdgecnnError(f"{item} holds no images ({', '.join(sorted(_suffixes()))})")
            files.extend(found)
        elif item.exists():
            files.append((item, not globbed))
        else:
            raise EdgecnnError(f"{item} does not exist; give image files, folders or a quoted glob")
    return files


def predict_files(engine: Engine, inputs: Sequence[Path], top_k: int = 5, skipped: list[str] | None = None,
                  save_to: Path | None = None, force: bool = False) -> Iterator[FilePrediction]:
    """Top-k per image; an unreadable file named explicitly is an error, one inside a folder or matched
    by a glob a warning. With `save_to`, each image's annotated copy is written there (`saved`)."""
    engine.check_top_k(top_k)
    missing = [str(item) for item in inputs if not item.exists() and not glob.has_magic(str(item))]
    if missing:
        raise EdgecnnError(f"{', '.join(missing)} does not exist; give image files, folders or a quoted glob")
    files = image_files(inputs)
    names: list[Path | None] = [None] * len(files)
    if save_to is not None:
        from edgecnn.runtime.live.annotated import check_save_folder, saved_names

        names = list(saved_names([file for file, _ in files], Path(save_to)))
        folders = [item for item, _ in expand_globs(inputs) if item.is_dir()]
        check_save_folder(Path(save_to), names, force, folders, [file for file, _ in files])
    for (file, explicit), name in zip(files, names, strict=True):
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
        saved = None
        if name is not None:
            from edgecnn.runtime.live.annotated import save_annotated

            saved = str(save_annotated(image, result.predictions, result.unknown_score, result.unknown, name,
                                       force))
        yield FilePrediction(str(file), result.predictions, result.unknown_score, result.unknown, saved)


def _suffixes() -> set[str]:
    from edgecnn.runtime.core.images import IMAGE_SUFFIXES

    return set(IMAGE_SUFFIXES)
