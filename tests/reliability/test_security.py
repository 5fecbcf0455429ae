"""Security: no unsafe loading or shell in the code, no credentials printed, bundles kept in their folder."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.reliability.conftest import ROOT, assert_user_error, colour_onnx, run_cli

SOURCES = sorted(
    p for folder in ("edgecnn", "export", "runtime", "benchmarks") for p in (ROOT / folder).rglob("*.py")
)
UNSAFE = {
    "pickle.load": re.compile(r"\bpickle\.loads?\("),
    "shell=True": re.compile(r"shell\s*=\s*True"),
    "eval(": re.compile(r"(?<![\w.])eval\("),
    "exec(": re.compile(r"(?<![\w.])exec\("),
    "os.system": re.compile(r"\bos\.(system|popen)\("),
    "yaml.load": re.compile(r"\byaml\.load\("),
    "torch.load without weights_only=True": re.compile(r"torch\.load\("),  # then checked by _torch_loads...
}


def _code(text: str) -> str:
    """Source without comments, so a comment that mentions exec() is no finding."""
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def _torch_loads_without_weights_only(text: str) -> list[int]:
    """Offsets of `torch.load(` calls whose arguments (parentheses balanced) lack weights_only=True."""
    found = []
    for match in re.finditer(r"torch\.load\(", text):
        depth, end = 1, match.end()
        while depth and end < len(text):
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            end += 1
        if "weights_only=True" not in text[match.end() : end].replace(" ", ""):
            found.append(match.start())
    return found


def findings(name: str, text: str) -> list[int]:
    code = _code(text)
    if name == "torch.load without weights_only=True":
        return _torch_loads_without_weights_only(code)
    return [m.start() for m in UNSAFE[name].finditer(code)]


@pytest.mark.parametrize("name", list(UNSAFE))
def test_no_unsafe_call_in_the_code(name: str) -> None:
    assert len(SOURCES) > 30  # the scan sees the package
    found = [
        f"{path.relative_to(ROOT)}:{_code(text)[:offset].count(chr(10)) + 1}"
        for path in SOURCES
        for text in [path.read_text(encoding="utf-8")]
        for offset in findings(name, text)
    ]
    assert not found, found


def test_the_scan_would_catch_them() -> None:
    """The patterns are not vacuous: each matches a line with the unsafe call."""
    samples = {
        "pickle.load": "x = pickle.load(f)",
        "shell=True": "subprocess.run(cmd, shell=True)",
        "eval(": "value = eval(text)",
        "exec(": "exec(code)",
        "os.system": "os.system('rm -rf /')",
        "yaml.load": "yaml.load(f)",
        "torch.load without weights_only=True": "torch.load(path, map_location='cpu')",
    }
    assert all(findings(name, line) for name, line in samples.items())
    assert not findings("eval(", "model.eval()  # eval(x) in a comment")
    assert not findings("torch.load without weights_only=True", "torch.load(f(p), weights_only=True)")
    assert findings("torch.load without weights_only=True", "torch.load(f(p))\nweights_only=True")


# -- a bundle from an untrusted source --------------------------------------------------------------
def _outside_model(bundle: Path) -> Path:
    """A valid model next to (not inside) the bundle, as an attacker's link target."""
    return colour_onnx(bundle.parent / "outside" / "secret.onnx")


def _link(bundle: Path, rel: str, target: Path) -> None:
    (bundle / rel).unlink(missing_ok=True)
    os.symlink(target, bundle / rel)


Attack = Callable[[Path], list[str]]  # damages the bundle copy; returns extra predict options
ATTACKS: dict[str, tuple[Attack, tuple[str, ...]]] = {
    "model.onnx is a symlink outside": (
        lambda b: _link(b, "model.onnx", _outside_model(b)) or ["--backend", "onnxruntime"],
        ("model.onnx links outside the bundle folder",),
    ),
    "openvino model.bin is a symlink outside": (
        lambda b: _link(b, "openvino/model.bin", Path("/etc/hostname")) or ["--backend", "openvino"],
        ("model.bin links outside the bundle folder",),
    ),
    "labels.txt is a symlink to /etc/passwd": (
        lambda b: _link(b, "labels.txt", Path("/etc/passwd")) or [],
        ("labels.txt links outside the bundle folder",),
    ),
    "report.json is a symlink outside": (
        lambda b: _link(b, "report.json", Path("/etc/hostname")) or [],
        ("report.json links outside the bundle folder",),
    ),
    "external data ../ (location first)": (
        lambda b: (
            colour_onnx(b / "model.onnx", external="../outside/weights.bin") and ["--backend", "onnxruntime"]
        ),
        ("model.onnx", "outside its folder"),
    ),
    "external data ../ (fields reordered to dodge a byte scan)": (
        lambda b: (
            _reordered(colour_onnx(b / "model.onnx", external="../outside/weights.bin"))
            and ["--backend", "onnxruntime"]
        ),
        ("model.onnx", "escapes model directory"),
    ),
    "external data ../ read by OpenVINO": (
        lambda b: colour_onnx(b / "x.onnx", external="../outside/weights.bin") and ["--backend", "openvino"],
        ("x.onnx", "outside its folder"),
    ),
}


