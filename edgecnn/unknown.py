"""The unknown detector: a score saying how unlike the training images a photo is (higher = more likely
none of the classes), fitted on the final model's pooled features and logits, with a threshold
calibrated so that `accept_rate` of the known validation images are accepted. A k-NN bank holds the
training and validation images alike, so no photo the user gave is called unknown; each known image
is scored with itself left out of it, so the threshold is that of images the bank has not seen.

Rules (compared by benchmarks/openset.py; see benchmarks/README.md for the figures behind the default):
  msp          1 - max softmax probability
  energy       -logsumexp(logits)
  centroid     1 - cosine similarity to the nearest class centroid of the training features
  knn          1 - cosine similarity to the k-th nearest training image (normalised pooled features)
  mahalanobis  squared Mahalanobis distance of the unit-length features to the nearest class mean, with
               one Ledoit-Wolf-shrunk covariance shared by the classes (low rank + a scaled identity)
  knn+msp      knn and msp, each standardised by its mean and spread on the known validation images, summed
  knn+imagenet (default) k-NN twice, summed after standardising each as knn+msp does: 1 - cosine to the
               3rd nearest training image in the pooled features, and 1 - cosine to the nearest one in
               the logits of the 1000-class ImageNet head that came with the backbone's weights (a
               second view of the same features, through the directions ImageNet found discriminative;
               kept on the logits' 256 leading singular directions). Leave one class out on two data
               sets: AUROC 0.927 / 0.941 against knn's 0.917 / 0.915 (benchmarks/README.md). Without
               such a head (random init, other architectures' hub weights) it fits knn instead.
The score is a small torch module (`score_module`) so export traces it into every model's graph.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgecnn.errors import EdgecnnError
from edgecnn.runtime.core.metadata import MAX_THRESHOLD, UNKNOWN_RULES, UnknownMeta
from edgecnn.runtime.core.records import spec

if TYPE_CHECKING:
    import torch

log = logging.getLogger("edgecnn")
RULES = UNKNOWN_RULES
DEFAULT_RULE = "knn+imagenet"
PRETRAINED_HEAD_RULES = ("knn+imagenet",)  # rules that need the backbone's own pretrained classifier
DEFAULT_ACCEPT_RATE = 0.95
KNN_K = 2  # k-th neighbour: k=2 beat 1, 3 and 5 on the sample photos' small banks (benchmarks/README.md)
# knn+imagenet: 3rd neighbour in the features, 1st in the ImageNet logits; the best mean AUROC of the
# 3 x 5 pairs tried over both data sets, every pair within 0.925-0.936 (benchmarks/README.md)
PAIR_FEATURE_K, PAIR_IMAGENET_K = 3, 1
# ImageNet logits kept on their 256 leading singular directions: 256 x 1280 floats (1.3 MB) in the graph
# instead of 1000 x 1280 (5.1 MB), the same mean AUROC (0.934; ranks 128-512 all 0.934-0.935)
IMAGENET_RANK = 256
BANK_CAP = 1024  # training images kept for k-NN: 1024 x 1280 floats = 5 MB in the graph
COVARIANCE_RANK = 256  # leading covariance directions kept; the rest count as the shrinkage identity
# a known image is scored with its near-duplicates left out of the bank too (frames of one clip would
# otherwise vouch for each other): pooled-feature cosine >= this; the sample photos' closest distinct
# pair is 0.81, consecutive frames `edgecnn capture` keeps from cup.mp4 0.92-0.96
NEAR_DUPLICATE = 0.9
MIN_CALIBRATION = 10  # validation images needed to calibrate the threshold on them
MODULE_NAME = "unknown_detector"  # ONNX node names of the score start with /unknown_detector/


def check_accept_rate(rate: float) -> float:
    if not (math.isfinite(rate) and 0.5 < rate < 1.0):
        raise EdgecnnError(f"--accept-rate {rate} is out of range; give a share of known images to accept "
                           "between 0.5 and 1 (exclusive), e.g. 0.95")
    return rate


def check_rule(rule: str) -> str:
    if rule not in RULES:
        raise EdgecnnError(f"unknown detector rule {rule!r}; choose from {', '.join(RULES)}")
    return rule


@dataclass(frozen=True)
class Detector:
    """A fitted rule, its tensors and calibrated threshold: what the checkpoint stores."""

    rule: str = spec(choices=RULES)
    threshold: float = spec(low=-MAX_THRESHOLD, high=MAX_THRESHOLD)
    accept_rate: float = spec(low=0.0, high=1.0)
    calibration: str = spec(length=(0, 1000))  # which images set the threshold, in words
    calibration_images: int = spec()
    tensors: dict[str, torch.Tensor] = spec(factory=dict, raw=True)

    def to_dict(self) -> dict[str, Any]:
        """Plain values and tensors only: loadable with `weights_only=True`."""
        return {"rule": self.rule, "threshold": float(self.threshold), "accept_rate": float(self.accept_rate),
                "calibration": self.calibration, "calibration_images": int(self.calibration_images),
                "tensors": dict(self.tensors)}

    def meta(self) -> UnknownMeta:
        return UnknownMeta(rule=self.rule, threshold=float(self.threshold), accept_rate=self.accept_rate,
                           calibration=self.calibration, calibration_images=self.calibration_images)


def fit_detector(rule: str, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
                 classifier: torch.nn.Module, num_classes: int, accept_rate: float = DEFAULT_ACCEPT_RATE,
                 pretrained_head: tuple[torch.Tensor, torch.Tensor] | None = None) -> Detector:
    """Fit `rule` on training (features, labels), calibrate on validation features; never fails on
    tiny data (see `calibrate`). Features are the pooled ones right before `classifier`;
    `pretrained_head` (weight, bias) is the backbone's own classifier, for PRETRAINED_HEAD_RULES.
    A k-NN bank holds the validation images too (no photo the user gave is then called unknown: it
    is its own nearest neighbour); each known image is scored with itself left out of the bank, so the
    threshold and the acceptance it states are those of images the bank has not seen."""
    torch = _torch()
    check_rule(rule)
    check_accept_rate(accept_rate)
    train_features, train_labels = train[0].float(), train[1].long()
    val_features = val[0].float()
    rule = _usable_rule(rule, pretrained_head, train_features.shape[1])
    banked = rule in _BANK_RULES
    known = torch.cat([train_features, val_features]) if banked else train_features
    labels = torch.cat([train_labels, val[1].long()]) if banked else train_labels
    tensors = _fit_tensors(rule, known, labels, num_classes, pretrained_head)
    with torch.inference_mode():
        val_logits = classifier(val_features).float() if len(val_features) else val_features[:, :num_classes]
        train_logits = classifier(train_features).float()
    if rule in ("knn+msp", "knn+imagenet"):
        source = val_features, val_logits
        if len(val_features) < MIN_CALIBRATION:  # standardise on the training images, each left out
            source = train_features, train_logits
        tensors.update(_standardisers(rule, tensors, *source))
    module = score_module(rule, tensors)
    with torch.inference_mode():
        val_scores = _left_out_scores(module, rule, tensors, val_features, val_logits)
        train_scores = _left_out_scores(module, rule, tensors, train_features, train_logits)
    threshold, calibration, count = calibrate(val_scores, train_scores, accept_rate, left_out=banked)
    if banked and len(val_features):
        calibration += (f"; k-NN bank of {len(tensors['bank'])} known images, each scored without itself "
                        "and its near-duplicates")
    if len(val_scores) >= MIN_CALIBRATION:
        calibration += (f"; held out, each judged by the others' threshold: "
                        f"{held_out_acceptance(val_scores, accept_rate):.0%} accepted")
    return Detector(rule, threshold, accept_rate, calibration, count, tensors)


def held_out_acceptance(scores: torch.Tensor, accept_rate: float) -> float:
    """Share of known images accepted by a threshold they did not set: each image judged by the
    `accept_rate` quantile of the others' scores (leave one out), so stated on held-out images."""
    torch = _torch()
    scores = scores.double()
    accepted = [float(score) <= float(torch.quantile(torch.cat([scores[:i], scores[i + 1:]]), accept_rate))
                for i, score in enumerate(scores)]
    return sum(accepted) / max(1, len(accepted))


