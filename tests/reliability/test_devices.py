"""One device vocabulary for every command (auto | cpu | gpu | npu): PyTorch's "cuda" is gpu, said so."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.reliability.conftest import assert_user_error, run_cli


@pytest.mark.parametrize("word", ["cuda", "CUDA"])
def test_cuda_is_gpu_for_a_runtime_command(word: str, hand_bundle: Path, tmp_path: Path) -> None:
    image = tmp_path / "red.png"
    cv2.imwrite(str(image), np.full((40, 40, 3), (0, 0, 255), np.uint8))
    result = run_cli("predict", hand_bundle, image, "--device", word)
    assert f"note: --device {word} is called gpu in edgecnn (every command); using gpu" in result.output
    if result.exit_code != 0:  # no GPU here: the usual one-line error, in the gpu word
        assert_user_error(result, "device gpu", "not available here")


def test_cuda_is_gpu_for_finetune_too(tmp_path: Path) -> None:
    import torch

    from edgecnn.device import pick_device

    if torch.cuda.is_available():
        assert pick_device("cuda").type == pick_device("gpu").type == "cuda"
    else:
        for word in ("cuda", "gpu"):
            with pytest.raises(Exception, match="--device gpu asked for but PyTorch sees no CUDA GPU"):
                pick_device(word)
    assert pick_device("auto").type in ("cpu", "cuda") and pick_device("CPU").type == "cpu"
