"""BTW: bi-level, parameter-free re-weighting of modalities for sparse-MoE fusion.

Hou, Wang and Wang, "BTW: A Non-Parametric Variance Stabilization Framework
for Multimodal Model Integration", Findings of EMNLP 2025 (arXiv 2508.18551).

0. Unimodal predictors ``f_m`` are trained first (selected on validation) and frozen;
   their predictions ``p^m_i`` on every example are kept.
1. Instance level: ``D^m_i = KL(p^m_i || p_i)`` against the current multimodal
   prediction ``p_i`` (softmax outputs, or Gaussians around scalar predictions
   with a label-free spread), floored at 1e-5 and normalised over the modalities
   of example i.  ``inverse_kl=True`` uses ``1 / D`` instead (an ablation).
2. Modality level: ``I^m = MI(p^m, p)`` over the validation split (scikit-learn's
   kNN estimator for regression, ``mutual_info_score`` on predicted classes for
   classification), floored at 1e-5 and normalised over modalities.
3. ``w^m_i ∝ D̃^m_i Ĩ^m``, renormalised per example, smoothed across epochs
   with ``w <- a w_new + (1 - a) w``, where ``a`` starts at 0.5 and moves by
   ±0.05 as the validation loss gets worse / better than its best so far.
4. Each modality's projected token is scaled by ``M w^m_i`` before the MoE
   (``M`` keeps the uniform weight at 1); a missing modality gets weight 0 and
   the others are renormalised.

Ablation flags, each a setting of the official code: ``scaling="official"`` starts
the stored weights at 1 and scales tokens by the smoothed sum-to-1 values
directly (so the token scale shrinks from 1 towards 1/M); ``loss="l1"`` trains
regression on L1 and drives ``a`` by the validation MAE; ``update="improvement"``
recomputes the weights only after an epoch whose validation loss beats the best.

Weights of every example (train, val and test, each from its own predictions,
never its label) live in a buffer indexed by the ``_uid`` key of the batch, so
they are checkpointed with the model.  ``weighting="none"`` is the unweighted
MoE; ``"kl"`` and ``"mi"`` are the one-level ablations.
"""

from __future__ import annotations

from typing import Literal, Mapping

import numpy as np
import torch
from sklearn.feature_selection import mutual_info_regression
from sklearn.metrics import mutual_info_score
from torch import Tensor, nn

from .. import validate
from ..data.core import LABEL, UID, Batch, DictDataset, Splits, iterate
from ..models.moe import build_moe_model, load_balance_loss
from ..models.multimodal import MultimodalModel, Output
from ..train import Context, TrainConfig
from .base import Method, StepOut, fit_submodel, task_loss, unimodal

Weighting = Literal["none", "kl", "mi", "kl+mi"]
WEIGHTINGS = ("none", "kl", "mi", "kl+mi")
SCALINGS = ("mean", "official")
LOSSES = ("task", "l1")
UPDATES = ("epoch", "improvement")
SPREADS = ("fixed", "prediction")
FLOOR = 1e-5


def kl_divergence(unimodal: Tensor, multimodal: Tensor, task: str, spread: str = "fixed") -> Tensor:
    """``KL(p^m_i || p_i)`` per example and modality: (N, M) from unimodal (N, M, C) and multimodal (N, C) outputs.

    Classification: between softmax distributions.  Regression: between Gaussians
    centred on the scalar predictions with spread 1 (``"fixed"``) or each model's
    standard deviation of its predictions over the split (``"prediction"``); no labels.
    """
    if task == "classification":
        log_p = unimodal.log_softmax(-1)
        return (log_p.exp() * (log_p - multimodal.log_softmax(-1).unsqueeze(1))).sum(-1)
    if spread not in SPREADS:
        raise ValueError(f"unknown spread {spread!r}; valid: {', '.join(SPREADS)}")
    mu_m, mu = unimodal[..., 0], multimodal[:, :1]
    if spread == "fixed":
        s_m, s = torch.ones_like(mu_m), torch.ones_like(mu)
    else:
        s_m, s = mu_m.std(0, keepdim=True).clamp_min(FLOOR).expand_as(mu_m), mu.std().clamp_min(FLOOR).expand_as(mu)
    return torch.log(s / s_m) + (s_m**2 + (mu_m - mu) ** 2) / (2 * s**2) - 0.5


