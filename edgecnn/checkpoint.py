"""The checkpoint format: weights plus everything export needs (labels, preprocessing, data split).

A plain dict of tensors, strings and numbers, so `torch.load(weights_only=True)` reads it and no
pickled code ever runs. Written atomically: a crash mid-save never leaves a broken `best.pt`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgecnn.errors import EdgecnnError
from edgecnn.runtime.core.errors import upgrade_hint
from edgecnn.runtime.core.metadata import Preprocess

if TYPE_CHECKING:
    import torch

FORMAT = "edgecnn-checkpoint"
FORMAT_VERSION = 1
FROM_FINETUNE = "give the best.pt that `edgecnn finetune` wrote"


@dataclass
class Checkpoint:
    """A trained classifier and its provenance; `training_state` is only needed to resume."""

    arch: str
    labels: list[str]
    preprocess: Preprocess
    state_dict: dict[str, torch.Tensor]
    epoch: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    args: dict[str, Any] = field(default_factory=dict)
    # data_root plus file paths relative to it: export calibrates on train and validates on val
    split: dict[str, Any] = field(default_factory=dict)
    training_state: dict[str, Any] = field(default_factory=dict)
    # the unknown detector (edgecnn.unknown.Detector.to_dict); empty in checkpoints from before it existed
    unknown: dict[str, Any] = field(default_factory=dict)

    def to_payload(self) -> dict[str, Any]:
        # not asdict(self): it deep-copies every tensor (5 s of a 10-epoch head run went there)
        payload = {f.name: getattr(self, f.name) for f in fields(self)}
        payload["preprocess"] = asdict(self.preprocess)
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}

    def build_model(self) -> torch.nn.Module:
        """The network with these weights, in eval mode."""
        from edgecnn.models import build_model

        model = build_model(self.arch, num_classes=len(self.labels), pretrained=False).model
        model.load_state_dict(self.state_dict, strict=True)
        return model.eval()


def save_checkpoint(checkpoint: Checkpoint, path: Path) -> Path:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    import torch

    from edgecnn.runtime.core.outputs import AtomicPath

    with AtomicPath(path) as temp:
        torch.save(checkpoint.to_payload(), temp)
    return path


def load_checkpoint(path: Path) -> Checkpoint:
    """Read an edgecnn checkpoint safely (`weights_only=True`); EdgecnnError for anything else."""
    import torch

    path = Path(path)
    if path.is_dir():
        path = path / "best.pt"
    if not path.is_file():
        raise EdgecnnError(f"checkpoint {path} does not exist; {FROM_FINETUNE}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # re-raised as one line: truncated zips, pickles with code, random bytes
        refused = "GLOBAL" in str(exc)  # a pickled reference to code, which weights_only will not run
        reason = "it holds pickled code, refused" if refused else "truncated or not a checkpoint"
        raise EdgecnnError(f"cannot load checkpoint {path}: {reason}; re-run `edgecnn finetune`") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise EdgecnnError(f"{path} is not an edgecnn checkpoint; {FROM_FINETUNE}")
    if int(payload.get("format_version", 0)) > FORMAT_VERSION:
        raise EdgecnnError(f"{path} was written by a newer edgecnn; {upgrade_hint()}")
    try:
        return Checkpoint(
            arch=str(payload["arch"]), labels=[str(x) for x in payload["labels"]],
            preprocess=Preprocess.from_dict(payload["preprocess"], str(path)),
            state_dict=payload["state_dict"],
            epoch=int(payload.get("epoch", 0)), metrics=dict(payload.get("metrics", {})),
            args=dict(payload.get("args", {})), split=dict(payload.get("split", {})),
            training_state=dict(payload.get("training_state", {})),
            unknown=dict(payload.get("unknown") or {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise EdgecnnError(f"{path} is an incomplete edgecnn checkpoint ({exc}); {FROM_FINETUNE}") from exc
