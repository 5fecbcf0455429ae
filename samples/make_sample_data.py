"""Rebuild edgecnn's sample data from files Debian already ships: photos from GCompris, videos from OpenCV.

Photos come out of the Qt resource archive of GCompris' "categorization" activity (Debian package
gcompris-qt-data). Each image folder there has a README giving every file's author, source and licence;
only public-domain and CC0 files are kept. The images are copied byte for byte (WebP, longest side 320 px,
~2.7 MB for all four classes), so no re-encoding and no third-party library is needed: stdlib only.
Videos are the two clips shipped gzipped in OpenCV's documentation (Debian package opencv-doc).

Usage: python samples/make_sample_data.py [--rcc PATH] [--out samples/photos] [--videos samples/videos]
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import struct
import sys
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

SAMPLES = Path(__file__).resolve().parent
DEFAULT_RCC = Path("/usr/share/gcompris-qt/rcc/categorization.rcc")
DEFAULT_VIDEOS = Path("/usr/share/doc/opencv-doc/opencv4/html")
VIDEO_NAMES = ("cup.mp4", "box.mp4")
IMAGES_DIR = "gcompris/src/activities/categorization/resource/images"
# GCompris folder -> our class name (lowercase, underscores).
CLASSES = {"tools": "tools", "renewable": "renewable_energy", "fishes": "fishes", "monuments": "monuments"}
FREE_LICENCES = frozenset({"public domain", "cc0", "cc0-1.0", "cc0 1.0"})

# Qt resource node flags (qresource.cpp).
COMPRESSED_ZLIB, DIRECTORY, COMPRESSED_ZSTD = 0x01, 0x02, 0x04


class RccError(Exception):
    """The file is not a Qt resource archive we can read."""


@dataclass(frozen=True)
class RccArchive:
    """A Qt .rcc file: header, tree of 14/22-byte nodes, a names table and a data table."""

    blob: bytes
    version: int
    tree: int
    data: int
    names: int

    @classmethod
    def open(cls, path: Path) -> RccArchive:
        blob = path.read_bytes()
        if len(blob) < 20 or blob[:4] != b"qres":
            raise RccError(f"{path} is not a Qt resource file (no 'qres' header)")
        version, tree, data, names = struct.unpack_from(">IIII", blob, 4)
        if version not in (1, 2, 3):
            raise RccError(f"{path}: unsupported rcc format version {version} (know 1, 2, 3)")
        return cls(blob, version, tree, data, names)

    @property
    def node_size(self) -> int:
        return 14 if self.version == 1 else 22  # v2+ adds a u64 last-modified time

    def name(self, offset: int) -> str:
        """Names table entry: u16 length (UTF-16 units), u32 hash, UTF-16BE characters."""
        (length,) = struct.unpack_from(">H", self.blob, self.names + offset)
        start = self.names + offset + 6
        return self.blob[start : start + 2 * length].decode("utf-16-be")

    def files(self, node: int = 0, prefix: str = "") -> dict[str, int]:
        """Map every file path to its tree node index, walking down from the root node."""
        found: dict[str, int] = {}
        name_offset, flags = struct.unpack_from(">IH", self.blob, self.tree + node * self.node_size)
        path = f"{prefix}/{self.name(name_offset)}".lstrip("/") if node else ""
        if not flags & DIRECTORY:
            return {path: node}
        count, first = struct.unpack_from(">II", self.blob, self.tree + node * self.node_size + 6)
        for child in range(first, first + count):
            found.update(self.files(child, path))
        return found

    def read(self, node: int) -> bytes:
        """Data table entry: u32 size then bytes; zlib entries start with a u32 uncompressed size."""
        offset = self.tree + node * self.node_size
        (flags,) = struct.unpack_from(">H", self.blob, offset + 4)
        (data_offset,) = struct.unpack_from(">I", self.blob, offset + 10)
        (size,) = struct.unpack_from(">I", self.blob, self.data + data_offset)
        payload = self.blob[self.data + data_offset + 4 : self.data + data_offset + 4 + size]
        if flags & COMPRESSED_ZSTD:
            raise RccError("entry is zstd-compressed, which Python's stdlib cannot inflate; "
                           "rebuild the .rcc with `rcc --no-zstd` or pass another --rcc")
        if flags & COMPRESSED_ZLIB:
            (expected,) = struct.unpack_from(">I", payload)
            payload = zlib.decompress(payload[4:])
            if len(payload) != expected:
                raise RccError(f"zlib entry inflated to {len(payload)} bytes, header says {expected}")
        return payload


@dataclass(frozen=True)
class Credit:
    """One file's entry in a GCompris image README."""

    file: str
    author: str
    source: str
    licence: str

    @property
    def is_free(self) -> bool:
        return self.licence.strip().lower() in FREE_LICENCES


