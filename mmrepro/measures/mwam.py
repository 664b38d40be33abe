"""MWAM chapter measures: the missing-modality table with per-item scores, and the data's FRM.

``missing`` scores every non-empty modality subset per test item, so the Average over subsets and the PCR
get item-level intervals; ``input_frm`` records the training set's FRM and the weights it gives.  The
analyses of the records (suppression arms, preconditions) are in ``mmrepro.analysis.mwam``.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from ..data.core import LABEL, Splits, iterate
from ..evaluate import modality_subsets, predict
from ..methods.base import Method
from ..methods.mwam import PAPER_CONSTANTS, frm, relative_frm, weight_schedule


def subset_name(subset: tuple[str, ...]) -> str:
    return "+".join(subset)


def missing(method: Method, splits: Splits) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Accuracy with each subset present (``acc_<a+b>``, per test item), its mean over subsets (``average``) and the
    PCR as a fraction (``pcr``: mean over incomplete subsets of (A_full - A_S) / A_full).

    Only the per-subset correctness is stored per item: the per-item Average and PCR follow from it
    (``mmrepro.analysis.mwam.with_subset_scores``), so the record does not hold them twice.
    """
    mods, labels = splits.modalities, splits.test.tensors[LABEL]
    correct = {}
    for subset in modality_subsets(mods):
        p = predict(method, splits.test, drop=[m for m in mods if m not in subset])
        correct[subset_name(subset)] = (p.logits.argmax(-1).cpu() == labels).double()
    metrics = {f"acc_{k}": float(v.mean()) for k, v in correct.items()}
    metrics["average"] = float(np.mean(list(metrics.values())))
    full = metrics[f"acc_{subset_name(tuple(mods))}"]
    partial = [v for k, v in metrics.items() if k.startswith("acc_") and k != f"acc_{subset_name(tuple(mods))}"]
    if partial:
        metrics["pcr"] = float(np.mean([(full - a) / max(full, 1e-12) for a in partial]))
    return metrics, {f"acc_{k}": v.tolist() for k, v in correct.items()}


def input_frm(method: Method, splits: Splits, batch_size: int = 32, reduce: str = "mean",
              constants: Mapping[str, float] = PAPER_CONSTANTS) -> tuple[dict[str, float], dict[str, list[float]]]:
    """The training set's mean batch FRM per modality (``frm_<m>``) and the static weights it gives (``K_<m>``)."""
    mods = splits.modalities
    frms = torch.stack([torch.stack([frm(b[m], reduce=reduce) for m in mods])
                        for b in iterate(splits.train, batch_size)]).mean(0)
    metrics = {f"frm_{m}": float(v) for m, v in zip(mods, frms)}
    if len(mods) > 1:
        k = weight_schedule(relative_frm(frms, frms), **constants)
        metrics.update({f"K_{m}": float(v) for m, v in zip(mods, k)})
    return metrics, {}
