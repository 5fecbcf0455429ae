"""ONNX Runtime's histogram calibration (Percentile, Entropy) in strides: memory bounded by the stride,
every calibration image still counted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edgecnn.export import quantize
from edgecnn.export.images import ImageSet, batches
from edgecnn.runtime.core.images import iter_image_files
from edgecnn.runtime.core.metadata import Preprocess

PREPROCESS = Preprocess(input_size=(64, 64))


def images(folder: Path, count: int) -> ImageSet:
    return ImageSet(tuple(list(iter_image_files(folder))[:count]))


@pytest.mark.parametrize(("count", "stride"), [(20, 8), (16, 8), (3, 8), (7, 1)])
def test_strided_ranges_cover_every_batch_once(sample_photos: Path, count: int, stride: int) -> None:
    """ORT's strided loop (len must be a multiple of the stride, then set_range per stride) reads every
    batch exactly once and never meets an empty range, whatever the count."""
    reader = quantize.ranged_reader(images(sample_photos, count), PREPROCESS, 1, stride)
    assert len(reader) % stride == 0
    seen = []
    for start in range(0, len(reader), stride):
        reader.set_range(start_index=start, end_index=start + stride)
        chunk = list(iter(reader.get_next, None))
        assert 0 < len(chunk) <= stride
        seen += [item[quantize.INPUT_NAME] for item in chunk]
    assert len(seen) == count and all(batch.shape == (1, 64, 64, 3) for batch in seen)
    assert len({batch.tobytes() for batch in seen}) == count  # each image once, in order


def test_unreadable_calibration_images_only_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(quantize.EdgecnnError, match="none of the calibration images could be read"):
        quantize.ranged_reader(ImageSet((tmp_path / "broken.jpg",)), PREPROCESS, 1, 8)


def test_percentile_calibration_holds_one_stride_of_activations(imagenet_bundle: Path, sample_photos: Path,
                                                                tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The histogram collector gets at most HISTOGRAM_STRIDE batches at a time (ORT kept them all: 65 MB
    per image, ~20 GB for 300), and all of them in the end; INT8 still answers as FP32 does."""
    import onnxruntime as ort
    from onnxruntime.quantization.calibrate import HistogramCollector

    sizes: list[int] = []
    collect = HistogramCollector.collect

    def counted(self: Any, name_to_arr: dict[str, list[Any]]) -> Any:
        sizes.append(max(len(arrays) for arrays in name_to_arr.values()))
        return collect(self, name_to_arr)

    monkeypatch.setattr(HistogramCollector, "collect", counted)
    monkeypatch.setattr(quantize, "HISTOGRAM_STRIDE", 4)
    from edgecnn.runtime import load

    with load(imagenet_bundle, backend="onnxruntime", precision="fp32") as engine:
        preprocess = engine.preprocess
    prepared = quantize.prepare_onnx(imagenet_bundle / "model.onnx", tmp_path)
    out, _ = quantize.quantize_onnx(prepared, tmp_path / "int8.onnx", images(sample_photos, 10), preprocess,
                                    quantize.OnnxRecipe("percentile", "percentile"))
    assert sizes == [4, 4, 2]
    batch = np.concatenate([frames for frames, _ in batches(images(sample_photos, 10), preprocess, 1)])
    fp32, int8 = (ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
                  for path in (imagenet_bundle / "model.onnx", out))
    tops = [session.run(None, {quantize.INPUT_NAME: batch})[0].argmax(axis=1) for session in (fp32, int8)]
    assert (tops[0] == tops[1]).sum() >= 8, tops
