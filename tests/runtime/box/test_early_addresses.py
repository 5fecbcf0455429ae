"""--metrics and --serve addresses are checked before the model loads: a port in use or an address that is
not this machine's is one line, exit 2. The model given is a file that would fail to load, so an error
about the address (and nothing about the model) shows the check came first."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgecnn.cli import app

pytest.importorskip("prometheus_client")
CUP = Path(__file__).parents[3] / "samples/videos/cup.mp4"
NOT_HERE = "192.0.2.1"  # TEST-NET-1 (RFC 5737): never an address of this machine


@pytest.fixture
def taken() -> Iterator[int]:
    """A loopback port something else listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


@pytest.fixture
def broken_model(tmp_path: Path) -> Path:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not a model")  # loading it is an error of its own: "is not a loadable ONNX model"
    return path


def one_error(arguments: list[str]) -> str:
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.output  # beside it only a warning (--serve on a non-loopback host)
    return errors[0]


@pytest.mark.parametrize(("options", "message"), [
    (["--metrics", "{taken}"], "error: --metrics 127.0.0.1:{taken}: port {taken} is in use; stop what uses "
                               "it or pick another port (0 picks a free one)"),
    (["--metrics", "127.0.0.1:{taken}", "--serve", "0"], "error: --metrics 127.0.0.1:{taken}: port {taken} "
                                                         "is in use"),
    (["--metrics", "box:"], "error: --metrics 'box:' is not [HOST:]PORT"),
    (["--metrics", "70000"], "error: --metrics '70000' is not [HOST:]PORT"),
    (["--metrics", f"{NOT_HERE}:9100"], f"error: --metrics {NOT_HERE}:9100: cannot listen there"),
    (["--serve", f"{NOT_HERE}:8080", "--token", "s3cret-word"],
     f"error: --serve {NOT_HERE}:8080: cannot listen there"),
])
def test_a_bad_address_is_one_line_before_the_model_loads(broken_model: Path, taken: int,
                                                          options: list[str], message: str) -> None:
    options = [option.format(taken=taken) for option in options]
    line = one_error(["camera", str(broken_model), "--source", str(CUP), "--headless", "--max-frames", "1",
                      *options])
    assert line.startswith(message.format(taken=taken)), line


def test_the_broken_model_alone_fails_on_loading(broken_model: Path) -> None:
    """The check above is worth something only if the model, reached, fails differently."""
    line = one_error(["camera", str(broken_model), "--source", str(CUP), "--headless", "--max-frames", "1",
                      "--metrics", "0"])
    assert "is not a loadable ONNX model" in line and "--metrics" not in line, line
