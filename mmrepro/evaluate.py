"""Evaluation: predictions, metrics, modality contribution, robustness sweeps, probes.

Everything here reads a method through ``method.predict(batch)`` only, so it
serves every method, and a modality missing from the batch is how "absent" is
expressed (Shapley subsets, missing-modality tables).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.preprocessing import StandardScaler
from torchmetrics.functional.classification import multiclass_calibration_error, multiclass_f1_score

from .data.core import LABEL, DictDataset, Splits, Transform, iterate
from .data.corruptions import compose, make_corruption


@dataclass
class Predictions:
    """Fused and unimodal outputs over a whole dataset, on the CPU."""

    logits: torch.Tensor
    unimodal_logits: dict[str, torch.Tensor]
    labels: torch.Tensor
    weights: dict[str, torch.Tensor] | None = None


def _device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


@torch.no_grad()
def predict(method: torch.nn.Module, dataset: DictDataset, transform: Transform | None = None,
            drop: Sequence[str] = (), seed: int = 0, batch_size: int = 512) -> Predictions:
    """Run ``method.predict`` over ``dataset`` in eval mode.

    ``transform`` corrupts each batch (with the RNG forked and seeded, so the same
    corruption is drawn every call); modalities in ``drop`` are removed from the batch.
    """
    was_training = method.training
    method.eval()
    device = _device_of(method)
    chunks: list = []
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            for batch in iterate(dataset, batch_size):
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items() if k not in drop}
                if transform is not None:
                    batch = transform(batch)
                out = method.predict(batch)
                chunks.append((out.logits.float(), {m: v.float() for m, v in out.unimodal_logits.items()},
                               batch[LABEL], None if out.weights is None else {m: w.float() for m, w in out.weights.items()}))
    finally:
        method.train(was_training)
    cat = lambda xs: torch.cat(xs).cpu()  # noqa: E731 - one transfer per dataset
    uni = {m: cat([c[1][m] for c in chunks]) for m in chunks[0][1]}
    weights = None if chunks[0][3] is None else {m: cat([c[3][m] for c in chunks]) for m in chunks[0][3]}
    return Predictions(cat([c[0] for c in chunks]), uni, cat([c[2] for c in chunks]), weights)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(-1) == labels).float().mean().item()


def metrics(p: Predictions, task: str = "classification") -> dict[str, float]:
    """Accuracy, macro-F1 and ECE (classification) or MSE/MAE (regression), plus per-modality accuracy."""
    if task == "regression":
        pred, y = p.logits.view_as(p.labels).float(), p.labels.float()
        return {"mse": torch.mean((pred - y) ** 2).item(), "mae": torch.mean((pred - y).abs()).item()}
    c = p.logits.shape[-1]
    out = {
        "accuracy": accuracy(p.logits, p.labels),
        "macro_f1": multiclass_f1_score(p.logits, p.labels, num_classes=c, average="macro").item(),
        "ece": multiclass_calibration_error(p.logits.softmax(-1), p.labels, num_classes=c, n_bins=15).item(),
    }
    out.update({f"accuracy_{m}": accuracy(lg, p.labels) for m, lg in p.unimodal_logits.items()})
    return out


def _multiclass_acc(preds: np.ndarray, truths: np.ndarray) -> float:
    return float(np.sum(np.round(preds) == np.round(truths)) / float(len(truths)))


def sentiment_metrics(preds: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> dict[str, float]:
    """MAE, Corr, Acc-7, Acc-5, Acc-2 / F1 (has-0 and non-0), as MulT's and MMIM's ``eval_mosei_senti``.

    Sentiment regression in [-3, 3]: "has-0" is ``>= 0`` vs ``< 0`` over every example,
    "non-0" is ``> 0`` vs ``< 0`` with zero labels dropped.
    """
    p = np.asarray(preds, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(f"{p.shape[0]} predictions for {y.shape[0]} labels")
    non_zero = y != 0
    return {
        "mae": float(np.mean(np.abs(p - y))),
        "corr": float(np.corrcoef(p, y)[0][1]),
        "acc7": _multiclass_acc(np.clip(p, -3.0, 3.0), np.clip(y, -3.0, 3.0)),
        "acc5": _multiclass_acc(np.clip(p, -2.0, 2.0), np.clip(y, -2.0, 2.0)),
        "acc2_has0": float(accuracy_score(y >= 0, p >= 0)),
        "f1_has0": float(f1_score(y >= 0, p >= 0, average="weighted")),
        "acc2_non0": float(accuracy_score(y[non_zero] > 0, p[non_zero] > 0)),
        "f1_non0": float(f1_score(y[non_zero] > 0, p[non_zero] > 0, average="weighted")),
    }


def seed_variance(runs: Sequence[Predictions], task: str = "classification") -> float:
    """Mean over examples of the variance across runs (seeds) of each prediction: the class probabilities,
    or the scalar for regression; NaN with fewer than two runs."""
    if len(runs) < 2:
        return float("nan")
    values = [p.logits.softmax(-1) if task == "classification" else p.logits for p in runs]
    return float(np.stack([v.numpy() for v in values]).var(0, ddof=1).mean())

def evaluate(method: torch.nn.Module, dataset: DictDataset, task: str = "classification", **kwargs) -> dict[str, float]:
    """``metrics(predict(...))`` in one call."""
    return metrics(predict(method, dataset, **kwargs), task)


def modality_subsets(modalities: Sequence) -> list[tuple]:
    """Every non-empty subset, singletons first, the full set last."""
    return [s for r in range(1, len(modalities) + 1) for s in itertools.combinations(modalities, r)]


def _subset_values(method: torch.nn.Module, dataset: DictDataset, modalities: Sequence[str],
                   full: float | None = None) -> dict[tuple, float]:
    """Accuracy with only each non-empty subset of ``modalities`` present (the others dropped from the batch);
    ``full``, if given, is taken as the full set's accuracy instead of predicting it again."""
    out = {}
    for subset in modality_subsets(modalities):
        if full is not None and len(subset) == len(modalities):
            out[subset] = full
            continue
        p = predict(method, dataset, drop=[m for m in modalities if m not in subset])
        out[subset] = accuracy(p.logits, p.labels)
    return out


