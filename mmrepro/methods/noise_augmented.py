"""Any method trained on UDML's graded input noise, so baselines see the same training data as UDML."""

from __future__ import annotations

from typing import Any

from torch import nn

from .. import validate
from ..data.core import Batch, Splits
from ..data.corruptions import GradedNoise
from ..models.multimodal import MultimodalModel, Output
from .base import Joint, Method, StepOut
from .udml import default_noise


class NoiseAugmented(Method):
    """Wraps ``method``: from ``start_epoch`` on, each training batch gets graded Gaussian noise.

    The wrapped method's hooks, prediction and parameter groups are used
    unchanged; only the training inputs differ.  Its ``fusions`` and ``tasks`` are
    those of the wrapped method, checked when that method was built.
    """

    fusions = Joint.fusions

    def __init__(self, method: Method, noise: GradedNoise, start_epoch: int = 0):
        nn.Module.__init__(self)
        validate.number("NoiseAugmented start_epoch", start_epoch, 0, integer=True)
        self.method, self.noise, self.start_epoch, self.task = method, noise, start_epoch, method.task

    @classmethod
    def for_splits(cls, splits: Splits, encoder: str = "auto", fusion: str | None = None,
                   encoder_kwargs: dict | None = None, method: type[Method] | str = Joint,
                   noise: GradedNoise | None = None, start_epoch: int = 0, **kwargs: Any) -> "NoiseAugmented":
        """``method`` (a class or its registry name, so run specs stay data) built for ``splits`` (``kwargs`` go
        to it), trained on ``noise`` (default: UDML's)."""
        if isinstance(method, str):
            from . import REGISTRY  # the registry imports this module

            if method not in REGISTRY or method == "noise_augmented":
                raise ValueError(f"NoiseAugmented cannot wrap {method!r}; valid: registry names other than itself")
            method = REGISTRY[method]
        inner = method.for_splits(splits, encoder, fusion, encoder_kwargs, **kwargs)
        return cls(inner, noise or default_noise(splits), start_epoch)

    @property
    def model(self) -> MultimodalModel:  # type: ignore[override]
        return self.method.model

    def fit_begin(self, ctx) -> None:
        self.method.fit_begin(ctx)

    def epoch_begin(self, epoch: int, ctx) -> None:
        self.method.epoch_begin(epoch, ctx)

    def training_step(self, batch: Batch, ctx) -> StepOut:
        if ctx.epoch >= self.start_epoch:
            batch = self.noise(batch)[0]
        return self.method.training_step(batch, ctx)

    def after_backward(self, ctx) -> None:
        self.method.after_backward(ctx)

    def epoch_end(self, epoch: int, ctx) -> dict[str, float] | None:
        return self.method.epoch_end(epoch, ctx)

    def predict(self, batch: Batch) -> Output:
        return self.method.predict(batch)

    def parameter_groups(self) -> list[dict[str, Any]]:
        return self.method.parameter_groups()
