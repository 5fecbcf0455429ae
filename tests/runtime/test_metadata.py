"""The one metadata schema: round trips through ONNX and OpenVINO files, versions, bad text, labels files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.metadata import META_KEY, SCHEMA_VERSION, ModelMeta, Preprocess, read_labels

from tests.reliability.conftest import colour_onnx

META = ModelMeta(labels=("red", "green", "blue", "gray"), arch="colour", precision="int8",
                 preprocess=Preprocess(input_size=(32, 48), mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3)),
                 accuracy={"top1": 93.5, "agreement": 99.0, "val_images": 40.0})


def test_json_round_trip_keeps_every_field() -> None:
    again = ModelMeta.from_json(META.to_json())
    assert again == META and isinstance(again.labels, tuple) and isinstance(again.preprocess.mean, tuple)
    assert json.loads(META.to_json())["schema_version"] == SCHEMA_VERSION


def test_onnx_file_round_trip(tmp_path: Path) -> None:
    import onnx

    path = colour_onnx(tmp_path / "model.onnx", labels=())  # no metadata yet
    assert ModelMeta.read(path) is None
    model = onnx.load(str(path))
    META.write_onnx(model)
    META.write_onnx(model)  # writing again replaces ours, leaves one entry
    assert [p.key for p in model.metadata_props].count(META_KEY) == 1
    onnx.save(model, str(path))
    assert ModelMeta.read(path) == META


def test_openvino_file_round_trip(tmp_path: Path) -> None:
    import openvino as ov

    model = ov.convert_model(str(colour_onnx(tmp_path / "model.onnx", labels=())))
    META.write_openvino(model)
    ov.save_model(model, str(tmp_path / "model.xml"))
    assert ModelMeta.read(tmp_path / "model.xml") == META


def test_stamped_sets_version_and_time_and_changes() -> None:
    from edgecnn import __version__

    stamped = META.stamped(precision="fp32")
    assert stamped.edgecnn_version == __version__ and stamped.created.endswith("+00:00")
    assert stamped.precision == "fp32" and stamped.labels == META.labels


def test_fields_it_does_not_know_are_ignored() -> None:
    data = json.loads(META.to_json())
    data["added_later"] = 1
    data["preprocess"]["also_later"] = "x"
    assert ModelMeta.from_json(json.dumps(data)) == META


def test_newer_schema_is_refused_with_the_upgrade() -> None:
    data = json.loads(META.to_json())
    data["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(EdgecnnError, match=r"newer edgecnn.*upgrade edgecnn: git pull, then pip install \. "):
        ModelMeta.from_json(json.dumps(data), "model.onnx")


@pytest.mark.parametrize("text", ["{oops", "[]", '{"preprocess": {}}', '{"labels": 3}', '"just text"'])
def test_unreadable_metadata_is_one_clear_error(text: str) -> None:
    with pytest.raises(EdgecnnError, match="model.onnx.*edgecnn metadata"):  # one clear line, no traceback
        ModelMeta.from_json(text, "model.onnx")


def test_not_a_model_file(tmp_path: Path) -> None:
    with pytest.raises(EdgecnnError, match="not a model file"):
        ModelMeta.read(tmp_path / "labels.txt")


def test_labels_file(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("cat\n\n  dog  \nbird\n", encoding="utf-8")
    assert read_labels(path) == ("cat", "dog", "bird")
    path.write_text("\n \n")
    with pytest.raises(EdgecnnError, match="is empty; put one class name per line"):
        read_labels(path)
    with pytest.raises(EdgecnnError, match="cannot read labels file"):
        read_labels(tmp_path / "missing.txt")
