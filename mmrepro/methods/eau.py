"""EAU-style dynamic fusion: per-channel weights from the variance of a probabilistic embedding.

The uncertainty-only baseline of UDML, as its official code builds it (shicaiwei123/UDML,
``models/basic_model.py``, ``AVClassifier_AUXI_eau``), modelled on Gao et al., "Embracing
Unimodal Aleatoric Uncertainty for Robust Multimodal Fusion", CVPR 2024.  Each modality's
features pass a probabilistic head (``mu``, ``log sigma^2``; ``z = mu + eps sigma`` in training,
``mu`` at inference).  Per sample and channel ``c`` the code scores ``u_mc = exp(sigma_mc)`` (its
``(std * 0.5).exp()`` squared, applied to the std, not the log-variance), and fuses
``w_mc z_mc`` with inverse-uncertainty weights ``w_mc = M (1/u_mc) / sum_j (1/u_jc)`` on one
linear head over the concatenation.  The weights are not detached (the task loss trains the
variance branch) and act from the first step.  Losses as UDML's training script:
``CE(fused) + gamma sum CE(unimodal) + beta sum KL(N(mu, sigma^2) || N(0, k_m))``; noisy
inputs (the shared ``GradedNoise``) from ``noise_epoch`` on.

Named flags for other forms: ``score="variance"`` uses ``u = sigma^2`` (the paper's inverse
variance); ``per_channel=False`` averages ``u`` over channels (one weight per sample);
``detach=True`` stops the task loss from training the variance; ``weight_epoch`` delays the
learned weights.  ``score="variance", per_channel=False, detach=True, weight_epoch=60`` is this
project's earlier EAU-style baseline.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from ..data.core import LABEL, Batch
from ..data.corruptions import GradedNoise
from ..models.multimodal import MultimodalModel, Output
from .base import Method, StepOut
from .checks import check_choice, check_range, require_modalities
from .udml import ProbabilisticHead, UDMLParts, default_noise, noise_levels, probabilistic_loss

Score = Literal["code", "variance"]


def log_channel_uncertainty(logvar: Tensor, score: Score = "code") -> Tensor:
    """``log u`` per sample and channel: ``sigma`` (the code's ``u = exp(sigma)``) or ``log sigma^2``; in logs
    because ``exp(sigma)`` overflows for a wide std."""
    return torch.exp(0.5 * logvar) if score == "code" else logvar


def log_mean_exp(x: Tensor) -> Tensor:
    """``log(mean(exp(x)))`` over the last axis (kept), without overflow."""
    return torch.logsumexp(x, -1, keepdim=True) - math.log(x.shape[-1])


class EAU(Method):
    """Probabilistic embeddings fused with per-channel inverse-uncertainty weights (UDML's EAU baseline)."""

    fusions: ClassVar[tuple[str, ...]] = ("concat",)
    tasks: ClassVar[tuple[str, ...]] = ("classification",)

    def __init__(self, model: MultimodalModel, noise: GradedNoise | None = None, gamma: float = 4.0,
                 beta: float = 1e-5, noise_epoch: int = 50, weight_epoch: int = 0, score: Score = "code",
                 per_channel: bool = True, detach: bool = False, task: str = "classification"):
        super().__init__(model, task)
        require_modalities("EAU", model)
        check_choice("EAU score", score, ("code", "variance"))
        for name, value in (("gamma", gamma), ("beta", beta), ("noise_epoch", noise_epoch), ("weight_epoch", weight_epoch)):
            check_range(f"EAU {name}", value, 0)
        self.heads = nn.ModuleDict({m: ProbabilisticHead(int(d)) for m, d in model.fusion.dims.items()})
        self.noise, self.gamma, self.beta = noise, gamma, beta
        self.noise_epoch, self.weight_epoch = noise_epoch, weight_epoch
        self.score, self.per_channel, self.detach = score, per_channel, detach

    def fit_begin(self, ctx) -> None:
        if self.noise is None:
            self.noise = default_noise(ctx.splits)

    def forward_parts(self, batch: Batch, learned_weights: bool = True) -> UDMLParts:
        """Encoders -> probabilistic heads -> per-channel weights -> fusion, for the modalities present.

        ``intensity`` holds EAU's own score (the log of ``u`` averaged over channels); EAU has no noise predictor.
        """
        feats = self.model.encode(batch)
        mods = list(feats)
        mu, logvar, z, log_u = {}, {}, {}, {}
        for m in mods:
            mu[m], logvar[m], z[m] = self.heads[m].sample(feats[m])
            log_u[m] = log_channel_uncertainty(logvar[m].detach() if self.detach else logvar[m], self.score)
            if not self.per_channel:
                log_u[m] = log_mean_exp(log_u[m])
        stacked = torch.stack([log_u[m] for m in mods], -1)
        # M (1/u_m) / sum_j (1/u_j) is M softmax(-log u) over the modalities
        w = len(mods) * torch.softmax(-stacked if learned_weights else torch.zeros_like(stacked), -1)
        h = {m: w[..., i] * z[m] for i, m in enumerate(mods)}
        out = self.model.fuse(h)
        out.weights = {m: w[..., i].mean(-1) for i, m in enumerate(mods)}
        variance = {m: logvar[m].detach().exp().mean(-1) for m in mods}
        score = {m: log_mean_exp(log_u[m].detach()).squeeze(-1) for m in mods}  # log of the mean u: same ranks
        return UDMLParts(out, mu, logvar, score, variance, h)

    def predict(self, batch: Batch) -> Output:
        return self.forward_parts(batch).output

    def training_step(self, batch: Batch, ctx) -> StepOut:
        levels: dict[str, Tensor] = {}
        if ctx.epoch >= self.noise_epoch:
            batch, levels = self.noise(batch)
        levels = noise_levels(levels, self.modalities, batch[LABEL].shape[0], batch[LABEL].device)
        parts = self.forward_parts(batch, learned_weights=ctx.epoch >= self.weight_epoch)
        loss, logs = probabilistic_loss(self, parts, batch, levels, self.gamma, self.beta)
        return StepOut(loss, parts.output, logs)
