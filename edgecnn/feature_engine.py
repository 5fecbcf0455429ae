"""The frozen backbone on the deployment engine: pooled features 4-5x faster than PyTorch eager on a CPU.

The backbone (up to the pooled features, no classifier) is exported to ONNX once per architecture, input
size and weights, and kept in a cache folder; OpenVINO compiles it with f32 inference precision (so its
features equal PyTorch's, ~2e-6 relative) and keeps the compiled blob, or ONNX Runtime runs it where
OpenVINO is missing. `verified` compares a few images with PyTorch before the engine is trusted.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import warnings
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edgecnn.runtime.core.errors import EdgecnnError

if TYPE_CHECKING:
    import torch

    from edgecnn.runtime.core.backends.base import Backend

log = logging.getLogger("edgecnn")
ENGINES = ("auto", "openvino", "onnxruntime", "torch")
# Images per engine call: batches go in chunks of 32, the rest in zero-padded chunks of 4, so two static
# OpenVINO compiles (~15 % faster than one dynamic-shape compile) serve every batch and stay cached.
CHUNK, SMALL_CHUNK = 32, 4
PARITY_IMAGES = SMALL_CHUNK
PARITY_TOLERANCE = 1e-4  # of the largest feature; OpenVINO f32 measured 2e-6, a bf16 or broken graph ~1e-2


class Pending:
    """Features being computed: `result()` waits for every chunk and joins them."""

    def __init__(self, chunks: list[Future], keep: Any = None, count: int | None = None) -> None:
        self.chunks, self.count = chunks, count  # count: rows wanted, before padding
        self._keep = keep  # the input, which the engine reads in place until its chunks are done

    def result(self) -> torch.Tensor:
        import numpy as np
        import torch

        parts = [chunk.result() for chunk in self.chunks]
        self._keep = None
        return torch.as_tensor(np.concatenate(parts) if len(parts) > 1 else parts[0])[: self.count]


class FeatureEngine(Protocol):
    """Pooled features of normalised NCHW float pixels, started without waiting."""

    name: str

    def submit(self, pixels: torch.Tensor) -> Pending: ...

    def close(self) -> None: ...


class TorchFeatures:
    """PyTorch eager on the model's own device (fp16 autocast on CUDA, as before)."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, device: torch.device) -> None:
        self.model, self.device = model, device

    def submit(self, pixels: torch.Tensor) -> Pending:
        import torch

        self.model.eval()
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.float16,
                                                    enabled=self.device.type == "cuda"):
            maps = self.model.forward_features(pixels.to(self.device, memory_format=torch.channels_last))
            pooled = self.model.forward_head(maps, pre_logits=True).float().cpu()
        done: Future = Future()
        done.set_result(pooled)
        return Pending([done])

    def close(self) -> None:
        pass


