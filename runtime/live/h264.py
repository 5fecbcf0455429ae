"""H.264 MP4 files through PyAV (FFmpeg's libx264), the codec browsers play: `--save` and `--clips` use it.

    video = H264File(temp_path, rate=Fraction(25), time_base=Fraction(1, 25))
    video.add(image, pts)    # a BGR frame at `pts` (in time_base units; kept increasing)
    video.add_i420(yuv, pts) # or one already in yuv420p (to_i420: the --clips pre-roll's form)
    video.close()            # flush the encoder and the index; False when no frame was written

libx264 with preset=ultrafast, tune=zerolatency: 2.36 core-ms a 640x480 frame on box.mp4, against 2.41
for OpenCV's mp4v writer (issue 27). yuv420p, the pixel format every browser decodes (so even sides: an
odd row or column is cropped). +faststart puts the index first, so a browser plays while it loads. The
caller owns the file's name (a temporary one, renamed when complete: runtime/core/outputs.AtomicPath).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

CODEC_OPTIONS = {"preset": "ultrafast", "tune": "zerolatency"}
SERIAL_PIXELS = 320 * 240  # OpenCV runs a BGR -> YUV 4:2:0 conversion this big or bigger on its thread pool


def pyav_available() -> bool:
    """True when PyAV imports: it brings FFmpeg with libx264, where pip's OpenCV has no H.264 at all."""
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


class H264File:
    """One H.264 MP4 being written; the frame size is set by the first frame (later ones are fitted)."""

    def __init__(self, path: Path, rate: Fraction | int = 30,
                 time_base: Fraction = Fraction(1, 1000)) -> None:
        import av

        self.path, self.rate, self.time_base = Path(path), rate, time_base
        self.container = av.open(str(self.path), "w", format="mp4", options={"movflags": "+faststart"})
        self.stream: Any = None
        self.last_pts = -1

    def add(self, image: np.ndarray, pts: int) -> None:
        """A BGR frame at `pts`."""
        import av

        self._open_stream(image.shape[1], image.shape[0])
        image = fit(image, self.stream.width, self.stream.height)
        self._encode(av.VideoFrame.from_ndarray(image, format="bgr24"), pts)

    def add_i420(self, yuv: np.ndarray, pts: int) -> None:
        """A frame already in yuv420p (`to_i420`: height * 3/2 rows, even sides), encoded as it is."""
        import av

        width, height = yuv.shape[1], yuv.shape[0] * 2 // 3
        self._open_stream(width, height)
        if (width, height) != (self.stream.width, self.stream.height):  # another size: fitted as BGR
            import cv2

            return self.add(cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420), pts)
        self._encode(av.VideoFrame.from_ndarray(yuv, format="yuv420p"), pts)

    def _open_stream(self, width: int, height: int) -> None:
        if self.stream is None:
            self.stream = self.container.add_stream("libx264", rate=self.rate, options=CODEC_OPTIONS)
            self.stream.width, self.stream.height = width // 2 * 2, height // 2 * 2  # yuv420p: even sides
            self.stream.pix_fmt = "yuv420p"
            self.stream.time_base = self.time_base

    def _encode(self, frame: Any, pts: int) -> None:
        pts = max(pts, self.last_pts + 1)
        frame.pts, frame.time_base, self.last_pts = pts, self.time_base, pts
        self.container.mux(self.stream.encode(frame))

    def close(self) -> bool:
        """Flush the encoder and write the index; False when no frame was ever added."""
        if self.stream is not None:
            self.container.mux(self.stream.encode(None))
        self.container.close()
        return self.stream is not None

    def abandon(self) -> None:
        """Close after a write error without raising again (the caller removes the file)."""
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - the file is being dropped already
            pass


def to_i420(image: np.ndarray) -> np.ndarray:
    """A BGR frame as I420 (yuv420p: the Y plane, then U and V at half size; 1.5 bytes a pixel), an odd row
    or column cropped. Converted in strips of under SERIAL_PIXELS, each on the calling thread: one
    640x480 call goes to OpenCV's thread pool, whose spinning threads cost 1.1-1.6 CPU ms a frame
    against 0.5 in strips (box.mp4, loaded 2-core machine; a JPEG at quality 85: 1.5)."""
    import cv2

    height, width = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    out = np.empty((height * 3 // 2, width), np.uint8)
    flat, luma, chroma = out.reshape(-1), height * width, height * width // 4
    rows = max(2, (SERIAL_PIXELS - 1) // width // 2 * 2)  # even: each strip's U and V rows whole
    for top in range(0, height, rows):
        strip = cv2.cvtColor(image[top:min(top + rows, height), :width], cv2.COLOR_BGR2YUV_I420).reshape(-1)
        y, uv = strip.size * 2 // 3, strip.size // 6  # the strip's Y bytes; its U (and V) bytes
        at = top * width // 4  # where the strip's rows start in the U and V planes
        flat[top * width:top * width + y] = strip[:y]
        flat[luma + at:luma + at + uv] = strip[y:y + uv]
        flat[luma + chroma + at:luma + chroma + at + uv] = strip[y + uv:]
    return out


def fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """`image` at width x height: an odd row or column cropped, another size resized."""
    if image.shape[1] == width and image.shape[0] == height:
        return image
    import cv2

    if abs(image.shape[1] - width) <= 1 and abs(image.shape[0] - height) <= 1:
        return np.ascontiguousarray(image[:height, :width])
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
