"""Under systemd (stderr is the stream $JOURNAL_STREAM names) each stderr line of `edgecnn run` starts
with its syslog priority, so `journalctl -p warning` finds warnings and errors; elsewhere nothing is added.
The runs are real `edgecnn run` processes whose stderr is a file, as journald's stream is a socket."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.runtime.box_files import colour_bundle

ROOT = Path(__file__).resolve().parents[2]
CUP = ROOT / "samples" / "videos" / "cup.mp4"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return colour_bundle(tmp_path_factory)


def run(box: Path, log: Path, journal: Path | None) -> tuple[int, list[str]]:
    """`edgecnn run BOX` with stderr written to `log`; JOURNAL_STREAM names `journal`'s dev:inode."""
    with log.open("w") as stderr:
        named = os.fstat(stderr.fileno()) if journal == log else os.stat(journal) if journal else None
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("JOURNAL_STREAM", None)
        env.pop("EDGECNN_TOKEN", None)
        if named is not None:
            env["JOURNAL_STREAM"] = f"{named.st_dev}:{named.st_ino}"
        code = subprocess.run([sys.executable, "-m", "edgecnn", "run", str(box)], env=env, stderr=stderr,
                              stdout=subprocess.DEVNULL, timeout=120).returncode
    return code, log.read_text().splitlines()


def box_file(folder: Path, bundle: Path, extra: str = "") -> Path:
    path = folder / "box.toml"
    path.write_text(f'model = "{bundle}"\ndevice = "cpu"\nheadless = true\nmax_frames = 5\n{extra}'
                    f'[page]\nserve = "0.0.0.0:0"\nno_auth = true\n'
                    f'[[camera]]\nsource = "{CUP}"\nname = "door"\n')
    return path


def test_each_line_on_the_journal_has_its_priority(bundle: Path, tmp_path: Path) -> None:
    log = tmp_path / "stderr.log"
    code, lines = run(box_file(tmp_path, bundle), log, journal=log)
    assert code == 0, lines
    assert lines and all(line[:3] in ("<3>", "<4>", "<6>", "<7>") for line in lines), lines
    assert any(line.startswith("<4>warning: --serve 0.0.0.0:") for line in lines), lines
    assert any(line.startswith("<6>box ") for line in lines), lines
    assert not any(line.startswith("<3>") for line in lines), lines


def test_an_error_on_the_journal_is_priority_3(bundle: Path, tmp_path: Path) -> None:
    log = tmp_path / "stderr.log"
    code, lines = run(box_file(tmp_path, bundle, 'webhook = "ftp://127.0.0.1/hook"\n'), log, journal=log)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("<3>error: "), lines
    assert "line 5: webhook:" in lines[0], lines


def test_elsewhere_nothing_is_added(bundle: Path, tmp_path: Path) -> None:
    """JOURNAL_STREAM inherited but naming another stream (stderr redirected by the service's command):
    the lines are the same, without prefixes."""
    other = tmp_path / "journal-socket-stand-in"
    other.write_text("")
    code, lines = run(box_file(tmp_path, bundle), tmp_path / "stderr.log", journal=other)
    assert code == 0, lines
    assert any(line.startswith("warning: --serve 0.0.0.0:") for line in lines), lines
    assert any(line.startswith("box ") for line in lines) and not any(line[:1] == "<" for line in lines)


@pytest.mark.parametrize(("line", "level"), [
    ("error: box.toml line 2: top_kk: is not a known key", 3),
    ("warning: --serve 0.0.0.0:8080 is reachable from other machines, not only this one", 4),
    ("lost rtsp://cam1/live; reconnecting (giving up after 30 s)", 4),
    ("reload refused: box.toml line 3: ...; the running cameras go on unchanged", 4),
    ("new model refused, the old one goes on: ...", 4),
    ("reload: camera door not started: ...", 4),
    ("reconnected to rtsp://cam1/live", 6),
    ("model bundles/demo is live: model.onnx (fp32) on onnxruntime", 6),
    ("debug: frame 12", 7),
])
def test_a_lines_priority_is_read_from_how_it_starts(line: str, level: int) -> None:
    from edgecnn.runtime.box.journal import priority

    assert priority(line) == level
