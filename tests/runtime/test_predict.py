"""`predict --save` (annotated copies of real sample photos) and quoted globs expanded by edgecnn."""

from __future__ import annotations

import glob
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgecnn.cli import app

runner = CliRunner()


def run(*args: object) -> object:
    return runner.invoke(app, [str(a) for a in args])


def records(result: object) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def error_line(result: object) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_save_writes_an_annotated_copy_of_each_photo(imagenet_bundle: Path, sample_photos: Path,
                                                      tmp_path: Path) -> None:
    import cv2

    out = tmp_path / "annotated"
    result = run("predict", imagenet_bundle, sample_photos, "--save", out, "--json", "--device", "cpu",
                 "--top-k", "3")
    assert result.exit_code == 0, result.output
    rows = records(result)
    assert len(rows) == len(list(sample_photos.rglob("*.webp"))) == len(list(out.iterdir()))
    flagged = 0
    for row in rows:
        saved, original = Path(row["saved"]), cv2.imread(row["file"])
        assert saved.parent == out and saved.name == Path(row["file"]).name  # the input's own name
        drawn = cv2.imread(str(saved))
        assert drawn is not None and drawn.shape == original.shape  # decodes, at the original size
        assert np.abs(drawn[:40, :80].astype(int) - original[:40, :80]).mean() > 20  # the panel is there
        edge, under = drawn[-8:, -1].mean(0), original[-8:, -1].mean(0)  # the unknown state's orange frame
        # (BGR), at the bottom right: below the panel (107 px high with 3 labels on these small photos)
        if row["unknown"]:
            assert np.abs(edge - (0, 140, 255)).max() < 50, row
        else:
            assert np.abs(edge - under).max() < 25, row
        flagged += row["unknown"]
    assert 0 < flagged < len(rows)  # the ImageNet model calls some sample photos unknown, not all


def test_save_never_clobbers_without_force(imagenet_bundle: Path, sample_photos: Path,
                                          tmp_path: Path) -> None:
    photos = [sample_photos / "fishes" / "fish1.webp", sample_photos / "tools" / "hammer1.webp"]
    out = tmp_path / "annotated"
    assert run("predict", imagenet_bundle, *photos, "--save", out).exit_code == 0
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    assert set(before) == {"fish1.webp", "hammer1.webp"}
    (out / "fish1.webp").write_bytes(b"mine")  # a file of the user's, by the same name
    again = run("predict", imagenet_bundle, *photos, "--save", out)
    assert again.exit_code == 2
    assert "already holds fish1.webp and 1 more" in error_line(again) and "--force" in error_line(again)
    assert (out / "fish1.webp").read_bytes() == b"mine" and sorted(p.name for p in out.iterdir()) == sorted(
        before)  # nothing written, no temporary left behind
    forced = run("predict", imagenet_bundle, *photos, "--save", out, "--force", "--json")
    assert forced.exit_code == 0, forced.output
    assert [Path(r["saved"]).name for r in records(forced)] == ["fish1.webp", "hammer1.webp"]
    assert (out / "fish1.webp").read_bytes()[:4] == b"RIFF" and len(list(out.iterdir())) == 2


def test_save_names_same_named_inputs_apart_and_counts_skipped(imagenet_bundle: Path, sample_photos: Path,
                                                               tmp_path: Path) -> None:
    import cv2

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(sample_photos / "fishes" / "fish2.webp", tmp_path / folder / "fish.webp")
    (tmp_path / "b" / "empty.jpg").write_bytes(b"")
    (tmp_path / "b" / "grey.pgm").write_bytes(cv2.imencode(".pgm", np.full((48, 64), 90, np.uint8))[1])
    out = tmp_path / "annotated"
    result = run("predict", imagenet_bundle, tmp_path / "a", tmp_path / "b", "--save", out, "--json")
    assert result.exit_code == 0, result.output
    assert [Path(r["saved"]).name for r in records(result)] == ["fish.webp", "fish-1.webp", "grey.png"]
    assert "skipped 1 unreadable image(s)" in result.stderr and "empty.jpg" in result.stderr
    assert cv2.imread(str(out / "grey.png")).shape == (48, 64, 3)  # a .pgm's copy, in colour, as .png
    table = run("predict", imagenet_bundle, tmp_path / "a", "--save", tmp_path / "second")
    assert table.exit_code == 0 and "1 annotated image(s) written to" in table.stdout


def test_save_inside_an_input_folder_is_refused(imagenet_bundle: Path, sample_photos: Path,
                                                tmp_path: Path) -> None:
    shutil.copytree(sample_photos / "tools", tmp_path / "tools")
    result = run("predict", imagenet_bundle, tmp_path / "tools", "--save", tmp_path / "tools" / "annotated")
    assert result.exit_code == 2 and "inside the IMAGES folder" in error_line(result)
    assert not (tmp_path / "tools" / "annotated").exists()


def test_a_quoted_glob_is_expanded_and_sorted(imagenet_bundle: Path, sample_photos: Path) -> None:
    pattern = f"{sample_photos}/*/fish1*.webp"
    result = run("predict", imagenet_bundle, pattern, "--json")
    assert result.exit_code == 0, result.output
    files = [row["file"] for row in records(result)]
    assert files == sorted(glob.glob(pattern)) and len(files) == 11  # fish1, fish10..fish19


def test_a_glob_skips_bad_files_like_a_folder(imagenet_bundle: Path, sample_photos: Path,
                                              tmp_path: Path) -> None:
    shutil.copy(sample_photos / "fishes" / "fish3.webp", tmp_path / "a.webp")
    (tmp_path / "b.webp").write_bytes(b"not a picture")
    (tmp_path / "notes.txt").write_text("not an image")
    result = run("predict", imagenet_bundle, f"{tmp_path}/*", "--json")
    assert result.exit_code == 0, result.output
    assert [Path(r["file"]).name for r in records(result)] == ["a.webp"]
    assert "skipped 1 unreadable image(s)" in result.stderr


@pytest.mark.parametrize("pattern", ["{photos}/*/zebra*.webp", "{photos}/fishes/*.txt"])
def test_a_glob_matching_nothing_is_one_line(imagenet_bundle: Path, sample_photos: Path,
                                            pattern: str) -> None:
    pattern = pattern.format(photos=sample_photos)
    result = run("predict", imagenet_bundle, pattern)
    assert result.exit_code == 2
    assert pattern in error_line(result) and "matches no image" in error_line(result)
