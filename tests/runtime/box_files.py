"""What the box tests share: a bundle folder holding the reliability tests' tiny colour model."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.conftest import colour_onnx


def colour_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("box") / "bundle"
    folder.mkdir()
    colour_onnx(folder / "model.onnx")
    return folder