def _reordered(path: Path) -> Path:
    """Swap key and value of the `location` entry (still valid protobuf): a naive byte scan misses it."""
    data = path.read_bytes()
    start = data.index(b"\x0a\x08location\x12")
    length = data[start + 11]
    key, value = data[start : start + 10], data[start + 10 : start + 12 + length]
    path.write_bytes(data[:start] + value + key + data[start + 12 + length :])
    return path


@pytest.mark.parametrize("name", list(ATTACKS))
def test_untrusted_bundle_cannot_reach_outside(name: str, hand_bundle: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(hand_bundle, bundle)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "weights.bin").write_bytes(b"\0" * 48)
    options = ATTACKS[name][0](bundle)
    model = bundle / "x.onnx" if "x.onnx" in name or "OpenVINO" in name else bundle
    image = tmp_path / "red.png"
    import cv2
    import numpy as np

    cv2.imwrite(str(image), np.full((8, 8, 3), (0, 0, 255), np.uint8))
    result = run_cli("predict", model, image, "--device", "cpu", *options)
    assert_user_error(result, *ATTACKS[name][1])
    assert "root:" not in result.output  # nothing of /etc/passwd shown


def test_predict_writes_only_to_the_cache_folder(hand_bundle: Path, tmp_path: Path) -> None:
    """OpenVINO's compiled-model cache goes to the cache folder; the bundle is left byte for byte."""
    import cv2
    import numpy as np
    from edgecnn.runtime import load

    before = {p.relative_to(hand_bundle): p.read_bytes() for p in hand_bundle.rglob("*") if p.is_file()}
    cache = tmp_path / "cache"
    with load(hand_bundle, device="cpu", backend="openvino", cache_dir=cache) as engine:
        engine.classify(np.zeros((10, 10, 3), np.uint8))
    after = {p.relative_to(hand_bundle): p.read_bytes() for p in hand_bundle.rglob("*") if p.is_file()}
    assert before == after and any(cache.rglob("*.blob"))
    del cv2


# -- credentials ------------------------------------------------------------------------------------
def test_rtsp_credentials_never_printed(hand_bundle: Path, tmp_path: Path) -> None:
    """A refused RTSP URL: the error names the stream with the password masked."""
    result = run_cli(
        "camera",
        hand_bundle,
        "--source",
        "rtsp://user:secret@127.0.0.1:1/x",
        "--headless",
        "--reconnect-timeout",
        "1",
        "--jsonl",
        tmp_path / "frames.jsonl",
        "--device",
        "cpu",
    )
    message = assert_user_error(result, "rtsp://***@127.0.0.1:1/x")
    assert "secret" not in result.output and "user" not in message
    assert not any("secret" in p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file())


def test_stream_credentials_masked_in_logs_jsonl_and_summary(hand_bundle: Path, tmp_path: Path) -> None:
    """A real (loopback) MJPEG camera with user:secret that drops once: reconnect messages, JSONL, summary."""
    from tests.runtime.test_video import mjpeg_server

    jsonl = tmp_path / "frames.jsonl"
    with mjpeg_server(frames_per_connection=8, connections=2) as url:
        assert "secret" in url
        result = run_cli(
            "camera",
            hand_bundle,
            "--source",
            url,
            "--headless",
            "--jsonl",
            jsonl,
            "--json",
            "--reconnect-timeout",
            "2",
            "--max-frames",
            "12",
            "--device",
            "cpu",
        )
    assert "secret" not in result.output and "secret" not in jsonl.read_text()
    if result.exit_code == 0:
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        assert summary["source"].startswith("http://***@127.0.0.1") and summary["reconnects"] >= 1
    else:  # the stream ran out before 12 frames: the error names the masked URL
        assert_user_error(result, "http://***@127.0.0.1")
    assert len(jsonl.read_text().splitlines()) >= 8