def parse_readme(text: str) -> dict[str, Credit]:
    """README blocks: 'Copyright:', 'Source:', 'License:', then 'Files:' and one file name per line."""
    credits: dict[str, Credit] = {}
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        files: list[str] = []
        for line in filter(None, (raw.strip() for raw in block.split("\n"))):
            key, sep, value = line.partition(":")
            if "Files" in fields or not sep or key not in ("Copyright", "Source", "License", "Files"):
                files.append(line)
            else:
                fields[key] = value.strip()
        for name in files:
            credits[name] = Credit(name, fields.get("Copyright", "?"), fields.get("Source", "?"),
                                   fields.get("License", "unknown"))
    return credits


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, path)


def extract_class(archive: RccArchive, files: dict[str, int], folder: str, out: Path) -> tuple[list, list]:
    """Write one class's free-licence photos to `out`; return (kept credits, [(file, reason)] left out)."""
    prefix = f"{IMAGES_DIR}/{folder}/"
    readme = prefix + "README"
    if readme not in files:
        raise RccError(f"no {readme} in the archive; folders there: {sorted(_folders(files))}")
    credits = parse_readme(archive.read(files[readme]).decode("utf-8"))
    if out.exists():
        shutil.rmtree(out)  # re-runnable: no stale files from an older licence decision
    kept, left_out = [], []
    for path in sorted(p for p in files if p.startswith(prefix) and p != readme):
        name = path[len(prefix) :]
        credit = credits.get(name)
        if credit is None or not credit.is_free:
            left_out.append((name, "no licence given" if credit is None else f"licence {credit.licence}"))
            continue
        write_atomic(out / name, archive.read(files[path]))
        kept.append(credit)
    for name in sorted(set(credits) - {p[len(prefix) :] for p in files}):
        print(f"    note: {folder}/README credits {name}, which is not in the archive")
    return kept, left_out


def _folders(files: dict[str, int]) -> set[str]:
    return {p[len(IMAGES_DIR) + 1 :].split("/")[0] for p in files if p.startswith(IMAGES_DIR + "/")}


def gunzip_videos(source: Path, out: Path) -> list[Path]:
    written = []
    for name in VIDEO_NAMES:
        gz = source / f"{name}.gz"
        if not gz.is_file():
            raise FileNotFoundError(f"{gz} missing: install Debian package opencv-doc")
        write_atomic(out / name, gzip.decompress(gz.read_bytes()))
        written.append(out / name)
    return written


def render_licences(kept: dict[str, list[Credit]]) -> str:
    """Markdown table, one row per kept photo, as the GCompris READMEs give it."""
    rows = ["| File | Licence | Author | Source |", "|---|---|---|---|"]
    for label, credits in kept.items():
        rows += [f"| photos/{label}/{c.file} | {c.licence} | {c.author} | <{c.source}> |" for c in credits]
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rcc", type=Path, default=DEFAULT_RCC, help="GCompris categorization.rcc")
    parser.add_argument("--out", type=Path, default=SAMPLES / "photos", help="photo folder to (re)write")
    parser.add_argument("--videos", type=Path, default=SAMPLES / "videos", help="video folder to (re)write")
    parser.add_argument("--video-source", type=Path, default=DEFAULT_VIDEOS, help="folder with *.mp4.gz")
    parser.add_argument("--licences", type=Path, default=SAMPLES / "LICENSES.md", help="per-photo table")
    args = parser.parse_args(argv)
    if not args.rcc.is_file():
        print(f"error: {args.rcc} not found: install Debian package gcompris-qt-data", file=sys.stderr)
        return 2
    archive = RccArchive.open(args.rcc)
    files = archive.files()
    kept: dict[str, list[Credit]] = {}
    for folder, label in CLASSES.items():
        kept[label], left_out = extract_class(archive, files, folder, args.out / label)
        print(f"{label:<17} kept {len(kept[label]):3d}  left out {len(left_out)}")
        for name, reason in left_out:
            print(f"    left out {folder}/{name}: {reason}")
    write_atomic(args.licences, render_licences(kept).encode("utf-8"))
    videos = gunzip_videos(args.video_source, args.videos)
    total = sum(len(c) for c in kept.values())
    print(f"{total} photos -> {args.out}; licences -> {args.licences}; videos -> "
          + ", ".join(f"{v.name} ({v.stat().st_size / 1e6:.1f} MB)" for v in videos))
    return 0


if __name__ == "__main__":
    sys.exit(main())
