"""Where OpenVINO's compiled-model cache goes: --cache-dir, $EDGECNN_CACHE_DIR, $XDG_CACHE_HOME, ~/.cache;
an unwritable HOME runs without a cache (one note), never a FileNotFoundError."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.conftest import python_cli


def red_image(folder: Path) -> Path:
    import cv2
    import numpy as np

    image = folder / "red.png"
    cv2.imwrite(str(image), np.full((40, 40, 3), (0, 0, 255), np.uint8))
    return image


@pytest.mark.parametrize(("env", "options", "cache"), [
    ({}, [], "home/.cache/edgecnn/openvino"),
    ({"XDG_CACHE_HOME": "{tmp}/xdg"}, [], "xdg/edgecnn/openvino"),
    ({"EDGECNN_CACHE_DIR": "{tmp}/env"}, [], "env"),
    ({"EDGECNN_CACHE_DIR": "{tmp}/env"}, ["--cache-dir", "{tmp}/option"], "option"),  # the option wins
])
def test_cache_folder_is_chosen_like_other_tools(env: dict[str, str], options: list[str], cache: str,
                                                  hand_bundle: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    fill = {"tmp": str(tmp_path)}
    monkeypatch.delenv("EDGECNN_CACHE_DIR", raising=False)
    base = {"HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": ""}
    run = python_cli("predict", hand_bundle, red_image(tmp_path), "--backend", "openvino", "--device", "cpu",
                     "--json", *[o.format(**fill) for o in options],
                     env={**base, **{k: v.format(**fill) for k, v in env.items()}})
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0 and '"label": "red"' in out, err
    assert any((tmp_path / cache).glob("*.blob")), sorted(str(p) for p in tmp_path.rglob("*"))
    assert "note:" not in err


def test_unwritable_home_runs_without_a_cache(hand_bundle: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGECNN_CACHE_DIR", raising=False)
    run = python_cli("predict", hand_bundle, red_image(tmp_path), "--backend", "openvino", "--device", "cpu",
                     "--json", env={"HOME": "/proc/no-home", "XDG_CACHE_HOME": ""})
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0 and '"label": "red"' in out, err
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "/proc/no-home/.cache/edgecnn/openvino is not writable" in notes[0], err
    assert "EDGECNN_CACHE_DIR" in notes[0] and "Traceback" not in err
