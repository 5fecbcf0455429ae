"""Candidate unknown-detector rules scored in seconds on the rotations cached by `openset.py --cache`.

Each candidate is fitted on a rotation's training images (plus, where it says so, their augmented
views), calibrated on its validation images at --accept-rate and measured on the held-out known images
and the left-out class, exactly as openset.py does for the shipped rules; the table gives the mean over
each data set's rotations and the mean of those means (how a rule is chosen: no per-set tuning).

    python benchmarks/openset.py samples/photos /work/wt/shared-data/second --cache /tmp/openset
    python benchmarks/openset_rules.py /tmp/openset --accept-rate 0.95
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np

Scorer = Callable[[np.ndarray], np.ndarray]  # pooled features [N, D] -> unknown score [N]
Candidate = Callable[[dict[str, np.ndarray]], Scorer]  # a rotation's arrays -> fitted scorer


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def kth_cosine(queries: np.ndarray, bank: np.ndarray, k: int) -> np.ndarray:
    """1 - cosine similarity to the k-th most similar bank row (both already unit length)."""
    similarity = queries @ bank.T
    return 1.0 - np.sort(similarity, axis=1)[:, -min(k, len(bank))]


def space(name: str, a: dict[str, np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """A feature map fitted on the training images: raw features -> unit-length vectors."""
    if name == "imagenet_logits":
        return lambda x: x @ a["imagenet_weight"].T + a["imagenet_bias"]
    if name == "imagenet_softmax":
        return lambda x: softmax(x @ a["imagenet_weight"].T + a["imagenet_bias"])
    if name == "imagenet_sqrt_softmax":  # Hellinger: cosine of square-rooted probabilities
        return lambda x: np.sqrt(softmax(x @ a["imagenet_weight"].T + a["imagenet_bias"]))
    if name == "sqrt":
        return lambda x: np.sqrt(np.maximum(x, 0.0))
    return lambda x: x


def knn(k: int = 2, feature_space: str = "raw", centre: bool = False, views: int = 0) -> Candidate:
    """1 - cosine to the k-th nearest training image in `feature_space`, optionally centred by the
    training mean (before L2 normalisation), optionally with `views` augmented views per image in the
    bank."""

    def fit(a: dict[str, np.ndarray]) -> Scorer:
        mapped = space(feature_space, a)
        train = a["train_features"]
        if views:
            train = np.concatenate([train, a["train_views"][:, :views].reshape(-1, train.shape[1])])
        bank = mapped(train)
        mean = bank.mean(0) if centre else 0.0
        bank = unit(bank - mean)
        return lambda x: kth_cosine(unit(mapped(x) - mean), bank, k)

    return fit


def msp(temperature: float = 1.0, head: str = "head") -> Candidate:
    def fit(a: dict[str, np.ndarray]) -> Scorer:
        weight, bias = a[f"{head}_weight"], a[f"{head}_bias"]
        return lambda x: 1.0 - softmax(x @ weight.T + bias, temperature).max(1)

    return fit


def energy(temperature: float = 1.0, head: str = "head") -> Candidate:
    def fit(a: dict[str, np.ndarray]) -> Scorer:
        weight, bias = a[f"{head}_weight"], a[f"{head}_bias"]

        def score(x: np.ndarray) -> np.ndarray:
            z = (x @ weight.T + bias) / temperature
            top = z.max(1)
            return -(top + np.log(np.exp(z - top[:, None]).sum(1))) * temperature

        return score

    return fit


def logistic(c: float = 1.0, temperature: float = 1.0) -> Candidate:
    """Max softmax of a logistic regression fitted on the unit-length training features (sklearn)."""

    def fit(a: dict[str, np.ndarray]) -> Scorer:
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=c, max_iter=2000).fit(unit(a["train_features"]), a["train_labels"])
        return lambda x: 1.0 - softmax(model.decision_function(unit(x)), temperature).max(1)

    return fit


def combined(*parts: Candidate) -> Candidate:
    """Sum of the parts, each standardised by its mean and spread on the validation images."""

    def fit(a: dict[str, np.ndarray]) -> Scorer:
        scorers = [part(a) for part in parts]
        stats = []
        for scorer in scorers:
            values = scorer(a["val_features"])
            stats.append((values.mean(), max(values.std(ddof=1), 1e-3)))
        return lambda x: sum((s(x) - m) / d for s, (m, d) in zip(scorers, stats, strict=True))

    return fit


def shipped(rule: str) -> Candidate:
    """A rule of edgecnn.unknown, fitted by it (calibration here as for every candidate)."""

    def fit(a: dict[str, np.ndarray]) -> Scorer:
        import torch

        from edgecnn.unknown import fit_detector, score_module

        classifier = torch.nn.Linear(a["head_weight"].shape[1], a["head_weight"].shape[0])
        classifier.load_state_dict({"weight": torch.from_numpy(a["head_weight"]),
                                    "bias": torch.from_numpy(a["head_bias"])})
        classifier.eval()
        train = torch.from_numpy(a["train_features"]), torch.from_numpy(a["train_labels"])
        val = torch.from_numpy(a["val_features"]), torch.from_numpy(a["val_labels"])
        imagenet = torch.from_numpy(a["imagenet_weight"]), torch.from_numpy(a["imagenet_bias"])
        detector = fit_detector(rule, train, val, classifier, len(a["head_weight"]), pretrained_head=imagenet)
        module = score_module(rule, detector.tensors)

        def score(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                features = torch.from_numpy(x)
                return module(features, classifier(features)).numpy()

        return score

    return fit


CANDIDATES: dict[str, Candidate] = {
    "knn+imagenet (shipped)": shipped("knn+imagenet"),
    "knn k=2 (shipped)": shipped("knn"),
    "mahalanobis (shipped)": shipped("mahalanobis"),
    "msp (shipped)": shipped("msp"),
    **{f"knn k={k}": knn(k) for k in (1, 3, 5)},
    **{f"knn centred k={k}": knn(k, centre=True) for k in (1, 2, 3, 5)},
    **{f"knn sqrt k={k}": knn(k, "sqrt") for k in (1, 2, 3, 5)},
    **{f"knn sqrt centred k={k}": knn(k, "sqrt", centre=True) for k in (1, 2, 3, 5)},
    **{f"knn +{v} views k={k}": knn(k, views=v) for v, k in ((2, 2), (2, 3), (4, 3), (4, 5))},
    **{f"knn sqrt centred +{v} views k={k}": knn(k, "sqrt", True, v) for v, k in ((2, 2), (2, 3), (4, 3),
                                                                                 (4, 5))},
    **{f"imagenet {s} knn k={k}": knn(k, f"imagenet_{s}") for s in ("softmax", "sqrt_softmax", "logits")
       for k in (1, 2, 3)},
    **{f"imagenet logits centred knn k={k}": knn(k, "imagenet_logits", True) for k in (1, 2, 3)},
    "imagenet msp": msp(head="imagenet"),
    "imagenet energy": energy(head="imagenet"),
    **{f"head msp T={t}": msp(t) for t in (0.25, 0.5, 2.0)},
    **{f"head energy T={t}": energy(t) for t in (0.25, 0.5)},
    **{f"logistic C={c} msp": logistic(c) for c in (1.0, 10.0, 100.0)},
    "knn + imagenet sqrt_softmax knn (k=2)": combined(knn(2), knn(2, "imagenet_sqrt_softmax")),
    "knn sqrt centred + imagenet sqrt_softmax knn (k=2)": combined(knn(2, "sqrt", True),
                                                                   knn(2, "imagenet_sqrt_softmax")),
    **{f"knn k={kf} +{v} views + imagenet logits knn k={ki}": combined(knn(kf, views=v),
                                                                      knn(ki, "imagenet_logits"))
       for ki in (1, 2, 3) for kf, v in ((2, 0), (3, 0), (2, 2), (3, 2), (5, 4))},
    "knn + head msp": combined(knn(2), msp()),
    "knn sqrt centred k=2 + head msp T=0.5": combined(knn(2, "sqrt", True), msp(0.5)),
}


def evaluate(candidate: Candidate, a: dict[str, np.ndarray], accept_rate: float) -> dict[str, float]:
    from edgecnn.runtime.measure.openset import figures

    scorer = candidate(a)
    threshold = float(np.quantile(scorer(a["val_features"]).astype(np.float64), accept_rate))
    known, unknown = scorer(a["test_features"]), scorer(a["unknown_features"])
    correct = (a["test_features"] @ a["head_weight"].T + a["head_bias"]).argmax(1) == a["test_labels"]
    got = figures(known, unknown, correct, threshold)
    return {"auroc": got.auroc, "unknown_accepted": got.unknown_accepted,
            "known_accepted": got.known_accepted}


def issue_protocols(rotations: dict[str, list[dict[str, np.ndarray]]]) -> None:
    """Why issue 11 saw AUROC 0.97-0.99 for a logistic head's max softmax and 5-NN: the known images
    scored there were the ones fitted (in the bank, or the head's own training images)."""
    from edgecnn.runtime.measure.openset import auroc
    from sklearn.linear_model import LogisticRegression

    def rows(a: dict[str, np.ndarray]) -> dict[str, float]:
        train, test, unknown = (unit(a[f"{n}_features"]) for n in ("train", "test", "unknown"))
        head = LogisticRegression(C=1.0, max_iter=3000).fit(train, a["train_labels"])
        msp_of = lambda x: 1.0 - head.predict_proba(x).max(1)  # noqa: E731
        return {"logistic msp, known = its own training images": auroc(msp_of(train), msp_of(unknown)),
                "logistic msp, known = held-out images": auroc(msp_of(test), msp_of(unknown)),
                "5-NN, known = the bank's own images": auroc(kth_cosine(train, train, 5),
                                                            kth_cosine(unknown, train, 5)),
                "5-NN, known = held-out images": auroc(kth_cosine(test, train, 5),
                                                      kth_cosine(unknown, train, 5))}

    print("\n| protocol (frozen Lite0 features, unit length) | "
          + " | ".join(f"{name} AUROC" for name in rotations) + " |")
    print("|---|" + "---|" * len(rotations))
    got = {name: [rows(a) for a in found] for name, found in rotations.items()}
    for protocol in next(iter(got.values()))[0]:
        print(f"| {protocol} | " + " | ".join(f"{np.mean([r[protocol] for r in got[name]]):.3f}"
                                          for name in rotations) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cache", type=Path, help="the --cache DIR of benchmarks/openset.py")
    parser.add_argument("--accept-rate", type=float, default=0.95)
    parser.add_argument("--only", nargs="*", default=None, help="candidates whose name contains one of these")
    parser.add_argument("--issue-protocols", action="store_true",
                        help="also score known images that were fitted (how issue 11 got 0.97-0.99)")
    args = parser.parse_args()
    sets = sorted(p for p in args.cache.iterdir() if p.is_dir())
    rotations = {s.name: [dict(np.load(f)) for f in sorted(s.glob("*.npz"))] for s in sets}
    chosen = {n: c for n, c in CANDIDATES.items() if args.only is None or any(o in n for o in args.only)}
    names = list(rotations)
    print("| candidate | " + " | ".join(f"{n} AUROC / unk. acc. / known acc." for n in names)
          + " | mean AUROC | mean unk. acc. | mean known acc. |")
    print("|---|" + "---|" * (len(names) + 3))
    for name, candidate in chosen.items():
        means = []
        for data in names:
            got = [evaluate(candidate, a, args.accept_rate) for a in rotations[data]]
            means.append({key: float(np.mean([g[key] for g in got])) for key in got[0]})
        cells = [f"{m['auroc']:.3f} / {m['unknown_accepted']:.1%} / {m['known_accepted']:.1%}" for m in means]
        overall = {key: np.mean([m[key] for m in means]) for key in means[0]}
        print(f"| {name} | " + " | ".join(cells) + f" | {overall['auroc']:.3f} | "
              f"{overall['unknown_accepted']:.1%} | {overall['known_accepted']:.1%} |", flush=True)
    if args.issue_protocols:
        issue_protocols(rotations)


if __name__ == "__main__":
    main()
