"""The shipped sample data is there, decodes, and is what samples/make_sample_data.py produces."""

from __future__ import annotations

import importlib.util
import struct
import sys
import zlib
from pathlib import Path

import pytest
from edgecnn.runtime.core.images import iter_image_files, read_image

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT / "samples" / "photos"
VIDEOS = ROOT / "samples" / "videos"
CLASSES = ("fishes", "monuments", "renewable_energy", "tools")


def _make_sample_data():
    script = ROOT / "samples" / "make_sample_data.py"
    spec = importlib.util.spec_from_file_location("make_sample_data", script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_photo_classes() -> None:
    assert sorted(p.name for p in PHOTOS.iterdir() if p.is_dir()) == list(CLASSES)


@pytest.mark.parametrize("label", CLASSES)
def test_photos_decode(label: str) -> None:
    images = list(iter_image_files(PHOTOS / label))
    assert len(images) >= 20
    for path in images:
        image = read_image(path)
        assert image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) >= 64, path


@pytest.mark.parametrize("name", ["cup.mp4", "box.mp4"])
def test_videos_decode(name: str) -> None:
    import cv2

    capture = cv2.VideoCapture(str(VIDEOS / name))
    assert capture.isOpened()
    frames = 0
    while frames <= 50:
        ok, frame = capture.read()
        if not ok:
            break
        frames += 1
    capture.release()
    assert frames > 50 and frame.shape == (480, 640, 3)


def test_readme_licences_parsed() -> None:
    credits = _make_sample_data().parse_readme(
        "Copyright: A\nSource: https://a\nLicense: Public Domain\nFiles:\na.webp\nb.webp\n\n"
        "Copyright: B\nSource: https://b\nLicense: CC-BY-SA-4.0\nFiles:\nc.webp\n"
    )
    assert sorted(credits) == ["a.webp", "b.webp", "c.webp"]
    assert credits["b.webp"].author == "A" and credits["b.webp"].is_free
    assert not credits["c.webp"].is_free


def _tiny_rcc(version: int, flags: int, payload: bytes) -> bytes:
    """A Qt resource file holding one file, `a/é.txt`, laid out as rcc writes it."""
    mtime = b"" if version == 1 else bytes(8)
    names = b"".join(struct.pack(">HI", len(n), 0) + n.encode("utf-16-be") for n in ("a", "é.txt"))
    tree = (struct.pack(">IHII", 0, 2, 1, 1) + mtime       # root: directory, 1 child at node 1
            + struct.pack(">IHII", 0, 2, 1, 2) + mtime     # "a": directory, 1 child at node 2
            + struct.pack(">IHHHI", 8, flags, 0, 0, 0) + mtime)
    data = struct.pack(">I", len(payload)) + payload
    header_size = 20 if version < 3 else 24
    tree_at, data_at = header_size, header_size + len(tree)
    header = b"qres" + struct.pack(">IIII", version, tree_at, data_at, data_at + len(data))
    return header + (b"" if version < 3 else bytes(4)) + tree + data + names


@pytest.mark.parametrize("version", [1, 2, 3])
@pytest.mark.parametrize("compression", ["none", "zlib", "zstd"])
def test_rcc_reader(tmp_path: Path, version: int, compression: str) -> None:
    module = _make_sample_data()
    text = b"hello " * 20
    flags, payload = {"none": (0, text), "zlib": (1, struct.pack(">I", len(text)) + zlib.compress(text)),
                      "zstd": (4, b"\x28\xb5\x2f\xfd")}[compression]
    (tmp_path / "t.rcc").write_bytes(_tiny_rcc(version, flags, payload))
    archive = module.RccArchive.open(tmp_path / "t.rcc")
    files = archive.files()
    assert list(files) == ["a/é.txt"]
    if compression == "zstd":
        with pytest.raises(module.RccError, match="zstd"):
            archive.read(files["a/é.txt"])
    else:
        assert archive.read(files["a/é.txt"]) == text


def test_rejects_non_rcc(tmp_path: Path) -> None:
    module = _make_sample_data()
    (tmp_path / "x.rcc").write_bytes(b"PK\x03\x04" + bytes(40))
    with pytest.raises(module.RccError, match="not a Qt resource"):
        module.RccArchive.open(tmp_path / "x.rcc")


@pytest.mark.skipif(not Path("/usr/share/gcompris-qt/rcc/categorization.rcc").is_file()
                    or not Path("/usr/share/doc/opencv-doc/opencv4/html/cup.mp4.gz").is_file(),
                    reason="needs Debian packages gcompris-qt-data and opencv-doc")
def test_regeneration_reproduces_shipped_files(tmp_path: Path) -> None:
    out, videos, licences = tmp_path / "photos", tmp_path / "videos", tmp_path / "LICENSES.md"
    argv = ["--out", str(out), "--videos", str(videos), "--licences", str(licences)]
    assert _make_sample_data().main(argv) == 0
    shipped = {p.relative_to(PHOTOS): p.read_bytes() for p in PHOTOS.rglob("*") if p.is_file()}
    made = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert made == shipped
    for name in ("cup.mp4", "box.mp4"):
        assert (videos / name).read_bytes() == (VIDEOS / name).read_bytes()
    assert licences.read_text() == (ROOT / "samples" / "LICENSES.md").read_text()
    assert "windmill6.webp" not in licences.read_text()
