"""Which unknown-detector rule to ship: leave one class out, fine-tune on the rest, score every rule.

For each class of each data set: that class is the unknown; of every other class a seeded quarter is
held out as known test images and the rest goes to `edgecnn finetune` (its own train/val split, default
settings). On the final model's pooled features and logits every rule of edgecnn/unknown.py is fitted
on the training images, calibrated on the validation images for --accept-rate, and measured on the
held-out known images and the unknown class: AUROC, unknown accepted, known accepted, top-1.

    python benchmarks/openset.py samples/photos /work/wt/shared-data/second --accept-rate 0.95

With --cache DIR each rotation's features (and augmented views of the training images), fine-tuned head
and the ImageNet head are kept as DIR/<data>/<class>.npz and reused: a rerun, or a candidate rule in
benchmarks/openset_rules.py, takes seconds instead of a fine-tune per rotation.
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

import numpy as np

TARGETS = {"auroc": 0.98, "unknown_accepted": 0.10, "known_accepted": 0.93}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="+", type=Path, help="data sets: one subfolder per class")
    parser.add_argument("--accept-rate", type=float, default=0.95)
    parser.add_argument("--test-share", type=float, default=0.25, help="known images held out per class")
    parser.add_argument("--epochs", type=int, default=0, help="full fine-tuning epochs after the head")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--left-out", nargs="*", default=None, help="only these classes as the unknown")
    parser.add_argument("--cache", type=Path, default=None,
                        help="keep each rotation's features and heads in DIR/<data>/<class>.npz and reuse "
                             "them (benchmarks/openset_rules.py scores candidate rules from them)")
    parser.add_argument("--views", type=int, default=4, help="augmented views of each training image cached")
    args = parser.parse_args()
    from edgecnn.unknown import RULES

    for data in args.data:
        rows = [rotation(data, left_out, args) for left_out in classes(data)
                if args.left_out is None or left_out in args.left_out]
        print_table(data, rows, RULES)


def classes(data: Path) -> list[str]:
    return sorted(p.name for p in data.iterdir() if p.is_dir() and not p.name.startswith("."))


def rotation(data: Path, left_out: str, args: argparse.Namespace) -> dict[str, object]:
    """Fine-tune without `left_out` (or read its --cache file), then measure every rule."""
    from edgecnn.unknown import RULES

    arrays = rotation_arrays(data, left_out, args)
    results = {rule: measure(rule, arrays, args.accept_rate) for rule in RULES}
    print(f"{data.name}: left out {left_out}: train {len(arrays['train_labels'])}, val "
          f"{len(arrays['val_labels'])}, known test {len(arrays['test_labels'])}, unknown "
          f"{len(arrays['unknown_labels'])}", flush=True)
    return {"left_out": left_out, **results}


def rotation_arrays(data: Path, left_out: str, args: argparse.Namespace) -> dict[str, np.ndarray]:
    """Pooled features and labels of train/val/test/unknown, `views` augmented views of each training
    image, the fine-tuned head and the ImageNet head: from --cache DIR/<data>/<class>.npz when there."""
    cached = args.cache / data.name / f"{left_out}.npz" if args.cache else None
    if cached is not None and cached.is_file():
        with np.load(cached) as stored:
            return dict(stored)
    arrays = fine_tuned_arrays(data, left_out, args)
    if cached is not None:
        save_npz(cached, arrays)
    return arrays


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """`arrays` as an .npz at `path`, written beside it and renamed: an interrupted run leaves no cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}")
    with partial.open("wb") as file:
        np.savez(file, **arrays)
    partial.replace(path)


def hold_out_known(data: Path, left_out: str, seed: int, test_share: float,
                   root: Path) -> list[tuple[Path, int]]:
    """The known test images of a rotation: a seeded `test_share` of each class but `left_out` (class
    indices in that order); the rest is linked under `root/<class>` for fine-tuning."""
    from edgecnn.runtime.core.images import is_readable, iter_image_files

    known_test: list[tuple[Path, int]] = []
    for index, name in enumerate(c for c in classes(data) if c != left_out):
        files = [f.resolve() for f in iter_image_files(data / name) if is_readable(f)]
        random.Random(f"{seed}-{name}").shuffle(files)
        count = max(1, round(len(files) * test_share))
        known_test += [(f, index) for f in files[:count]]
        (root / name).mkdir(parents=True)
        for file in files[count:]:
            (root / name / file.name).symlink_to(file)
    return known_test


