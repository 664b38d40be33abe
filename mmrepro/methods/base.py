"""The one hook interface every method implements; the training loop knows nothing else.

    fit_begin(ctx)              once, before the first epoch
    epoch_begin(epoch, ctx)
    training_step(batch, ctx)   -> StepOut(loss, output, logs)
    after_backward(ctx)         between backward and the optimiser step
    epoch_end(epoch, ctx)       -> None, or logs for the epoch's history row
    predict(batch)              -> Output, at evaluation time

Checkpoints save a method's plain attributes and non-persistent buffers with its
weights (``mmrepro.checkpoint``); state kept in other objects is saved by an optional
``extra_state() -> dict`` and restored by ``load_extra_state(state)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.core import LABEL, Batch
from ..models.multimodal import MultimodalModel, Output

if TYPE_CHECKING:  # pragma: no cover
    from ..train import Context


@dataclass
class StepOut:
    """A training step's loss, the model output, and detached tensors to average per epoch."""

    loss: Tensor
    output: Output
    logs: dict[str, Tensor] = field(default_factory=dict)


def task_loss(logits: Tensor, target: Tensor, task: str = "classification") -> Tensor:
    """Cross-entropy for classification, mean squared error for regression."""
    if task == "classification":
        return F.cross_entropy(logits, target)
    if task == "regression":
        return F.mse_loss(logits.view_as(target.float()), target.float())
    raise ValueError(f"unknown task {task!r}; valid: 'classification', 'regression'")


class Method(nn.Module):
    """A training recipe around a ``MultimodalModel``; subclasses override the hooks they need."""

    def __init__(self, model: MultimodalModel, task: str = "classification"):
        super().__init__()
        self.model = model
        self.task = task

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.model.modalities

    def loss(self, logits: Tensor, batch: Batch) -> Tensor:
        return task_loss(logits, batch[LABEL], self.task)

    def fit_begin(self, ctx: "Context") -> None:
        """Called once before training (e.g. to estimate budgets or pre-train predictors)."""

    def epoch_begin(self, epoch: int, ctx: "Context") -> None:
        """Called at the start of every epoch."""

    def training_step(self, batch: Batch, ctx: "Context") -> StepOut:
        raise NotImplementedError(f"{type(self).__name__} must implement training_step")

    def after_backward(self, ctx: "Context") -> None:
        """Called after ``backward`` and before the optimiser step (gradient modulation)."""

    def epoch_end(self, epoch: int, ctx: "Context") -> dict[str, float] | None:
        """Called at the end of every epoch, before validation; returned values join the epoch's history row."""

    def predict(self, batch: Batch) -> Output:
        return self.model(batch)

    def forward(self, batch: Batch) -> Output:
        return self.predict(batch)

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Optimiser parameter groups; override for per-branch learning rates."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]


class Joint(Method):
    """Joint training: one loss on the fused logits (the baseline every paper starts from)."""

    def training_step(self, batch: Batch, ctx: "Context") -> StepOut:
        out = self.model(batch)
        loss = self.loss(out.logits, batch)
        return StepOut(loss, out, {"loss": loss.detach()})


class LateFusionTraining(Method):
    """Late fusion: each modality's head trained on its own loss; predictions averaged."""

    def training_step(self, batch: Batch, ctx: "Context") -> StepOut:
        out = self.model(batch)
        losses = {m: self.loss(logits, batch) for m, logits in out.unimodal_logits.items()}
        loss = torch.stack(list(losses.values())).sum()
        return StepOut(loss, out, {"loss": loss.detach(), **{f"loss_{m}": v.detach() for m, v in losses.items()}})
