"""`fit_frame` geometry: aspect kept then centre crop (or stretch), any size, any channel layout."""

from __future__ import annotations

import numpy as np
import pytest
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.metadata import Preprocess
from edgecnn.runtime.core.preprocess import fit_batch, fit_frame, to_rgb8

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)
SQUARE = Preprocess(input_size=(224, 224), crop_fraction=0.875)


def banded(height: int, width: int, band: int) -> np.ndarray:
    """Gray RGB frame with a red band down the left edge and a blue one down the right, `band` px wide."""
    frame = np.full((height, width, 3), 128, np.uint8)
    frame[:, :band], frame[:, width - band :] = RED, BLUE
    return frame


def test_shorter_side_crop_keeps_the_centre_and_drops_the_sides() -> None:
    """640x480: shorter side to 224/0.875 = 256 (x 8/15), so 341 wide; the 224 crop keeps the middle 420 px
    of the original and drops 110 a side. Bands of 80 px are gone; of 140 px, 30 px (16 fitted) remain."""
    assert not (fit_frame(banded(480, 640, 80), SQUARE) == RED).all(axis=2).any()
    fitted = fit_frame(banded(480, 640, 140), SQUARE)
    assert fitted.shape == (224, 224, 3) and fitted.dtype == np.uint8
    red_columns = int((fitted == RED).all(axis=2).all(axis=0).sum())
    blue_columns = int((fitted == BLUE).all(axis=2).all(axis=0).sum())
    assert 14 <= red_columns <= 16 and 14 <= blue_columns <= 16


def test_same_pixels_as_resize_then_crop(chelsea: np.ndarray) -> None:
    """Cropping first (our shortcut) matches timm's order, resize the shorter side then crop."""
    import cv2

    height, width = chelsea.shape[:2]
    short = round(224 / 0.875)
    resized = cv2.resize(chelsea, (round(width * short / height), short), interpolation=cv2.INTER_LINEAR)
    top, left = (resized.shape[0] - 224) // 2, (resized.shape[1] - 224) // 2
    reference = resized[top : top + 224, left : left + 224].astype(np.float32)
    assert np.abs(fit_frame(chelsea, SQUARE).astype(np.float32) - reference).mean() < 3.0


def test_stretch_keeps_everything() -> None:
    fitted = fit_frame(banded(480, 640, 80), Preprocess(input_size=(224, 224), resize="stretch"))
    red_columns = int((fitted == RED).all(axis=2).all(axis=0).sum())
    assert 26 <= red_columns <= 28  # 80 * 224 / 640 = 28


def test_centre_marker_stays_in_the_centre() -> None:
    frame = np.zeros((300, 900, 3), np.uint8)
    frame[140:160, 440:460] = GREEN
    fitted = fit_frame(frame, SQUARE)
    ys, xs = np.nonzero((fitted[:, :, 1] > 200) & (fitted[:, :, 0] < 50))
    assert abs(ys.mean() - 111.5) < 2 and abs(xs.mean() - 111.5) < 2


@pytest.mark.parametrize("size", [(224, 224), (160, 320), (320, 160)])
def test_non_square_inputs(size: tuple[int, int]) -> None:
    assert fit_frame(banded(480, 640, 10), Preprocess(input_size=size)).shape == (*size, 3)


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (2, 300)])
def test_tiny_frames_are_upscaled_to_the_input(shape: tuple[int, int]) -> None:
    frame = np.full((*shape, 3), (10, 200, 30), np.uint8)
    fitted = fit_frame(frame, SQUARE)
    assert fitted.shape == (224, 224, 3)
    assert np.abs(fitted.astype(int) - (10, 200, 30)).max() <= 1


def test_huge_frame_is_averaged_not_aliased() -> None:
    """A 4000x3000 one-pixel checkerboard shrunk 13x per side: area averaging gives flat gray; sampling
    (nearest or plain bilinear) would keep a pattern of black and white."""
    checker = ((np.indices((3000, 4000)).sum(axis=0) % 2) * 255).astype(np.uint8)
    fitted = fit_frame(np.repeat(checker[:, :, None], 3, axis=2), SQUARE)
    assert fitted.shape == (224, 224, 3)
    assert abs(float(fitted.mean()) - 127.5) < 2 and int(fitted.max()) - int(fitted.min()) < 8


def test_grayscale_bgra_rgba_16_bit_and_float_inputs() -> None:
    gray = np.full((50, 60), 77, np.uint8)
    assert (fit_frame(gray, SQUARE) == 77).all()
    bgra = np.zeros((50, 60, 4), np.uint8)
    bgra[:, :] = (255, 0, 0, 255)  # blue, in OpenCV's order
    assert (fit_frame(bgra, SQUARE, bgr=True) == BLUE).all()
    assert (fit_frame(bgra, SQUARE, bgr=False) == RED).all()  # the same bytes read as RGBA are red
    bgr = np.zeros((50, 60, 3), np.uint8)
    bgr[:, :] = (0, 255, 0)
    assert (fit_frame(bgr, SQUARE, bgr=True) == GREEN).all()
    deep = np.full((50, 60, 3), 65535, np.uint16)
    assert (to_rgb8(deep) == 255).all()
    unit = np.full((50, 60, 3), 0.5, np.float32)
    assert (to_rgb8(unit) == 128).all()


@pytest.mark.parametrize("shape", [(0, 10, 3), (10, 0), (10, 10, 5), (2, 10, 10, 3)])
def test_impossible_shapes_are_one_clear_error(shape: tuple[int, ...]) -> None:
    with pytest.raises(EdgecnnError, match="expected an HxW, HxWx3 or HxWx4 image"):
        fit_frame(np.zeros(shape, np.uint8), SQUARE)


def test_unknown_resize_mode_is_refused() -> None:
    with pytest.raises(EdgecnnError, match="unknown resize mode"):
        fit_frame(np.zeros((10, 10, 3), np.uint8), Preprocess(resize="zoom"))


def test_fit_batch_stacks_frames_of_any_size(chelsea: np.ndarray) -> None:
    batch = fit_batch([chelsea, banded(480, 640, 10), np.zeros((5, 5), np.uint8)], SQUARE)
    assert batch.shape == (3, 224, 224, 3) and batch.dtype == np.uint8
    assert (batch[1] == fit_frame(banded(480, 640, 10), SQUARE)).all()
