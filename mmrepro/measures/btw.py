"""The BTW chapter's measurements: sentiment metrics, token weights, missing modalities, spread across seeds.

Each ``f(method, splits, **options) -> (metrics, items)`` is named in a run spec as
``"mmrepro.measures.btw:<f>"``; per-item scores go in ``items`` so that claims on them get
seed-by-item intervals from ``mmrepro.verdict``.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import stats

from .. import evaluate, verdict
from ..data.core import LABEL, Splits
from ..methods.base import Method

Measured = tuple[dict[str, float], dict[str, list[float]]]


def sentiment(method: Method, splits: Splits) -> Measured:
    """MOSI-style regression metrics on test: Pearson r (run-level) and per-item ``MAE`` (absolute error, flat),
    Acc-2 (non-0), Acc-5, Acc-7."""
    p = evaluate.predict(method, splits.test)
    pred, y = p.logits.view(-1).double().numpy(), p.labels.view(-1).double().numpy()
    reported = evaluate.sentiment_metrics(pred, y)
    nonzero = y != 0
    items = {"MAE": np.abs(pred - y), "acc2": ((pred[nonzero] > 0) == (y[nonzero] > 0)),
             "acc5": np.round(np.clip(pred, -2, 2)) == np.round(np.clip(y, -2, 2)),
             "acc7": np.round(np.clip(pred, -3, 3)) == np.round(np.clip(y, -3, 3))}
    metrics = {"corr": reported["corr"], "acc2": reported["acc2_non0"], "acc5": reported["acc5"],
               "acc7": reported["acc7"], "f1": reported["f1_non0"]}
    return metrics, {k: v.astype(float).tolist() for k, v in items.items()}


def token_weights(method: Method, splits: Splits, mask: str | None = None) -> Measured:
    """Each modality's test token multiplier (1 for an unweighted model): ``weight_<m>`` per item, and with a
    boolean ``mask`` key, ``weight_gap_<m>`` = mean weight on the marked items minus on the others."""
    p = evaluate.predict(method, splits.test)
    n = len(p.labels)
    weights = p.weights or {m: torch.ones(n) for m in splits.modalities}
    metrics = {f"weight_{m}": float(w.mean()) for m, w in weights.items()}
    items = {f"weight_{m}": w.view(-1).tolist() for m, w in weights.items()}
    if mask is not None:
        if mask not in splits.test.tensors:
            raise KeyError(f"mask {mask!r} is not a key of the test split; keys: {sorted(splits.test.tensors)}")
        flag = splits.test.tensors[mask].bool().view(-1)
        if flag.all() or not flag.any():
            raise ValueError(f"mask {mask!r} must mark some test items and not all of them")
        for m, w in weights.items():
            metrics[f"weight_gap_{m}"] = float(w[flag].mean() - w[~flag].mean())
    return metrics, items


def missing(method: Method, splits: Splits) -> Measured:
    """Test scores with each modality removed from every batch: ``accuracy_without_<m>`` (classification)
    or ``MAE_without_<m>`` (absolute error, regression), per item."""
    metrics, items = {}, {}
    for m in splits.modalities:
        p = evaluate.predict(method, splits.test, drop=[m])
        if splits.task == "classification":
            key, scores = f"accuracy_without_{m}", (p.logits.argmax(-1) == p.labels).float()
        else:
            key, scores = f"MAE_without_{m}", (p.logits.view_as(p.labels) - p.labels).abs().float().view(-1)
        metrics[key], items[key] = float(scores.mean()), scores.tolist()
    return metrics, items


def variance_ratio(treatment: Sequence[float], control: Sequence[float], level: float = 0.95) -> dict[str, float]:
    """Ratio of the across-seed variances (treatment / control) with its F-distribution interval.

    The interval treats the two arms' seeds as independent samples; a ratio interval wholly below 1 means the
    treatment's seed-to-seed spread is smaller.
    """
    a, b = np.asarray(treatment, dtype=float), np.asarray(control, dtype=float)
    if min(len(a), len(b)) < 2:
        raise ValueError(f"a variance ratio needs at least two seeds per arm, got {len(a)} and {len(b)}")
    ratio = a.var(ddof=1) / b.var(ddof=1) if b.var(ddof=1) > 0 else float("inf")
    tail = (1 - level) / 2
    dfs = (len(a) - 1, len(b) - 1)
    return {"ratio": ratio, "low": ratio / stats.f.ppf(1 - tail, *dfs), "high": ratio / stats.f.ppf(tail, *dfs)}


def spread_verdict(interval: Mapping[str, float]) -> str:
    """'smaller' / 'larger' spread when the ratio's interval excludes 1, otherwise 'no difference shown'."""
    if interval["high"] < 1:
        return "smaller spread"
    if interval["low"] > 1:
        return "larger spread"
    return "no difference shown"


def versus(arms: Mapping[str, verdict.Arm], control: str, treatments: Sequence[str], metrics: Sequence[str],
           scale: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Each arm's mean over seeds and its paired difference from ``control`` (treatment − control, 95%
    seed-by-item interval, unadjusted: descriptive) per metric, as strings; arms or metrics not recorded are '—'."""
    scale = scale or {}
    rows = {}
    for name in [control, *treatments]:
        row = {}
        for metric in metrics:
            k = scale.get(metric, 1.0)
            if name not in arms or metric not in arms[name].scores or metric not in arms[control].scores:
                row[metric], row[f"{metric} vs {control}"] = "—", "—"
                continue
            seeds = [s for s in arms[name].seeds if s in arms[control].seeds]
            t, c = arms[name].take(metric, seeds), arms[control].take(metric, seeds)
            row[metric] = f"{k * t.mean():.3g}"
            if name == control:
                row[f"{metric} vs {control}"] = ""
                continue
            cmp = verdict.compare(t, c)
            row[f"{metric} vs {control}"] = f"{k * cmp.effect:+.3g} [{k * cmp.low:+.3g}, {k * cmp.high:+.3g}]"
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")
