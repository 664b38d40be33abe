"""TMC: trusted multi-view classification with Dirichlet evidence and Dempster-Shafer combination.

Han et al., "Trusted Multi-View Classification", ICLR 2021.  Each modality's head
gives evidence ``e_m = softplus(logits_m)``, a Dirichlet ``alpha_m = e_m + 1``,
belief masses ``b_m = e_m / S_m`` and uncertainty ``u_m = K / S_m``.  Opinions are
combined with the reduced Dempster rule; every opinion (each modality and the
combination) is trained with the expected cross-entropy under its Dirichlet plus
a KL term towards the uniform Dirichlet, annealed over ``annealing_epochs``.
The fused "logits" are ``log alpha`` (their softmax is the Dirichlet mean).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import validate
from ..data.core import LABEL, Batch
from ..models.multimodal import MultimodalModel, Output
from .base import Method, StepOut


def dempster_combine(alpha1: Tensor, alpha2: Tensor) -> Tensor:
    """The reduced Dempster-Shafer combination of two Dirichlet opinions (returns the combined alpha)."""
    k = alpha1.shape[-1]
    s1, s2 = alpha1.sum(-1, keepdim=True), alpha2.sum(-1, keepdim=True)
    b1, b2 = (alpha1 - 1) / s1, (alpha2 - 1) / s2
    u1, u2 = k / s1, k / s2
    conflict = b1.sum(-1, keepdim=True) * b2.sum(-1, keepdim=True) - (b1 * b2).sum(-1, keepdim=True)
    scale = 1 / (1 - conflict).clamp_min(1e-8)
    b = scale * (b1 * b2 + b1 * u2 + b2 * u1)
    u = scale * u1 * u2
    s = k / u
    return b * s + 1


def dirichlet_loss(alpha: Tensor, labels: Tensor, kl_weight: float) -> Tensor:
    """Expected cross-entropy under Dir(alpha) plus ``kl_weight`` * KL(Dir(alpha~) || Dir(1)), batch mean."""
    k = alpha.shape[-1]
    y = F.one_hot(labels, k).to(alpha)
    s = alpha.sum(-1, keepdim=True)
    ce = (y * (torch.digamma(s) - torch.digamma(alpha))).sum(-1)
    a = y + (1 - y) * alpha  # evidence of the true class removed
    sa = a.sum(-1, keepdim=True)
    kl = (torch.lgamma(sa).squeeze(-1) - torch.lgamma(torch.tensor(float(k), device=a.device))
          - torch.lgamma(a).sum(-1) + ((a - 1) * (torch.digamma(a) - torch.digamma(sa))).sum(-1))
    return (ce + kl_weight * kl).mean()


class TMC(Method):
    """Evidential late fusion over per-modality heads (needs ``fusion="late"`` or ``"sum"``)."""

    fusions = ("late", "sum")
    tasks = ("classification",)  # Dirichlet opinions need classes

    def __init__(self, model: MultimodalModel, annealing_epochs: int = 50, task: str = "classification"):
        super().__init__(model, task)
        validate.number("TMC annealing_epochs", annealing_epochs, 1, integer=True)
        self.annealing_epochs = annealing_epochs

    def _opinions(self, batch: Batch) -> tuple[Output, dict[str, Tensor], Tensor]:
        out = self.model(batch)
        alphas = {m: F.softplus(lg) + 1 for m, lg in out.unimodal_logits.items()}
        combined = None
        for alpha in alphas.values():
            combined = alpha if combined is None else dempster_combine(combined, alpha)
        k = combined.shape[-1]
        weights = {m: 1 - k / a.sum(-1) for m, a in alphas.items()}  # belief mass = 1 - uncertainty
        logs = {m: a.log() for m, a in alphas.items()}
        return Output(combined.log(), logs, out.features, weights), alphas, combined

    def training_step(self, batch: Batch, ctx) -> StepOut:
        out, alphas, combined = self._opinions(batch)
        kl_weight = min(1.0, ctx.epoch / self.annealing_epochs)
        losses = [dirichlet_loss(a, batch[LABEL], kl_weight) for a in [*alphas.values(), combined]]
        loss = torch.stack(losses).sum()
        return StepOut(loss, out, {"loss": loss.detach()})

    def predict(self, batch: Batch) -> Output:
        return self._opinions(batch)[0]