class BackendFeatures:
    """A runtime backend (OpenVINO or ONNX Runtime) running the exported backbone, CHUNK images a call."""

    def __init__(self, backend: Backend, folder: tempfile.TemporaryDirectory | None = None) -> None:
        self.backend, self.name, self._folder = backend, backend.name, folder

    def submit(self, pixels: torch.Tensor) -> Pending:
        import numpy as np

        array = pixels.float().contiguous().numpy()
        count = len(array)
        whole = count - count % CHUNK
        padded = -(-(count - whole) // SMALL_CHUNK) * SMALL_CHUNK  # the rest in small chunks, zero-padded
        if padded > count - whole:
            array = np.concatenate([array, np.zeros((whole + padded - count, *array.shape[1:]), array.dtype)])
        starts = [*range(0, whole, CHUNK), *range(whole, whole + padded, SMALL_CHUNK)]
        chunks = [self.backend.submit(array[start : start + (CHUNK if start < whole else SMALL_CHUNK)])
                  for start in starts]
        return Pending(chunks, keep=array, count=count)

    def close(self) -> None:
        self.backend.close()
        if self._folder is not None:
            self._folder.cleanup()


def open_engine(name: str, model: torch.nn.Module, input_size: tuple[int, int], device: torch.device,
                threads: int | None = None) -> FeatureEngine:
    """The feature engine `name` (auto: OpenVINO, else ONNX Runtime, else PyTorch; PyTorch on a GPU)."""
    if name not in ENGINES:
        raise EdgecnnError(f"unknown feature engine {name!r}; available: {', '.join(ENGINES)}")
    if name == "torch" or (name == "auto" and device.type != "cpu"):
        return TorchFeatures(model, device)
    candidates = ("openvino", "onnxruntime") if name == "auto" else (name,)
    available = [engine for engine in candidates if _installed(engine)]
    if not available:
        if name != "auto":
            raise EdgecnnError(f"--feature-engine {name} needs the {name} package: pip install {name}; "
                               "or use --feature-engine auto")
        return TorchFeatures(model, device)
    if device.type != "cpu":
        raise EdgecnnError(f"--feature-engine {name} runs on the CPU; use --device cpu, or "
                           "--feature-engine torch (or auto) on a GPU")
    return _open_backend(available[0], model, input_size, threads)


def _installed(engine: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(engine) is not None


def _open_backend(engine: str, model: torch.nn.Module, input_size: tuple[int, int],
                  threads: int | None) -> BackendFeatures:
    cache, temporary = cache_folder(), None
    if cache is None:  # unwritable: export for this run only
        temporary = tempfile.TemporaryDirectory(prefix="edgecnn-backbone-")
        cache = Path(temporary.name)
    path = export_backbone(model, input_size, cache / "backbones")
    if engine == "openvino":
        from edgecnn.runtime.core.backends.openvino import OpenVinoBackend, core

        backend: Any = OpenVinoBackend(path, "CPU", hint="latency", precision="f32", threads=threads,
                                       cache_dir=cache / "openvino", model=core().read_model(str(path)),
                                       batch=CHUNK)
    else:
        from edgecnn.runtime.core.backends.onnxruntime import OnnxRuntimeBackend

        backend = OnnxRuntimeBackend(path, ["CPUExecutionProvider"], threads=threads)
    return BackendFeatures(backend, temporary)


def cache_folder() -> Path | None:
    """$XDG_CACHE_HOME/edgecnn (default ~/.cache/edgecnn) when writable, else None (with a note)."""
    from edgecnn.runtime.core.cache import cache_root
    from edgecnn.runtime.core.outputs import check_writable

    folder = cache_root()
    if folder is None:
        log.warning("there is no home folder for the cache; the backbone is exported for this run only "
                    "(set XDG_CACHE_HOME to a writable folder to keep it)")
        return None
    try:
        check_writable(folder, "cache folder")
        (folder / "backbones").mkdir(parents=True, exist_ok=True)
    except (EdgecnnError, OSError):
        log.warning("cache folder %s is not writable; the backbone is exported for this run only "
                    "(set XDG_CACHE_HOME to a writable folder to keep it)", folder)
        return None
    return folder


def export_backbone(model: torch.nn.Module, input_size: tuple[int, int], folder: Path) -> Path:
    """`folder`/<name>.onnx of the backbone up to the pooled features (dynamic batch, float NCHW input);
    the name holds the architecture, input size and a hash of the backbone's weights, so a file is reused
    exactly when it computes the same features."""
    height, width = input_size
    arch = str(getattr(model, "default_cfg", {}).get("architecture", type(model).__name__))
    path = folder / f"{arch}-{height}x{width}-{backbone_digest(model)}.onnx"
    if not path.is_file():
        _export(model, input_size, path)
    return path


def backbone_digest(model: torch.nn.Module) -> str:
    """A hash of every weight and buffer outside the classifier (whose weights the features ignore)."""
    head = {id(t) for t in model.get_classifier().state_dict(keep_vars=True).values()}
    digest = hashlib.blake2b(digest_size=8)
    for key, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) not in head:
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _export(model: torch.nn.Module, input_size: tuple[int, int], path: Path) -> None:
    """Trace with the legacy exporter (one file, dynamic batch), slim the TF-"same" padding, save
    atomically (two processes exporting at once both end with a whole file)."""
    import onnx
    import torch

    from edgecnn.export.onnx import save_onnx, slim

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            return self.model.forward_head(self.model.forward_features(pixels), pre_logits=True)

    path.parent.mkdir(parents=True, exist_ok=True)
    training = model.training
    folder = Path(tempfile.mkdtemp(dir=path.parent, prefix=".export-"))
    try:
        raw = folder / "raw.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter is chosen on purpose
            torch.onnx.export(Pooled().eval(), (torch.zeros(1, 3, *input_size),), str(raw),
                              input_names=["pixels"], output_names=["features"],
                              dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}},
                              opset_version=17, do_constant_folding=True, dynamo=False)
        save_onnx(slim(onnx.load(str(raw))), path)
    finally:
        model.train(training)
        shutil.rmtree(folder, ignore_errors=True)


def verified(engine: FeatureEngine, model: torch.nn.Module, device: torch.device,
             pixels: torch.Tensor) -> FeatureEngine:
    """`engine` if its features of `pixels` (a few images) match PyTorch's, else PyTorch, with a note."""
    if isinstance(engine, TorchFeatures):
        return engine
    reference = TorchFeatures(model, device).submit(pixels).result()
    try:
        ours = engine.submit(pixels).result()
        error = float((ours - reference).abs().max()) / max(1.0, float(reference.abs().max()))
    except Exception as exc:  # noqa: BLE001 - any engine failure means: use PyTorch
        error, reason = float("inf"), f"it failed ({type(exc).__name__}: {exc})"
    else:
        reason = f"its features differ from PyTorch's by {error:.1e} (tolerance {PARITY_TOLERANCE:.0e})"
    if error <= PARITY_TOLERANCE:
        return engine
    log.warning("feature engine %s not used: %s; computing features with PyTorch", engine.name, reason)
    engine.close()
    return TorchFeatures(model, device)
