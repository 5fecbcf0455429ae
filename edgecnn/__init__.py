"""edgecnn: fine-tune, export and run image classifiers on edge devices."""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"

# In a source tree, `export/` and `runtime/` sit beside this folder, not inside it, and a
# plain `python -m pytest` or `python -c` from the repo root imports this folder instead of
# the installed package. Extending __path__ with the repo root makes `edgecnn.export` and
# `edgecnn.runtime` resolve there too; installed copies already hold both subpackages.
_root = Path(__file__).resolve().parent.parent
if (_root / "pyproject.toml").is_file() and (_root / "runtime" / "__init__.py").is_file():
    __path__.append(str(_root))
