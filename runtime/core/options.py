"""One table owns every number a command takes: floats finite, counts in a sane range, range in the message.

`edgecnn.cli` runs `check_options` over each command's options before the command starts, so `--seconds
inf`, `--reconnect-timeout nan`, `--threads 10000` or `--seed 10**22` end in one line instead of a loop
that never ends, ten thousand threads or an overflow deep inside a library. The configs that take the
same values (`FinetuneConfig`, the camera's) check them with `check_range` against the same table, so a
range and its message are written once: no Typer `min=`/`max=` on these options.
"""

from __future__ import annotations

import math
import os
from typing import Any

from edgecnn.runtime.core.errors import EdgecnnError

_CORES = os.cpu_count() or 1
# option (Python name) -> (lowest, highest). Options the library already range-checks with a message of
# its own (--top-k against the classes, --smooth, --min-prob, --width...) are only checked for finiteness.
RANGES: dict[str, tuple[float, float]] = {
    "threads": (1, max(64, 4 * _CORES)),
    "workers": (0, max(16, 2 * _CORES)),
    "nproc": (1, 256),
    "batch": (1, 4096),
    "batch_size": (1, 4096),
    "max_batch": (1, 4096),
    "instances": (1, 64),
    "nstreams": (1, 64),  # OpenVINO streams: one per core is the most that helps
    "nireq": (1, 1024),  # requests in flight: each holds its own input and output buffers
    "seed": (0, 2**32 - 1),
    "epochs": (0, 10_000),
    "head_epochs": (0, 10_000),
    "patience": (1, 10_000),
    "calibration_size": (1, 100_000),
    "http_port": (1, 65535),
    "grpc_port": (1, 65535),
    "metrics_port": (1, 65535),
    "seconds": (0.01, 86400.0),
    "reconnect_timeout": (0.0, 86400.0),
    "dist_timeout": (1.0, 86400.0),
    "fps": (0.0, 1000.0),  # 0 and below: the camera check says "must be positive"
    "lr": (0.0, 10.0),
    "max_drop": (-100.0, 100.0),  # below 0: INT8 must gain accuracy (fails on purpose)
    "vid_stride": (1, 1_000_000),
}
LOWEST_MEANS = {"vid_stride": "every frame"}  # said after the lowest value: "give 1 (every frame) to ..."
OPTION_NAMES = {"json_out": "--json"}


def check_options(values: dict[str, Any]) -> None:
    """EdgecnnError for the first option that is NaN/infinite or outside its range in RANGES."""
    for name, value in values.items():
        check_range(name, value)


def check_range(name: str, value: Any) -> None:
    """EdgecnnError when the option `name` (its Python name) holds a NaN/infinite number or one outside
    its range in RANGES; anything not a number passes."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    option = OPTION_NAMES.get(name, "--" + name.replace("_", "-"))
    low, high = RANGES.get(name, (-math.inf, math.inf))
    if isinstance(value, float) and not math.isfinite(value):
        wanted = f"a number from {_show(low)} to {_show(high)}" if name in RANGES else "a finite number"
        raise EdgecnnError(f"{option} {value} is not a usable number; give {wanted}")
    if not low <= value <= high:
        raise EdgecnnError(f"{option} {_show(value)} is out of range; give {span(name)}")


def span(name: str) -> str:
    """The range of option `name` in words, "1 (every frame) to 1000000": for its message and its --help."""
    low, high = RANGES[name]
    lowest = f"{_show(low)} ({LOWEST_MEANS[name]})" if name in LOWEST_MEANS else _show(low)
    return f"{lowest} to {_show(high)}"


def _show(value: float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    text = str(value)
    return text if len(text) <= 24 else f"{value:.3g}"


def parse_count(text: str) -> int | None:
    """A whole number typed by the user, ASCII digits only ('²' passes str.isdigit but not int())."""
    if not text.isascii() or not text.isdigit():
        return None
    return int(text)