def fine_tuned_arrays(data: Path, left_out: str, args: argparse.Namespace) -> dict[str, np.ndarray]:
    from edgecnn.runtime.core.images import is_readable, iter_image_files

    from edgecnn.checkpoint import load_checkpoint
    from edgecnn.data import TrainTransform
    from edgecnn.finetune import FinetuneConfig, finetune
    from edgecnn.models import lite0_imagenet_state_dict

    with tempfile.TemporaryDirectory(prefix="openset-") as work:
        root = Path(work) / "data"
        known_test = hold_out_known(data, left_out, args.seed, args.test_share, root)
        unknown = [(f.resolve(), -1) for f in iter_image_files(data / left_out) if is_readable(f)]
        run = Path(work) / "run"
        result = finetune(FinetuneConfig(data=root, out=run, epochs=args.epochs, seed=args.seed,
                                         progress=False, workers=0))
        head_epochs = dict(result.phases).get("head", 0)
        print(f"{data.name}: left out {left_out}: best.pt is epoch {result.best_epoch} of {result.epochs} "
              f"({'head' if result.best_epoch <= head_epochs else 'full'} phase)", flush=True)
        checkpoint = load_checkpoint(run / "best.pt")
        split = checkpoint.split
        model = checkpoint.build_model()
        assert split is not None and split.train_labels is not None and split.val_labels is not None
        sets = {"train": [(root / p, c) for p, c in zip(split.train, split.train_labels, strict=True)],
                "val": [(root / p, c) for p, c in zip(split.val, split.val_labels, strict=True)],
                "test": known_test, "unknown": unknown}
        arrays: dict[str, np.ndarray] = {}
        for name, items in sets.items():
            arrays[f"{name}_features"], arrays[f"{name}_labels"] = features(model, checkpoint.preprocess,
                                                                            items)
        if args.views:
            augment = [TrainTransform(checkpoint.preprocess)] * args.views
            arrays["train_views"] = features(model, checkpoint.preprocess, sets["train"], augment,
                                             args.seed)[0]
    head = model.get_classifier()
    imagenet = lite0_imagenet_state_dict()
    arrays.update(head_weight=head.weight.detach().numpy(), head_bias=head.bias.detach().numpy(),
                  imagenet_weight=imagenet["classifier.weight"].numpy(),
                  imagenet_bias=imagenet["classifier.bias"].numpy())
    return arrays


def features(model, preprocess, items: list[tuple[Path, int]], transforms: list | None = None,
             seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(pooled features [N, D] or [N, views, D], labels [N]) on `fit_frame` pixels (or `transforms`),
    by the fine-tuning feature pass on its feature engine."""
    import torch

    from edgecnn.data import ImageDataset, ValTransform, make_loader
    from edgecnn.features import feature_engine, pooled_features

    samples = [(str(p), c) for p, c in items]
    dataset = ImageDataset(Path("/"), samples, transforms or [ValTransform(preprocess)], seed=seed)
    loader = make_loader(dataset, 16, shuffle=False, workers=0)
    engine = feature_engine("auto", model, preprocess, torch.device("cpu"), dataset)
    try:
        pooled, labels = pooled_features(model, loader, torch.device("cpu"), lambda n: None, engine)
    finally:
        engine.close()
    pooled = pooled[:, 0] if pooled.shape[1] == 1 else pooled
    return pooled.numpy(), labels.numpy()


def measure(rule: str, arrays: dict[str, np.ndarray], accept_rate: float):
    import torch
    from edgecnn.runtime.measure.openset import figures

    from edgecnn.unknown import fit_detector, score_module

    weight, bias = torch.from_numpy(arrays["head_weight"]), torch.from_numpy(arrays["head_bias"])
    classifier = torch.nn.Linear(weight.shape[1], weight.shape[0])
    classifier.load_state_dict({"weight": weight, "bias": bias})
    classifier.eval()
    pooled = {name: (torch.from_numpy(arrays[f"{name}_features"]), torch.from_numpy(arrays[f"{name}_labels"]))
              for name in ("train", "val", "test", "unknown")}
    imagenet = torch.from_numpy(arrays["imagenet_weight"]), torch.from_numpy(arrays["imagenet_bias"])
    detector = fit_detector(rule, pooled["train"], pooled["val"], classifier, len(weight), accept_rate,
                            imagenet)
    score = score_module(rule, detector.tensors)
    with torch.inference_mode():
        test_logits = classifier(pooled["test"][0])
        known_scores = score(pooled["test"][0], test_logits).numpy()
        unknown_scores = score(pooled["unknown"][0], classifier(pooled["unknown"][0])).numpy()
    correct = (test_logits.argmax(1) == pooled["test"][1]).numpy()
    return figures(known_scores, unknown_scores, correct, detector.threshold)


def print_table(data: Path, rows: list[dict], rules: tuple[str, ...]) -> None:
    """Mean over the rotations, per rule, then per-rotation AUROC."""
    print(f"\n{data} ({len(rows)} rotations), mean over rotations:")
    print("| rule | AUROC | unknown accepted | known accepted | known top-1 | top-1 on accepted |")
    print("|---|---|---|---|---|---|")
    for rule in rules:
        got = [row[rule] for row in rows]
        mean = {name: float(np.nanmean([getattr(g, name) for g in got]))
                for name in ("auroc", "unknown_accepted", "known_accepted", "top1", "top1_accepted")}
        print(f"| {rule} | {mean['auroc']:.3f} | {mean['unknown_accepted']:.1%} "
              f"| {mean['known_accepted']:.1%} | {mean['top1']:.1%} | {mean['top1_accepted']:.1%} |")
    print("\nAUROC per left-out class:")
    print("| rule | " + " | ".join(str(row["left_out"]) for row in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for rule in rules:
        print(f"| {rule} | " + " | ".join(f"{row[rule].auroc:.3f}" for row in rows) + " |")
    print(f"targets: mean AUROC >= {TARGETS['auroc']}, unknown accepted <= "
          f"{TARGETS['unknown_accepted']:.0%}, known accepted >= {TARGETS['known_accepted']:.0%}", flush=True)


if __name__ == "__main__":
    main()