def subset_accuracies(method: torch.nn.Module, dataset: DictDataset, modalities: Sequence[str]) -> dict[str, float]:
    """Accuracy with only each non-empty subset present, keyed "a+b" (the missing-modality table)."""
    return {"+".join(s): v for s, v in _subset_values(method, dataset, modalities).items()}


def collapse_rate(accuracies: dict[str, float], modalities: Sequence[str]) -> float:
    """Performance Collapse Rate (%): mean over incomplete subsets of ``(A_full - A_S) / A_full``.

    ``accuracies`` is keyed by subsets joined with "+" (``{"a+b": ..., "a": ...}``), the full set included.
    """
    full = accuracies["+".join(modalities)]
    if full <= 0:
        raise ValueError(f"PCR is undefined when the full-modality accuracy is {full}")
    partial = [a for s, a in accuracies.items() if s != "+".join(modalities)]
    if not partial:
        raise ValueError("PCR needs at least two modalities")
    return 100.0 * sum((full - a) / full for a in partial) / len(partial)


def shapley_values(value: Mapping[frozenset, Any], modalities: Sequence[str]) -> dict[str, Any]:
    """Exact Shapley value of each modality from a value per coalition (a frozenset of modality names, the empty
    one included); the values may be numbers or tensors, and they sum to ``value[all] - value[empty]``."""
    n = len(modalities)
    phi = {}
    for m in modalities:
        others = [o for o in modalities if o != m]
        total = 0.0
        for r in range(n):
            weight = math.factorial(r) * math.factorial(n - r - 1) / math.factorial(n)
            for s in map(frozenset, itertools.combinations(others, r)):
                total = total + weight * (value[s | {m}] - value[s])
        phi[m] = total
    return phi


