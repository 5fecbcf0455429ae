"""`info`: what a model is (metadata, files of a bundle) and what this machine can run it on."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
from typing import Any

from edgecnn.runtime.core import devices
from edgecnn.runtime.core.backends import registry
from edgecnn.runtime.core.bundle import Bundle
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.metadata import ModelMeta


def machine_info() -> dict[str, Any]:
    """Installed backends with versions, ORT providers (listed vs usable), OpenVINO devices with names."""
    found: dict[str, Any] = {"backends": {}, "available": devices.available()}
    for entry in registry.BACKENDS:
        if devices.has_module(entry.module):
            details = entry.machine() if entry.machine is not None else {}
            found["backends"][entry.name] = {"version": _version(entry.distributions), **details}
    return found


def model_info(path: Path) -> dict[str, Any]:
    """Metadata of a model file, or of every model in a bundle with its accuracy-check verdict."""
    if path.is_dir():
        models = {m.rel: _file_info(m.path, None if m.report is None else m.passed)
                  for m in Bundle(path).models()}
        return {"bundle": str(path), "models": models}
    if not path.exists():
        raise EdgecnnError(f"{path} does not exist; give {registry.file_kinds()}")
    return {"model": str(path), **_file_info(path, None)}


def _file_info(path: Path, passed: bool | None) -> dict[str, Any]:
    meta = ModelMeta.read(path)
    data: dict[str, Any] = {"size_mb": round(_size(path) / 1e6, 2)}  # MB = 10^6 bytes, as export reports
    if passed is not None:
        data["accuracy_check_passed"] = passed
    if meta is None:
        data["metadata"] = None
        return data
    data["metadata"] = json.loads(meta.to_json())
    return data


def _size(path: Path) -> int:
    weights = path.with_suffix(".bin")
    return path.stat().st_size + (weights.stat().st_size if path.suffix == ".xml" and weights.exists() else 0)


def _version(dists: tuple[str, ...]) -> str:
    for dist in dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"
