"""AGM: adaptive gradient modulation through Shapley-style unimodal outputs.

Li, Li, Hu, Lei, Li and Zhou, "Boosting Multi-modal Model Performance with Adaptive Gradient
Modulation", ICCV 2023; follows the official code (lihong2303/AGM_ICCV2023,
``model/AVMNIST_net.py``, ``GradMod``, and ``run/AVMNIST_main.py``, ``train``).  Each modality's
output is its Shapley share of the fused logits, with the other inputs replaced by zeros (the
code's ``pad_audio``/``pad_visual`` passes, run in eval mode); for two modalities
``o_a = (f(a, v) - f(0, v) + f(a, 0)) / 2`` and ``o_a + o_v = f(a, v)``.  The batch score is
``s_m = mean_i -log p(y_i | o_m)`` (probabilities floored at 1e-8), its relative form
``r_m = exp(2 (mean_j s_j - s_m))``, and ``r*_m`` is the same of the running mean of ``s`` over
all past steps.  The gradient flowing into ``o_m`` is scaled by ``k_m = exp(alpha (r*_m - r_m))``
(the code's backward hooks) for epochs ``modulation_starts`` to ``modulation_ends``; after
backward, all gradients are clipped to norm 1 if a fusion weight's gradient leaves [-1, 1]
(``clip=False`` switches that off).  The authors train with SGD (momentum 0.9, weight decay 1e-4).

Deviation: for more than two modalities the shares are the exact Shapley values over all
``2^M - 1`` non-empty subsets (the code covers two, or three for MOSEI with its own formula);
for two they equal the code's.
"""

from __future__ import annotations

from itertools import combinations
from typing import ClassVar

import torch
from torch import Tensor

from ..data.core import LABEL, Batch
from ..evaluate import shapley_values
from ..models.multimodal import MultimodalModel, Output
from .base import Method, StepOut
from .checks import check_range, check_window, require_modalities


def scale_gradient(x: Tensor, k: Tensor) -> Tensor:
    """``x`` in the forward pass; its gradient multiplied by ``k`` in the backward pass."""
    return x * k + x.detach() * (1 - k)


def shapley_shares(outputs: dict[frozenset, Tensor], modalities: tuple[str, ...]) -> dict[str, Tensor]:
    """Each modality's Shapley share of ``outputs[all]``, with the empty coalition's output taken as 0.

    ``outputs`` maps every non-empty coalition (a frozenset of modality names) to its logits.
    """
    return shapley_values({frozenset(): 0, **outputs}, modalities)


def agm_scores(shares: dict[str, Tensor], labels: Tensor) -> Tensor:
    """``s_m``: mean negative log-probability of the true class under each share (floored at 1e-8)."""
    p = torch.stack([o.softmax(-1).gather(1, labels.view(-1, 1)).squeeze(1) for o in shares.values()])
    return -p.clamp_min(1e-8).log().mean(1)


def relative(scores: Tensor) -> Tensor:
    """The code's ratio ``exp(2 (mean_j s_j - s_m))``: above 1 for a modality that fits better than average."""
    return torch.exp(2 * (scores.mean() - scores))


def agm_coefficients(scores: Tensor, running: Tensor, alpha: float) -> Tensor:
    """``k_m = exp(alpha (r*_m - r_m))`` from this batch's scores and their running means."""
    return torch.exp(alpha * (relative(running) - relative(scores)))


class AGM(Method):
    """Joint training on the sum of Shapley shares, each share's gradient scaled by ``agm_coefficients``."""

    fusions: ClassVar[tuple[str, ...]] = ("concat", "sum")
    tasks: ClassVar[tuple[str, ...]] = ("classification",)

    def __init__(self, model: MultimodalModel, alpha: float = 1.0, modulation_starts: int = 0,
                 modulation_ends: int = 20, clip: bool = True, task: str = "classification"):
        super().__init__(model, task)
        require_modalities("AGM", model)
        check_range("AGM alpha", alpha, 0)
        check_window(modulation_starts, modulation_ends)
        self.alpha, self.clip = alpha, clip
        self.modulation_starts, self.modulation_ends = modulation_starts, modulation_ends
        self.register_buffer("running_score", torch.zeros(len(model.modalities)))
        self.register_buffer("steps", torch.zeros(()))

    def shares(self, batch: Batch) -> Output:
        """The fused output with each modality's Shapley share as its unimodal logits.

        Coalitions replace the absent inputs by zeros and run in eval mode, as the code's padded passes.
        """
        full = self.model(batch)
        mods = self.modalities
        outputs = {frozenset(mods): full.logits}
        was = self.training
        self.model.eval()
        for size in range(1, len(mods)):
            for coalition in map(frozenset, combinations(mods, size)):
                padded = {**batch, **{m: torch.zeros_like(batch[m]) for m in mods if m not in coalition}}
                outputs[coalition] = self.model(padded).logits
        self.model.train(was)
        return Output(full.logits, shapley_shares(outputs, mods), full.features)

    def predict(self, batch: Batch) -> Output:
        """Shares as the unimodal outputs (as the code evaluates them); the plain model if a modality is missing."""
        return self.shares(batch) if all(m in batch for m in self.modalities) else self.model(batch)

    def training_step(self, batch: Batch, ctx) -> StepOut:
        out = self.shares(batch)
        shares = out.unimodal_logits
        with torch.no_grad():
            scores = agm_scores(shares, batch[LABEL])
            scores = ctx.all_reduce(scores, "mean")  # every process must modulate identically
            coeff = agm_coefficients(scores, self.running_score, self.alpha)
            if not self.modulation_starts <= ctx.epoch <= self.modulation_ends:
                coeff = torch.ones_like(coeff)
            self.running_score.mul_(self.steps / (self.steps + 1)).add_(scores / (self.steps + 1))
            self.steps.add_(1)
        logits = torch.stack([scale_gradient(o, coeff[i]) for i, o in enumerate(shares.values())]).sum(0)
        loss = self.loss(logits, batch)
        logs = {"loss": loss.detach(), **{f"coeff_{m}": coeff[i] for i, m in enumerate(self.modalities)},
                **{f"score_{m}": scores[i] for i, m in enumerate(self.modalities)}}
        return StepOut(loss, Output(logits, shares, out.features), logs)

    def after_backward(self, ctx) -> None:
        if self.clip:
            clip_if_head_exceeds(self.parameters(), self.model.fusion.parameters())


def clip_if_head_exceeds(params, head_params, limit: float = 1.0) -> None:
    """Clip all gradients to total norm ``limit`` when any fusion-weight gradient leaves [-limit, limit]."""
    grads = [p.grad for p in params if p.grad is not None]
    head = [p.grad.abs().max() for p in head_params if p.grad is not None and p.dim() >= 2]
    if not grads or not head:
        return
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    factor = torch.where(torch.stack(head).max() > limit, (limit / (total + 1e-6)).clamp(max=1.0), torch.ones_like(total))
    torch._foreach_mul_(grads, factor)
