"""MMPareto: Pareto integration of the multimodal and unimodal gradients.

Wei and Hu, "MMPareto: Boosting Multimodal Learning with Innocent Unimodal Assistance",
ICML 2024; follows the official code (GeWu-Lab/MMPareto_ICML2024, ``code/MMPareto.py``,
``train_epoch``).  The loss is the fused head's loss plus one loss per modality on a *separate*
unimodal head (the code's ``head_audio``/``head_video``; ``AuxiliaryHeads`` here).  For each
encoder the gradients of the fused loss ``g_mm`` and of its unimodal loss ``g_m`` are compared
over all its tensors: with positive cosine they get weights 1/2 each, otherwise the min-norm
(MGDA) weights.  Then, per tensor, the code's magnitude step sets the gradient to
``gamma * d * max(1, |g_mm + g_m| / |d|)`` with ``d = 2 (a g_mm + (1 - a) g_m)`` and
``gamma = 1.5``.  Heads train on the plain sum of the losses.  The authors use SGD (lr 2e-3,
momentum 0.9, weight decay 1e-4, StepLR(30, 0.1)).  ``rescale=False`` keeps the raw convex combination
``a g_mm + (1 - a) g_m`` (no magnitude step).  Use fp32 or bf16: the per-loss gradients are
taken without a gradient scaler.

Learning rate.  Per tensor the magnitude step's result has norm at least ``gamma |g_mm + g_m|``
(``|d| <= |g_mm + g_m|`` at the min-norm point, and ``d = g_mm + g_m`` without conflict), where
joint training steps along ``g_mm`` alone, so at a learning rate tuned for joint training every
encoder step is several times larger.  That, not the formula (which matches ``train_epoch``), is
why MMPareto collapsed the weak (audio) encoder on the book's AV-Digits host at SGD lr 0.05: the
Baselines chapter's short runs ("MMPareto and the learning rate") compare the step at that lr,
``rescale=False`` at that lr, the step at a fifth of it, and joint training at both.  Measured
there (MLP encoders, summed heads, SGD, 3 epochs, mean of 3 seeds), the audio probe is 29 % with
the step at lr 0.05, 66 % without it, and 74 % with the step at lr 0.01 (joint: 58 % at 0.05,
66 % at 0.01).  Give MMPareto its own learning rate (the authors' 2e-3, or one chosen on
validation).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from ..data.core import Batch
from ..models.auxiliary import AuxiliaryHeads
from ..models.multimodal import MultimodalModel, Output
from .base import Method, StepOut
from .checks import check_range, require_modalities


def pareto_weight(g_mm: Tensor, g_uni: Tensor) -> tuple[Tensor, Tensor]:
    """Weight on ``g_mm`` (the rest on ``g_uni``) and whether the two gradients conflict (cosine <= 0).

    1/2 without conflict; otherwise the min-norm point ``argmin_a |a g_mm + (1-a) g_uni|``.
    """
    dot = g_mm @ g_uni
    conflict = dot <= 0
    mgda = ((g_uni @ g_uni - dot) / (g_mm - g_uni).pow(2).sum().clamp_min(1e-12)).clamp(0, 1)
    return torch.where(conflict, mgda, torch.full_like(mgda, 0.5)), conflict


def pareto_tensor_gradient(g_mm: Tensor, g_uni: Tensor, a: Tensor, gamma: float = 1.5) -> Tensor:
    """One tensor's MMPareto gradient: ``gamma * d * max(1, |g_mm + g_uni| / |d|)``, ``d = 2 (a g_mm + (1-a) g_uni)``."""
    d = 2 * (a * g_mm + (1 - a) * g_uni)
    return gamma * d * ((g_mm + g_uni).norm() / d.norm().clamp_min(1e-12)).clamp_min(1)


class MMPareto(Method):
    """Fused + separate unimodal losses; encoder gradients replaced by their Pareto integration."""

    fusions: ClassVar[tuple[str, ...]] = ("concat", "sum")
    tasks: ClassVar[tuple[str, ...]] = ("classification", "regression")

    def __init__(self, model: MultimodalModel, gamma: float = 1.5, rescale: bool = True,
                 task: str = "classification"):
        super().__init__(model, task)
        require_modalities("MMPareto", model)
        check_range("MMPareto gamma", gamma, 0, low_open=True)
        self.gamma, self.rescale = gamma, rescale
        self.aux = AuxiliaryHeads.for_model(model)
        self._grads: dict[str, list[Tensor]] = {}

    def predict(self, batch: Batch) -> Output:
        return self.aux(self.model(batch))

    def _encoder_params(self, m: str) -> list[Tensor]:
        return [p for p in self.model.encoders[m].parameters() if p.requires_grad]

    def training_step(self, batch: Batch, ctx) -> StepOut:
        out = self.predict(batch)
        loss_mm = self.loss(out.logits, batch)
        losses = {m: self.loss(lg, batch) for m, lg in out.unimodal_logits.items()}
        params = {m: self._encoder_params(m) for m in losses}
        g_mm_all = _grads(loss_mm, [p for ps in params.values() for p in ps])
        logs = {"loss_mm": loss_mm.detach()}
        self._grads, start = {}, 0
        for m, loss_m in losses.items():
            g_mm, start = g_mm_all[start:start + len(params[m])], start + len(params[m])
            g_m = _grads(loss_m, params[m])
            g_mm = [ctx.all_reduce(g, "mean") for g in g_mm]  # every process combines the global gradients
            g_m = [ctx.all_reduce(g, "mean") for g in g_m]
            a, conflict = pareto_weight(_flat(g_mm), _flat(g_m))
            self._grads[m] = [pareto_tensor_gradient(gm, gu, a, self.gamma) if self.rescale else a * gm + (1 - a) * gu
                              for gm, gu in zip(g_mm, g_m)]
            logs.update({f"loss_{m}": loss_m.detach(), f"conflict_{m}": conflict.float(), f"weight_mm_{m}": a.detach()})
        loss = loss_mm + sum(losses.values())
        logs["loss"] = loss.detach()
        return StepOut(loss, out, logs)

    def after_backward(self, ctx) -> None:
        for m, grads in self._grads.items():
            for p, g in zip(self._encoder_params(m), grads):
                p.grad = g.to(p.dtype)


def _grads(loss: Tensor, params: list[Tensor]) -> list[Tensor]:
    """``d loss / d params`` (zeros for a parameter the loss does not reach), keeping the graph."""
    gs = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return [g.detach() if g is not None else torch.zeros_like(p) for g, p in zip(gs, params)]


def _flat(grads: list[Tensor]) -> Tensor:
    return torch.cat([g.flatten() for g in grads])
