"""MMDynamics: dynamical fusion by feature and modality informativeness.

Han, Zhang, Fu, Zhou and Hu, "Multimodal Dynamics: Dynamical Fusion for Trustworthy Multimodal
Classification", CVPR 2022; follows the official code (TencentAILabHealthcare/mmdynamics,
``model.py``, ``MMDynamic``).  Per modality, a sigmoid gate ``g_m = sigmoid(W_m x_m)`` weighs
each input feature (feature informativeness, kept sparse by adding ``mean(g_m)`` to the loss);
a linear layer, ReLU and dropout give ``h_m``; a true-class-probability (TCP) head regresses the
modality's own classifier's probability of the true class (MSE, the target not detached, as in
the code) and its output ``c_m`` (no squashing, as in the code) scales ``h_m`` (modality
informativeness).  One linear classifier on the concatenation of ``c_m h_m`` gives the fused
logits.  Loss: fused cross-entropy plus, per modality, ``mean(g_m)``, the TCP MSE and the
unimodal cross-entropy.  The authors train with Adam (lr 1e-4, weight decay 1e-4).

Deviation: the code gates raw feature vectors (omics); here the gate acts on each encoder's
output features, and ``h_m`` keeps the encoder's width, so that the model's concat head fuses it.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.core import LABEL, Batch
from ..models.multimodal import MultimodalModel, Output
from .base import Method, StepOut
from .checks import check_range, require_modalities


class InformativenessBranch(nn.Module):
    """One modality's feature gate, feature layer, unimodal classifier and TCP confidence."""

    def __init__(self, dim: int, num_classes: int, dropout: float):
        super().__init__()
        self.gate, self.encode = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.classify, self.confidence = nn.Linear(dim, num_classes), nn.Linear(dim, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(gate, confidence-scaled feature, unimodal logits, confidence)."""
        gate = torch.sigmoid(self.gate(x))
        h = self.dropout(F.relu(self.encode(x * gate)))
        confidence = self.confidence(h).squeeze(-1)
        return gate, h * confidence.unsqueeze(-1), self.classify(h), confidence


class MMDynamics(Method):
    """Feature gates and TCP-confidence scaling before one linear head on the concatenation."""

    fusions: ClassVar[tuple[str, ...]] = ("concat",)
    tasks: ClassVar[tuple[str, ...]] = ("classification",)

    def __init__(self, model: MultimodalModel, dropout: float = 0.5, task: str = "classification"):
        super().__init__(model, task)
        require_modalities("MMDynamics", model)
        check_range("MMDynamics dropout", dropout, 0, 1, high_open=True)
        classes = model.fusion.fc.out_features
        self.branches = nn.ModuleDict({m: InformativenessBranch(int(d), classes, dropout)
                                       for m, d in model.fusion.dims.items()})

    def _forward(self, batch: Batch) -> tuple[Output, dict[str, Tensor], dict[str, Tensor]]:
        feats = self.model.encode(batch)
        parts = {m: self.branches[m](f) for m, f in feats.items()}
        fused = self.model.fuse({m: p[1] for m, p in parts.items()})
        out = Output(fused.logits, {m: p[2] for m, p in parts.items()}, feats, {m: p[3] for m, p in parts.items()})
        return out, {m: p[0] for m, p in parts.items()}, {m: p[3] for m, p in parts.items()}

    def predict(self, batch: Batch) -> Output:
        return self._forward(batch)[0]

    def training_step(self, batch: Batch, ctx) -> StepOut:
        out, gates, confidence = self._forward(batch)
        y = batch[LABEL]
        loss = self.loss(out.logits, batch)
        for m, logits in out.unimodal_logits.items():
            p_true = logits.softmax(-1).gather(1, y.view(-1, 1)).squeeze(1)  # not detached, as in the code
            loss = loss + gates[m].mean() + F.mse_loss(confidence[m], p_true) + self.loss(logits, batch)
        logs = {"loss": loss.detach(), **{f"gate_{m}": g.detach().mean() for m, g in gates.items()},
                **{f"confidence_{m}": c.detach().mean() for m, c in confidence.items()}}
        return StepOut(loss, out, logs)
