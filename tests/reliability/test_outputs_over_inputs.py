"""Outputs never over inputs (issue 31, item 3): `--force` replaces earlier outputs, never the photos, the
bundle or the source a command reads; a refusal is one line, exit 2, and every input byte is unchanged."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.reliability.conftest import ROOT, assert_user_error, run_cli

PHOTOS = ROOT / "samples" / "photos" / "monuments"
CUP = ROOT / "samples" / "videos" / "cup.mp4"
Setup = Callable[[Path, Path], list[object]]  # (tmp_path, bundle) -> CLI arguments


def _photos(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("burj.webp", "cathedral.webp"):
        shutil.copy(PHOTOS / name, folder / name)
    return folder


def _tuned_repo(t: Path, b: Path) -> list[object]:
    """A repository whose model folder a person tuned by hand (config.pbtxt, a version 2/)."""
    assert run_cli("triton", b, t / "repo", "--name", "m").exit_code == 0
    (t / "repo" / "m" / "config.pbtxt").write_text("hand-tuned\n")
    (t / "repo" / "m" / "2").mkdir()
    return ["triton", b, t / "repo", "--name", "m"]


def _bundle_copy(t: Path, b: Path, place: str = "bundle") -> Path:
    shutil.copytree(b, t / place)
    return t / place


CASES: dict[str, tuple[Setup, tuple[str, ...]]] = {  # name -> (set up and give the arguments, words)
    "predict DIR/a.webp --save DIR --force": (
        lambda t, b: ["predict", b, _photos(t / "photos") / "burj.webp", "--save", t / "photos", "--force"],
        ("--save would write", "over the input", "even with --force")),
    "predict 'DIR/*.webp' --save DIR --force": (
        lambda t, b: ["predict", b, str(_photos(t / "photos") / "*.webp"), "--save", t / "photos", "--force"],
        ("over the input",)),
    "predict ./DIR/a.webp --save DIR/. --force": (
        lambda t, b: ["predict", b, _photos(t / "photos") / "." / "burj.webp", "--save", t / "photos" / ".",
                      "--force"],
        ("over the input",)),
    "triton over a hand-tuned REPO/MODEL": (
        _tuned_repo, ("repo/m already exists", "pass --force to replace it")),
    "triton B B": (lambda t, b: ["triton", _bundle_copy(t, b), t / "bundle"], ("is the BUNDLE itself",)),
    "triton B B/repo": (
        lambda t, b: ["triton", _bundle_copy(t, b), t / "bundle" / "repo"], ("inside the BUNDLE folder",)),
    "triton REPO/m/bundle REPO --name m": (
        lambda t, b: ["triton", _bundle_copy(t, b, "m/bundle"), t, "--name", "m"],
        ("REPO/m", "holds the BUNDLE")),
    "triton --name 'm\\n'": (
        lambda t, b: ["triton", b, t / "repo", "--name", "m\n"], ("model name 'm\\n' is not valid",)),
    "camera --source F --collect F": (
        lambda t, b: ["camera", b, "--source", _photos(t / "photos"), "--collect", t / "photos",
                      "--headless"],
        ("--collect", "is the --source itself")),
    "camera --source F --collect F/sub": (
        lambda t, b: ["camera", b, "--source", _photos(t / "photos"), "--collect", t / "photos" / "sub",
                      "--headless"],
        ("--collect", "inside the --source folder")),
    "camera --source clip.mp4 --collect clip.mp4": (
        lambda t, b: ["camera", b, "--source", shutil.copy(CUP, t / "clip.mp4"), "--collect", t / "clip.mp4",
                      "--headless"],
        ("--collect", "is not a folder")),
    "capture F/red --out F --label red": (
        lambda t, b: ["capture", _photos(t / "F" / "red"), "--out", t / "F", "--label", "red", "--count", "3",
                      "--headless"],
        ("--out/--label", "is the SOURCE itself")),
}


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", list(CASES))
def test_an_output_never_replaces_an_input(name: str, hand_bundle: Path, tmp_path: Path) -> None:
    setup, words = CASES[name]
    args = setup(tmp_path, hand_bundle)
    before = _snapshot(tmp_path)
    bundle_before = _snapshot(hand_bundle)
    assert_user_error(run_cli(*args), *words)
    assert _snapshot(tmp_path) == before  # nothing replaced, nothing half-written
    assert _snapshot(hand_bundle) == bundle_before
    assert [p.name for p in tmp_path.rglob("*") if "\n" in p.name] == []


def test_predict_force_still_replaces_its_own_earlier_copies(hand_bundle: Path, tmp_path: Path) -> None:
    photos = _photos(tmp_path / "photos")
    for _ in range(2):
        result = run_cli("predict", hand_bundle, photos / "burj.webp", "--save", tmp_path / "out", "--force")
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["burj.webp"]


def test_triton_force_replaces_the_model_folder(hand_bundle: Path, tmp_path: Path) -> None:
    args = _tuned_repo(tmp_path, hand_bundle)
    result = run_cli(*args, "--force")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "repo" / "m" / "config.pbtxt").read_text() != "hand-tuned\n"
    assert not (tmp_path / "repo" / "m" / "2").exists()
