"""torch for the training side: imported with the install hint when [train] is missing, and the device."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgecnn.runtime.core.devices import device_kind
from edgecnn.runtime.core.errors import EdgecnnError, install_hint

if TYPE_CHECKING:
    import torch

# The runtime's vocabulary (gpu: CUDA for PyTorch); npu runs exported models only.
TRAIN_DEVICES = ("auto", "cpu", "gpu")


def check_train_device(name: str) -> str:
    """The training device in the runtime's words; "cuda" is gpu, npu is refused with what to use."""
    kind = device_kind(name)
    if kind == "npu":
        raise EdgecnnError("--device npu runs exported models (predict, eval, bench, camera); "
                           "finetune trains on auto, cpu or gpu")
    if kind not in TRAIN_DEVICES:
        raise EdgecnnError(f"unknown device {name!r}; choose one of {', '.join(TRAIN_DEVICES)} "
                           "(cuda is taken as gpu)")
    return kind


def import_torch():
    """torch, or the one-line install hint when the [train] extra is missing."""
    return import_train("torch", "PyTorch")


def import_train(module: str, what: str) -> Any:
    """A module of the [train] extra, or one line saying what to install when it is missing."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise EdgecnnError(f"training needs {what}: {install_hint('train')}") from exc


def pick_device(name: str) -> torch.device:
    """The torch device for `--device` (auto | cpu | gpu, cuda accepted): gpu is PyTorch's CUDA device."""
    torch = import_torch()
    kind = check_train_device(name)
    if kind == "gpu" and not torch.cuda.is_available():
        raise EdgecnnError("--device gpu asked for but PyTorch sees no CUDA GPU; use --device cpu or auto")
    return torch.device("cuda" if kind != "cpu" and torch.cuda.is_available() else "cpu")
