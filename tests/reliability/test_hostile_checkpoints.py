"""Untrusted checkpoints (issue 25 item 3): a real best.pt/last.pt edited the way an attacker or a broken
tool would; every reader (export, `finetune --resume`) refuses it in one line before building anything."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.conftest import assert_user_error, left_behind, run_cli


@pytest.fixture(scope="module")
def real_payload(two_class_data: Path) -> dict[str, Any]:
    """What `edgecnn finetune` writes for two_class_data: a real efficientnet_lite0 with 2 classes."""
    from edgecnn.runtime.core.metadata import Preprocess

    from edgecnn.checkpoint import Checkpoint, CheckpointSplit
    from edgecnn.finetune import FinetuneConfig
    from edgecnn.models import build_model

    images = {name: sorted((two_class_data / name).iterdir()) for name in ("fishes", "tools")}
    train = [f"{name}/{p.name}" for name in images for p in images[name][:3]]
    val = [f"{name}/{p.name}" for name in images for p in images[name][3:]]
    split = CheckpointSplit(str(two_class_data), tuple(train), tuple(val), (0, 0, 0, 1, 1, 1), (0, 1))
    args = FinetuneConfig(data=two_class_data, out=Path("run"), head_epochs=1).to_args()
    model = build_model("efficientnet_lite0", num_classes=2, pretrained=False).model
    return Checkpoint(arch="efficientnet_lite0", labels=["fishes", "tools"], preprocess=Preprocess(),
                      state_dict=model.state_dict(), epoch=1, args=args, split=split).to_payload()


def _weights(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A payload change that edits a copy of the state dict."""
    def edit(payload: dict[str, Any]) -> dict[str, Any]:
        weights = dict(payload["state_dict"])
        change(weights)
        return {"state_dict": weights}
    return edit


def _filled(name: str, value: float) -> Callable[[dict[str, Any]], None]:
    def fill(weights: dict[str, Any]) -> None:
        weights[name] = weights[name].clone().fill_(value)
    return fill


def _reshaped(weights: dict[str, Any]) -> None:
    import torch

    weights["classifier.weight"] = torch.zeros(3, weights["classifier.weight"].shape[1])


Change = Callable[[dict[str, Any]], dict[str, Any]]
# name: (what replaces fields of the real payload, words the message holds)
CHECKPOINTS: dict[str, tuple[Change, tuple[str, ...]]] = {
    "format_version inf": (lambda p: {"format_version": math.inf}, ("format_version is inf",)),
    "format_version nan": (lambda p: {"format_version": math.nan}, ("format_version is nan",)),
    "format_version '1.0'": (lambda p: {"format_version": "1.0"}, ("format_version is '1.0'",)),
    "format_version [1]": (lambda p: {"format_version": [1]}, ("format_version is [1]",)),
    "format_version 10^30": (lambda p: {"format_version": 10**30}, ("format_version is 1000000",)),
    "epoch inf": (lambda p: {"epoch": math.inf}, ("epoch is inf",)),
    "state dict: a key missing": (_weights(lambda w: w.pop("conv_stem.weight")),
                                  ("1 missing (first 'conv_stem.weight')",)),
    "state dict: an unknown key": (_weights(lambda w: w.update(extra=w["classifier.bias"])),
                                   ("1 unexpected (first 'extra')",)),
    "state dict: a wrong shape": (_weights(_reshaped),
                                  ("classifier.weight of shape [3, 1280]", "needs [2, 1280]")),
    "state dict: a text for a tensor": (_weights(lambda w: w.update({"classifier.bias": "x"})),
                                        ("'x' as 'classifier.bias', not a tensor",)),
    "state dict is a list": (lambda p: {"state_dict": [1, 2]}, ("a state_dict of list",)),
    "state dict: NaN weights": (_weights(_filled("classifier.weight", math.nan)),
                                ("NaN or infinite weights in classifier.weight",)),
    "state dict: infinite bias": (_weights(_filled("classifier.bias", math.inf)),
                                  ("NaN or infinite weights in classifier.bias",)),
    "arch does not match the weights": (lambda p: {"arch": "resnet18"},
                                        ("do not fit resnet18 with 2 labels", "missing", "unexpected")),
    "arch from the hub": (lambda p: {"arch": "hf-hub:timm/resnet18.a1_in1k"}, ("unknown architecture",)),
    "3 labels for a 2-class head": (lambda p: {"labels": ["a", "b", "c"]},
                                    ("efficientnet_lite0 with 3 labels",)),
    "10^6 labels for a 2-class head": (lambda p: {"labels": [f"c{i}" for i in range(10**6)]},
                                       ("with 1000000 labels needs [1000000, 1280]",)),
    "labels a string": (lambda p: {"labels": "ab"}, ("labels must be a list", "'ab'")),
    "labels a dict": (lambda p: {"labels": {"a": 0, "b": 1}}, ("labels must be a list",)),
    "labels empty": (lambda p: {"labels": []}, ("labels must be a list of 1 to",)),
    "labels duplicated": (lambda p: {"labels": ["a", "a"]}, ("lists 'a' twice",)),
    "labels numbers": (lambda p: {"labels": [1, 2]}, ("labels[0] is 1",)),
    "label of 5000 characters": (lambda p: {"labels": ["a" * 5000, "b"]},
                                 ("every label must be a name of 1 to",)),
    "label with a newline": (lambda p: {"labels": ["a\nb", "c"]}, ("holds a line break",)),
}


