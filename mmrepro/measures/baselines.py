"""Measurements of the baselines chapter's sanity runs: does a dynamic-fusion baseline lower a corrupted modality's weight?"""

from __future__ import annotations

import torch

from .. import evaluate
from ..data.core import Splits
from ..data.corruptions import make_corruption

#: Gaussian noise std per modality for "corrupted": images live in [0, 1], audio is standardised (std 1)
DEFAULT_STD = 1.0


def _weights(method: torch.nn.Module, splits: Splits, modality: str, std: float) -> torch.Tensor:
    """Per-test-item fusion weight of ``modality`` (averaged over channels) with it alone noised at ``std``."""
    transform = make_corruption("gaussian", modality, std, splits.valid_range.get(modality)) if std > 0 else None
    p = evaluate.predict(method, splits.test, transform=transform, seed=0)  # seed 0: one noise draw for every arm
    if p.weights is None or modality not in p.weights:
        raise ValueError(f"{type(method).__name__} reports no fusion weight for {modality!r}: it is not a dynamic-fusion method")
    weight = p.weights[modality].float()
    return weight.reshape(len(weight), -1).mean(1)


def corrupted_weight(method: torch.nn.Module, splits: Splits, std: float = DEFAULT_STD) -> tuple[dict, dict]:
    """Each modality's weight clean and with it alone corrupted; per item the drop (clean − corrupted).

    ``weight_drop`` (the mean drop over modalities, per item) is what a claim "the weight falls" is judged on.
    """
    if not std > 0:
        raise ValueError(f"std must be > 0 (the corruption's strength), got {std}")
    metrics, items, drops = {}, {}, []
    for m in splits.modalities:
        clean, noisy = _weights(method, splits, m, 0.0), _weights(method, splits, m, std)
        drops.append(clean - noisy)
        items[f"weight_drop_{m}"] = drops[-1].tolist()
        metrics.update({f"weight_clean_{m}": clean.mean().item(), f"weight_corrupted_{m}": noisy.mean().item()})
    drop = torch.stack(drops).mean(0)
    items["weight_drop"] = drop.tolist()
    metrics["weight_drop"] = drop.mean().item()
    return metrics, items
