"""QMF: quality-aware multimodal fusion with energy-based confidence.

Zhang et al., "Provable Dynamic Fusion for Low-Quality Multimodal Data", ICML 2023.
Each modality has its own head; its confidence is its energy score
``c_m = logsumexp(logits_m) / T`` (T = 10 as in the official code), and the fused
logits are ``sum_m c_m.detach() * logits_m``.  Training adds unimodal cross-entropy
and a ranking regulariser that asks confidences to order samples as their losses
do.  The official regulariser ranks against each sample's *history* of correctness;
here it ranks within the batch against the current per-sample loss (no sample
index needed), a simplification the chapter states.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import validate
from ..data.core import LABEL, Batch
from ..models.multimodal import MultimodalModel, Output
from .base import Method, StepOut


def energy_confidence(logits: Tensor, temperature: float = 10.0) -> Tensor:
    """``logsumexp(logits) / T`` per sample: higher for confident (low-energy) inputs."""
    return torch.logsumexp(logits, dim=-1) / temperature


def rank_loss(confidence: Tensor, sample_loss: Tensor) -> Tensor:
    """Pairwise hinge: a sample with lower loss should get higher confidence than one with higher loss."""
    order = torch.sign(sample_loss.detach().view(1, -1) - sample_loss.detach().view(-1, 1))  # +1 where j worse than i
    gap = confidence.view(-1, 1) - confidence.view(1, -1)
    return F.relu(-order * gap).sum() / order.abs().sum().clamp_min(1.0)


class QMF(Method):
    """Energy-weighted late fusion over per-modality heads (needs ``fusion="late"`` or ``"sum"``)."""

    fusions = ("late", "sum")
    tasks = ("classification",)  # the energy score needs class logits

    def __init__(self, model: MultimodalModel, temperature: float = 10.0, rank_weight: float = 0.1,
                 task: str = "classification"):
        super().__init__(model, task)
        validate.number("QMF temperature", temperature, 0, low_open=True)
        validate.number("QMF rank_weight", rank_weight, 0)
        self.temperature, self.rank_weight = temperature, rank_weight

    def _fuse(self, batch: Batch) -> tuple[Output, dict[str, Tensor]]:
        out = self.model(batch)
        conf = {m: energy_confidence(lg, self.temperature) for m, lg in out.unimodal_logits.items()}
        logits = sum(c.detach().unsqueeze(-1) * out.unimodal_logits[m] for m, c in conf.items())
        return Output(logits, out.unimodal_logits, out.features, {m: c.detach() for m, c in conf.items()}), conf

    def training_step(self, batch: Batch, ctx) -> StepOut:
        out, conf = self._fuse(batch)
        fused = self.loss(out.logits, batch)
        per_sample = {m: F.cross_entropy(lg, batch[LABEL], reduction="none") for m, lg in out.unimodal_logits.items()}
        uni = torch.stack([v.mean() for v in per_sample.values()]).sum()
        rank = torch.stack([rank_loss(conf[m], per_sample[m]) for m in conf]).sum()
        loss = fused + uni + self.rank_weight * rank
        return StepOut(loss, out, {"loss": loss.detach(), "loss_rank": rank.detach()})

    def predict(self, batch: Batch) -> Output:
        return self._fuse(batch)[0]
