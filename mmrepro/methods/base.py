"""The one hook interface every method implements; the training loop knows nothing else.

    fit_begin(ctx)              once, before the first epoch
    epoch_begin(epoch, ctx)
    training_step(batch, ctx)   -> StepOut(loss, output, logs)
    after_backward(ctx)         between backward and the optimiser step
    learning_rate_factors()     -> {parameter group: factor on its scheduled lr}, before each optimiser step
    epoch_end(epoch, ctx)       -> None, or logs for the epoch's history row
    predict(batch)              -> Output, at evaluation time

Checkpoints save a method's plain attributes and non-persistent buffers with its
weights (``mmrepro.checkpoint``); state kept in other objects is saved by an optional
``extra_state() -> dict`` and restored by ``load_extra_state(state)``.

A method declares the fusion heads (``fusions``, the first its default) and the
tasks (``tasks``) it supports; the constructor checks a model against them and
``for_splits`` builds a model with the default head.  ``fit_submodel`` trains a
model inside a method (unimodal predictors, budget estimators).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.core import LABEL, Batch, Splits
from ..models.multimodal import MultimodalModel, Output, build_model
from ..train import Context, TrainConfig, fit

TASKS = ("classification", "regression")


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


def fusion_name(model: nn.Module) -> str:
    """The name of a model's fusion head (``concat``, ``sum``, ``late``, ``moe``), or the model's own
    name when it fuses without a separate head (``token``)."""
    return getattr(getattr(model, "fusion", model), "name", type(model).__name__)


class Method(nn.Module):
    """A training recipe around a ``MultimodalModel``; subclasses override the hooks they need."""

    #: the fusion heads this method supports; the first is its default
    fusions: ClassVar[tuple[str, ...]] = ("concat", "sum", "late")
    #: the tasks this method supports
    tasks: ClassVar[tuple[str, ...]] = TASKS

    def __init__(self, model: MultimodalModel, task: str = "classification"):
        super().__init__()
        name, head = type(self).__name__, fusion_name(model)
        if head not in self.fusions:
            raise ValueError(f"{name} supports fusion {', '.join(self.fusions)}; the model's is {head!r}")
        if task not in self.tasks:
            raise ValueError(f"{name} supports task {', '.join(self.tasks)}; got {task!r}")
        self.model = model
        self.task = task

    @classmethod
    def make_model(cls, splits: Splits, encoder: str = "auto", fusion: str | None = None,
                   **encoder_kwargs: Any) -> nn.Module:
        """A fresh model for ``splits`` with ``fusion`` (default: the first of ``fusions``)."""
        return build_model(splits, encoder, fusion or cls.fusions[0], **encoder_kwargs)

    @classmethod
    def for_splits(cls, splits: Splits, encoder: str = "auto", fusion: str | None = None,
                   encoder_kwargs: dict | None = None, **kwargs: Any) -> "Method":
        """This method with a fresh model for ``splits`` (``kwargs`` go to the constructor)."""
        return cls(cls.make_model(splits, encoder, fusion, **(encoder_kwargs or {})), task=splits.task, **kwargs)

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.model.modalities

    def loss(self, logits: Tensor, batch: Batch) -> Tensor:
        return task_loss(logits, batch[LABEL], self.task)

    def fit_begin(self, ctx: Context) -> None:
        """Called once before training (e.g. to estimate budgets or pre-train predictors)."""

    def epoch_begin(self, epoch: int, ctx: Context) -> None:
        """Called at the start of every epoch."""

    def training_step(self, batch: Batch, ctx: Context) -> StepOut:
        raise NotImplementedError(f"{type(self).__name__} must implement training_step")

    def after_backward(self, ctx: Context) -> None:
        """Called after ``backward`` and before the optimiser step (gradient modulation)."""

    def epoch_end(self, epoch: int, ctx: Context) -> dict[str, float] | None:
        """Called at the end of every epoch, before validation; returned values join the epoch's history row."""

    def predict(self, batch: Batch) -> Output:
        return self.model(batch)

    def forward(self, batch: Batch) -> Output:
        return self.predict(batch)

    def learning_rate_factors(self) -> dict[str, float]:
        """Factors on the learning rate of named parameter groups (``parameter_groups``) for the coming
        optimiser step; the runner applies them on top of the schedule (MWAM's "lr" intervention)."""
        return {}

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Optimiser parameter groups; override for per-branch learning rates."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]


class Joint(Method):
    """Joint training: one loss on the fused logits (the baseline every paper starts from)."""

    fusions = ("concat", "sum", "late", "moe")

    def training_step(self, batch: Batch, ctx: Context) -> StepOut:
        out = self.model(batch)
        loss = self.loss(out.logits, batch)
        return StepOut(loss, out, {"loss": loss.detach()})


class LateFusionTraining(Method):
    """Late fusion: each modality's head trained on its own loss; predictions averaged."""

    fusions = ("late", "sum")

    def training_step(self, batch: Batch, ctx: Context) -> StepOut:
        out = self.model(batch)
        losses = {m: self.loss(logits, batch) for m, logits in out.unimodal_logits.items()}
        loss = torch.stack(list(losses.values())).sum()
        return StepOut(loss, out, {"loss": loss.detach(), **{f"loss_{m}": v.detach() for m, v in losses.items()}})


def unimodal(splits: Splits, modality: str, encoder: str = "auto", fusion: str = "concat",
             **encoder_kwargs: Any) -> Joint:
    """Joint training on one modality alone, with a fresh model (train it on ``splits.select([modality])``)."""
    if modality not in splits.modalities:
        raise ValueError(f"unimodal needs modality= one of {list(splits.modalities)}, got {modality!r}")
    return Joint.for_splits(splits.select([modality]), encoder, fusion, encoder_kwargs)


def fit_submodel(method: Method, splits: Splits, cfg: TrainConfig, **overrides: Any) -> Method:
    """Train a model that lives inside a method (BTW's unimodal predictors, IIBalance's budget
    estimators) with ``cfg`` plus ``overrides``: no checkpoints, no resuming, no progress bar."""
    fit(method, splits, cfg, checkpoint_dir=None, resume=False, progress=False, **overrides)
    return method