def shapley(method: torch.nn.Module, dataset: DictDataset, modalities: Sequence[str],
            full: float | None = None) -> dict[str, float]:
    """Exact Shapley value of each modality for accuracy over modality subsets.

    ``v(S)`` is the accuracy with only the modalities in ``S`` present (the rest
    dropped from the batch); ``v(empty)`` is the majority-class rate, the best a
    model with no input can do.  ``full``, if known (validation has just computed it),
    is ``v(all)`` and saves one pass.
    """
    labels = dataset.tensors[LABEL]
    value = {frozenset(): torch.bincount(labels).max().item() / len(labels)}
    value.update({frozenset(s): v for s, v in _subset_values(method, dataset, modalities, full).items()})
    return shapley_values(value, modalities)


def shapley_monitor(method: torch.nn.Module, ctx) -> dict[str, float]:
    """A ``fit`` monitor: each modality's Shapley value for validation accuracy, as ``shapley_<m>`` every epoch
    (nothing for a one-modality model); the full set's accuracy is the epoch's validation accuracy."""
    if len(method.modalities) < 2:
        return {}
    full = ctx.val_metrics.get("accuracy") if ctx.val_metrics else None
    return {f"shapley_{m}": v for m, v in shapley(method, ctx.splits.val, method.modalities, full).items()}


def robustness_sweep(method: torch.nn.Module, splits: Splits, kind: str, levels: Iterable[float],
                     targets: Sequence[Sequence[str]] | None = None, split: str = "test") -> pd.DataFrame:
    """Accuracy at each corruption level, corrupting each group of modalities in ``targets``.

    ``targets`` defaults to each modality alone and then all of them together.
    Returns one row per (target, level) with columns target, level, accuracy, macro_f1.
    """
    mods = splits.modalities
    targets = targets or [[m] for m in mods] + [list(mods)]
    dataset = splits.split(split)
    rows = []
    for target in targets:
        for level in levels:
            transform = compose([make_corruption(kind, m, level, splits.valid_range.get(m)) for m in target])
            m = metrics(predict(method, dataset, transform=transform))
            rows.append({"target": "+".join(target), "level": level, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]})
    return pd.DataFrame(rows)


@torch.no_grad()
def features(method: torch.nn.Module, dataset: DictDataset, batch_size: int = 512) -> dict[str, torch.Tensor]:
    """Each modality's encoder features over the dataset (the input of the fusion head)."""
    p_chunks: dict[str, list[torch.Tensor]] = {}
    was_training = method.training
    method.eval()
    device = _device_of(method)
    try:
        for batch in iterate(dataset, batch_size):
            out = method.predict({k: v.to(device) for k, v in batch.items()})
            for m, f in out.features.items():
                p_chunks.setdefault(m, []).append(f.float().flatten(1).cpu())
    finally:
        method.train(was_training)
    return {m: torch.cat(v) for m, v in p_chunks.items()}


def linear_probes_predictions(method: torch.nn.Module, splits: Splits, modalities: Sequence[str] | None = None,
                              C: float = 1.0) -> dict[str, np.ndarray]:
    """Test-set predictions of a logistic regression on each modality's frozen encoder features.

    Fitted on the training split; measures how much each encoder learned, whatever the fusion head makes
    of it.  The features of all modalities come from one pass over each split.
    """
    modalities = list(modalities or splits.modalities)
    train, test = features(method, splits.train), features(method, splits.test)
    labels = splits.train.tensors[LABEL].numpy()
    out = {}
    for m in modalities:
        scaler = StandardScaler().fit(train[m].numpy())
        clf = LogisticRegression(C=C, max_iter=2000).fit(scaler.transform(train[m].numpy()), labels)
        out[m] = clf.predict(scaler.transform(test[m].numpy()))
    return out


def linear_probe(method: torch.nn.Module, splits: Splits, modality: str, C: float = 1.0) -> float:
    """Test accuracy of the linear probe on one modality's frozen encoder features."""
    pred = linear_probes_predictions(method, splits, [modality], C)[modality]
    return float(np.mean(pred == splits.test.tensors[LABEL].numpy()))
