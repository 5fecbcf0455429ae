"""torch for the training side: imported with the install hint when [train] is missing, and the device."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgecnn.runtime.core.errors import EdgecnnError, install_hint

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda")


def import_torch():
    """torch, or the one-line install hint when the [train] extra is missing."""
    try:
        import torch
    except ImportError as exc:
        raise EdgecnnError(f"training needs PyTorch: {install_hint('train')}") from exc
    return torch


def pick_device(name: str) -> torch.device:
    torch = import_torch()
    if name not in DEVICES:
        raise EdgecnnError(f"unknown device {name!r}; available: {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise EdgecnnError("device cuda asked for but PyTorch sees no CUDA GPU; use --device cpu or auto")
    return torch.device("cuda" if name != "cpu" and torch.cuda.is_available() else "cpu")
