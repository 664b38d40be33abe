"""The multimodal model: an encoder per modality, then a fusion head."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from torch import Tensor, nn

from ..data.core import Batch, Splits, is_modality
from .encoders import make_encoder
from .fusion import make_fusion


@dataclass
class Output:
    """What every model and method returns: fused and unimodal logits, features, fusion weights."""

    logits: Tensor
    unimodal_logits: dict[str, Tensor]
    features: dict[str, Tensor]
    weights: dict[str, Tensor] | None = None


class MultimodalModel(nn.Module):
    """``encoders[m](batch[m]) -> features[m] -> fusion``; modalities missing from the batch are absent."""

    def __init__(self, encoders: Mapping[str, nn.Module], fusion: nn.Module,
                 input_spec: Mapping[str, tuple[tuple[int, ...], torch.dtype]] | None = None,
                 num_classes: int | None = None):
        super().__init__()
        self.encoders = nn.ModuleDict(dict(encoders))
        self.fusion = fusion
        #: per-modality (example shape, dtype) and class count the model was built for (None: unchecked)
        self.input_spec, self.num_classes = dict(input_spec) if input_spec else None, num_classes

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.encoders)

    def encode(self, batch: Batch) -> dict[str, Tensor]:
        unknown = [k for k in batch if k not in self.encoders and is_modality(k)]
        if unknown:
            raise KeyError(f"batch has modalities {unknown} this model has no encoder for; it knows {list(self.encoders)} "
                           f"(train a unimodal model on splits.select([...]))")
        return {m: enc(batch[m]) for m, enc in self.encoders.items() if m in batch}

    def fuse(self, features: Mapping[str, Tensor]) -> Output:
        logits, uni = self.fusion(features)
        return Output(logits, uni, dict(features))

    def forward(self, batch: Batch) -> Output:
        return self.fuse(self.encode(batch))


def feature_dims(encoders: Mapping[str, nn.Module]) -> dict[str, int]:
    return {m: int(e.out_dim) for m, e in encoders.items()}


def build_model(
    splits: Splits, encoder: str | Mapping[str, str] = "auto", fusion: str = "concat", **encoder_kwargs
) -> MultimodalModel:
    """A model for ``splits``: ``encoder="auto"`` picks a CNN for (C, H, W) inputs, an MLP for vectors."""
    shapes = splits.input_shapes()
    kinds = encoder if isinstance(encoder, Mapping) else {m: encoder for m in shapes}
    unknown = sorted(set(kinds) - set(shapes))
    if unknown:
        raise ValueError(f"encoder names modalities {unknown} the splits do not have; modalities: {list(shapes)}")
    encoders = {}
    for m, shape in shapes.items():
        kind = kinds.get(m, "auto")
        kind = ("cnn" if len(shape) == 3 else "mlp") if kind == "auto" else kind
        encoders[m] = make_encoder(kind, shape, **encoder_kwargs)
    spec = {m: (shape, splits.train.tensors[m].dtype) for m, shape in shapes.items()}
    return MultimodalModel(encoders, make_fusion(fusion, feature_dims(encoders), splits.num_classes), spec,
                           splits.num_classes)