@pytest.mark.parametrize("name", list(CHECKPOINTS))
def test_untrusted_checkpoint_is_refused_at_load(name: str, real_payload: dict[str, Any],
                                                 tmp_path: Path) -> None:
    import torch

    change, words = CHECKPOINTS[name]
    torch.save({**real_payload, **change(real_payload)}, tmp_path / "best.pt")
    result = run_cli("export", tmp_path / "best.pt", "--out", tmp_path / "bundle")
    assert_user_error(result, *words)
    assert not (tmp_path / "bundle").exists() and left_behind(tmp_path) == []


# name: (the recorded args changed, words the message holds)
RESUMED: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "lr -1": ({"lr": -1.0}, ("--lr -1 is out of range; give 0 to 10",)),
    "val_split 1.0": ({"val_split": 1.0}, ("val_split = 1.0 is invalid",)),
    "batch_size 0": ({"batch_size": 0}, ("--batch-size 0 is out of range",)),
    "seed 2^70": ({"seed": 2**70}, ("--seed 1180591620717411303424 is out of range",)),
    "head_epochs 10^9": ({"head_epochs": 10**9}, ("--head-epochs 1000000000 is out of range",)),
    "lr a text": ({"lr": "fast"}, ("lr is 'fast', not a number",)),
    "freeze a number": ({"freeze": 1}, ("freeze is 1, not true or false",)),
    "device unknown": ({"device": "tpu"}, ("tpu",)),
}


@pytest.mark.parametrize("name", list(RESUMED))
def test_resumed_options_are_held_to_the_command_line_ranges(name: str, real_payload: dict[str, Any],
                                                              tmp_path: Path) -> None:
    import torch

    changes, words = RESUMED[name]
    run = tmp_path / "run"
    run.mkdir()
    args = {**real_payload["args"], "out": str(run), **changes}
    torch.save({**real_payload, "args": args}, run / "last.pt")
    result = run_cli("finetune", "--resume", run)
    assert_user_error(result, "run/last.pt records an option that cannot run", *words, "without --resume")
    assert sorted(p.name for p in run.iterdir()) == ["last.pt"]


def test_split_indices_that_do_not_match_are_refused(real_payload: dict[str, Any], tmp_path: Path) -> None:
    import torch

    run = tmp_path / "run"
    run.mkdir()
    split = {**real_payload["split"], "train_labels": [0, 0, 7, 1, 1, 1]}
    torch.save({**real_payload, "split": split}, run / "last.pt")
    assert_user_error(run_cli("finetune", "--resume", run), "6 images and 6 class indices (of 2 classes)")
