"""The PyTorch eager FP32 baseline of `edgecnn bench --baseline torch`: training side, needs [train].

Run as `python -m edgecnn.torch_baseline ARCH CLASSES BATCH HEIGHT WIDTH THREADS SECONDS`; prints one
JSON line {"times_ms": [...], "threads": N}. `bench` starts it in its own process only when torch is
installed, so the runtime never imports torch.
"""

from __future__ import annotations

import json
import sys
import time


def eager_times_ms(arch: str, classes: int, batch: int, height: int, width: int, threads: int,
                   seconds: float) -> tuple[list[float], int]:
    """Batch latencies of the architecture in eager FP32 (same compute as the bundle; fresh head weights)."""
    import torch

    from edgecnn.models import build_model

    if threads:
        torch.set_num_threads(threads)
    model = build_model(arch, num_classes=classes, pretrained=classes == 1000).model.eval()
    x = torch.randn(batch, 3, height, width)
    times: list[float] = []
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(times) < 10:
            start = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - start) * 1e3)
    return times, torch.get_num_threads()


def main(argv: list[str]) -> None:
    arch, classes, batch, height, width, threads, seconds = argv
    times, used = eager_times_ms(arch, int(classes), int(batch), int(height), int(width), int(threads),
                                 float(seconds))
    print(json.dumps({"times_ms": times, "threads": used}))


if __name__ == "__main__":
    main(sys.argv[1:])
