"""What --append costs a JSONL writer (issue 28 item 6): camera-sized records written through a temporary
file renamed at the end (the default) against appended to the file itself, line-buffered (--append: a
service killed by its watchdog keeps every line). Prints each, and the ratio append / default.

    PYTHONPATH=. python benchmarks/jsonl_append.py [RECORDS]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from edgecnn.runtime.live.recording import JsonlWriter

RECORD = {"source": "rtsp://cam1/live", "frame": 0, "timestamp": 0.0, "label": "blue", "top": [
    {"label": "blue", "probability": 0.3884}, {"label": "gray", "probability": 0.23647},
    {"label": "green", "probability": 0.22124}], "unknown_score": None, "unknown": False,
    "inference_ms": 1.455, "latency_ms": 6.651, "camera": "door", "model": "72494cb77a6e"}


def per_record_us(records: int, append: bool) -> float:
    with tempfile.TemporaryDirectory(dir=".") as folder:
        writer = JsonlWriter(Path(folder) / "frames.jsonl", append=append)
        start = time.perf_counter()
        for frame in range(records):
            writer.write({**RECORD, "frame": frame})
        writer.close()
        return (time.perf_counter() - start) / records * 1e6


def main() -> None:
    records = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    for _ in range(3):
        default, append = per_record_us(records, False), per_record_us(records, True)
        print(f"default {default:.1f} us/record, --append {append:.1f} us/record, "
              f"ratio {append / default:.2f}")


if __name__ == "__main__":
    main()
