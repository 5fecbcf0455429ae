"""`python -m edgecnn` with one rank made to fail: the distributed tests' fault injection, outside edgecnn.

EDGECNN_TEST_FAULT="RANK|*:raise|hang:features|full" makes that rank raise (or hang) as it starts
computing the head's features or as the full phase starts. The patches are made at import, so the
processes torchrun starts (`-m tests.edgecnn.faulty_edgecnn`) and those the elastic launcher spawns
(which re-import this main module) fail alike.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

import edgecnn.finetune

FAULT = os.environ.get("EDGECNN_TEST_FAULT", "")


def fail_here(rank: int, point: str) -> None:
    wanted, action, _ = FAULT.split(":")
    if wanted in ("*", str(rank)):
        if action == "hang":
            time.sleep(3600)
        raise RuntimeError(f"EDGECNN_TEST_FAULT: rank {rank} failed on purpose at {point}")


def inject() -> None:
    point = FAULT.rsplit(":", 1)[-1] if FAULT.count(":") == 2 else ""
    if point == "features":
        original = edgecnn.finetune.cached_features

        @functools.wraps(original)
        def cached_features(model: Any, loader: Any, dist: Any, *args: Any, **kwargs: Any) -> Any:
            fail_here(dist.rank, point)
            return original(model, loader, dist, *args, **kwargs)

        edgecnn.finetune.cached_features = cached_features
    elif point == "full":
        original_phase = edgecnn.finetune.Run._full_phase

        @functools.wraps(original_phase)
        def full_phase(self: Any) -> Any:
            fail_here(self.dist.rank, point)
            return original_phase(self)

        edgecnn.finetune.Run._full_phase = full_phase
    elif FAULT:
        raise SystemExit(f"EDGECNN_TEST_FAULT={FAULT!r}: give RANK|*:raise|hang:features|full")


inject()

if __name__ == "__main__":  # not when a spawned training process re-imports this module
    from edgecnn.cli import main

    main()
