"""Synthetic K-modality data with a chosen information level per modality.

Classification: modality m sees ``level_m * prototype_m[y] + N(0, I)``, with
random unit-norm class prototypes per modality; level 0 is pure noise.
Regression: the target is ``sum_m s_m`` over independent latent factors
``s_m ~ N(0, 1)``; modality m sees ``level_m * s_m * u_m + N(0, I)`` along a
random unit direction ``u_m``, so modalities are complementary and level 0
carries no information about the target.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .core import LABEL, Splits, Task, split_rows


def make_synthetic(
    levels: Sequence[float] = (2.0, 1.0),
    task: Task = "classification",
    dim: int = 16,
    num_classes: int = 4,
    sizes: tuple[int, int, int] = (1000, 300, 300),
    seed: int = 0,
) -> Splits:
    """Train/val/test splits with one modality ``m{i}`` per entry of ``levels``."""
    if not levels:
        raise ValueError("levels must name at least one modality")
    if any(level < 0 for level in levels):
        raise ValueError(f"information levels must be >= 0, got {list(levels)}")
    if task not in ("classification", "regression"):
        raise ValueError(f"unknown task {task!r}; valid: 'classification', 'regression'")
    gen = torch.Generator().manual_seed(seed)
    n = sum(sizes)
    modalities = tuple(f"m{i}" for i in range(len(levels)))
    tensors: dict[str, torch.Tensor] = {}
    if task == "classification":
        y = torch.randint(num_classes, (n,), generator=gen)
        for m, level in zip(modalities, levels):
            protos = torch.nn.functional.normalize(torch.randn(num_classes, dim, generator=gen), dim=1)
            tensors[m] = level * protos[y] + torch.randn(n, dim, generator=gen)
        tensors[LABEL] = y
    else:
        latents = torch.randn(n, len(levels), generator=gen)
        for i, (m, level) in enumerate(zip(modalities, levels)):
            direction = torch.nn.functional.normalize(torch.randn(dim, generator=gen), dim=0)
            tensors[m] = level * latents[:, i : i + 1] * direction + torch.randn(n, dim, generator=gen)
        tensors[LABEL] = latents.sum(1, keepdim=True)
    train, val, test = split_rows(tensors, modalities, sizes)
    return Splits(
        "synthetic", train, val, test, num_classes=num_classes if task == "classification" else 1, task=task,
        valid_range={m: None for m in modalities}, info={"levels": list(levels), "dim": dim, "seed": seed},
    )
