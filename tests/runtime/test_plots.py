"""The confusion-matrix picture is drawn with or without matplotlib (not a base dependency)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from edgecnn.runtime.measure.plots import save_confusion


@pytest.mark.parametrize("with_matplotlib", [True, False])
def test_confusion_png(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_matplotlib: bool) -> None:
    import cv2

    if not with_matplotlib:
        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib"
                            else real(name, *a))
    path = tmp_path / "confusion.png"
    save_confusion(np.array([[5, 1], [0, 7]]), ["cat", "dog"], ["cat", "dog"], path, title="test")
    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] > 100 and image.std() > 10
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically, no leftovers
