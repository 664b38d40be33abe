"""PMR: prototypical modal rebalance (the "forced balance" IIBalance argues against).

Fan, Xu, Wei, Hu and Lu, "PMR: Prototypical Modal Rebalance for Multimodal
Learning", CVPR 2023; follows the official code (fanyunfeng-bit/Modal-Imbalance-PMR,
``main_Prototype_grad.py``).  At the start of every epoch each modality's class
prototypes are recomputed from a tenth of the training set (the code's ``all_num // 10``
batches) and blended with the previous ones: ``(1 - momentum) * new + momentum * old``,
``momentum = 0.2`` (the code's ``momentum_coef``).  Per batch, each modality's prototype
classifier (negative Euclidean distance) gives a summed true-class
confidence ``s_m``; a modality whose score is below the strongest one's gets
the prototype cross-entropy (PCE) with weight ``alpha`` (as the official code
does; ``scaled=True`` uses ``alpha * (s_max / s_m - 1)`` instead), i.e. it is
pushed until its ratio reaches 1.  The prototype-entropy
regulariser on the dominant modality is ``gamma`` (0 switches it off).  The PCE is added
for epochs ``modulation_starts`` to ``modulation_ends`` (inclusive), as in the code.
Deviation (minor): the code first blends with momentum at its third prototype computation
(the one after epoch 0 is fresh too); here blending starts at the second.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.core import LABEL, Batch, iterate
from ..models.multimodal import MultimodalModel
from .base import Joint, StepOut
from .checks import check_range, check_window, require_modalities


def class_means(features: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Mean feature per class (zeros for a class absent from ``labels``)."""
    counts = torch.bincount(labels, minlength=num_classes).to(features.dtype).clamp_min(1)
    return torch.zeros(num_classes, features.shape[1], dtype=features.dtype,
                       device=features.device).index_add_(0, labels, features) / counts.unsqueeze(1)


def distance_logits(z: Tensor, protos: Tensor) -> Tensor:
    """PMR's prototype logits: negative Euclidean distance to each class prototype."""
    return -torch.cdist(z.float(), protos.detach().float())


def pce_weights(scores: Tensor, alpha: float, scaled: bool = False) -> Tensor:
    """``alpha`` for every modality below the strongest, 0 for the strongest (forced target ratio 1);
    ``scaled``: ``alpha * (s_max / s_m - 1)``."""
    gap = torch.relu(scores.max() / scores.clamp_min(1e-8) - 1)
    return alpha * (gap if scaled else (gap > 0).to(scores.dtype))


class PMR(Joint):
    """Joint training plus PMR's prototype cross-entropy on the weaker modalities."""

    fusions: ClassVar[tuple[str, ...]] = ("sum", "concat")
    tasks: ClassVar[tuple[str, ...]] = ("classification",)

    def __init__(self, model: MultimodalModel, alpha: float = 1.0, gamma: float = 0.0, momentum: float = 0.2,
                 proto_fraction: float = 0.1, scaled: bool = False, modulation_starts: int = 0,
                 modulation_ends: int = 100, task: str = "classification"):
        super().__init__(model, task)
        require_modalities("PMR", model)
        check_range("PMR alpha", alpha, 0)
        check_range("PMR gamma", gamma, 0)
        check_range("PMR momentum", momentum, 0, 1, high_open=True)
        check_range("PMR proto_fraction", proto_fraction, 0, 1, low_open=True)
        check_window(modulation_starts, modulation_ends)
        self.alpha, self.gamma, self.momentum, self.proto_fraction = alpha, gamma, momentum, proto_fraction
        self.scaled, self.modulation_starts, self.modulation_ends = scaled, modulation_starts, modulation_ends
        self.num_classes: int | None = None

    def fit_begin(self, ctx) -> None:
        self.num_classes = ctx.splits.num_classes
        for m in self.modalities:
            self.register_buffer(f"proto_{m}", torch.zeros(self.num_classes, int(self.model.encoders[m].out_dim),
                                                           device=ctx.device), persistent=False)
        self._fresh = True

    @torch.no_grad()
    def epoch_begin(self, epoch: int, ctx) -> None:
        """Recompute the prototypes from a fixed random slice of the training set."""
        data = ctx.splits.train
        n = max(self.num_classes, int(len(data) * self.proto_fraction))
        gen = torch.Generator().manual_seed(ctx.cfg.seed + epoch)
        sl = data.subset(torch.randperm(len(data), generator=gen)[:n])
        was = self.training
        self.eval()
        feats = {m: [] for m in self.modalities}
        labels = []
        for batch in iterate(sl, 512):
            out = self.model.encode({k: v.to(ctx.device) for k, v in batch.items()})
            for m in self.modalities:
                feats[m].append(out[m].float())
            labels.append(batch[LABEL].to(ctx.device))
        self.train(was)
        y = torch.cat(labels)
        for m in self.modalities:
            new = class_means(torch.cat(feats[m]), y, self.num_classes)
            old = getattr(self, f"proto_{m}")
            old.copy_(new if self._fresh else self.momentum * old + (1 - self.momentum) * new)
        self._fresh = False

    def training_step(self, batch: Batch, ctx) -> StepOut:
        out = self.model(batch)
        y = batch[LABEL]
        loss = self.loss(out.logits, batch)
        logits = [distance_logits(out.features[m], getattr(self, f"proto_{m}")) for m in self.modalities]
        pce = torch.stack([F.cross_entropy(lg, y) for lg in logits])
        with torch.no_grad():
            scores = torch.stack([lg.softmax(-1).gather(1, y.view(-1, 1)).sum() for lg in logits])
            scores = ctx.all_reduce(scores, "sum")
            coef = pce_weights(scores, self.alpha, self.scaled)
            coef = coef * float(self.modulation_starts <= ctx.epoch <= self.modulation_ends)
        loss = loss + (coef * pce).sum()
        logs = {"loss": loss.detach()}
        if self.gamma:
            strongest = int(scores.argmax())
            probs = logits[strongest].softmax(-1)
            entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1).mean()
            loss = loss - self.gamma * entropy
        for i, m in enumerate(self.modalities):
            logs.update({f"pce_coef_{m}": coef[i], f"fired_{m}": (coef[i] > 0).float()})
        return StepOut(loss, out, logs)
