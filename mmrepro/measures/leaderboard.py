"""The leaderboard's test-time conditions, measured on one trained model: a modality missing, mixed per-sample
noise, and one level of each corruption family.

Every condition scores each test item (1.0 where the fused prediction is right), so a condition is a metric the
verdict module can pair by seed and item like clean accuracy.  Every draw is seeded, so every run sees the same
noise.

- **missing** (``acc_without_<m>``): modality ``m`` removed from the batch; a method that cannot predict without
  it gets it as zeros instead (``missing_zeroed_<m>`` = 1).  ``acc_missing`` is each item's mean over modalities.
- **mixed** (``acc_mixed``): each item and modality gets its own noise level, uniform over 1..``LEVELS`` (1
  clean, ``LEVELS`` the input replaced); the Gaussian std grows linearly to ``MIXED_SCALE`` times the valid
  range of a bounded modality (images in [0, 1]) or ``MIXED_SCALE`` times 2 for a standardised one (audio).
- **corruption families** (``acc_<family>``): one documented level (``FAMILIES``) applied to ``target``.
"""

from __future__ import annotations

from typing import Mapping

import torch

from .. import evaluate
from ..data.core import Batch, Splits
from ..data.corruptions import GradedNoise, MissingModality, make_corruption
from ..methods.base import Method

LEVELS = 11
MIXED_SCALE = 1.0
#: corruption family -> its one level (Gaussian std and salt-and-pepper density on [0, 1] pixels, blur sigma in
#: pixels, occluded side fraction)
FAMILIES: Mapping[str, float] = {"gaussian": 0.5, "blur": 1.5, "occlusion": 0.5, "salt_pepper": 0.2}
Scores = tuple[dict[str, float], dict[str, list[float]]]


def _correct(method: Method, splits: Splits, transform=None, drop: tuple[str, ...] = (), seed: int = 0) -> list[float]:
    p = evaluate.predict(method, splits.test, transform, drop=drop, seed=seed)
    return (p.logits.argmax(-1) == p.labels).float().tolist()


def _without(method: Method, splits: Splits, modality: str) -> tuple[list[float], bool]:
    """Per-item correctness without ``modality``, and whether it had to be zeroed (no prediction without it)."""
    try:
        return _correct(method, splits, drop=(modality,)), False
    except (KeyError, RuntimeError, ValueError, IndexError, StopIteration, AttributeError):
        return _correct(method, splits, MissingModality(modality, mode="zero")), True


def mixed_noise(splits: Splits, scale: float = MIXED_SCALE, levels: int = LEVELS, seed: int = 0):
    """A transform giving each test item and modality its own seeded level (the same draw for every run)."""
    ranges = {m: splits.valid_range.get(m) for m in splits.modalities}
    noise = GradedNoise.for_splits(splits, {m: scale * ((r[1] - r[0]) if r else 2.0) for m, r in ranges.items()},
                                   levels=levels, clean_fraction=0.0)
    gen = torch.Generator().manual_seed(seed)
    drawn = {m: torch.randint(1, levels + 1, (len(splits.test),), generator=gen) for m in splits.modalities}
    state = {"start": 0}

    def apply(batch: Batch) -> Batch:
        n = len(batch[splits.modalities[0]])
        start = state["start"]
        state["start"] = (start + n) % len(splits.test)
        return noise.apply(batch, {m: k[start:start + n].to(batch[m].device) for m, k in drawn.items()})

    return apply


def conditions(method: Method, splits: Splits, target: str = "image",
               families: Mapping[str, float] | None = None) -> Scores:
    """Per-item correctness with each modality missing, under mixed per-sample noise, and under each
    corruption family at its level on ``target``; metrics are their means."""
    if target not in splits.modalities:
        raise ValueError(f"target {target!r} is not a modality of {splits.name}: {list(splits.modalities)}")
    items: dict[str, list[float]] = {}
    metrics: dict[str, float] = {}
    for m in splits.modalities:
        items[f"acc_without_{m}"], zeroed = _without(method, splits, m)
        metrics[f"missing_zeroed_{m}"] = float(zeroed)
    without = torch.tensor([items[f"acc_without_{m}"] for m in splits.modalities])
    items["acc_missing"] = without.mean(0).tolist()
    items["acc_mixed"] = _correct(method, splits, mixed_noise(splits), seed=0)
    for kind, level in (FAMILIES if families is None else families).items():
        corrupt = make_corruption(kind, target, level, splits.valid_range.get(target))
        items[f"acc_{kind}"] = _correct(method, splits, corrupt, seed=0)
    metrics.update({k: sum(v) / len(v) for k, v in items.items()})
    return metrics, items
