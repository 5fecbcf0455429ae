"""`fit_frame`: the one function that prepares a frame for a model.

Training validation, export checks, predict, eval, bench and camera all call it, so the pixels a
model sees in deployment are the pixels it was validated on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.metadata import Preprocess


def to_rgb8(image: np.ndarray, bgr: bool = False) -> np.ndarray:
    """Any decoded image (gray, RGBA/BGRA, 16-bit, float 0..1) as HxWx3 uint8 RGB."""
    import cv2

    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or 0 in image.shape:
        raise EdgecnnError(f"expected an HxW, HxWx3 or HxWx4 image, got shape {image.shape}")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        image = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise EdgecnnError(f"unsupported image dtype {image.dtype}; give uint8 or uint16 pixels")
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if bgr else cv2.COLOR_RGBA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if bgr else image


def fit_frame(image: np.ndarray, pre: Preprocess, bgr: bool = False) -> np.ndarray:
    """Resize (keeping aspect, then centre crop; or stretch) to the model's input: HxWx3 uint8 RGB."""
    import cv2

    if image.ndim not in (2, 3) or 0 in image.shape:
        raise EdgecnnError(f"expected an HxW, HxWx3 or HxWx4 image, got shape {image.shape}")
    height, width = pre.input_size
    src_h, src_w = image.shape[:2]
    if pre.resize == "shorter_crop":
        # Resize-then-crop computed as crop-then-resize: the same pixels, fewer of them to resample.
        scale = round(min(height, width) / pre.crop_fraction) / min(src_h, src_w)
        crop_h, crop_w = min(src_h, round(height / scale)), min(src_w, round(width / scale))
        top, left = (src_h - crop_h) // 2, (src_w - crop_w) // 2
        image = image[top : top + crop_h, left : left + crop_w]
    elif pre.resize != "stretch":
        raise EdgecnnError(f"unknown resize mode {pre.resize!r} in model metadata; re-export the model")
    shrink = (width * height) / (image.shape[0] * image.shape[1])
    if shrink < 0.25:  # more than 2x per side: area averaging, or fine detail aliases
        interpolation = cv2.INTER_AREA
    elif shrink < 1.0:  # mild shrink (a 640x480 camera frame): bilinear is 10x faster than area, as clean
        interpolation = cv2.INTER_LINEAR
    else:
        interpolation = _INTERPOLATION.get(pre.interpolation, cv2.INTER_CUBIC)
    if image.shape[:2] != (height, width):
        image = cv2.resize(image, (width, height), interpolation=interpolation)
    return np.ascontiguousarray(to_rgb8(image, bgr))


def fit_batch(images: Sequence[np.ndarray], pre: Preprocess, bgr: bool = False) -> np.ndarray:
    """`fit_frame` over a list: an NxHxWx3 uint8 batch."""
    return np.stack([fit_frame(image, pre, bgr) for image in images])


_INTERPOLATION = {"bilinear": 1, "bicubic": 2, "nearest": 0, "area": 3}  # cv2.INTER_* values
