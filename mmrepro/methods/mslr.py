"""MSLR: modality-specific learning rates, adapted by each modality's validation accuracy.

Yao and Mihalcea, "Modality-specific Learning Rates for Effective Multimodal Additive
Late-fusion", Findings of ACL 2022.  Their code is not available here; this follows the MSLR
baseline in AGM's official code (lihong2303/AGM_ICCV2023, ``run/AVMNIST_main.py``: the
``"MSLR"`` branch of ``train`` and the ratio update after each epoch's evaluation), the
version the IIBalance paper compares against.  An additive late-fusion model (one head per
modality, logits summed) is trained on the fused loss; the gradients of modality ``m``'s encoder
and head are scaled by ``lr_scales[m] * ratio_m`` (a learning-rate factor under SGD), where
``ratio_m`` is 1 until ``memory`` epochs have been seen, then this epoch's validation accuracy of
``m``'s head over its mean in the previous ``memory`` epochs.

Deviations: the code evaluates on its test split; here the validation split.  The code's
initial factors (1.3 audio, 0.7 visual) are tuned to AV-MNIST; here ``lr_scales`` defaults to 1
for every modality.  Scaling is applied within ``modulation_starts``..``modulation_ends``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from .. import evaluate
from ..data.core import Batch
from ..models.multimodal import MultimodalModel
from .base import Joint, StepOut
from .checks import check_range, check_window, require_modalities


def accuracy_ratio(history: list[Tensor], current: Tensor, memory: int) -> Tensor:
    """``current / mean(history)`` per modality once ``memory`` epochs are remembered, else 1."""
    if len(history) < memory:
        return torch.ones_like(current)
    return current / torch.stack(history[-memory:]).mean(0).clamp_min(1e-8)


class MSLR(Joint):
    """Additive late fusion with per-modality gradient (learning-rate) factors from validation accuracy."""

    fusions: ClassVar[tuple[str, ...]] = ("sum", "late")
    tasks: ClassVar[tuple[str, ...]] = ("classification",)

    def __init__(self, model: MultimodalModel, lr_scales: dict[str, float] | None = None, memory: int = 5,
                 modulation_starts: int = 0, modulation_ends: int = 10**6, task: str = "classification"):
        super().__init__(model, task)
        require_modalities("MSLR", model)
        scales = {m: 1.0 for m in model.modalities} | dict(lr_scales or {})
        unknown = sorted(set(scales) - set(model.modalities))
        if unknown:
            raise ValueError(f"MSLR lr_scales has unknown modalities {unknown}; valid: {list(model.modalities)}")
        for m, v in scales.items():
            check_range(f"MSLR lr_scales[{m!r}]", v, 0, low_open=True)
        if memory < 1:
            raise ValueError(f"MSLR memory must be an integer >= 1 (epochs), got {memory}")
        check_window(modulation_starts, modulation_ends)
        self.memory, self.modulation_starts, self.modulation_ends = memory, modulation_starts, modulation_ends
        self.register_buffer("lr_scales", torch.tensor([scales[m] for m in model.modalities]))
        self.register_buffer("ratio", torch.ones(len(model.modalities)))
        self._history: list[Tensor] = []

    def factors(self) -> Tensor:
        """The current gradient factor of each modality's encoder and head."""
        return self.lr_scales * self.ratio

    def training_step(self, batch: Batch, ctx) -> StepOut:
        step = super().training_step(batch, ctx)
        step.logs.update({f"lr_factor_{m}": f for m, f in zip(self.modalities, self.factors())})
        return step

    def after_backward(self, ctx) -> None:
        if not self.modulation_starts <= ctx.epoch <= self.modulation_ends:
            return
        for i, m in enumerate(self.modalities):
            branch = [*self.model.encoders[m].parameters(), *self.model.fusion.heads[m].parameters()]
            torch._foreach_mul_([p.grad for p in branch if p.grad is not None], self.factors()[i])

    @torch.no_grad()
    def epoch_end(self, epoch: int, ctx) -> None:
        """Update the ratios from this epoch's validation accuracy of each modality's head."""
        p = evaluate.predict(self, ctx.splits.val)
        acc = torch.stack([(p.unimodal_logits[m].argmax(-1) == p.labels).float().mean() for m in self.modalities])
        self.ratio.copy_(accuracy_ratio(self._history, acc, self.memory).to(self.ratio))
        self._history = [*self._history, acc][-self.memory:]
