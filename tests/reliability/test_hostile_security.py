"""Security, second pass: stream credentials, terminal/markup injection from a bundle, `edgecnn triton`
trusting the bundle, and the mode of exported folders. Every hostile input is made here."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from edgecnn.runtime.core.metadata import ModelMeta, Preprocess
from edgecnn.runtime.core.redact import mask_text, mask_url

from tests.reliability.conftest import LABELS, assert_user_error, colour_onnx, run_cli

# -- credentials: one masking rule ------------------------------------------------------------------
MASKED = {  # raw source -> what every message, JSONL line and summary shows
    "rtsp://admin:p@ssw0rd@cam.local/x": "rtsp://***@cam.local/x",  # FFmpeg splits at the last '@'
    "rtsp://admin:pa/ss@cam.local:554/x": "rtsp://***@cam.local:554/x",  # '/' in the password
    "rtsp://admin:pa ss@cam.local/x": "rtsp://***@cam.local/x",  # a space in the password
    "rtsp://admin:pa?ss@cam.local/x": "rtsp://***@cam.local/x",  # '?' in the password
    "rtsp://admin@cam.local/x": "rtsp://***@cam.local/x",  # user only
    "http://cam.local/x.mjpg?password=hunter2&ch=1": "http://cam.local/x.mjpg?password=***&ch=1",
    "http://cam.local/x?user=me&pass=hunter2": "http://cam.local/x?user=me&pass=***",
    "https://cam.local/x?token=hunter2": "https://cam.local/x?token=***",
    "https://s3.local/x?X-Amz-Signature=hunter2&X-Amz-Credential=hunter2": (
        "https://s3.local/x?X-Amz-Signature=***&X-Amz-Credential=***"),
    "http://cam.local/x?api_key=hunter2#auth=hunter2": "http://cam.local/x?api_key=***#auth=***",
    # Third pass: short and vendor keys, ';' separators, nested URLs, path credentials, IPv6, case, no scheme.
    "http://cam/x?pw=hunter2": "http://cam/x?pw=***",
    "http://cam/x?p=hunter2&ch=1": "http://cam/x?p=***&ch=1",
    "http://cam/x?psw=hunter2": "http://cam/x?psw=***",
    "http://cam/videostream.cgi?loginuse=admin&loginpas=hunter2": (  # Foscam
        "http://cam/videostream.cgi?loginuse=***&loginpas=***"),
    "http://cam/x?ch=1;password=hunter2": "http://cam/x?ch=1;password=***",
    "http://go2rtc:1984/api/stream.mjpeg?src=rtsp://admin:hunter2@cam/live": (
        "http://go2rtc:1984/api/stream.mjpeg?src=rtsp://***@cam/live"),
    "http://go2rtc:1984/api/stream.mjpeg?src=rtsp%3A%2F%2Fadmin%3Ahunter2%40cam%2Flive": (
        "http://go2rtc:1984/api/stream.mjpeg?src=rtsp://***@cam/live"),
    "rtsp://cam:554/user=admin&password=hunter2&channel=1&stream=0.sdp": (  # XMeye / Dahua path
        "rtsp://cam:554/user=admin&password=***&channel=1&stream=0.sdp"),
    "rtsp://cam:554/live;password=hunter2": "rtsp://cam:554/live;password=***",
    "rtsp://admin:hunter2@[fe80::1]:554/x": "rtsp://***@[fe80::1]:554/x",
    "rtsp://admin:hunter2@[fe80::1%25eth0]:554/x": "rtsp://***@[fe80::1%25eth0]:554/x",
    "HTTP://admin:hunter2@cam/x?TOKEN=hunter2": "HTTP://***@cam/x?TOKEN=***",
    "admin:hunter2@cam/live": "***@cam/live",  # no scheme: would be read as a file name
    "admin:hunter2@192.168.1.2:554/live": "***@192.168.1.2:554/live",
    "http://[::1]:8080/x": "http://[::1]:8080/x",  # nothing to hide: unchanged
    "http://cam.local/feed?mail=a@b.com": "http://cam.local/feed?mail=a@b.com",
}


@pytest.mark.parametrize("url", list(MASKED))
def test_mask_url_hides_every_credential(url: str) -> None:
    assert mask_url(url) == MASKED[url]
    assert mask_text(f"cannot open {url} (refused)", url) == f"cannot open {MASKED[url]} (refused)"


REFUSED = {  # a source that fails at once, and the secret in it
    "last '@' split": ("rtsp://admin:p@ssw0rd@127.0.0.1:1/x", "ssw0rd", "rtsp://***@127.0.0.1:1/x"),
    "'/' in the password": ("rtsp://admin:pa/ss@127.0.0.1:1/x", "pa/ss", "rtsp://***@127.0.0.1:1/x"),
    "space in the password": ("rtsp://admin:pa ss@127.0.0.1:1/x", "pa ss", "rtsp://***@127.0.0.1:1/x"),
    "password in the query": ("http://127.0.0.1:1/x.mjpg?password=hunter2", "hunter2",
                              "http://127.0.0.1:1/x.mjpg?password=***"),
    "token in the query": ("http://127.0.0.1:1/x.mjpg?ch=1&token=hunter2", "hunter2",
                           "http://127.0.0.1:1/x.mjpg?ch=1&token=***"),
    "no scheme (a file name)": ("admin:hunter2@127.0.0.1:1/x", "hunter2", "***@127.0.0.1:1/x"),
    "nested in a query": ("http://127.0.0.1:1/api/stream.mjpeg?src=rtsp://admin:hunter2@cam/x", "hunter2",
                          "http://127.0.0.1:1/api/stream.mjpeg?src=rtsp://***@cam/x"),
    "upper-case scheme": ("HTTP://admin:hunter2@127.0.0.1:1/x", "hunter2", "HTTP://***@127.0.0.1:1/x"),
    "unsupported scheme": ("ftp://admin:hunter2@127.0.0.1/x?key=hunter2", "hunter2",
                           "ftp://***@127.0.0.1/x?key=***"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_refused_stream_error_masks_the_source(name: str, hand_bundle: Path, tmp_path: Path) -> None:
    source, secret, shown = REFUSED[name]
    jsonl = tmp_path / "frames.jsonl"
    result = run_cli("camera", hand_bundle, "--source", source, "--headless", "--jsonl", jsonl, "--json",
                     "--reconnect-timeout", "1", "--device", "cpu")
    assert_user_error(result, shown)
    assert secret not in result.output
    assert not any(secret in p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file())


def test_query_secret_masked_in_logs_jsonl_and_json_summary(hand_bundle: Path, tmp_path: Path) -> None:
    """A real loopback MJPEG camera with a password in the path and a token in the query, dropping once."""
    from tests.runtime.test_video import mjpeg_server

    jsonl = tmp_path / "frames.jsonl"
    with mjpeg_server(frames_per_connection=8, connections=2) as url:
        source = url.replace("secret@", "p@ssw0rd@") + "?token=hunter2&ch=1"
        result = run_cli("camera", hand_bundle, "--source", source, "--headless", "--jsonl", jsonl, "--json",
                         "--reconnect-timeout", "2", "--max-frames", "10", "--device", "cpu")
    for secret in ("hunter2", "ssw0rd", "viewer"):
        assert secret not in result.output and secret not in jsonl.read_text()
    if result.exit_code == 0:
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        expected = r"http://\*\*\*@127\.0\.0\.1:\d+/stream\.mjpg\?token=\*\*\*&ch=1"
        assert re.fullmatch(expected, summary["source"]), summary["source"]
    else:  # the stream ended before 10 frames: the error names the masked URL
        assert_user_error(result, "http://***@127.0.0.1")


# -- terminal and markup injection ------------------------------------------------------------------
HOSTILE = {  # name -> a label/arch string from a crafted bundle, and what must be printed instead
    "CSI clear screen": ("\x1b[2J\x1b[Hred", "\\x1b[2J\\x1b[Hred"),
    "OSC window title": ("\x1b]0;owned\x07red", "\\x1b]0;owned\\x07red"),
    "OSC 8 link": ("\x1b]8;;file:///etc/passwd\x1b\\red\x1b]8;;\x1b\\", "\\x1b]8;;file:///etc/passwd"),
    "C1 CSI (0x9b)": ("\x9b31mred", "\\x9b31mred"),
    "bidi override": ("\u202ered", "\\u202ered"),
    "Rich markup [blink red]": ("[blink red]red[/]", "[blink red]red[/]"),
    "Rich [link=file:///etc/passwd]": ("[link=file:///etc/passwd]red[/link]", "[link=file:///etc/passwd]red"),
    "Rich closing tag [/]": ("red[/]", "red[/]"),
}
@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables wide enough that Rich does not cut the cells this file reads back."""
    from edgecnn import cli

    for console in (cli.console, cli.err_console):
        monkeypatch.setattr(console, "width", 400)


CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _hostile_model(path: Path, text: str) -> Path:
    meta = ModelMeta(labels=(text, *LABELS[1:]), preprocess=Preprocess(input_size=(32, 32)), arch=text)
    return colour_onnx(path, meta=meta.to_json())


@pytest.mark.parametrize("command", ["predict", "info", "eval"])
@pytest.mark.parametrize("name", list(HOSTILE))
def test_bundle_strings_print_as_text(name: str, command: str, tmp_path: Path) -> None:
    text, shown = HOSTILE[name]
    model = _hostile_model(tmp_path / "m.onnx", text)
    red = np.full((16, 16, 3), (0, 0, 255), np.uint8)
    if command == "eval":
        if "/" in text:
            pytest.skip("a class folder name cannot hold '/'")
        for label in (text, *LABELS[1:]):
            (tmp_path / "data" / label).mkdir(parents=True)
            cv2.imwrite(str(tmp_path / "data" / label / "a.png"), red)
        args = ["eval", model, tmp_path / "data", "--out", tmp_path / "eval"]
    elif command == "predict":
        cv2.imwrite(str(tmp_path / "red.png"), red)
        args = ["predict", model, tmp_path / "red.png", "--top-k", "4"]
    else:
        args = ["info", model]
    result = run_cli(*args, "--device", "cpu") if command != "info" else run_cli(*args)
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.replace("│", " ").split())  # Rich wraps long cells: join the words
    assert not CONTROL.search(result.output), repr(result.output)
    assert shown in output.replace(" ", "") or shown.replace(" ", "") in output.replace(" ", ""), output


