"""The one metadata schema: written into models by export, read back by the runtime.

Torch-free on purpose: the runtime on an edge device reads it with ONNX Runtime or OpenVINO alone.
A model carries everything needed to use it (labels, input size, how to fit a frame, accuracy), so
callers pass nothing but images.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgecnn.runtime.errors import EdgecnnError

SCHEMA_VERSION = 1
META_KEY = "edgecnn_meta"  # ONNX metadata_props key and OpenVINO rt_info key


@dataclass(frozen=True)
class Preprocess:
    """How a uint8 frame is fitted to the model; normalisation lives inside edgecnn graphs."""

    input_size: tuple[int, int] = (224, 224)  # (height, width)
    resize: str = "shorter_crop"  # "shorter_crop": shorter side to size/crop_fraction, centre crop; "stretch"
    crop_fraction: float = 0.875
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # on the 0..1 scale
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    color_order: str = "RGB"
    layout: str = "NHWC"
    normalize_in_graph: bool = True  # False: caller feeds float NCHW normalised with mean/std

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocess:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("input_size", "mean", "std"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)


@dataclass(frozen=True)
class ModelMeta:
    """What a model is: labels, preprocessing, provenance and measured accuracy."""

    labels: tuple[str, ...]
    preprocess: Preprocess = field(default_factory=Preprocess)
    arch: str = ""
    precision: str = "fp32"  # fp32 | fp16 | int8
    softmax_in_graph: bool = True
    accuracy: dict[str, float] = field(default_factory=dict)
    edgecnn_version: str = ""
    created: str = ""
    schema_version: int = SCHEMA_VERSION

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def to_json(self) -> str:
        data = asdict(self)
        data["labels"] = list(self.labels)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> ModelMeta:
        try:
            data = json.loads(text)
            if int(data.get("schema_version", 0)) > SCHEMA_VERSION:
                raise EdgecnnError(
                    f"{source} was written by a newer edgecnn (metadata schema "
                    f"{data['schema_version']}); upgrade: pip install -U edgecnn"
                )
            pre = Preprocess.from_dict(data.pop("preprocess", {}))
            data["labels"] = tuple(str(label) for label in data["labels"])
            data = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
            return cls(preprocess=pre, **data)
        except (ValueError, KeyError, TypeError) as exc:
            raise EdgecnnError(f"{source} has unreadable edgecnn metadata ({exc}); re-export it") from exc

    def stamped(self, **changes: Any) -> ModelMeta:
        """A copy with the version and creation time of now, plus `changes`."""
        from dataclasses import replace

        from edgecnn import __version__

        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return replace(self, edgecnn_version=__version__, created=now, **changes)

    # -- writing (export side) -------------------------------------------------------------
    def write_onnx(self, model: Any) -> None:
        """Store the metadata in an `onnx.ModelProto`'s metadata_props (replacing ours)."""
        kept = [p for p in model.metadata_props if p.key != META_KEY]
        del model.metadata_props[:]
        model.metadata_props.extend(kept)
        entry = model.metadata_props.add()
        entry.key, entry.value = META_KEY, self.to_json()

    def write_openvino(self, model: Any) -> None:
        """Store the metadata in an `openvino.Model`'s rt_info."""
        model.set_rt_info(self.to_json(), [META_KEY])

    # -- reading (runtime side) ------------------------------------------------------------
    @classmethod
    def from_mapping(cls, mapping: dict[str, str], source: str) -> ModelMeta | None:
        """Metadata from ONNX Runtime's custom_metadata_map; None when the model has none."""
        text = mapping.get(META_KEY)
        return None if text is None else cls.from_json(text, source)

    @classmethod
    def from_openvino(cls, model: Any, source: str) -> ModelMeta | None:
        if not model.has_rt_info([META_KEY]):
            return None
        value = model.get_rt_info([META_KEY])  # an OVAny: str() of it is "<OVAny class>", not the text
        return cls.from_json(value.astype(str) if hasattr(value, "astype") else str(value), source)

    @classmethod
    def read(cls, path: str | Path) -> ModelMeta | None:
        """Read the metadata of a `.onnx` or OpenVINO `.xml` file (None when it has none)."""
        path = Path(path)
        if path.suffix == ".onnx":
            from edgecnn.runtime.backends.onnxruntime import open_session

            session = open_session(path, providers=["CPUExecutionProvider"])
            return cls.from_mapping(session.get_modelmeta().custom_metadata_map, str(path))
        if path.suffix == ".xml":
            from edgecnn.runtime.backends.openvino import read_model

            return cls.from_openvino(read_model(path), str(path))
        raise EdgecnnError(f"{path} is not a model file; give a .onnx, an OpenVINO .xml or a bundle folder")


def read_labels(path: str | Path) -> tuple[str, ...]:
    """Labels from a text file, one per line (blank lines ignored)."""
    path = Path(path)
    try:
        labels = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgecnnError(f"cannot read labels file {path}: {exc}") from exc
    if not labels:
        raise EdgecnnError(f"labels file {path} is empty; put one class name per line")
    return labels
