"""Does an earlier layer's pooled feature separate the unknown class better? (issue 11, research)

Leave one class out exactly as benchmarks/openset.py does (same seeded known-test quarter, the same
80/20 train/val split that `edgecnn finetune` makes of the rest), but without fine-tuning: default
fine-tuning freezes the Lite0 backbone, so every pooled feature here depends on the image alone. Each
image runs once through the ImageNet Lite0 on `fit_frame` pixels (what deployment sees); the outputs of
timm's blocks 1-6 and of the final conv head (after its BN + ReLU6, i.e. the features the classifier
reads) are pooled per channel (mean, and mean + std), kept in --cache DIR/<data>.npz, and scored:
k-NN cosine per layer, sums of such scores standardised on the validation images (as knn+imagenet sums
its two), each alone and with the shipped rule's ImageNet-logit k-NN; the shipped rule itself is fitted
by edgecnn.unknown on the same final features. Threshold: the --accept-rate quantile of validation scores.

    python benchmarks/openset_layers.py samples/photos /work/wt/shared-data/second --cache /tmp/openset_layers
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from openset import classes, hold_out_known, save_npz
from openset_rules import kth_cosine, unit

# timm tf_efficientnet_lite0 stages: blocks.i output channels at a 224 x 224 input, and the conv head
LAYERS = ("blocks.1", "blocks.2", "blocks.3", "blocks.4", "blocks.5", "blocks.6", "head")
SPLITS = ("train", "val", "test", "unknown")
Scorer = Callable[[str], np.ndarray]  # split name -> unknown score per image of that split
Candidate = Callable[[dict[str, np.ndarray]], Scorer]  # a rotation's arrays -> fitted scorer


def layer_features(data: Path, cache: Path | None) -> dict[str, np.ndarray]:
    """Per readable image of `data` (openset.py's file order): its path, and per layer the channel mean
    and std of that layer's output map; from --cache when there."""
    cached = cache / f"{data.name}.npz" if cache else None
    if cached is not None and cached.is_file():
        with np.load(cached) as stored:
            return dict(stored)
    import torch
    from edgecnn.runtime.core.images import is_readable, iter_image_files

    from edgecnn.data import ImageDataset, ValTransform, make_loader
    from edgecnn.models import build_model

    files = [str(f.resolve()) for name in classes(data) for f in iter_image_files(data / name)
             if is_readable(f)]
    built = build_model(num_classes=1000, pretrained=True)
    model = built.model.eval()
    maps: dict[str, torch.Tensor] = {}
    modules = {name: model.get_submodule(name) for name in LAYERS if name != "head"} | {"head": model.bn2}
    for name, module in modules.items():
        module.register_forward_hook(lambda _m, _i, out, name=name: maps.__setitem__(name, out))
    loader = make_loader(ImageDataset(Path("/"), [(f, 0) for f in files], [ValTransform(built.preprocess)]),
                         16, shuffle=False, workers=0)
    stats: dict[str, list[np.ndarray]] = {}
    with torch.inference_mode():
        for pixels, _ in loader:
            pooled = model.forward_head(model.forward_features(pixels), pre_logits=True)
            # the conv head's channel mean IS the pooled feature the classifier and shipped rule read
            assert torch.allclose(maps["head"].mean((2, 3)), pooled, atol=1e-5)
            for name, out in maps.items():
                stats.setdefault(f"{name}_mean", []).append(out.mean((2, 3)).numpy())
                stats.setdefault(f"{name}_std", []).append(out.std((2, 3)).numpy())
                stats.setdefault(f"{name}_shape", []).append(np.array([out.shape[1:]] * len(out)))
    arrays = {name: np.concatenate(parts) for name, parts in stats.items()} | {"paths": np.array(files)}
    if cached is not None:
        save_npz(cached, arrays)
    return arrays


def rotation_arrays(data: Path, left_out: str, features: dict[str, np.ndarray], seed: int,
                    test_share: float) -> dict[str, np.ndarray]:
    """openset.py's split of this rotation (known test quarter, then finetune's own scan_folder split)
    as `{split}_{layer}_{mean|std}` arrays, `{split}_labels` and the ImageNet head."""
    from edgecnn.runtime.core.images import is_readable, iter_image_files

    from edgecnn.data import drop_unreadable, scan_folder
    from edgecnn.models import lite0_imagenet_state_dict

    row = {path: i for i, path in enumerate(features["paths"].tolist())}
    chosen: dict[str, list[tuple[str, int]]] = {}
    with tempfile.TemporaryDirectory(prefix="openset-layers-") as work:
        root = Path(work) / "data"
        chosen["test"] = [(str(f), c) for f, c in hold_out_known(data, left_out, seed, test_share, root)]
        split = drop_unreadable(scan_folder(root, 0.2, seed), threads=1)  # what finetune's _new_split does
        for name, samples in (("train", split.train), ("val", split.val)):
            chosen[name] = [(str((root / p).resolve()), c) for p, c in samples]
    chosen["unknown"] = [(str(f.resolve()), -1) for f in iter_image_files(data / left_out) if is_readable(f)]
    imagenet = lite0_imagenet_state_dict()
    arrays = {"imagenet_weight": imagenet["classifier.weight"].numpy(),
              "imagenet_bias": imagenet["classifier.bias"].numpy()}
    for name, samples in chosen.items():
        rows = [row[p] for p, _ in samples]
        arrays[f"{name}_labels"] = np.array([c for _, c in samples])
        for key in features:
            if key.endswith(("_mean", "_std")):
                arrays[f"{name}_{key}"] = features[key][rows]
    arrays["train_features"], arrays["val_features"] = arrays["train_head_mean"], arrays["val_head_mean"]
    return arrays


def pooled(a: dict[str, np.ndarray], split: str, layer: str, pool: str) -> np.ndarray:
    """Unit-length pooled features; mean+std: each half unit length (cosine = mean of the two cosines)."""
    if pool == "mean":
        return unit(a[f"{split}_{layer}_mean"])
    return np.concatenate([unit(a[f"{split}_{layer}_mean"]), unit(a[f"{split}_{layer}_std"])], 1) / np.sqrt(2)


def knn(layer: str, k: int, pool: str = "mean") -> Candidate:
    def fit(a: dict[str, np.ndarray]) -> Scorer:
        bank = pooled(a, "train", layer, pool)
        return lambda split: kth_cosine(pooled(a, split, layer, pool), bank, k)

    return fit


def imagenet_knn(k: int = 1) -> Candidate:
    """The shipped rule's second term: k-NN cosine in the ImageNet logits on their leading directions."""

    def fit(a: dict[str, np.ndarray]) -> Scorer:
        tensors = shipped_detector(a).tensors
        projection, offset = tensors["imagenet_projection"].numpy(), tensors["imagenet_offset"].numpy()
        logits = lambda split: unit(a[f"{split}_head_mean"] @ projection.T + offset)  # noqa: E731
        bank = logits("train")
        return lambda split: kth_cosine(logits(split), bank, k)

    return fit


def combined(*parts: Candidate) -> Candidate:
    """Sum of the parts, each standardised by its mean and spread on the validation images."""

    def fit(a: dict[str, np.ndarray]) -> Scorer:
        scorers = [part(a) for part in parts]
        stats = [(v.mean(), max(v.std(ddof=1), 1e-3)) for v in (s("val") for s in scorers)]
        return lambda split: sum((s(split) - m) / d for s, (m, d) in zip(scorers, stats, strict=True))

    return fit


def shipped_detector(a: dict[str, np.ndarray]):
    """knn+imagenet fitted by edgecnn.unknown on the final pooled features (its logits unused by it)."""
    if "_shipped" not in a:
        import torch

        from edgecnn.unknown import fit_detector

        classes_known = int(a["train_labels"].max()) + 1
        head = torch.nn.Linear(a["train_features"].shape[1], classes_known).eval()  # unread by this rule
        imagenet = torch.from_numpy(a["imagenet_weight"]), torch.from_numpy(a["imagenet_bias"])
        train = torch.from_numpy(a["train_features"]), torch.from_numpy(a["train_labels"])
        val = torch.from_numpy(a["val_features"]), torch.from_numpy(a["val_labels"])
        a["_shipped"] = fit_detector("knn+imagenet", train, val, head, classes_known,
                                     pretrained_head=imagenet)
    return a["_shipped"]


def shipped(a: dict[str, np.ndarray]) -> Scorer:
    import torch

    from edgecnn.unknown import score_module

    module = score_module("knn+imagenet", shipped_detector(a).tensors)

    def score(split: str) -> np.ndarray:
        with torch.inference_mode():
            features = torch.from_numpy(a[f"{split}_head_mean"])
            return module(features, features[:, :1]).numpy()

    return score


SUBSETS = {"{head}": ("head",), "{6}": ("blocks.6",), "{6, head}": ("blocks.6", "head"),
           "{5, head}": ("blocks.5", "head"),
           "{4, 5, head}": ("blocks.4", "blocks.5", "head"),
           "{3, 4, 5, 6, head}": ("blocks.3", "blocks.4", "blocks.5", "blocks.6", "head"),
           "{5, 6}": ("blocks.5", "blocks.6"), "{4, 5, 6}": ("blocks.4", "blocks.5", "blocks.6"),
           "all (1-6, head)": LAYERS}


def candidates() -> dict[str, Candidate]:
    found: dict[str, Candidate] = {"knn+imagenet (shipped, edgecnn.unknown)": shipped,
                                   "head k=3 + imagenet k=1 (the shipped sum, rebuilt here)":
                                       combined(knn("head", 3), imagenet_knn(1)),
                                   "imagenet logits k=1": imagenet_knn(1)}
    for pool in ("mean", "mean+std"):
        found |= {f"{layer} {pool} k={k}": knn(layer, k, pool) for layer in LAYERS for k in (1, 3)}
    for k in (1, 3):
        for name, layers in SUBSETS.items():
            found[f"sum {name} k={k}"] = combined(*(knn(layer, k) for layer in layers))
            found[f"sum {name} k={k} + imagenet k=1"] = combined(*(knn(layer, k) for layer in layers),
                                                                 imagenet_knn(1))
            found[f"sum {name} mean+std k={k} + imagenet k=1"] = combined(
                *(knn(layer, k, "mean+std") for layer in layers), imagenet_knn(1))
    return found


def evaluate(candidate: Candidate, a: dict[str, np.ndarray], accept_rate: float) -> dict[str, float]:
    from edgecnn.runtime.measure.openset import auroc

    score = candidate(a)
    threshold = float(np.quantile(score("val").astype(np.float64), accept_rate))
    known, unknown = score("test"), score("unknown")
    return {"auroc": auroc(known, unknown), "unknown_accepted": float(np.mean(unknown <= threshold)),
            "known_accepted": float(np.mean(known <= threshold))}


def print_costs(features: dict[str, np.ndarray], bank: int) -> None:
    print(f"\nCost a graph would carry per layer (a bank of ~{bank} training images, a fine-tune on the "
          "whole set; float32):")
    print("| layer | output map (C x H x W) | pooled dim (mean / mean+std) | bank (mean / mean+std) |")
    print("|---|---|---|---|")
    for layer in LAYERS:
        c, h, w = features[f"{layer}_shape"][0]
        print(f"| {layer} | {c} x {h} x {w} | {c} / {2 * c} | {bank * c * 4 / 1e3:.0f} kB / "
              f"{bank * 2 * c * 4 / 1e3:.0f} kB |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="+", type=Path, help="data sets: one subfolder per class")
    parser.add_argument("--accept-rate", type=float, default=0.95)
    parser.add_argument("--test-share", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=None,
                        help="keep each set's layer features in DIR/<data>.npz and reuse them")
    parser.add_argument("--only", nargs="*", default=None, help="candidates whose name contains one of these")
    args = parser.parse_args()
    chosen = {n: c for n, c in candidates().items() if args.only is None or any(o in n for o in args.only)}
    summary: dict[str, list[float]] = {name: [] for name in chosen}
    for data in args.data:
        features = layer_features(data, args.cache)
        names = classes(data)
        rotations = [rotation_arrays(data, c, features, args.seed, args.test_share) for c in names]
        sizes = {split: [len(r[f"{split}_labels"]) for r in rotations] for split in SPLITS}
        print(f"\n{data} ({len(rotations)} rotations; images per rotation: {sizes}):")
        print("| candidate | AUROC | unknown accepted | known accepted | " + " / ".join(names) + " |")
        print("|---|---|---|---|---|")
        for name, candidate in chosen.items():
            got = [evaluate(candidate, a, args.accept_rate) for a in rotations]
            mean = {key: float(np.mean([g[key] for g in got])) for key in got[0]}
            summary[name].append(mean["auroc"])
            print(f"| {name} | {mean['auroc']:.3f} | {mean['unknown_accepted']:.1%} | "
                  f"{mean['known_accepted']:.1%} | " + " / ".join(f"{g['auroc']:.3f}" for g in got) + " |",
                  flush=True)
        print_costs(features, round(0.8 * len(features["paths"])))  # a full fine-tune's 80 % train split
    print("\nMean AUROC per set, and their mean (sorted):")
    print("| candidate | " + " | ".join(d.name for d in args.data) + " | mean |")
    print("|---|" + "---|" * (len(args.data) + 1))
    for name, values in sorted(summary.items(), key=lambda item: -np.mean(item[1])):
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in values) + f" | {np.mean(values):.3f} |")


if __name__ == "__main__":
    main()
