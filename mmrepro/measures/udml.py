"""The UDML chapter's test-time measures: noise sweeps, mixed per-sample noise, the estimator's rank
correlation with the true level, unseen corruptions and the measured imbalance, all on one trained model."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from scipy.stats import spearmanr

from .. import evaluate
from ..data.core import Batch, Splits, iterate
from ..data.corruptions import make_corruption
from ..methods.base import Method
from ..methods.noise_augmented import NoiseAugmented
from ..methods.udml import default_noise, modality_dependency

Scores = tuple[dict[str, float], dict[str, list[float]]]


def _correct(method: Method, splits: Splits, transform=None, seed: int = 0) -> list[float]:
    """Per test item, 1.0 where the fused prediction is right (the whole test set in one batch)."""
    p = evaluate.predict(method, splits.test, transform, seed=seed, batch_size=len(splits.test))
    return (p.logits.argmax(-1) == p.labels).float().tolist()


def mixed_levels(n: int, modalities: Sequence[str], levels: int = 11, seed: int = 0) -> dict[str, torch.Tensor]:
    """Per-sample test levels, independent per modality and uniform over 1..levels (seeded: every run sees the same)."""
    gen = torch.Generator().manual_seed(seed)
    return {m: torch.randint(1, levels + 1, (n,), generator=gen) for m in modalities}


def _inner(method: Method) -> Method:
    return method.method if isinstance(method, NoiseAugmented) else method


def _scores(method: Method, splits: Splits, transform) -> dict[str, np.ndarray]:
    """Per test item and modality the method's quality score: UDML's predicted intensity, EAU's uncertainty."""
    inner = _inner(method)
    if not hasattr(inner, "forward_parts"):
        return {}
    method.eval()
    device = next(method.parameters()).device
    out: dict[str, list] = {m: [] for m in splits.modalities}
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)
        for batch in iterate(splits.test, 512):
            parts = inner.forward_parts(transform({k: v.to(device) for k, v in batch.items()}))
            for m in out:
                out[m].append(parts.intensity[m].float().cpu())
    return {m: torch.cat(v).numpy() for m, v in out.items()}


def _rank(score: np.ndarray, level: np.ndarray) -> float:
    """Spearman's rho of score against level; 0 when the score is constant (no information about the level)."""
    if np.ptp(score) == 0:
        return 0.0
    return float(spearmanr(score, level).statistic)


def estimator_rank(method: Method, splits: Splits, levels: Sequence[int]) -> dict[str, float]:
    """Per modality, rho between the quality score and the true Gaussian level (that modality alone corrupted),
    their mean (``rho``), and the mean score at each level (``score_<modality>_<level>``, for the figure)."""
    noise = default_noise(splits)
    out, rho = {}, {}
    for m in splits.modalities:
        scores, truth = [], []
        for k in levels:
            s = _scores(method, splits, noise.at_level(k, (m,)))
            if not s:
                return {}
            scores.append(s[m])
            truth.append(np.full(len(s[m]), k))
            out[f"score_{m}_{k}"] = float(s[m].mean())
        rho[f"rho_{m}"] = _rank(np.concatenate(scores), np.concatenate(truth))
    return {**out, **rho, "rho": float(np.mean(list(rho.values())))}


def dependency_ratio(method: Method, splits: Splits, weak: str) -> dict[str, float]:
    """How much more the fused logits move when the other modality is dropped than when ``weak`` is (clean test)."""
    inner = _inner(method)
    if not hasattr(inner, "forward_parts"):
        return {}
    inner.eval()
    device = next(inner.parameters()).device
    with torch.no_grad():
        batch = splits.test.batch(range(len(splits.test)))
        parts = inner.forward_parts({k: v.to(device) for k, v in batch.items()})
        d = modality_dependency(inner.model.fusion, parts.fused_input)
    d = dict(zip(parts.fused_input, d.tolist()))
    strong = next(m for m in d if m != weak)
    return {"dependency_ratio": d[strong] / max(d[weak], 1e-12)}


def weak_weight(method: Method, splits: Splits, weak: str) -> dict[str, float]:
    """The mean fusion weight of ``weak`` on the clean test set (weights sum to the number of modalities)."""
    p = evaluate.predict(method, splits.test)
    return {} if p.weights is None else {"weight_weak": float(p.weights[weak].mean())}


def robustness(method: Method, splits: Splits, levels: Sequence[int] = (1, 3, 5, 7, 9, 11), weak: str = "audio",
               unseen: dict[str, Sequence[float]] | None = None, mixed_seed: int = 0) -> Scores:
    """Accuracy per Gaussian level (each modality alone and both), under mixed per-sample levels and unseen
    corruptions of the image, with the estimator's rank correlations, the dependency ratio and the weak weight."""


    noise = default_noise(splits)
    items: dict[str, list[float]] = {}
    for target in (*splits.modalities, "both"):
        mods = tuple(splits.modalities) if target == "both" else (target,)
        per_level = [_correct(method, splits, noise.at_level(k, mods), seed=k) for k in levels if k > 1]
        items[f"accuracy_noisy_{target}"] = np.mean(per_level, axis=0).tolist()
        for k, row in zip([k for k in levels if k > 1], per_level):
            items[f"accuracy_{target}_{k}"] = row
    mixed = mixed_levels(len(splits.test), splits.modalities, noise.levels, mixed_seed)

    def per_sample(batch: Batch) -> Batch:
        return noise.apply(batch, {m: v.to(batch[m].device) for m, v in mixed.items()})

    items["accuracy_mixed"] = _correct(method, splits, per_sample, seed=mixed_seed)
    metrics: dict[str, float] = {"mixed_level_std": float(torch.stack(list(mixed.values())).float().std(1).mean())}
    unseen = {"blur": (1.0, 2.0), "occlusion": (0.25, 0.5)} if unseen is None else unseen
    image = next(m for m in splits.modalities if m != weak)
    for kind, severities in unseen.items():
        per = []
        for level in severities:
            corrupt = make_corruption(kind, image, level, splits.valid_range.get(image))
            per.append(_correct(method, splits, corrupt))
        items[f"accuracy_{kind}"] = np.mean(per, axis=0).tolist()
        scores = [_scores(method, splits, make_corruption(kind, image, s, splits.valid_range.get(image)))
                  for s in severities]
        clean = _scores(method, splits, lambda b: b)
        if clean:
            all_scores = np.concatenate([clean[image], *[s[image] for s in scores]])
            truth = np.concatenate([np.zeros(len(clean[image])), *[np.full(len(s[image]), i + 1.0)
                                                                  for i, s in enumerate(scores)]])
            metrics[f"rho_{kind}"] = _rank(all_scores, truth)
    metrics.update({k: float(np.mean(v)) for k, v in items.items()})
    metrics.update(estimator_rank(method, splits, levels))
    metrics.update(dependency_ratio(method, splits, weak))
    metrics.update(weak_weight(method, splits, weak))
    return metrics, items
