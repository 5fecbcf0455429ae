"""Which unknown-detector rule to ship: leave one class out, fine-tune on the rest, score every rule.

For each class of each data set: that class is the unknown; of every other class a seeded quarter is
held out as known test images and the rest goes to `edgecnn finetune` (its own train/val split, default
settings). On the final model's pooled features and logits every rule of edgecnn/unknown.py is fitted
on the training images, calibrated on the validation images for --accept-rate, and measured on the
held-out known images and the unknown class: AUROC, unknown accepted, known accepted, top-1.

    python benchmarks/openset.py samples/photos /work/wt/shared-data/second --accept-rate 0.95
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
    args = parser.parse_args()
    from edgecnn.unknown import RULES

    for data in args.data:
        rows = [rotation(data, left_out, args) for left_out in classes(data)
                if args.left_out is None or left_out in args.left_out]
        print_table(data, rows, RULES)


def classes(data: Path) -> list[str]:
    return sorted(p.name for p in data.iterdir() if p.is_dir() and not p.name.startswith("."))


def rotation(data: Path, left_out: str, args: argparse.Namespace) -> dict[str, object]:
    """Fine-tune without `left_out`, then measure every rule: {rule: OpenSetFigures}."""
    from edgecnn.runtime.images import is_readable, iter_image_files

    from edgecnn.checkpoint import load_checkpoint
    from edgecnn.finetune import FinetuneConfig, finetune
    from edgecnn.unknown import RULES

    with tempfile.TemporaryDirectory(prefix="openset-") as work:
        root = Path(work) / "data"
        known_test: list[tuple[Path, int]] = []
        known = [c for c in classes(data) if c != left_out]
        for index, name in enumerate(known):
            files = [f.resolve() for f in iter_image_files(data / name) if is_readable(f)]
            random.Random(f"{args.seed}-{name}").shuffle(files)
            count = max(1, round(len(files) * args.test_share))
            known_test += [(f, index) for f in files[:count]]
            (root / name).mkdir(parents=True)
            for file in files[count:]:
                (root / name / file.name).symlink_to(file.resolve())
        unknown = [(f.resolve(), -1) for f in iter_image_files(data / left_out) if is_readable(f)]
        run = Path(work) / "run"
        finetune(FinetuneConfig(data=root, out=run, epochs=args.epochs, seed=args.seed, progress=False,
                                workers=0))
        checkpoint = load_checkpoint(run / "best.pt")
        split = checkpoint.split
        model = checkpoint.build_model()
        sets = {"train": [(root / p, c) for p, c in zip(split["train"], split["train_labels"], strict=True)],
                "val": [(root / p, c) for p, c in zip(split["val"], split["val_labels"], strict=True)],
                "test": known_test, "unknown": unknown}
        pooled = {name: features(model, checkpoint.preprocess, items) for name, items in sets.items()}
        results = {rule: measure(rule, pooled, model, len(known), args.accept_rate) for rule in RULES}
    print(f"{data.name}: left out {left_out}: train {len(sets['train'])}, val {len(sets['val'])}, "
          f"known test {len(known_test)}, unknown {len(unknown)}", flush=True)
    return {"left_out": left_out, **results}


def features(model, preprocess, items: list[tuple[Path, int]]):
    """(pooled features [N, D], labels [N]) by the fine-tuning feature pass, on `fit_frame` pixels."""
    import torch

    from edgecnn.data import ImageDataset, ValTransform, make_loader
    from edgecnn.features import pooled_features

    dataset = ImageDataset(Path("/"), [(str(p), c) for p, c in items], [ValTransform(preprocess)])
    loader = make_loader(dataset, 16, shuffle=False, workers=0)
    pooled, labels = pooled_features(model, loader, torch.device("cpu"), lambda n: None)
    return pooled[:, 0], labels


def measure(rule: str, pooled: dict, model, num_classes: int, accept_rate: float):
    import torch
    from edgecnn.runtime.openset import figures

    from edgecnn.unknown import fit_detector, score_module

    classifier = model.get_classifier().eval()
    detector = fit_detector(rule, pooled["train"], pooled["val"], classifier, num_classes, accept_rate)
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