def mutual_information(unimodal: Tensor, multimodal: Tensor, task: str, seed: int = 0) -> Tensor:
    """``MI(p^m, p)`` per modality over a split: (M,) from unimodal (N, M, C) and multimodal (N, C) outputs."""
    if task == "classification":
        fused = multimodal.argmax(-1).numpy()
        return torch.tensor([mutual_info_score(unimodal[:, m].argmax(-1).numpy(), fused)
                             for m in range(unimodal.shape[1])], dtype=torch.float32)
    mi = mutual_info_regression(unimodal[..., 0].numpy(), multimodal[:, 0].numpy(), n_neighbors=3, random_state=seed)
    return torch.as_tensor(np.asarray(mi), dtype=torch.float32)


def normalise(scores: Tensor, present: Tensor | None = None) -> Tensor:
    """Rows summing to 1 over the present modalities (absent ones get 0); scores are floored at 1e-5 first."""
    scores = scores.clamp_min(FLOOR)
    if present is not None:
        scores = scores * present
    return scores / scores.sum(-1, keepdim=True).clamp_min(1e-12)


def btw_weights(kl: Tensor, mi: Tensor, weighting: Weighting = "kl+mi", inverse_kl: bool = False) -> Tensor:
    """New per-example weights (N, M), summing to 1 per row, from KL (N, M) and MI (M,)."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; valid: {', '.join(WEIGHTINGS)}")
    kl = kl.clamp_min(FLOOR)
    d = normalise(1.0 / kl if inverse_kl else kl)
    i = normalise(mi).expand_as(d)
    if weighting == "none":
        return normalise(torch.ones_like(d))
    return normalise({"kl": d, "mi": i, "kl+mi": d * i}[weighting])


def train_unimodal(splits: Splits, cfg: TrainConfig, encoder: str = "auto", **encoder_kwargs) -> dict[str, Method]:
    """One joint-trained, validation-selected predictor per modality (BTW's stage 0)."""
    return {m: fit_submodel(unimodal(splits, m, encoder, "concat", **encoder_kwargs), splits.select([m]), cfg)
            for m in splits.modalities}


class BTW(Method):
    """Sparse-MoE fusion whose modality tokens are scaled by bi-level KL x MI weights."""

    fusions = ("moe",)

    def __init__(self, model: MultimodalModel, task: str = "classification", weighting: Weighting = "kl+mi",
                 inverse_kl: bool = False, spread: str = "fixed", alpha: float = 0.5, alpha_step: float = 0.05,
                 warmup: int = 1, balance_weight: float = 0.0, unimodal: Mapping[str, Method] | None = None,
                 unimodal_cfg: TrainConfig | None = None, scaling: str = "mean", loss: str = "task",
                 update: str = "epoch", uid_key: str = UID):
        super().__init__(model, task)
        for name, value, valid in (("weighting", weighting, WEIGHTINGS), ("spread", spread, SPREADS),
                                   ("scaling", scaling, SCALINGS), ("loss", loss, LOSSES), ("update", update, UPDATES)):
            if value not in valid:
                raise ValueError(f"unknown BTW {name} {value!r}; valid: {', '.join(valid)}")
        if loss == "l1" and task != "regression":
            raise ValueError(f"BTW loss='l1' is for regression; this task is {task!r}")
        validate.number("BTW alpha", alpha, 0, 1)
        validate.number("BTW alpha_step", alpha_step, 0)
        validate.number("BTW warmup", warmup, 0, integer=True)
        validate.number("BTW balance_weight", balance_weight, 0)
        if weighting != "none":
            validate.several_modalities("BTW", model.modalities, "its weights compare modalities")
        if unimodal is not None and set(unimodal) != set(model.modalities):
            raise ValueError(f"unimodal predictors for {sorted(unimodal)} do not match the modalities {list(model.modalities)}")
        self.weighting, self.inverse_kl, self.spread = weighting, inverse_kl, spread
        self.scaling, self.loss_kind, self.update, self.uid_key = scaling, loss, update, uid_key
        self.alpha, self.alpha_step, self.warmup, self.balance_weight = alpha, alpha_step, warmup, balance_weight
        self.unimodal = nn.ModuleDict(dict(unimodal)) if unimodal is not None else None
        self.unimodal_cfg = unimodal_cfg
        self.alpha_now, self.best_val_loss = alpha, float("inf")
        self.register_buffer("weights", torch.empty(0))  # (N_all, M), rows sum to 1
        self.register_buffer("unimodal_outputs", torch.empty(0))  # (N_all, M, C)
        self.register_buffer("mi", torch.empty(0))  # (M,) normalised modality-level weights
        self.history: list[dict[str, float]] = []

    @classmethod
    def make_model(cls, splits: Splits, encoder: str = "auto", fusion: str | None = None,
                   **encoder_kwargs) -> MultimodalModel:
        """The core's encoders and a default ``MoEFusion`` (``build_moe_model`` for other MoE settings)."""
        return build_moe_model(splits, encoder, encoder_kwargs)

    @property
    def fusion_modalities(self) -> tuple[str, ...]:
        return self.model.fusion.modalities

    # ----- stage 0: frozen unimodal predictors and their predictions ---------------------------------
    def fit_begin(self, ctx: Context) -> None:
        self.alpha_now, self.best_val_loss, self.history = self.alpha, float("inf"), []
        if self.weighting == "none":
            return
        parts = [ctx.splits.train, ctx.splits.val, ctx.splits.test]
        if any(self.uid_key not in d.tensors for d in parts):
            raise KeyError(f"BTW keeps per-example weights by the '{self.uid_key}' key; wrap the splits with "
                           "splits.with_uids() or name a row-id key unique across splits (uid_key=)")
        if self.unimodal is None:
            self.unimodal = nn.ModuleDict(train_unimodal(ctx.splits, self.unimodal_cfg or ctx.cfg))
        self.unimodal.requires_grad_(False).eval()
        n = int(max(d.tensors[self.uid_key].max() for d in parts)) + 1
        outputs = torch.zeros(n, len(self.fusion_modalities), self.model.fusion.num_classes)
        for d in parts:
            outputs[d.tensors[self.uid_key]] = self._unimodal_outputs(d).cpu()
        self.unimodal_outputs = outputs.to(ctx.device)
        start = 1.0 if self.scaling == "official" else 1 / len(self.fusion_modalities)
        self.weights = torch.full((n, len(self.fusion_modalities)), start, device=ctx.device)
        self.mi = torch.full((len(self.fusion_modalities),), 1 / len(self.fusion_modalities), device=ctx.device)

    @torch.no_grad()
    def _unimodal_outputs(self, dataset: DictDataset) -> Tensor:
        device = next(self.unimodal.parameters()).device
        chunks = [torch.stack([self.unimodal[m].predict({m: b[m].to(device)}).logits for m in self.fusion_modalities], 1)
                  for b in iterate(dataset)]
        return torch.cat(chunks)

    def train(self, mode: bool = True) -> "BTW":
        """Train mode for everything but the frozen unimodal predictors."""
        super().train(mode)
        if self.unimodal is not None:
            self.unimodal.eval()
        return self

    # ----- the weighted MoE forward ------------------------------------------------------------------
    def token_weights(self, batch: Batch) -> Tensor | None:
        """(B, M) token multipliers, absent modalities at 0 (None: unweighted): ``M_present * w`` renormalised
        over the present modalities, or the stored ``w`` itself under ``scaling="official"``."""
        present = torch.tensor([m in batch for m in self.fusion_modalities], device=batch[LABEL].device)
        if self.weighting == "none" or self.weights.numel() == 0:
            return None if bool(present.all()) else present.float().expand(len(batch[LABEL]), -1)
        if self.uid_key not in batch:
            raise KeyError(f"BTW looks up per-example weights by '{self.uid_key}'; the batch has {sorted(batch)}")
        stored = self.weights[batch[self.uid_key]]
        if self.scaling == "official":
            return stored * present.float()
        return normalise(stored, present.float()) * present.sum()

    def _forward(self, batch: Batch, with_gates: bool = False) -> tuple[Output, Tensor | None]:
        features = self.model.encode(batch)
        weights = self.token_weights(batch)
        logits, _, *gates = self.model.fusion(features, weights, with_gates=with_gates)
        uni = {}
        if self.unimodal_outputs.numel() and self.uid_key in batch:
            stored = self.unimodal_outputs[batch[self.uid_key]]
            uni = {m: stored[:, j] for j, m in enumerate(self.fusion_modalities) if m in batch}
        w = None if weights is None else {m: weights[:, j] for j, m in enumerate(self.fusion_modalities)}
        return Output(logits, uni, features, w), (gates[0] if gates else None)

    def _loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """The task loss, or L1 for regression under ``loss="l1"`` (the official sentiment code's)."""
        if self.loss_kind == "l1":
            return nn.functional.l1_loss(logits.view_as(labels).float(), labels.float())
        return task_loss(logits, labels, self.task)

    def training_step(self, batch: Batch, ctx: Context) -> StepOut:
        out, gates = self._forward(batch, with_gates=True)
        loss = self._loss(out.logits, batch[LABEL])
        logs = {"loss": loss.detach()}
        if self.balance_weight:
            balance = load_balance_loss(gates)
            loss = loss + self.balance_weight * balance
            logs["balance"] = balance.detach()
        return StepOut(loss, out, logs)

    def predict(self, batch: Batch) -> Output:
        return self._forward(batch)[0]

    # ----- stages 1-3: bi-level weights, smoothed across epochs --------------------------------------
    @torch.no_grad()
    def _fused(self, dataset: DictDataset, device: torch.device) -> Tensor:
        return torch.cat([self.predict({k: v.to(device) for k, v in b.items()}).logits.float() for b in iterate(dataset)])

    def epoch_end(self, epoch: int, ctx: Context) -> None:
        if self.weighting == "none" or epoch + 1 < self.warmup:
            return
        was_training = self.training
        self.eval()
        fused = {s: self._fused(ctx.splits.split(s), ctx.device) for s in ("train", "val", "test")}
        self.train(was_training)
        val = ctx.splits.val
        val_loss = self._loss(fused["val"].cpu(), val.tensors[LABEL]).item()
        if self.update == "epoch" or val_loss < self.best_val_loss:
            self._update_weights(fused, ctx)
        self.history.append({"epoch": epoch, "alpha": self.alpha_now, "val_loss": val_loss,
                             **{f"mi_{m}": float(v) for m, v in zip(self.fusion_modalities, self.mi)}})
        step = self.alpha_step if val_loss > self.best_val_loss else -self.alpha_step
        self.alpha_now = float(np.clip(self.alpha_now + step, 0.0, 1.0))
        self.best_val_loss = min(self.best_val_loss, val_loss)

    def _update_weights(self, fused: Mapping[str, Tensor], ctx: Context) -> None:
        """New bi-level weights for every split from its fused outputs, smoothed into the stored ones."""
        uni_val = self.unimodal_outputs[ctx.splits.val.tensors[self.uid_key].to(ctx.device)].cpu()
        self.mi = normalise(mutual_information(uni_val, fused["val"].cpu(), self.task, ctx.cfg.seed)).to(ctx.device)
        for s, logits in fused.items():
            uid = ctx.splits.split(s).tensors[self.uid_key].to(ctx.device)
            kl = kl_divergence(self.unimodal_outputs[uid], logits, self.task, self.spread)
            new = btw_weights(kl, self.mi, self.weighting, self.inverse_kl)
            self.weights[uid] = self.alpha_now * new + (1 - self.alpha_now) * self.weights[uid]
