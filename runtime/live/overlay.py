"""What the camera shows: top-k labels with probability bars and timings drawn on the frame, and the
OpenCV window (q/Esc quit, space pause, s snapshot) or nothing when there is no display."""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from edgecnn.runtime.core.outputs import AtomicPath
from edgecnn.runtime.live.events import NONE_STATE

UNCERTAIN = "uncertain"
UNKNOWN = "unknown"  # the model's unknown detector says: none of its labels
_GREEN, _GREY, _WHITE, _DARK = (80, 200, 80), (150, 150, 150), (255, 255, 255), (40, 40, 40)
_ORANGE = (0, 140, 255)  # BGR: the unknown state's title and frame border


def shown_label(top: Sequence[Any], min_prob: float, unknown: bool = False) -> str:
    """What the camera shows for a frame: "unknown" (the detector), "uncertain" (top-1 below
    `min_prob`), "none" (top-1 is the model's none class: nothing of interest), or the top label."""
    if unknown:
        return UNKNOWN
    if top[0].probability < min_prob:
        return UNCERTAIN
    return NONE_STATE if getattr(top[0], "none", False) else top[0].label


def draw_overlay(image: np.ndarray, top: Sequence[Any], min_prob: float,
                 stats: dict[str, float], unknown: bool = False) -> np.ndarray:
    """A copy of a BGR frame with the predictions (`.label`, `.probability`) and timings drawn on it;
    an unknown frame gets an orange "unknown" title and border, its bars greyed (nearest classes only)."""
    footer = (f"{stats.get('fps', 0.0):.1f} FPS  infer {stats.get('inference_ms', 0.0):.1f} ms  "
              f"cam->result {stats.get('latency_ms', 0.0):.1f} ms")
    return draw_predictions(image, top, min_prob, footer, unknown)


def draw_predictions(image: np.ndarray, top: Sequence[Any], min_prob: float, footer: str,
                     unknown: bool = False) -> np.ndarray:
    """The camera's panel on a copy of a BGR image: title, one bar per prediction, a footer line
    (timings for the camera, the unknown score for predict --save)."""
    import cv2

    canvas = image.copy()
    height, width = canvas.shape[:2]
    scale = max(0.4, min(width, height) / 600.0)
    row = int(34 * scale) + 6
    panel_w, panel_h = min(width, int(360 * scale) + 20), min(height, row * (len(top) + 2) + 12)
    region = canvas[:panel_h, :panel_w]
    cv2.addWeighted(region, 0.35, np.zeros_like(region), 0.65, 0.0, dst=region)  # dim the panel only
    title = shown_label(top, min_prob, unknown)
    if unknown:
        cv2.rectangle(canvas, (0, 0), (width - 1, height - 1), _ORANGE, max(3, int(6 * scale)))
    _text(canvas, title, (8, row - 6), scale * 0.8, _ORANGE if unknown else _WHITE)
    bar_floor = 2.0 if unknown else min_prob  # unknown: every bar grey, they are only the nearest classes
    for i, prediction in enumerate(top):
        _bar(canvas, prediction, bar_floor, (8, row * (i + 1) + 4), (panel_w - 16, row - 8), scale)
    _text(canvas, footer, (8, row * (len(top) + 2) - 2), scale * 0.5, _WHITE)
    return canvas


