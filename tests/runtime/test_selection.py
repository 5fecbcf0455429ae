"""Auto-selection as a plain choice over typed records: no model files needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from edgecnn.runtime.core.bundle import (
    LAYOUT,
    REPORT_SCHEMA_VERSION,
    Bundle,
    BundleModel,
    BundleReport,
    ModelReport,
)
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.selection import rank


def model(backend: str, precision: str, latency: float | None = None,
          status: str | None = "ok") -> BundleModel:
    rel = next(f.path for f in LAYOUT if (f.backend, f.precision) == (backend, precision))
    report = None if status is None else ModelReport(name=f"{backend} {precision}", backend=backend,
                                                     precision=precision, path=rel, latency_ms=latency,
                                                     status=status)
    return BundleModel(backend, precision, rel, Path("/nowhere") / rel, report)


def picked(models: list[BundleModel], backends: list[str], precision: str = "auto") -> list[str]:
    return [f"{m.backend} {m.precision}" for m in rank(models, backends, precision)]


BOTH = ["openvino", "onnxruntime"]


def test_fastest_measured_model_first() -> None:
    models = [model("openvino", "int8", 4.0), model("openvino", "fp32", 9.0),
              model("onnxruntime", "int8", 3.0), model("onnxruntime", "fp32", 8.0)]
    assert picked(models, BOTH) == ["onnxruntime int8", "openvino int8", "onnxruntime fp32", "openvino fp32"]


def test_a_latency_difference_within_noise_never_flips_the_pick() -> None:
    """Export on a quiet and on a loaded machine: OpenVINO INT8 either way unless another is >15 % faster."""
    quiet = [model("openvino", "int8", 9.9), model("onnxruntime", "int8", 9.0),
             model("onnxruntime", "fp32", 9.5)]
    loaded = [model("openvino", "int8", 12.0), model("onnxruntime", "int8", 13.1),
              model("onnxruntime", "fp32", 11.0)]
    assert picked(quiet, BOTH)[0] == picked(loaded, BOTH)[0] == "openvino int8"
    clearly = [model("openvino", "int8", 9.9), model("onnxruntime", "int8", 8.3)]  # 19 % faster: real
    assert picked(clearly, BOTH) == ["onnxruntime int8", "openvino int8"]


def test_failed_int8_is_skipped_in_auto_but_given_when_asked() -> None:
    models = [model("openvino", "int8", 1.0, status="failed"), model("openvino", "fp32", 9.0)]
    assert picked(models, BOTH) == ["openvino fp32"]
    assert picked(models, BOTH, "int8") == ["openvino int8"]


def test_explicit_backend_and_precision_are_honoured() -> None:
    models = [model("openvino", "int8", 1.0), model("openvino", "fp32", 2.0),
              model("onnxruntime", "int8", 3.0), model("onnxruntime", "fp32", 4.0)]
    assert picked(models, ["onnxruntime"]) == ["onnxruntime int8", "onnxruntime fp32"]
    assert picked(models, ["onnxruntime"], "fp32") == ["onnxruntime fp32"]
    assert picked(models, BOTH, "fp32") == ["openvino fp32", "onnxruntime fp32"]


def test_without_measurements_int8_first_only_if_checked_then_backend_order() -> None:
    unmeasured = [model("openvino", "int8"), model("openvino", "fp32"), model("onnxruntime", "fp32")]
    assert picked(unmeasured, BOTH) == ["openvino int8", "openvino fp32", "onnxruntime fp32"]
    assert picked(unmeasured, ["onnxruntime", "openvino"]) == ["openvino int8", "onnxruntime fp32",
                                                                "openvino fp32"]
    no_report = [model("openvino", "int8", status=None), model("onnxruntime", "fp32", status=None)]
    assert picked(no_report, BOTH) == ["onnxruntime fp32"]  # INT8 unchecked: never auto-picked


def _fake_bundle(folder: Path, report: dict | None) -> Bundle:
    """Empty stand-in files in the bundle layout (selection never opens them) and a report.json."""
    for entry in LAYOUT:
        (folder / entry.path).parent.mkdir(parents=True, exist_ok=True)
        (folder / entry.path).write_bytes(b"")
    (folder / "openvino" / "model.bin").write_bytes(b"")
    (folder / "openvino" / "model.int8.bin").write_bytes(b"")
    if report is not None:
        (folder / "report.json").write_text(json.dumps(report))
    return Bundle(folder)


def _report(schema_version: int | None) -> dict:
    models = [ModelReport(name=f"{f.backend} {f.precision}", backend=f.backend, precision=f.precision,
                          path=f.path, latency_ms=5.0) for f in LAYOUT]
    data = json.loads(BundleReport(models=tuple(models), passed=True).to_json())
    if schema_version is None:
        del data["schema_version"]
    else:
        data["schema_version"] = schema_version
    return data


def test_missing_report_reads_as_nothing_measured(tmp_path: Path) -> None:
    bundle = _fake_bundle(tmp_path, None)
    assert bundle.report is None
    models = bundle.models()
    assert [m.report for m in models] == [None] * 4
    assert picked(models, BOTH) == ["openvino fp32", "onnxruntime fp32"]


def test_report_from_before_versioning_is_read(tmp_path: Path) -> None:
    """Bundles exported before the report had a schema_version hold the same fields: still measured."""
    bundle = _fake_bundle(tmp_path, _report(None))
    assert bundle.report is not None and bundle.report.schema_version == 0
    assert picked(bundle.models(), BOTH)[:2] == ["openvino int8", "onnxruntime int8"]


def test_report_from_a_schema_no_longer_readable_reads_as_nothing_measured(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When a later schema drops version 0 from READABLE_SCHEMAS, such a report counts as absent."""
    import edgecnn.runtime.core.bundle

    monkeypatch.setattr(edgecnn.runtime.core.bundle, "READABLE_SCHEMAS", (1,))
    bundle = _fake_bundle(tmp_path, _report(None))
    assert bundle.report is None
    assert picked(bundle.models(), BOTH) == ["openvino fp32", "onnxruntime fp32"]


def test_current_report_is_read_typed_and_unknown_fields_ignored(tmp_path: Path) -> None:
    data = _report(REPORT_SCHEMA_VERSION)
    data["added_by_a_later_edgecnn"] = {"x": 1}
    data["models"][0]["also_new"] = 3
    bundle = _fake_bundle(tmp_path, data)
    assert bundle.report is not None and bundle.report.passed
    assert [m.latency_ms for m in bundle.models()] == [5.0] * 4
    assert picked(bundle.models(), ["openvino"]) == ["openvino int8", "openvino fp32"]


def test_newer_report_schema_is_refused_with_upgrade_hint(tmp_path: Path) -> None:
    bundle = _fake_bundle(tmp_path, _report(99))
    with pytest.raises(EdgecnnError, match=r"newer edgecnn.*upgrade edgecnn: git pull, then pip install \. "):
        bundle.models()


@pytest.mark.parametrize("broken", [{"schema_version": REPORT_SCHEMA_VERSION},
                                    {"schema_version": REPORT_SCHEMA_VERSION, "models": 3},
                                    {"schema_version": REPORT_SCHEMA_VERSION, "models": [{"name": "x"}]}, []])
def test_malformed_report_is_one_clear_error(tmp_path: Path, broken: object) -> None:
    bundle = _fake_bundle(tmp_path, None)
    (tmp_path / "report.json").write_text(json.dumps(broken))
    with pytest.raises(EdgecnnError, match="report.json is unreadable.*export the bundle again"):
        bundle.models()
