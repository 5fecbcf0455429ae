"""`camera --collect DIR`: keep the frames the model was unsure about, to label them and fine-tune again.

The review queue (review.py) with only the uncertain (top-1 below --min-prob) and unknown frames: the same
layout, `DIR/CAMERA/ANSWER/NAME.jpg` + `NAME.json` (predictions, unknown score, times, source with
credentials masked), so `finetune DIR/CAMERA` reads it once the wrong ones are moved. At most one frame per
camera every `interval` seconds of the source's time and `limit` per camera; near-identical frames once.
"""

from __future__ import annotations

from pathlib import Path

from edgecnn.runtime.live.review import ReviewConfig, ReviewQueue, reason

__all__ = ["Collector", "reason"]


class Collector(ReviewQueue):
    def __init__(self, folder: Path, limit: int = 100, interval: float = 1.0) -> None:
        super().__init__(ReviewConfig(Path(folder), option="--collect", limit=limit, interval=interval,
                                      margin=0.0, window=0, sample=0.0))

    def describe(self) -> str:
        dropped = f" ({self.dropped} dropped: the disk was behind)" if self.dropped else ""
        return f"collected {self.saved} uncertain or unknown frames into {self.config.folder}{dropped}"
