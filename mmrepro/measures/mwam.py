"""MWAM chapter measures: the missing-modality table with per-item scores, the data's FRM, derived arms.

``missing`` scores every non-empty modality subset per test item, so the Average over subsets and the PCR
get item-level intervals; ``input_frm`` records the training set's FRM and the weights it gives;
``suppression_arm`` turns "host alone minus trained alone" into an arm the verdict module can judge.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from ..data.core import LABEL, Splits, iterate
from ..evaluate import modality_subsets, predict
from ..methods.base import Method
from ..methods.mwam import PAPER_CONSTANTS, frm, relative_frm, weight_schedule
from ..verdict import Arm


def subset_name(subset: tuple[str, ...]) -> str:
    return "+".join(subset)


def missing(method: Method, splits: Splits) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Per-item correctness with each subset present (``acc_<a+b>``), its mean over subsets (``average``) and
    each item's share of the PCR (``pcr``: mean over incomplete subsets of (correct_full - correct_S) / A_full,
    whose mean over items is the PCR as a fraction)."""
    mods, labels = splits.modalities, splits.test.tensors[LABEL]
    correct = {}
    for subset in modality_subsets(mods):
        p = predict(method, splits.test, drop=[m for m in mods if m not in subset])
        correct[subset_name(subset)] = (p.logits.argmax(-1).cpu() == labels).double()
    full = correct[subset_name(tuple(mods))]
    items = {f"acc_{k}": v.tolist() for k, v in correct.items()}
    items["average"] = torch.stack(list(correct.values())).mean(0).tolist()
    partial = [v for k, v in correct.items() if k != subset_name(tuple(mods))]
    if partial:
        items["pcr"] = (torch.stack([full - v for v in partial]).mean(0) / max(float(full.mean()), 1e-12)).tolist()
    return {k: float(np.mean(v)) for k, v in items.items()}, items


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


def suppression_arm(host: Arm, alone: Arm, modality: str) -> Arm:
    """An arm whose metric ``suppression`` is, per seed and item, trained alone minus alone in the host
    (positive: the host under-trains ``modality``), on the seeds both arms share."""
    seeds = [s for s in host.seeds if s in alone.seeds]
    gap = alone.take(f"acc_{modality}", seeds) - host.take(f"acc_{modality}", seeds)
    converged = [host.converged[host.seeds.index(s)] and alone.converged[alone.seeds.index(s)] for s in seeds]
    return Arm(seeds, {"suppression": gap}, converged)
