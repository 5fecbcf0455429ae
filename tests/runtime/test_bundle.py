"""The bundle folder: typed report round trip, atomic writes, and files outside it refused by every reader."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from edgecnn.runtime.core.bundle import (
    LAYOUT,
    Bundle,
    BundleReport,
    Calibration,
    Int8Agreement,
    ModelReport,
    RecipeTry,
    layout_path,
)
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.outputs import AtomicPath, atomic_folder, write_atomic

from tests.reliability.conftest import assert_user_error, colour_onnx, run_cli


def test_report_round_trip() -> None:
    gate = Int8Agreement(images=100, flips=2, flip_rate_interval=(0.6, 7.0), top1_agreement=98.0,
                         top5_overlap=99.0, mean_kl=0.01, confident_images=60, confident_flips=0, lost=2,
                         gained=1, drop=1.0, drop_interval=(-1.5, 3.8))
    models = (ModelReport("onnx fp32", "onnxruntime", "fp32", "model.onnx", top1=75.0, latency_ms=3.5,
                          size_bytes=10, parity_max_abs_diff=1e-5),
              ModelReport("onnx int8", "onnxruntime", "int8", "model.int8.onnx", top1=74.0, latency_ms=2.0,
                          parent="onnx fp32", drop=1.0, gate=gate, gate_rule="top-1 drop <= 1 points",
                          status="failed", problem="lost 1 point"))
    tries = (RecipeTry("minmax, first conv float", 8.1, 2.5, gate, False, "lost 1 point", ("/conv",),
                       kept=True),)
    report = BundleReport(models=models, arch="efficientnet_lite0", num_classes=4,
                          calibration=Calibration(16, "auto", {"onnxruntime": tries}),
                          ratios={"onnxruntime": {"latency": 0.57, "size": 0.3}}, notes=("a note",))
    import json

    again = BundleReport.from_dict(json.loads(report.to_json()))
    assert again == report
    assert again.failures() == ["lost 1 point"] and again.model("model.int8.onnx") == models[1]


def test_layout_paths() -> None:
    assert layout_path("openvino", "int8") == "openvino/model.int8.xml"
    assert {(f.backend, f.precision) for f in LAYOUT} == {(b, p) for b in ("openvino", "onnxruntime")
                                                          for p in ("fp32", "int8")}


def test_exported_bundle_reads_back_typed(tiny_bundle: Path) -> None:
    bundle = Bundle(tiny_bundle)
    assert bundle.report is not None and bundle.report.passed
    models = bundle.models()
    assert [m.rel for m in models] == [f.path for f in LAYOUT]
    assert all(m.report is not None and m.report.latency_ms > 0 and m.report.path == m.rel for m in models)


@pytest.mark.parametrize("rel", ["../outside.onnx", "/etc/hostname", "openvino/../../x.xml"])
def test_paths_outside_the_folder_are_refused(tmp_path: Path, rel: str) -> None:
    (tmp_path / "bundle").mkdir()
    with pytest.raises(EdgecnnError, match="not a path inside the bundle"):
        Bundle(tmp_path / "bundle").file(rel)


# -- atomic writes ------------------------------------------------------------------------------------------
def test_atomic_path_leaves_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    target = write_atomic(tmp_path / "out.txt", b"old")
    with pytest.raises(RuntimeError), AtomicPath(target) as temp:
        temp.write_bytes(b"half")
        raise RuntimeError("writer died")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_path_renames_companions_with_it(tmp_path: Path) -> None:
    with AtomicPath(tmp_path / "model.xml", also=(".bin",)) as temp:
        assert temp.suffix == ".xml" and ".tmp" in temp.name
        temp.write_text("graph")
        temp.with_suffix(".bin").write_text("weights")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin", "model.xml"]


def test_atomic_folder_swaps_whole_or_not_at_all(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    with atomic_folder(out) as work:
        (work / "a").write_text("first")
    with pytest.raises(RuntimeError), atomic_folder(out) as work:
        (work / "b").write_text("second, half done")
        raise RuntimeError("export died")
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"] and [p.name for p in out.iterdir()] == ["a"]
    with atomic_folder(out) as work:
        (work / "c").write_text("third")
    assert [p.name for p in out.iterdir()] == ["c"] and [p.name for p in tmp_path.iterdir()] == ["bundle"]


# -- an untrusted bundle: predict, triton and serve refuse alike -----------------------------------------
@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real two-backend bundle of a tiny colour model (metadata inside)."""
    import openvino as ov
    from edgecnn.runtime.core.metadata import ModelMeta

    bundle = tmp_path_factory.mktemp("small") / "bundle"
    onnx_path = colour_onnx(bundle / "model.onnx")
    model = ov.convert_model(str(onnx_path))
    ModelMeta.read(onnx_path).write_openvino(model)
    (bundle / "openvino").mkdir()
    ov.save_model(model, str(bundle / "openvino" / "model.xml"))
    (bundle / "labels.txt").write_text("red\ngreen\nblue\ngray\n")
    return bundle


def _link(bundle: Path, rel: str, target: Path) -> None:
    (bundle / rel).unlink()
    os.symlink(target, bundle / rel)


ATTACKS = {
    "model.onnx links outside": (lambda b, outside: _link(b, "model.onnx", outside / "secret.onnx"),
                                 "model.onnx links outside the bundle folder"),
    "model.bin links outside": (lambda b, outside: _link(b, "openvino/model.bin", outside / "weights.bin"),
                                "model.bin links outside the bundle folder"),
    "openvino folder links outside": (
        lambda b, outside: shutil.rmtree(b / "openvino") or os.symlink(outside / "openvino", b / "openvino"),
        "links outside the bundle folder"),
    "external data outside": (lambda b, _: colour_onnx(b / "model.onnx", external="../outside/weights.bin"),
                              "outside its folder"),
}
COMMANDS = {
    # predict scans the external data of the .onnx it opens (links of every file): make it the ONNX one
    "predict": lambda bundle, tmp: ["predict", bundle, tmp / "red.png", "--device", "cpu", "--backend",
                                    "onnxruntime"],
    "triton": lambda bundle, tmp: ["triton", bundle, tmp / "repo"],
    "serve": lambda bundle, tmp: ["serve", bundle],
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_outside_files_refused_by_every_reader(small_bundle: Path, tmp_path: Path, attack: str,
                                               command: str) -> None:
    import cv2
    import numpy as np

    outside = tmp_path / "outside"
    (outside / "openvino").mkdir(parents=True)
    colour_onnx(outside / "secret.onnx")
    (outside / "weights.bin").write_bytes(b"\0" * 48)
    shutil.copytree(small_bundle / "openvino", outside / "openvino", dirs_exist_ok=True)
    bundle = tmp_path / "bundle"
    shutil.copytree(small_bundle, bundle)
    ATTACKS[attack][0](bundle, outside)
    cv2.imwrite(str(tmp_path / "red.png"), np.full((8, 8, 3), (0, 0, 255), np.uint8))
    result = run_cli(*COMMANDS[command](bundle, tmp_path))
    assert_user_error(result, ATTACKS[attack][1])
    assert not (tmp_path / "repo").exists()
