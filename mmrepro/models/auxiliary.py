"""Separate unimodal classifiers beside a fused head (MMPareto, G-Blending).

The unimodal logits of ``concat`` or ``sum`` fusion are blocks of the fused head, so a loss on
them also trains the fused classifier; these heads are independent linear layers on each
modality's features, as in the MMPareto code (``head_audio``/``head_video``) and G-Blending.
"""

from __future__ import annotations

from typing import Mapping

from torch import nn

from .multimodal import MultimodalModel, Output, feature_dims


class AuxiliaryHeads(nn.Module):
    """One linear classifier per modality on that modality's encoder features."""

    def __init__(self, dims: Mapping[str, int], num_classes: int):
        super().__init__()
        self.heads = nn.ModuleDict({m: nn.Linear(d, num_classes) for m, d in dims.items()})

    @classmethod
    def for_model(cls, model: MultimodalModel) -> "AuxiliaryHeads":
        """Heads sized to ``model``'s encoders and to its fused head's number of outputs."""
        return cls(feature_dims(model.encoders), _num_outputs(model.fusion))

    def forward(self, out: Output) -> Output:
        """``out`` with its unimodal logits replaced by these heads' logits (fused logits unchanged)."""
        uni = {m: self.heads[m](f) for m, f in out.features.items()}
        return Output(out.logits, uni, out.features, out.weights)


def _num_outputs(fusion: nn.Module) -> int:
    linears = [m for m in fusion.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"cannot read the number of classes from fusion {type(fusion).__name__}: it has no linear layer")
    return linears[-1].out_features