def tile(cells: Sequence[tuple[str, np.ndarray | None, str]], width: int = 1280) -> np.ndarray:
    """Several sources in one BGR image: a near-square grid of (name, newest frame or None, error)."""
    import cv2

    columns = int(np.ceil(np.sqrt(len(cells))))
    rows = int(np.ceil(len(cells) / columns))
    cell_w = width // columns
    cell_h = cell_w * 3 // 4
    canvas = np.full((rows * cell_h, columns * cell_w, 3), 30, np.uint8)
    for i, (name, image, error) in enumerate(cells):
        x, y = (i % columns) * cell_w, (i // columns) * cell_h
        if image is not None:
            scale = min(cell_w / image.shape[1], cell_h / image.shape[0])
            size = (max(1, int(image.shape[1] * scale)), max(1, int(image.shape[0] * scale)))
            fitted = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            top, left = y + (cell_h - size[1]) // 2, x + (cell_w - size[0]) // 2
            canvas[top : top + size[1], left : left + size[0]] = fitted
        caption = name[-48:] if not error else f"{name[-32:]}: lost"
        status = "" if image is not None else ("source lost" if error else "waiting for frames")
        scale = max(0.4, cell_w / 1000.0)
        cv2.rectangle(canvas, (x, y + cell_h - int(28 * scale) - 8), (x + cell_w, y + cell_h), _DARK, -1)
        _text(canvas, caption, (x + 6, y + cell_h - 8), scale * 0.6, (80, 80, 255) if error else _WHITE)
        if status:
            _text(canvas, status, (x + 6, y + cell_h // 2), scale * 0.6, _GREY)
        cv2.rectangle(canvas, (x, y), (x + cell_w - 1, y + cell_h - 1), _GREY, 1)
    return canvas


def _bar(canvas: np.ndarray, prediction: Any, min_prob: float, origin: tuple[int, int],
         size: tuple[int, int], scale: float) -> None:
    import cv2

    (x, y), (w, h) = origin, size
    filled = int(round(w * float(np.clip(prediction.probability, 0.0, 1.0))))
    colour = _GREEN if prediction.probability >= min_prob else _GREY
    cv2.rectangle(canvas, (x, y), (x + w, y + h), _DARK, -1)
    cv2.rectangle(canvas, (x, y), (x + filled, y + h), colour, -1)
    label = f"{prediction.label[:32]}  {prediction.probability * 100:.0f}%"
    _text(canvas, label, (x + 4, y + h - max(3, h // 4)), scale * 0.55, _WHITE)


def _text(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float, colour: tuple) -> None:
    import cv2

    thickness = max(1, int(round(scale * 2)))  # on the dimmed panel: no outline needed
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)


def has_display() -> bool:
    """A screen to open a window on: always on Windows/macOS; on Linux an X server that answers.

    OpenCV's Qt aborts the whole process when DISPLAY names a server it cannot reach (ssh without X
    forwarding), so we look before opening a window.
    """
    if sys.platform in ("win32", "darwin"):
        return True
    display = os.environ.get("DISPLAY", "")
    host, _, number = display.rpartition(":")
    number = number.split(".")[0]
    if not (number.isascii() and number.isdigit()) or int(number) > 65535 - 6000:
        return False
    if host in ("", "unix"):
        return Path(f"/tmp/.X11-unix/X{number}").exists()
    try:
        with socket.create_connection((host, 6000 + int(number)), timeout=0.5):
            return True
    except OSError:
        return False


def paused_mark(image: np.ndarray) -> np.ndarray:
    """A copy of the frame with "PAUSED - space resumes" in a dark band at the bottom."""
    marked = image.copy()
    height = marked.shape[0]
    band = max(24, height // 14)
    marked[height - band:] = (marked[height - band:] * 0.35).astype(marked.dtype)
    _text(marked, "PAUSED - space resumes, s saves, q quits", (10, height - band // 3), band / 48,
          (0, 215, 255))
    return marked


class Display:
    """The window and its keys; headless (shows nothing) without a display or when asked."""

    def __init__(self, title: str, headless: bool, snapshot_dir: Path, say: Callable[[str], None]) -> None:
        self.title, self.snapshot_dir, self.say = title, Path(snapshot_dir), say
        self.shows = not headless and has_display()
        self._opened = False
        if not headless and not self.shows:
            say("no display found: running headless (results go to --save / --jsonl and the summary)")
        if self.shows:
            import cv2

            if not getattr(cv2, "currentUIFramework", lambda: "unknown")():
                self._no_windows()

    def _no_windows(self) -> None:
        self.say("this OpenCV has no window support (opencv-python-headless?); running headless")
        self.shows = False

    def _open(self, image: np.ndarray) -> None:
        """The window, opened at the first frame's size (not Qt's 400x300): resizable, no Qt toolbar."""
        import cv2

        try:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
            cv2.resizeWindow(self.title, image.shape[1], image.shape[0])
        except cv2.error:
            self._no_windows()
        self._opened = True

    def show(self, image: np.ndarray) -> bool:
        """Show a frame and handle keys; False when the user quits or closes the window."""
        import cv2

        if self.shows and not self._opened:
            self._open(image)
        if not self.shows:
            return True
        cv2.imshow(self.title, image)
        key = cv2.waitKey(1) & 0xFF
        if key == ord(" "):
            key = self._pause(image)
        if key == ord("s"):
            self.snapshot(image)
        return key not in (ord("q"), 27) and not self._closed()

    def _pause(self, image: np.ndarray) -> int:
        """Hold the frame until space (resume), q/Esc or the window closes; s still saves it (unmarked).
        The window shows the frame with a PAUSED mark, so a held picture is never taken for a live one."""
        import cv2

        cv2.imshow(self.title, paused_mark(image))
        while True:
            key = cv2.waitKey(50) & 0xFF
            if key == ord("s"):
                self.snapshot(image)
            elif key in (ord(" "), ord("q"), 27) or self._closed():
                return key

    def _closed(self) -> bool:
        import cv2

        return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1

    def snapshot(self, image: np.ndarray) -> Path:
        """Save the annotated frame as a PNG (temporary name, then rename)."""
        import cv2

        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{time.perf_counter_ns() % 1000:03d}"
        path = self.snapshot_dir / f"snapshot-{stamp}.png"
        with AtomicPath(path) as temp:
            cv2.imwrite(str(temp), image)
        self.say(f"snapshot saved to {path}")
        return path

    def close(self) -> None:
        if self.shows and self._opened:
            import cv2

            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
