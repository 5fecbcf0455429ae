"""The checkpoint format: weights plus everything export needs (labels, preprocessing, data split).

A plain dict of tensors, strings and numbers, so `torch.load(weights_only=True)` reads it and no
pickled code ever runs. Written atomically: a crash mid-save never leaves a broken `best.pt`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgecnn.errors import EdgecnnError
from edgecnn.runtime.core.bundle import RunSplit
from edgecnn.runtime.core.errors import upgrade_hint
from edgecnn.runtime.core.metadata import Preprocess, labels_problem
from edgecnn.runtime.core.records import Origin, from_dict, short, spec
from edgecnn.unknown import Detector

if TYPE_CHECKING:
    import torch

FORMAT = "edgecnn-checkpoint"
FORMAT_VERSION = 1
FROM_FINETUNE = "give the best.pt that `edgecnn finetune` wrote"


@dataclass(frozen=True)
class CheckpointSplit:
    """The run's images as paths relative to `data_root`, with their class indices: export calibrates on
    train and validates on val, `--resume` trains on the same images."""

    data_root: str = ""  # the run's data folder, resolved
    train: tuple[str, ...] = ()
    val: tuple[str, ...] = ()
    # class indices into the labels, one per image; None: not recorded (the folder names say the class)
    train_labels: tuple[int, ...] | None = None
    val_labels: tuple[int, ...] | None = None
    skipped: tuple[str, ...] = ()  # unreadable files left out

    def run_split(self) -> RunSplit:
        """What the bundle records for eval: the paths without the class indices."""
        return RunSplit(self.data_root, self.train, self.val)

    def to_dict(self) -> dict[str, Any]:
        """As stored in the checkpoint: lists, the shape `edgecnn finetune` has always written."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in asdict(self).items() if value is not None}


@dataclass
class Checkpoint:
    """A trained classifier and its provenance; `training_state` is only needed to resume."""

    arch: str = spec(length=(1, 1000))
    labels: list[str] = spec(check=labels_problem)
    preprocess: Preprocess = spec()
    state_dict: dict[str, torch.Tensor] = spec(raw=True)
    epoch: int = 0
    metrics: dict[str, float] = spec(factory=dict, finite=False)  # a diverged loss is NaN
    args: dict[str, Any] = field(default_factory=dict)
    split: CheckpointSplit | None = None  # None: none recorded (stored as {})
    training_state: dict[str, Any] = field(default_factory=dict)
    unknown: Detector | None = None  # None: from before detectors existed (stored as {})

    def to_payload(self) -> dict[str, Any]:
        # not asdict(self): it deep-copies every tensor (5 s of a 10-epoch head run went there)
        payload = {f.name: getattr(self, f.name) for f in fields(self)}
        payload["preprocess"] = asdict(self.preprocess)
        payload["split"] = self.split.to_dict() if self.split is not None else {}
        payload["unknown"] = self.unknown.to_dict() if self.unknown is not None else {}
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}

    def build_model(self) -> torch.nn.Module:
        """The network with these weights, in eval mode."""
        from edgecnn.models import build_model

        model = build_model(self.arch, num_classes=len(self.labels), pretrained=False).model
        model.load_state_dict(self.state_dict, strict=True)
        return model.eval()

    def check_weights(self, source: str) -> None:
        """EdgecnnError unless the weights fit `arch` with one output per label and are finite: checked
        on a model of shapes only, so a checkpoint claiming 10^6 labels allocates nothing."""
        import torch

        from edgecnn.models import build_model

        with torch.device("meta"):
            wanted = build_model(self.arch, num_classes=len(self.labels), pretrained=False).model.state_dict()
        model_words = f"{self.arch} with {len(self.labels)} labels"
        if (problem := weights_problem(self.state_dict, wanted, model_words)) is not None:
            raise EdgecnnError(f"{source} {problem}; {FROM_FINETUNE}")


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
    origin = Origin(str(path), "is an incomplete edgecnn checkpoint", FROM_FINETUNE, "the checkpoint")
    if from_dict(_Format, payload, origin).format_version > FORMAT_VERSION:
        raise EdgecnnError(f"{path} was written by a newer edgecnn; {upgrade_hint()}")
    checkpoint = from_dict(Checkpoint, payload, origin)
    checkpoint.check_weights(str(path))
    return checkpoint


def weights_problem(state_dict: Any, wanted: dict[str, torch.Tensor], model: str) -> str | None:
    """What keeps `state_dict` from loading into `model` (in words) whose (meta) state dict is `wanted`."""
    import torch

    if not isinstance(state_dict, dict) or not all(isinstance(key, str) for key in state_dict):
        return f"holds a state_dict of {type(state_dict).__name__}, not an object of named tensors"
    for name, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            return f"holds {short(value)} as {short(name)}, not a tensor"
    missing = [key for key in wanted if key not in state_dict]
    unexpected = [key for key in state_dict if key not in wanted]
    if missing or unexpected:
        said = [f"{len(group)} {what} (first {short(group[0])})" for group, what in
                ((missing, "missing"), (unexpected, "unexpected")) if group]
        return f"holds weights that do not fit {model}: {' and '.join(said)}"
    for name, want in wanted.items():
        if tuple(state_dict[name].shape) != tuple(want.shape):
            return (f"holds {name} of shape {list(state_dict[name].shape)} where {model} needs "
                    f"{list(want.shape)}")
        if state_dict[name].is_floating_point() and not bool(torch.isfinite(state_dict[name]).all()):
            return f"holds NaN or infinite weights in {name} (a diverged run)"
    return None


def check_arg_types(args: dict[str, Any], defaults: dict[str, Any], texts: dict[str, str]) -> None:
    """EdgecnnError for the first recorded option whose value is not of its default's type (`texts`
    names the options recorded as text whatever their default)."""
    for name, value in args.items():
        default = texts.get(name, defaults.get(name))
        kind = float if isinstance(default, float) else type(default)
        if default is None or (type(value) is kind) or (kind is float and type(value) is int):
            continue
        raise EdgecnnError(f"{name} is {short(value)}, not {_KIND_WORDS.get(kind, kind.__name__)}")


_KIND_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a text"}


@dataclass(frozen=True)
class _Format:
    """The format version alone, read before the fields whose meaning it decides."""

    format_version: int = 0
