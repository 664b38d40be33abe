"""UDML: unbiased dynamic multimodal learning (noise-aware uncertainty + modality dependency).

Wei et al., "Unbiased Dynamic Multimodal Fusion", CVPR 2026 Findings
(arXiv 2603.19681); recipe reconstructed from the official code
(github.com/shicaiwei123/UDML).  Per modality ``m`` and sample:

1. probabilistic embedding: ``mu_m, log sigma_m^2 = head_m(encoder_m(x_m))``;
   ``z_m = mu_m + eps * sigma_m`` in training, ``z_m = mu_m`` at inference;
2. noise-intensity predictor on the *detached* pooled std (``detach_estimator``):
   ``s_m = exp(P_m(stopgrad(sigma_m)) / 2)``, regressed onto the injected level ``k_m``;
3. inverse-uncertainty weight ``w~_m = M (1/u_m) / sum_j (1/u_j)`` with ``u_m = s_m^2``;
4. modality dependency ``d_m = mean_i ||pi - pi_{not m}||_1`` (drop ``m`` at the fusion
   input), a buffer saved with the model; final ``w_m = M (w~_m/d_m) / sum_j (w~_j/d_j)``;
5. fusion on ``(1 + w_m) z_m`` (or ``w_m z_m``) with one linear head on the concatenation;
6. loss ``CE(pi) + gamma sum CE(pi_m) + beta sum KL(N(mu, sigma^2) || N(0, k_m)) + lambda sum MSE(s_m, k_m)``;
7. progressive schedule: clean stage, noisy stage (``noise_epoch``), learned weights on (``weight_epoch``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import validate
from ..data.core import LABEL, Batch
from ..data.corruptions import GradedNoise
from ..models.multimodal import MultimodalModel, Output
from .base import Method, StepOut

Uncertainty = Literal["predicted", "variance"]
DependencyForm = Literal["paper", "code"]
Scaling = Literal["residual", "direct"]
_LOGVAR_RANGE = (-10.0, 10.0)  # the code's audio clamp used an undefined argument; a wide safety range instead


class ProbabilisticHead(nn.Module):
    """Mean and log-variance of a modality's embedding (linear + batch norm each, as the code's 1x1 convs)."""

    def __init__(self, dim: int):
        super().__init__()
        self.mu = nn.Sequential(nn.Linear(dim, dim), nn.BatchNorm1d(dim))
        self.logvar = nn.Sequential(nn.Linear(dim, dim), nn.BatchNorm1d(dim))

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return self.mu(h), self.logvar(h).clamp(*_LOGVAR_RANGE)

    def sample(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(mu, logvar, z)``: ``z = mu + eps * sigma`` in training (reparameterised), ``mu`` in evaluation."""
        mu, logvar = self(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return mu, logvar, z


class NoisePredictor(nn.Module):
    """Linear -> dropout -> linear, read as a log-variance; returns the predicted intensity ``exp(o / 2)``."""

    def __init__(self, dim: int, hidden: int = 256, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.Dropout(dropout), nn.Linear(hidden, 1))

    def forward(self, x: Tensor) -> Tensor:
        return torch.exp(0.5 * self.net(x).squeeze(-1).clamp(*_LOGVAR_RANGE))


def inverse_uncertainty_weights(u: Tensor) -> Tensor:
    """``M * (1/u) / sum_j (1/u_j)`` along the last axis: weights that sum to M per sample."""
    inv = 1.0 / u.clamp_min(1e-8)
    return u.shape[-1] * inv / inv.sum(-1, keepdim=True)


def gaussian_kl(mu: Tensor, logvar: Tensor, prior_var: Tensor) -> Tensor:
    """KL(N(mu, sigma^2) || N(0, k)) summed over features, averaged over the batch; ``k`` per sample."""
    k = prior_var.to(mu).view(-1, 1)
    var = logvar.exp()
    return 0.5 * ((var + mu.pow(2)) / k - logvar + k.log() - 1).sum(-1).mean()


@torch.no_grad()
def modality_dependency(fusion: nn.Module, h: dict[str, Tensor], form: DependencyForm = "paper") -> Tensor:
    """Batch-mean L1 reliance of the fused logits on each modality, in the order of ``h``.

    ``"paper"``: ``||pi - pi_{not m}||_1`` with ``m`` dropped (zeroed) at the fusion input.
    ``"code"``: ``||pi_{m only}||_1``, the released code's form (includes the head's bias).
    """
    if form not in ("paper", "code"):
        raise ValueError(f"unknown dependency form {form!r}; valid: 'paper', 'code'")
    full = fusion(h)[0]
    d = []
    for m in h:
        if form == "paper":
            others = {o: v for o, v in h.items() if o != m}
            without = fusion(others)[0] if others else torch.zeros_like(full)
            d.append((full - without).abs().sum(-1).mean())
        else:
            d.append(fusion({m: h[m]})[0].abs().sum(-1).mean())
    return torch.stack(d)


def noise_levels(levels: dict[str, Tensor], modalities: Sequence[str], n: int, device: torch.device) -> dict[str, Tensor]:
    """Each modality's per-sample noise level, 1 (the clean prior) where the noise left a modality alone."""
    return {m: levels[m].float() if m in levels else torch.ones(n, device=device) for m in modalities}


def probabilistic_loss(method: Method, parts: "UDMLParts", batch: Batch, levels: dict[str, Tensor], gamma: float,
                       beta: float) -> tuple[Tensor, dict[str, Tensor]]:
    """UDML's and EAU's shared objective: fused CE + ``gamma`` x the unimodal CEs + ``beta`` x the KL of each
    embedding to N(0, noise level); the loss and its logged parts."""
    out = parts.output
    fused = method.loss(out.logits, batch)
    uni = torch.stack([method.loss(out.unimodal_logits[m], batch) for m in method.modalities]).sum()
    kl = torch.stack([gaussian_kl(parts.mu[m], parts.logvar[m], levels[m]) for m in method.modalities]).sum()
    loss = fused + gamma * uni + beta * kl
    logs = {"loss": loss.detach(), "loss_fused": fused.detach(), "loss_unimodal": uni.detach(), "kl": kl.detach()}
    logs.update({f"weight_{m}": w.detach().mean() for m, w in out.weights.items()})
    return loss, logs


@dataclass
class UDMLParts:
    """Internals of one forward pass, for losses and diagnostics."""

    output: Output
    mu: dict[str, Tensor]
    logvar: dict[str, Tensor]
    intensity: dict[str, Tensor]  # predicted noise intensity s_m (the code's "predicted std")
    variance: dict[str, Tensor]  # unsupervised uncertainty: mean pooled variance of the embedding
    fused_input: dict[str, Tensor]


class UDML(Method):
    """UDML around a concat-fusion ``MultimodalModel``; every component is a constructor flag.

    ``uncertainty``: ``"predicted"`` (noise-aware estimator, the paper), ``"variance"``
    (unsupervised pooled variance, EAU/PE-style) or ``None`` (no estimator: ``w~ = 1``).
    ``dependency``: ``"paper"``, ``"code"`` or ``None``/``False`` (no dependency term).
    ``dependency_momentum``: 0 overwrites with each batch (the code), > 0 keeps an EMA.
    ``scaling``: ``"residual"`` fuses ``(1 + w) z`` (the code), ``"direct"`` fuses ``w z``.
    ``noise_epoch`` / ``weight_epoch``: start of the noisy stage / of the learned weights
    (both 0: one-stage training).  ``estimator_input``: what the estimator reads (``"variance"``: the
    embedding's std, the paper; ``"mean"``: its mean, no probabilistic input); ``detach_estimator=False``
    lets the estimator's loss train the embedding (the code stops that gradient).  ``noise=None`` builds a
    default ``GradedNoise`` at ``fit_begin``.
    """

    fusions = ("concat",)
    tasks = ("classification",)

    def __init__(self, model: MultimodalModel, noise: GradedNoise | None = None,
                 uncertainty: Uncertainty | None = "predicted", dependency: DependencyForm | None = "paper",
                 scaling: Scaling = "residual", gamma: float = 4.0, beta: float = 1e-5, noise_weight: float = 0.1,
                 noise_epoch: int = 50, weight_epoch: int = 60, dependency_momentum: float = 0.9,
                 estimator_input: Literal["variance", "mean"] = "variance", predictor_hidden: int = 256,
                 detach_estimator: bool = True, task: str = "classification"):
        super().__init__(model, task)
        uncertainty, dependency = uncertainty or None, dependency or None  # False switches a component off too
        self._check(model, uncertainty, dependency, scaling, estimator_input, noise_epoch, weight_epoch,
                    dependency_momentum)
        for name, value in (("gamma", gamma), ("beta", beta), ("noise_weight", noise_weight)):
            validate.number(f"UDML {name}", value, 0)
        dims = {m: int(d) for m, d in model.fusion.dims.items()}
        self.heads = nn.ModuleDict({m: ProbabilisticHead(d) for m, d in dims.items()})
        self.predictors = nn.ModuleDict({m: NoisePredictor(d, predictor_hidden) for m, d in dims.items()})
        self.noise = noise
        self.uncertainty, self.dependency_form, self.scaling = uncertainty, dependency, scaling
        self.gamma, self.beta, self.noise_weight = gamma, beta, noise_weight
        self.noise_epoch, self.weight_epoch = noise_epoch, weight_epoch
        self.dependency_momentum, self.estimator_input = dependency_momentum, estimator_input
        self.detach_estimator = detach_estimator
        self.register_buffer("dependency", torch.ones(len(dims)))  # model state: saved with checkpoints
        self.register_buffer("dependency_ready", torch.tensor(False))  # False until the first batch sets it

    @staticmethod
    def _check(model, uncertainty, dependency, scaling, estimator_input, noise_epoch, weight_epoch, momentum):
        choices = {"uncertainty": (uncertainty, ("predicted", "variance", None)),
                   "dependency": (dependency, ("paper", "code", None)),
                   "scaling": (scaling, ("residual", "direct")),
                   "estimator_input": (estimator_input, ("variance", "mean"))}
        for name, (value, valid) in choices.items():
            if value not in valid:
                raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(map(repr, valid))}")
        validate.several_modalities("UDML", model.modalities, "it weights modalities against each other")
        validate.number("UDML noise_epoch", noise_epoch, 0, integer=True)
        validate.number("UDML weight_epoch", weight_epoch, 0, integer=True)
        if not 0 <= noise_epoch <= weight_epoch:
            raise ValueError(f"need 0 <= noise_epoch <= weight_epoch, got {noise_epoch} and {weight_epoch}")
        if not 0 <= momentum < 1:
            raise ValueError(f"dependency_momentum must lie in [0, 1), got {momentum}")

    # --- the schedule -------------------------------------------------------------------------
    def stage(self, epoch: int) -> int:
        """1: clean inputs, ``w~ = 1``; 2: noisy inputs, ``w~ = 1``; 3: noisy inputs, learned ``w~``."""
        return 1 if epoch < self.noise_epoch else 2 if epoch < self.weight_epoch else 3

    def fit_begin(self, ctx) -> None:
        if max(self.noise_epoch, self.weight_epoch) >= ctx.cfg.epochs:
            raise ValueError(f"UDML's stages start at noise_epoch={self.noise_epoch} and weight_epoch="
                             f"{self.weight_epoch}, but training has only {ctx.cfg.epochs} epochs: a stage would "
                             "never run; lower them below epochs (0 and 0: one-stage training)")
        if self.noise is None:
            self.noise = default_noise(ctx.splits)

    # --- the forward pass ---------------------------------------------------------------------
    def forward_parts(self, batch: Batch, learned_weights: bool = True) -> UDMLParts:
        """Encoders -> probabilistic heads -> estimator -> weights -> fusion, for the modalities present."""
        feats = self.model.encode(batch)
        mods = list(feats)
        mu, logvar, z, intensity, variance = {}, {}, {}, {}, {}
        for m in mods:
            mu[m], logvar[m], z[m] = self.heads[m].sample(feats[m])
            sigma = torch.exp(0.5 * logvar[m])
            source = sigma if self.estimator_input == "variance" else mu[m]
            intensity[m] = self.predictors[m](source.detach() if self.detach_estimator else source)
            variance[m] = sigma.detach().pow(2).mean(-1)
        w = self._weights(mods, intensity, variance, learned_weights)
        h = {m: (1 + w[:, i:i + 1] if self.scaling == "residual" else w[:, i:i + 1]) * z[m] for i, m in enumerate(mods)}
        out = self.model.fuse(h)
        out.weights = {m: w[:, i] for i, m in enumerate(mods)}
        return UDMLParts(out, mu, logvar, intensity, variance, h)

    def _weights(self, mods: list[str], intensity: dict[str, Tensor], variance: dict[str, Tensor],
                 learned: bool) -> Tensor:
        """``M (w~_m / d_m) / sum_j (w~_j / d_j)`` per sample, over the modalities present."""
        batch = intensity[mods[0]].shape[0]
        if self.uncertainty is None or not learned:
            u = torch.ones(batch, len(mods), device=intensity[mods[0]].device)
        elif self.uncertainty == "predicted":
            u = torch.stack([intensity[m].pow(2) for m in mods], -1)
        else:
            u = torch.stack([variance[m] for m in mods], -1)
        if self.dependency_form is not None:
            index = [list(self.heads).index(m) for m in mods]
            u = u * self.dependency[index].clamp_min(1e-6)
        return inverse_uncertainty_weights(u)

    def predict(self, batch: Batch) -> Output:
        return self.forward_parts(batch).output

    # --- training -----------------------------------------------------------------------------
    def training_step(self, batch: Batch, ctx) -> StepOut:
        stage = self.stage(ctx.epoch)
        levels: dict[str, Tensor] = {}
        if stage > 1:
            batch, levels = self.noise(batch)
        levels = noise_levels(levels, self.modalities, batch[LABEL].shape[0], batch[LABEL].device)
        parts = self.forward_parts(batch, learned_weights=stage == 3)
        loss, logs = probabilistic_loss(self, parts, batch, levels, self.gamma, self.beta)
        if self.uncertainty == "predicted":
            est = torch.stack([F.mse_loss(parts.intensity[m], levels[m]) for m in self.modalities]).sum()
            loss = loss + self.noise_weight * est
            logs["loss_estimator"] = est.detach()
        if self.dependency_form is not None:
            self._update_dependency(parts.fused_input, ctx)
        logs.update({f"dependency_{m}": self.dependency[i].detach().clone() for i, m in enumerate(self.modalities)})
        return StepOut(loss, parts.output, logs)

    @torch.no_grad()
    def _update_dependency(self, h: dict[str, Tensor], ctx) -> None:
        """Refresh the dependency buffer from this batch's fusion inputs (EMA or overwrite)."""
        d = modality_dependency(self.model.fusion, {m: h[m].detach() for m in self.modalities}, self.dependency_form)
        d = ctx.all_reduce(d, "mean")
        keep = torch.where(self.dependency_ready, self.dependency_momentum, 0.0)
        self.dependency.copy_(keep * self.dependency + (1 - keep) * d)
        self.dependency_ready.fill_(True)


#: the code's image noise std is k^2 on 0-255 pixels; at the top noisy level (10) that is 100/255 of the range
CODE_IMAGE_STD_AT_TOP = 100 / 255


def default_noise(splits) -> GradedNoise:
    """Levels 1-11 (11 replaces the input): bounded modalities get a quadratic std reaching the code's
    k^2/255 of their range at level 10; unbounded (standardised) ones a linear std up to 2 (the code's audio)."""
    scale, power = {}, {}
    top = ((10 - 1) / 10) ** 2  # GradedNoise's (k-1)/10 at the top noisy level, squared
    for m in splits.modalities:
        rng = splits.valid_range.get(m)
        scale[m], power[m] = ((rng[1] - rng[0]) * CODE_IMAGE_STD_AT_TOP / top, 2.0) if rng is not None else (2.0, 1.0)
    return GradedNoise.for_splits(splits, scale, power)
