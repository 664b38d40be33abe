"""G-Blending: gradient blending by the overfitting-to-generalisation ratio.

Wang, Tran and Feiszli, "What Makes Training Multi-Modal Classification
Networks Hard?", CVPR 2020 (no official code released; follows the paper's Algorithm 1,
online variant).  The loss is a weighted sum of the fused head's loss and the loss of a
*separate* linear head per modality (``AuxiliaryHeads``; the paper's unimodal heads do not
share weights with the fused classifier).  Every ``super_epoch`` epochs each head's
generalisation ``G`` (held-out loss) and overfitting ``O`` (held-out minus
training loss) are measured; over the window, ``dG = G_prev - G`` and
``dO = O - O_prev`` give the weight ``w_k ∝ max(dG, 0) / dO^2`` (online
G-Blending).  The held-out set here is the validation split (the paper uses
a split of the training data); the training loss is measured on a fixed
training slice of the same size.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import evaluate
from ..data.core import Batch, DictDataset
from ..models.auxiliary import AuxiliaryHeads
from ..models.multimodal import MultimodalModel, Output
from .base import Method, StepOut
from .checks import require_modalities

FUSED = "fused"


def blending_weights(dg: Tensor, do: Tensor, eps: float = 1e-4) -> Tensor:
    """``w ∝ relu(dG) / dO^2``, normalised to sum 1; uniform if no head generalises better."""
    raw = torch.relu(dg) / do.pow(2).clamp_min(eps)
    return raw / raw.sum() if raw.sum() > 0 else torch.full_like(raw, 1 / len(raw))


def head_losses(method: Method, dataset: DictDataset) -> Tensor:
    """Cross-entropy of the fused head, then of each unimodal head, over ``dataset``."""
    p = evaluate.predict(method, dataset)
    heads = [p.logits, *p.unimodal_logits.values()]
    return torch.stack([F.cross_entropy(lg, p.labels) for lg in heads])


class GBlending(Method):
    """Fused + separate unimodal losses weighted by online overfitting-to-generalisation estimates."""

    fusions: ClassVar[tuple[str, ...]] = ("concat", "sum")
    tasks: ClassVar[tuple[str, ...]] = ("classification",)

    def __init__(self, model: MultimodalModel, super_epoch: int = 1, task: str = "classification"):
        super().__init__(model, task)
        require_modalities("G-Blending", model)
        if super_epoch < 1:
            raise ValueError(f"G-Blending super_epoch must be an integer >= 1, got {super_epoch}")
        self.super_epoch = super_epoch
        self.aux = AuxiliaryHeads.for_model(model)
        self.register_buffer("blend", torch.full((len(self.modalities) + 1,), 1 / (len(self.modalities) + 1)))
        self._last: tuple[Tensor, Tensor] | None = None
        self._train_slice: DictDataset | None = None

    @property
    def heads(self) -> tuple[str, ...]:
        return (FUSED, *self.modalities)

    def _measure(self, ctx) -> tuple[Tensor, Tensor]:
        """(G, O) per head: validation loss, and validation minus training loss."""
        g = head_losses(self, ctx.splits.val)
        return g, g - head_losses(self, self._train_slice)

    def fit_begin(self, ctx) -> None:
        n = min(len(ctx.splits.train), len(ctx.splits.val))
        idx = torch.randperm(len(ctx.splits.train), generator=torch.Generator().manual_seed(ctx.cfg.seed))[:n]
        self._train_slice = ctx.splits.train.subset(idx)
        self._last = self._measure(ctx)

    def predict(self, batch: Batch) -> Output:
        return self.aux(self.model(batch))

    def training_step(self, batch: Batch, ctx) -> StepOut:
        out = self.predict(batch)
        losses = torch.stack([self.loss(out.logits, batch), *(self.loss(out.unimodal_logits[m], batch)
                                                              for m in self.modalities)])
        loss = (self.blend.to(losses.dtype) * losses).sum()
        logs = {"loss": loss.detach(), **{f"blend_{h}": self.blend[i].clone() for i, h in enumerate(self.heads)}}
        return StepOut(loss, out, logs)

    def epoch_end(self, epoch: int, ctx) -> None:
        if (epoch + 1) % self.super_epoch:
            return
        g, o = self._measure(ctx)
        g0, o0 = self._last
        self.blend.copy_(blending_weights(g0 - g, o - o0).to(self.blend.device))
        self._last = (g, o)
