"""Hostile data folders (issue 25 item 5) and large confusion matrices (issue 31 item 4): class names
that matplotlib would read as mathtext, and 400 classes drawn without 160 000 cell texts."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from edgecnn.runtime.measure.plots import TEXT_CELLS_UP_TO, plot_text, save_confusion

from tests.reliability.conftest import run_cli

MATHTEXT_NAMES = ("$x^$", r"$\sqrt{$", "price $5 and $6", r"a_b^c \frac")


def _classes(tmp: Path, tiny: Path, names: tuple[str, ...], count: int = 3) -> Path:
    data = tmp / "data"
    for name, source in zip(names, ("fishes", "tools", "fishes", "tools"), strict=False):
        (data / name).mkdir(parents=True)
        for image in sorted((tiny / source).iterdir())[:count]:
            shutil.copy(image, data / name / image.name)
    return data


def test_mathtext_class_names_are_drawn_as_written(tmp_path: Path, tiny_data: Path) -> None:
    """`$x^$` as a class folder: finetune (whose confusion matrix is eval's picture) writes its plots."""
    data = _classes(tmp_path, tiny_data, MATHTEXT_NAMES[:2])
    result = run_cli("finetune", data, "--out", tmp_path / "run", "--head-epochs", "1", "--batch-size", "8",
                     "--workers", "0")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    for plot in ("confusion_matrix.png", "curves.png"):
        assert (tmp_path / "run" / plot).stat().st_size > 1000


@pytest.mark.parametrize("name", MATHTEXT_NAMES)
def test_every_plot_text_from_users_is_literal(name: str, tmp_path: Path) -> None:
    """The one escaping helper: what it returns renders in matplotlib (no ValueError) as the name."""
    from matplotlib.figure import Figure

    figure = Figure()
    text = figure.text(0, 0, plot_text(name))
    figure.canvas.draw()  # parses mathtext: the unescaped `$x^$` raises here
    assert text.get_text().replace(r"\$", "$") == name
    matrix = np.array([[3, 1], [0, 2]])
    save_confusion(matrix, [name, "b"], [name, "b"], tmp_path / "m.png", title=f"bundle {name}")
    assert (tmp_path / "m.png").stat().st_size > 1000


@pytest.mark.parametrize("classes", [TEXT_CELLS_UP_TO + 1, 400])
def test_a_large_confusion_matrix_is_a_heat_map_of_bounded_size(classes: int, tmp_path: Path) -> None:
    """Above TEXT_CELLS_UP_TO classes no per-cell text and a capped figure (400 classes hung before)."""
    import cv2

    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 5, (classes, classes)) + 20 * np.eye(classes, dtype=int)
    labels = [f"class {i}" for i in range(classes)]
    save_confusion(matrix, labels, labels, tmp_path / "m.png", title="400 $classes$")
    height, width = cv2.imread(str(tmp_path / "m.png")).shape[:2]
    assert max(height, width) <= 17 * 120 + 1, (height, width)  # 16+1 inches at 120 dpi


def _jpegs(folder: Path, count: int = 2) -> None:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        jpeg = cv2.imencode(".jpg", np.full((16, 16, 3), 40 * i + 30, np.uint8))[1]
        (folder / f"{i}.jpg").write_bytes(jpeg.tobytes())  # Python, not OpenCV: the name may not be UTF-8


def _folders(tmp: Path, extra: str) -> Path:
    """Classes a and b (2 tiny JPEGs each) plus the hostile `extra`."""
    data = tmp / "data"
    _jpegs(data / "a")
    _jpegs(data / "b")
    if extra == "not utf-8":
        import os

        _jpegs(Path(os.fsdecode(bytes(data) + b"/caf\xe9")))
    elif extra == "link to /":
        (data / "root").symlink_to("/")
    elif extra == "one image per class":
        for name in ("a", "b"):
            (data / name / "1.jpg").unlink()
    return data


FOLDER_CASES = {  # name: (hostile part, the message's words)
    "not utf-8": ("not utf-8", ("b'caf\\xe9'", "is not UTF-8", "rename")),
    "link to /": ("link to /", ("links to /", "outside the data folder")),
    "one image per class": ("one image per class", ("one image per class", "train/ and val/")),
}


@pytest.mark.parametrize("name", FOLDER_CASES)
def test_hostile_class_folders_are_one_line(name: str, tmp_path: Path) -> None:
    from tests.reliability.conftest import assert_user_error

    extra, words = FOLDER_CASES[name]
    data = _folders(tmp_path, extra)
    result = run_cli("finetune", data, "--out", tmp_path / "run", "--val-split", "0.2", "--workers", "0")
    assert_user_error(result, *words)
    assert not (tmp_path / "run").exists()


def test_a_path_over_path_max_is_one_line(tmp_path: Path) -> None:
    result = run_cli("finetune", tmp_path / (("x" * 255 + "/") * 20), "--out", tmp_path / "run")
    from tests.reliability.conftest import assert_user_error

    assert_user_error(result, "File name too long")
