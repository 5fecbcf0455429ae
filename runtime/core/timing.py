"""Latency statistics shared by `bench` and its baselines."""

from __future__ import annotations

import numpy as np


def summarize(times_ms: list[float]) -> dict[str, float]:
    """Median, p90, p99, min, max and mean of per-run times, and how many runs."""
    values = np.asarray(times_ms)
    return {"median": float(np.median(values)), "p90": float(np.percentile(values, 90)),
            "p99": float(np.percentile(values, 99)), "min": float(values.min()), "max": float(values.max()),
            "mean": float(values.mean()), "runs": int(values.size)}
