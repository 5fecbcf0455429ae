"""`edgecnn eval` on a checkpoint: the FP32 PyTorch reference, scored on the run's own validation split."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgecnn.cli import app

runner = CliRunner()


def eval_json(*args: object) -> dict:
    result = runner.invoke(app, ["eval", *map(str, args), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_eval_on_a_checkpoint_scores_its_validation_split_like_its_bundle(
        tiny_run: Path, tiny_bundle: Path, tiny_data: Path, tmp_path: Path) -> None:
    import torch

    checkpoint = torch.load(tiny_run / "best.pt", weights_only=True)
    report = eval_json(tiny_run / "best.pt", tiny_data, "--out", tmp_path / "pt")
    assert report["split"] == "val" and report["images"] == len(checkpoint["split"]["val"])
    assert report["unknown"] is not None and report["unknown"]["rule"] == checkpoint["unknown"]["rule"]
    # the bundle's ONNX FP32 model matches PyTorch within 1e-3 (export's parity gate): the same answers
    bundle = eval_json(tiny_bundle, tiny_data, "--out", tmp_path / "onnx", "--backend", "onnxruntime",
                       "--precision", "fp32")
    assert bundle["split"] == "val" and bundle["images"] == report["images"]
    assert bundle["confusion"] == report["confusion"] and bundle["top1"] == report["top1"]
    assert report["unknown"]["known_accepted"] == pytest.approx(bundle["unknown"]["known_accepted"])
    everything = eval_json(tiny_run / "best.pt", tiny_data, "--out", tmp_path / "all", "--split", "all")
    assert everything["images"] == len(checkpoint["split"]["val"]) + len(checkpoint["split"]["train"])


def test_checkpoint_engine_is_exports_torch_reference(tiny_run: Path, tiny_bundle: Path) -> None:
    """Its probabilities are those of `deployable` on the checkpoint: the bundle's FP32 ONNX within 1e-3."""
    from edgecnn.export.reference import checkpoint_engine
    from edgecnn.runtime import load
    from edgecnn.runtime.core.images import iter_image_files, read_image
    from edgecnn.runtime.core.preprocess import fit_frame

    engine, run = checkpoint_engine(tiny_run / "best.pt")
    with load(tiny_bundle, backend="onnxruntime", precision="fp32") as onnx, engine:
        assert engine.labels == onnx.labels and engine.preprocess == onnx.preprocess
        files = sorted(iter_image_files(Path(run.data_root)))[:6]
        batch = np.stack([fit_frame(read_image(f), engine.preprocess) for f in files])
        ours, theirs = engine.infer_scored(batch), onnx.infer_scored(batch)
        assert np.abs(ours.probabilities - theirs.probabilities).max() < 1e-3
        assert np.abs(ours.unknown_score - theirs.unknown_score).max() < 1e-3 * (1 + np.abs(
            theirs.unknown_score).max())
        assert engine.unknown_threshold == onnx.unknown_threshold
        assert engine.submit(batch).result().shape == (6, len(engine.labels))
    assert len(run.val) and len(run.train) and engine.describe() == "best.pt (fp32) on pytorch cpu"


@pytest.mark.parametrize(("options", "message"), [
    (["--device", "gpu"], "--device gpu: a .pt checkpoint runs in PyTorch, FP32, on the CPU"),
    (["--precision", "int8"], "export it (edgecnn export"),
    (["--labels", "labels.txt"], "a checkpoint brings its own labels"),
])
def test_eval_checkpoint_mistakes_exit_2(tiny_run: Path, tiny_data: Path, tmp_path: Path, options: list[str],
                                         message: str) -> None:
    result = runner.invoke(app, ["eval", str(tiny_run / "best.pt"), str(tiny_data), *options])
    assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output


def test_eval_checkpoint_without_torch_says_what_to_install(tiny_data: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A runtime-only install: one line naming the [train] extra, before the file is even read."""
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    result = runner.invoke(app, ["eval", str(tmp_path / "best.pt"), str(tiny_data)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "eval on a .pt checkpoint needs the [train] extra" in lines[0]
    assert "pip install '.[train]'" in lines[0]


def test_eval_of_a_bundle_imports_no_torch(tiny_bundle: Path, tiny_data: Path, tmp_path: Path) -> None:
    """The .pt path imports PyTorch only when it is taken: eval on a bundle (split selection included)
    stays on the runtime."""
    code = ("import sys\nfrom edgecnn.cli import app\n"
            f"try:\n    app(['eval', {str(tiny_bundle)!r}, {str(tiny_data)!r}, '--out', "
            f"{str(tmp_path / 'eval')!r}, '--json'])\nexcept SystemExit as exit:\n    assert not exit.code\n"
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False"