MARKUP_PATHS = ["a[/]b.png", "[bold]x[/bold].png", "[link=file:///etc/passwd]c[/link].png", "\x1b[31mred.png"]


def test_paths_with_markup_print_as_text(hand_bundle: Path, tmp_path: Path) -> None:
    """`[/]` in a path spans a folder (`a[` holds `]b.png`): predict and eval print paths as written,
    never a MarkupError (eval used to raise it after writing its outputs)."""
    photos = tmp_path / "photos"
    for name in MARKUP_PATHS:
        (photos / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(photos / name), np.full((8, 8, 3), (0, 0, 255), np.uint8))
    result = run_cli("predict", hand_bundle, *[photos / name for name in MARKUP_PATHS], "--device", "cpu")
    assert result.exit_code == 0, result.output
    flat = "".join(result.output.replace("│", "").split())
    for name in MARKUP_PATHS:
        assert str(Path(name)).replace("\x1b", "\\x1b") in flat, (name, flat)  # Path folds ///
    assert not CONTROL.search(result.output)
    data = tmp_path / "d[/]ata"
    for label in LABELS:
        (data / label).mkdir(parents=True)
        cv2.imwrite(str(data / label / "a.png"), np.full((8, 8, 3), (0, 0, 255), np.uint8))
    out = tmp_path / "o[/]ut"
    result = run_cli("eval", hand_bundle, data, "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "o[/]ut" in "".join(result.output.split()) and (out / "eval.json").is_file()


# -- edgecnn triton: typed config, files inside the bundle ------------------------------------------
def _triton(bundle: Path, repo: Path, *args: str) -> object:
    return run_cli("triton", bundle, repo, "--name", "m", *args)


def _meta_json(**changes: object) -> str:
    meta = ModelMeta(labels=LABELS, preprocess=Preprocess(input_size=(32, 32)), arch="c")
    data = json.loads(meta.to_json())
    for key, value in changes.items():
        target = data["preprocess"] if key in data["preprocess"] else data
        target[key] = value
    return json.dumps(data)


INJECTIONS = {  # crafted metadata -> (words of the one-line error)
    "input_size string with config lines": (
        _meta_json(input_size=['32 ] }\n]\ninstance_group [ { kind: KIND_MODEL', 32]),
        ("preprocess.input_size", "2 whole numbers")),
    "label with a newline": (
        _meta_json(labels=['red"\nbackend: "python', "green", "blue", "gray"]), ("holds a line break",)),
    "input_size float": (_meta_json(input_size=[32.5, 32]), ("preprocess.input_size",)),
}


@pytest.mark.parametrize("name", list(INJECTIONS))
def test_triton_refuses_metadata_that_would_write_config_lines(name: str, hand_bundle: Path,
                                                               tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(hand_bundle, bundle)
    shutil.rmtree(bundle / "openvino")
    text, words = INJECTIONS[name]
    colour_onnx(bundle / "model.onnx", meta=text)
    result = _triton(bundle, tmp_path / "repo")
    assert_user_error(result, *words)
    assert not (tmp_path / "repo" / "m").exists()


def test_triton_config_holds_only_our_lines(hand_bundle: Path, tmp_path: Path) -> None:
    assert _triton(hand_bundle, tmp_path / "repo").exit_code == 0
    lines = (tmp_path / "repo" / "m" / "config.pbtxt").read_text().splitlines()
    assert [line.split()[0] for line in lines] == [
        "name:", "backend:", "max_batch_size:", "input", "{", "]", "output", "{", "]", "dynamic_batching",
        "instance_group"]
    assert "dims: [ 32, 32, 3 ]" in lines[4] and "dims: [ 4 ]" in lines[7]


LINKS = {  # bundle file replaced by a symlink to something outside it
    "model.onnx -> a private file": ("model.onnx", "model.onnx links outside the bundle folder"),
    "openvino/model.xml -> outside": ("openvino/model.xml", "model.xml links outside the bundle folder"),
    "openvino/model.bin -> /etc/hostname": ("openvino/model.bin", "model.bin links outside the bundle"),
}


@pytest.mark.parametrize("name", list(LINKS))
def test_triton_copies_only_files_inside_the_bundle(name: str, hand_bundle: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(hand_bundle, bundle)
    rel, words = LINKS[name]
    private = tmp_path / "private" / Path(rel).name
    private.parent.mkdir()
    shutil.copy(bundle / rel, private)
    private.chmod(0o600)
    (bundle / rel).unlink()
    os.symlink(private if "hostname" not in name else Path("/etc/hostname"), bundle / rel)
    result = _triton(bundle, tmp_path / "repo")
    assert_user_error(result, words)
    copied = [p for p in tmp_path.joinpath("repo").rglob("*") if p.is_file()]
    assert not [p for p in copied if p.read_bytes() == private.read_bytes()]


# -- exported folders honour the umask --------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_triton_folders_follow_the_umask(umask: int, hand_bundle: Path, tmp_path: Path) -> None:
    old = os.umask(umask)
    try:
        result = _triton(hand_bundle, tmp_path / "repo")
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    for folder in (tmp_path / "repo" / "m", tmp_path / "repo" / "m_openvino"):
        assert folder.stat().st_mode & 0o777 == 0o777 & ~umask
        assert (folder / "config.pbtxt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_exported_bundle_follows_the_umask(tiny_bundle: Path) -> None:
    """The bundle is built in a mkdtemp folder (0700); once in place it has the mode mkdir would give."""
    umask = os.umask(0o022)
    os.umask(umask)
    assert tiny_bundle.stat().st_mode & 0o777 == 0o777 & ~umask
    assert (tiny_bundle / "model.onnx").stat().st_mode & 0o777 == 0o666 & ~umask