_BANK_RULES = ("knn", "knn+msp", "knn+imagenet")  # rules that keep training images in a k-NN bank


def _usable_rule(rule: str, head: tuple[torch.Tensor, torch.Tensor] | None, dim: int) -> str:
    """`rule`, or knn where it needs a pretrained head that this model lacks (with a note why)."""
    if rule not in PRETRAINED_HEAD_RULES:
        return rule
    if head is None or head[0].dim() != 2 or head[0].shape[1] != dim or head[1].shape != head[0].shape[:1]:
        log.warning("unknown detector: %s needs the backbone's pretrained classifier, which this model "
                    "lacks; fitting knn instead", rule)
        return "knn"
    return rule


def describe(detector: Detector | None) -> str:
    if detector is None:
        return "off (no detector in this checkpoint)"
    return (f"{detector.rule}, threshold {detector.threshold:.4g} set to accept {detector.accept_rate:.0%} "
            f"of {detector.calibration_images} {detector.calibration}")


def calibrate(val_scores: torch.Tensor, train_scores: torch.Tensor, accept_rate: float,
              left_out: bool = False) -> tuple[float, str, int]:
    """(threshold, basis in words, images used): the `accept_rate` quantile of the validation scores;
    with fewer than MIN_CALIBRATION of them, of the training scores (for k-NN each image left out of
    the bank; other rules see their own training images, so this threshold is on the strict side);
    with fewer of those too, the highest score seen, so every known image seen is accepted."""
    torch = _torch()
    if len(val_scores) >= MIN_CALIBRATION:
        return float(torch.quantile(val_scores.double(), accept_rate)), "validation images", len(val_scores)
    if len(train_scores) >= MIN_CALIBRATION:
        basis = (f"training images{', each left out' if left_out else ''} (only {len(val_scores)} "
                 f"validation images; {MIN_CALIBRATION} needed)")
        return float(torch.quantile(train_scores.double(), accept_rate)), basis, len(train_scores)
    scores = torch.cat([val_scores, train_scores])
    top = float(scores.max()) if len(scores) else MAX_THRESHOLD  # finite: metadata is strict JSON
    return top, f"highest score of {len(scores)} known images (too few to calibrate)", len(scores)


