"""Fusion heads.  Each returns fused logits and per-modality (unimodal) logits.

A modality absent from the features dict counts as missing: its features are
zero at the fusion input (concat) or its head is left out (sum, late).  Every
head has a ``name`` (what ``make_fusion`` and a method's ``fusions`` call it)
and its ``num_classes``.
"""

from __future__ import annotations

from typing import ClassVar, Mapping

import torch
from torch import Tensor, nn

FUSIONS = ("concat", "sum", "late")


class ConcatFusion(nn.Module):
    """One linear layer on the concatenated features.

    Unimodal logits use that modality's block of the weight plus ``bias / M``,
    as in OGM-GE's code, so that they add up to the fused logits.
    """

    name: ClassVar[str] = "concat"

    def __init__(self, dims: Mapping[str, int], num_classes: int):
        super().__init__()
        self.dims = dict(dims)
        self.num_classes = num_classes
        self.fc = nn.Linear(sum(self.dims.values()), num_classes)

    def _blocks(self) -> dict[str, Tensor]:
        return dict(zip(self.dims, self.fc.weight.split(list(self.dims.values()), dim=1)))

    def forward(self, features: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        bias = self.fc.bias / len(self.dims)
        blocks = self._blocks()
        uni = {m: features[m] @ blocks[m].T + bias for m in self.dims if m in features}
        if not uni:
            raise ValueError("concat fusion needs at least one modality present")
        # an absent modality contributes zero features, i.e. only its share of the bias
        return sum(uni.values()) + bias * (len(self.dims) - len(uni)), uni


class SumFusion(nn.Module):
    """A linear head per modality; the fused logits are their sum."""

    name: ClassVar[str] = "sum"
    reduce = staticmethod(lambda logits: torch.stack(logits).sum(0))

    def __init__(self, dims: Mapping[str, int], num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.heads = nn.ModuleDict({m: nn.Linear(d, num_classes) for m, d in dims.items()})

    def forward(self, features: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        uni = {m: head(features[m]) for m, head in self.heads.items() if m in features}
        if not uni:
            raise ValueError("sum/late fusion needs at least one modality present")
        return self.reduce(list(uni.values())), uni


class LateFusion(SumFusion):
    """A linear head per modality; the fused logits are their mean over present modalities."""

    name: ClassVar[str] = "late"
    reduce = staticmethod(lambda logits: torch.stack(logits).mean(0))


def make_fusion(kind: str, dims: Mapping[str, int], num_classes: int) -> nn.Module:
    """A fusion head by name (``FUSIONS``); the MoE head is ``models.moe.MoEFusion``."""
    heads = {head.name: head for head in (ConcatFusion, SumFusion, LateFusion)}
    if kind not in heads:
        raise ValueError(f"unknown fusion {kind!r}; valid: {', '.join(FUSIONS)}")
    return heads[kind](dims, num_classes)
