"""IIBalance chapter measurements: the gate against a temperature-scaled plain sum, the budgets, trigger rates.

The gate and its control are both calibrated on one half of the test split (even item positions) and scored on
the other half (odd positions), so neither reuses the validation split that selected the epoch.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from .. import evaluate
from ..data.core import LABEL, DictDataset, Splits
from ..data.corruptions import fixed_noise
from ..methods.iibalance import IIBalance, fit_temperature

FUSIONS = ("gate", "tsum")  # the IIBalance gate; the plain sum of per-modality temperature-scaled logits


def halves(dataset: DictDataset) -> tuple[DictDataset, DictDataset]:
    """(calibration, evaluation): the even and the odd item positions of ``dataset``."""
    n = len(dataset)
    return dataset.subset(torch.arange(0, n, 2)), dataset.subset(torch.arange(1, n, 2))


def calibrated_sum(p: evaluate.Predictions, temperatures: Sequence[float], fused_temperature: float) -> Tensor:
    """Log-probabilities of the plain sum of temperature-scaled unimodal logits, rescaled by ``fused_temperature``."""
    total = sum(lg / t for lg, t in zip(p.unimodal_logits.values(), temperatures))
    return (total / fused_temperature).log_softmax(-1)


def fit_calibrated_sum(p: evaluate.Predictions) -> tuple[list[float], float]:
    """Per-modality temperatures, then the temperature of their sum, each minimising NLL on ``p``."""
    temps = [fit_temperature(lg, p.labels) for lg in p.unimodal_logits.values()]
    return temps, fit_temperature(calibrated_sum(p, temps, 1.0), p.labels)


def plain_predict(method: IIBalance, dataset: DictDataset) -> evaluate.Predictions:
    """The model's own outputs, gate bypassed (IIBalance predicts without its gate while it is not ready)."""
    ready = bool(method.gate_ready)
    method.gate_ready.fill_(False)
    try:
        return evaluate.predict(method, dataset)
    finally:
        method.gate_ready.fill_(ready)


def scores(log_probs: Tensor, labels: Tensor) -> tuple[dict[str, float], dict[str, list[float]]]:
    """ECE (run level), and per item correctness and Brier score, of one fused prediction."""
    probs = log_probs.exp()
    one_hot = torch.nn.functional.one_hot(labels, probs.shape[-1]).float()
    ece = evaluate.metrics(evaluate.Predictions(log_probs, {}, labels))["ece"]
    items = {"correct": (probs.argmax(-1) == labels).float().tolist(), "brier": ((probs - one_hot) ** 2).sum(-1).tolist()}
    return {"ece": ece}, items


def gate_control(method: IIBalance, splits: Splits, noise: float = 2.0) -> tuple[dict[str, float], dict[str, list[float]]]:
    """The gate and the temperature-scaled plain sum, both fitted on the calibration half of test, scored on the
    evaluation half clean and with the anchor modality under fixed Gaussian noise (``noise`` x its train std).

    Keys are ``<score>@<fusion>`` (clean) and ``<score>_noisy@<fusion>``; ``anchor_weight[_noisy]`` is the gate's
    mean weight on the anchor.
    """
    if not isinstance(method, IIBalance) or method.gate == "none":
        raise ValueError(f"gate_control needs IIBalance with its gate on, got {type(method).__name__}")
    calib, held = halves(splits.test)
    method.calibrate(calib)
    temps, fused_t = fit_calibrated_sum(plain_predict(method, calib))
    anchor = method.modalities[int(method.anchor)]
    std = float(splits.train.tensors[anchor].std())
    noisy = fixed_noise(held, anchor, noise * std, splits.valid_range.get(anchor))
    metrics: dict[str, float] = {}
    items: dict[str, list[float]] = {}
    for suffix, data in (("", held), ("_noisy", noisy)):
        gated = evaluate.predict(method, data)
        plain = plain_predict(method, data)
        metrics[f"anchor_weight{suffix}"] = float(gated.weights[anchor].mean())
        labels = data.tensors[LABEL]
        for fusion, log_probs in (("gate", gated.logits.log_softmax(-1)), ("tsum", calibrated_sum(plain, temps, fused_t))):
            m, it = scores(log_probs, labels)
            metrics.update({f"{k}{suffix}@{fusion}": v for k, v in m.items()})
            items.update({f"{k}{suffix}@{fusion}": v for k, v in it.items()})
    return metrics, items


def budgets(method: IIBalance, splits: Splits) -> tuple[dict[str, float], dict[str, list[float]]]:
    """The fixed budgets of the run (``budget_<estimator>_<modality>``) and the anchor's index under each estimator."""
    table = method.budgets
    metrics = {f"budget_{est}_{m}": float(table.loc[m, est]) for est in ("vinfo", "accuracy") for m in table.index}
    metrics.update({f"anchor_{est}": float(list(table.index).index(table[est].idxmax())) for est in ("vinfo", "accuracy")})
    return metrics, {}


def trigger_rate(record: Mapping[str, Any], modality: str, start: int = 0) -> float:
    """Mean share of training steps whose alignment fired on ``modality``, over epochs ``>= start``."""
    rows = [r[f"train_fired_{modality}"] for r in record["history"] if r["epoch"] >= start]
    if not rows:
        raise ValueError(f"record {record['arm']!r} has no train_fired_{modality} from epoch {start}")
    return sum(rows) / len(rows)


def view_arms(records: Sequence[Mapping[str, Any]], arm: str, views: Mapping[str, Mapping[str, str]]) -> list[dict]:
    """Records of derived arms, one per ``views`` entry ``{new arm: {metric: source key}}``, read from ``arm``'s
    records: two readings of the same runs become two arms, paired by seed, for ``verdict.judge``."""
    out = []
    for record in records:
        if record["arm"] != arm:
            continue
        for name, keys in views.items():
            items = {k: record["items"][src] for k, src in keys.items() if src in record["items"]}
            metrics = {k: record["metrics"][src] for k, src in keys.items() if src in record["metrics"]}
            missing = set(keys) - set(items) - set(metrics)
            if missing:
                raise KeyError(f"arm {arm!r} records lack {sorted(keys[k] for k in missing)}")
            out.append({**record, "arm": name, "items": items, "metrics": metrics})
    return out