def score_module(rule: str, tensors: dict[str, torch.Tensor]) -> torch.nn.Module:
    """(features [N, D], logits [N, C]) -> unknown score [N]; traceable to ONNX."""
    torch = _torch()

    class UnknownScore(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rule = rule
            for name, value in tensors.items():
                self.register_buffer(name.replace(".", "_"), value.float())
            self.k = int(tensors["knn_k"].item()) if "knn_k" in tensors else 0
            self.imagenet_nth = int(tensors["imagenet_k"].item()) if "imagenet_k" in tensors else 0

        def forward(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
            if self.rule == "msp":
                return _msp(logits)
            if self.rule == "energy":
                return -torch.logsumexp(logits, dim=1)
            if self.rule == "centroid":
                return 1.0 - (_unit(features) @ self.centroids.t()).max(dim=1).values
            if self.rule == "knn":
                return _knn(features, self.bank, self.k)
            if self.rule == "mahalanobis":
                return _mahalanobis(_unit(features), self.means, self.whiten, self.inverse_scale)
            knn = (_knn(features, self.bank, self.k) - self.knn_mean) / self.knn_std
            if self.rule == "knn+imagenet":
                imagenet = _knn(features @ self.imagenet_projection.t() + self.imagenet_offset,
                                self.imagenet_bank, self.imagenet_nth)
                return knn + (imagenet - self.imagenet_mean) / self.imagenet_std
            return knn + (_msp(logits) - self.msp_mean) / self.msp_std

    return UnknownScore().eval()


def _fit_tensors(rule: str, features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                 pretrained_head: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    torch = _torch()
    unit = _unit(features)
    if rule in _BANK_RULES:
        chosen = (torch.arange(len(unit)) if len(unit) <= BANK_CAP else
                  torch.randperm(len(unit), generator=torch.Generator().manual_seed(0))[:BANK_CAP])
        k = KNN_K if rule != "knn+imagenet" else PAIR_FEATURE_K
        tensors = {"bank": unit[chosen].contiguous(), "knn_k": torch.tensor(min(k, max(1, len(chosen) - 1)))}
        if rule == "knn+imagenet":
            projection, offset = _leading_logits(*pretrained_head)
            tensors.update(imagenet_projection=projection, imagenet_offset=offset,
                           imagenet_bank=_unit(features[chosen] @ projection.t() + offset).contiguous(),
                           imagenet_k=torch.tensor(min(PAIR_IMAGENET_K, max(1, len(chosen) - 1))))
        return tensors
    if rule == "centroid":
        return {"centroids": _unit(_class_means(unit, labels, num_classes))}
    if rule == "mahalanobis":
        means = _class_means(unit, labels, num_classes)
        scale, directions, variances = _ledoit_wolf(unit - means[labels])
        # covariance = scale*I + V diag(variances) V^T, so its inverse is
        # (I - V diag(variances / (scale + variances)) V^T) / scale: two small matmuls in the graph
        whiten = (variances / (scale + variances)).sqrt()[:, None] * directions
        return {"means": means, "whiten": whiten.float(), "inverse_scale": torch.tensor(1.0 / scale)}
    return {}


def _standardisers(rule: str, tensors: dict[str, torch.Tensor], features: torch.Tensor, logits: torch.Tensor
                   ) -> dict[str, torch.Tensor]:
    """Mean and spread of each part of a summed rule on known images, each left out of the bank."""
    torch = _torch()
    hidden = _near_duplicates(features, tensors["bank"])
    knn = _knn(features, tensors["bank"], int(tensors["knn_k"]), hidden)
    if rule == "knn+imagenet":
        name, other = "imagenet", _imagenet_knn(tensors, features, hidden)
    else:
        name, other = "msp", _msp(logits)

    def spread(values: torch.Tensor) -> torch.Tensor:
        return values.std().clamp_min(1e-3) if len(values) > 1 else torch.tensor(1.0)

    return {"knn_mean": knn.mean(), "knn_std": spread(knn), f"{name}_mean": other.mean(),
            f"{name}_std": spread(other)}


def _leading_logits(weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(projection [r, D], offset [r]): the head's logits W f + b in the basis of W's IMAGENET_RANK leading
    left singular vectors, where cosine similarities are nearly those of the full logits."""
    torch = _torch()
    weight, bias = weight.detach().double().cpu(), bias.detach().double().cpu()
    # W's leading left singular vectors are the leading eigenvectors of W W^T: the same subspace (to 3e-15)
    # in 0.24 s instead of the SVD's 0.52 s, which every default fine-tune pays
    values, vectors = torch.linalg.eigh(weight @ weight.t())
    left = vectors[:, values.argsort(descending=True)[:IMAGENET_RANK]].t()
    return (left @ weight).float().contiguous(), (left @ bias).float().contiguous()


def _imagenet_knn(tensors: dict[str, torch.Tensor], features: torch.Tensor, hidden: torch.Tensor | None
                  ) -> torch.Tensor:
    logits = features @ tensors["imagenet_projection"].t() + tensors["imagenet_offset"]
    return _knn(logits, tensors["imagenet_bank"], int(tensors["imagenet_k"]), hidden)


def _near_duplicates(features: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """[N, bank] True where a bank image is the image itself or a near-duplicate of it (NEAR_DUPLICATE)."""
    return _unit(features) @ bank.t() >= NEAR_DUPLICATE


def _left_out_scores(module: torch.nn.Module, rule: str, tensors: dict[str, torch.Tensor],
                     features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Scores of known images, for k-NN with each image and its near-duplicates left out of the bank."""
    torch = _torch()
    if not len(features):
        return torch.zeros(0)
    if rule not in _BANK_RULES:
        return module(features, logits)
    hidden = _near_duplicates(features, tensors["bank"])
    knn = _knn(features, tensors["bank"], int(tensors["knn_k"]), hidden)
    if rule == "knn":
        return knn
    if rule == "knn+imagenet":
        imagenet = _imagenet_knn(tensors, features, hidden)
        other = (imagenet - tensors["imagenet_mean"]) / tensors["imagenet_std"]
    else:
        other = (_msp(logits) - tensors["msp_mean"]) / tensors["msp_std"]
    return (knn - tensors["knn_mean"]) / tensors["knn_std"] + other


def _msp(logits: torch.Tensor) -> torch.Tensor:
    torch = _torch()
    return 1.0 - torch.softmax(logits, dim=1).max(dim=1).values


def _knn(features: torch.Tensor, bank: torch.Tensor, k: int,
         hidden: torch.Tensor | None = None) -> torch.Tensor:
    """1 - cosine similarity to the k-th most similar bank image; `hidden` [N, bank]: left out."""
    torch = _torch()
    similarity = _unit(features) @ bank.t()
    if hidden is not None:
        similarity = torch.where(hidden, similarity - 3.0, similarity)
    return 1.0 - torch.topk(similarity, k, dim=1).values[:, -1]


def _unit(features: torch.Tensor) -> torch.Tensor:
    return features / features.norm(dim=1, keepdim=True).clamp_min(1e-6)


def _class_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    torch = _torch()
    means = torch.zeros(num_classes, features.shape[1])
    for index in range(num_classes):
        chosen = features[labels == index]
        if len(chosen):
            means[index] = chosen.mean(0)
    return means


def _ledoit_wolf(centred: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Ledoit-Wolf shrunk covariance as (scale, directions [r, D], variances [r]) with covariance =
    scale*I + directions^T diag(variances) directions: well-conditioned with far fewer images than
    feature dimensions, and small enough to ship (r <= COVARIANCE_RANK)."""
    torch = _torch()
    count, dim = centred.shape
    x = centred.double()
    sample = x.t() @ x / max(1, count)
    mean_variance = float(torch.trace(sample)) / dim
    delta = float(((sample - mean_variance * torch.eye(dim, dtype=x.dtype)) ** 2).sum()) / dim
    norms = (x**2).sum(1)
    beta = float((norms**2).sum() - count * (sample**2).sum()) / (count**2 * dim)  # sum_k |x_k x_k^T - S|^2
    shrinkage = min(1.0, max(0.0, beta) / delta) if delta > 0 else 1.0
    eigenvalues, eigenvectors = torch.linalg.eigh(sample)
    keep = eigenvalues.argsort(descending=True)[: min(COVARIANCE_RANK, count)]
    scale = max(shrinkage * mean_variance, 1e-8)
    variances = ((1.0 - shrinkage) * eigenvalues[keep]).clamp_min(0.0)
    return scale, eigenvectors[:, keep].t(), variances


def _mahalanobis(unit: torch.Tensor, means: torch.Tensor, whiten: torch.Tensor,
                 inverse_scale: torch.Tensor) -> torch.Tensor:
    """min over classes of (x - m)^T covariance^-1 (x - m), from the low-rank form of `_ledoit_wolf`."""
    distance = (unit**2).sum(1, keepdim=True) - 2.0 * unit @ means.t() + (means**2).sum(1)[None]
    projected = unit @ whiten.t()  # [N, r]
    along = ((projected[:, None, :] - (means @ whiten.t())[None]) ** 2).sum(-1)  # [N, C]
    return ((distance - along) * inverse_scale).min(dim=1).values


def _torch():
    from edgecnn.device import import_torch

    return import_torch()
