"""PDF: predictive dynamic fusion by co-belief and relative calibration.

Cao, Xia, Ding, Zhang and Hu, "Predictive Dynamic Fusion", ICML 2024; follows the official code
(Yinan-Xia/PDF, ``src/models/latefusion_pdf.py``, ``MultimodalLateFusionClf_pdf``, and
``train_pdf.py``, ``model_forward``).  A late-fusion model (one head per modality) gets a
confidence network per modality (three linear layers and a sigmoid, on detached features in
training) that regresses the true-class probability ``tcp_m`` of its head (L1 loss).  Mono-
confidence is the prediction ``c_m``; holo-confidence is ``h_m = log(prod_{j!=m} c_j) /
log(prod_j c_j)``; co-belief ``b_m = c_m + h_m``.  Training fuses ``sum_m w_m logits_m`` with
``w = softmax_m(b)``, detached; inference first calibrates ``b_m`` by ``du_m / max_j du_j`` with
``du_m = mean_c |p_mc - 1/C|`` (relative calibration).  Loss: fused and unimodal cross-entropies
plus the L1 confidence losses.  The authors train with Adam (lr 1e-4; BERT and ResNet-152 encoders).

Deviations: the code validates with the training-time weights and tests with the calibrated
ones; here ``predict`` always calibrates (``calibrate=False`` uses the training-time weights).
For two modalities the formulas are the code's; more are covered by the same products.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.core import LABEL, Batch
from ..models.multimodal import MultimodalModel, Output
from .base import Method, StepOut
from .checks import require_modalities


class ConfidNet(nn.Module):
    """The code's confidence network: ``d -> 2d -> d -> 1`` linear layers (no activations) and a sigmoid."""

    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim), nn.Linear(dim, 1), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)


def co_belief(confidence: Tensor) -> Tensor:
    """``c_m + log(prod_{j!=m} c_j) / log(prod_j c_j)`` along the last axis (modalities)."""
    logs = confidence.log()
    total = logs.sum(-1, keepdim=True)
    return confidence + (total - logs) / (total + 1e-8)


def relative_calibration(probs: Tensor) -> Tensor:
    """``du_m / max_j du_j`` with ``du_m = mean_c |p_mc - 1/C|``; ``probs`` is (B, M, C)."""
    du = (probs - 1 / probs.shape[-1]).abs().mean(-1)
    return du / du.max(-1, keepdim=True).values


def pdf_weights(confidence: Tensor, probs: Tensor | None = None) -> Tensor:
    """Softmax over modalities of the co-belief, relatively calibrated when ``probs`` is given."""
    belief = co_belief(confidence)
    if probs is not None:
        belief = belief * relative_calibration(probs)
    return belief.softmax(-1)


class PDF(Method):
    """Late fusion weighted per sample by predicted, calibrated co-beliefs."""

    fusions: ClassVar[tuple[str, ...]] = ("late", "sum")
    tasks: ClassVar[tuple[str, ...]] = ("classification",)

    def __init__(self, model: MultimodalModel, calibrate: bool = True, task: str = "classification"):
        super().__init__(model, task)
        require_modalities("PDF", model)
        self.calibrate = calibrate
        self.confid = nn.ModuleDict({m: ConfidNet(int(e.out_dim)) for m, e in model.encoders.items()})

    def _forward(self, batch: Batch, calibrated: bool) -> tuple[Output, Tensor]:
        out = self.model(batch)
        mods = list(out.unimodal_logits)
        source = {m: out.features[m].detach() if self.training else out.features[m] for m in mods}
        confidence = torch.stack([self.confid[m](source[m]) for m in mods], -1)
        logits = torch.stack([out.unimodal_logits[m] for m in mods], 1)  # (B, M, C)
        w = pdf_weights(confidence.detach(), logits.softmax(-1).detach() if calibrated else None)
        fused = (w.unsqueeze(-1) * logits).sum(1)
        return Output(fused, out.unimodal_logits, out.features, {m: w[:, i] for i, m in enumerate(mods)}), confidence

    def predict(self, batch: Batch) -> Output:
        return self._forward(batch, self.calibrate)[0]

    def training_step(self, batch: Batch, ctx) -> StepOut:
        out, confidence = self._forward(batch, calibrated=False)
        y = batch[LABEL]
        uni = torch.stack([self.loss(out.unimodal_logits[m], batch) for m in self.modalities]).sum()
        tcp = torch.stack([out.unimodal_logits[m].softmax(-1).gather(1, y.view(-1, 1)).squeeze(1)
                           for m in self.modalities], -1).detach()
        confid_loss = F.l1_loss(confidence, tcp, reduction="none").mean(0).sum()
        fused = self.loss(out.logits, batch)
        loss = fused + uni + confid_loss
        logs = {"loss": loss.detach(), "loss_fused": fused.detach(), "loss_confidence": confid_loss.detach(),
                **{f"weight_{m}": w.detach().mean() for m, w in out.weights.items()}}
        return StepOut(loss, out, logs)
