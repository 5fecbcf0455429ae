"""Where edgecnn keeps what it can rebuild: $XDG_CACHE_HOME/edgecnn, by default ~/.cache/edgecnn.

The runtime's compiled OpenVINO models go into its `openvino/` folder, fine-tuning's exported backbones
into `backbones/`. One rule for both, so one environment variable moves (or a read-only home disables)
all of it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def cache_root() -> Path | None:
    """$XDG_CACHE_HOME/edgecnn when XDG_CACHE_HOME is an absolute path, else ~/.cache/edgecnn; None when
    there is no home folder to put it in. Not created here: callers check that they can write it."""
    base = os.environ.get("XDG_CACHE_HOME") or ""
    if os.path.isabs(base):
        return Path(base) / "edgecnn"
    try:
        return Path.home() / ".cache" / "edgecnn"
    except RuntimeError:  # no HOME and no passwd entry
        return None


def import_matplotlib() -> Any:
    """`import matplotlib`, its font cache and config folder (MPLCONFIGDIR, unless the user set one) in
    our cache's `matplotlib/` rather than ~/.config/matplotlib and ~/.cache/matplotlib.

    matplotlib creates both on first import; its font list is rebuildable, so it lives with the rest of
    what edgecnn keeps. Without a home folder matplotlib makes a temporary one itself.
    """
    root = cache_root()
    if root is not None and not os.environ.get("MPLCONFIGDIR"):
        os.environ["MPLCONFIGDIR"] = str(root / "matplotlib")
    import matplotlib

    return matplotlib
