"""AV-Digits with complementary cues: the image cannot tell apart a chosen set of classes, the audio can.

Within each split, every example whose label lies in ``classes`` gets the image of another example of that
split whose label also lies in ``classes`` (a seeded random permutation of those rows), so the image still
says *that* the digit is one of ``classes`` but no longer *which*; the audio is unchanged.  On those classes
the weak modality (audio) alone separates what the strong one (image) cannot, which is the setting a claim
about complementary cues needs.  Examples of the other classes keep their images.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import torch

from .av_digits import load_av_digits
from .core import LABEL, DictDataset, Splits

NAME = "av_digits_complementary"
NUM_CLASSES = 10  # AV-Digits' digits


def swap_within(images: torch.Tensor, labels: torch.Tensor, classes: Sequence[int],
                gen: torch.Generator) -> torch.Tensor:
    """A copy of ``images`` where the rows whose label is in ``classes`` are permuted among themselves."""
    rows = torch.isin(labels, torch.tensor(list(classes), dtype=labels.dtype)).nonzero().squeeze(1)
    out = images.clone()
    out[rows] = images[rows[torch.randperm(len(rows), generator=gen)]]
    return out


def load_av_digits_complementary(classes: Sequence[int] = (0, 1, 2, 3, 4), seed: int = 0,
                                 **av_overrides) -> Splits:
    """AV-Digits (``av_overrides`` as for ``load_av_digits``) with the images of ``classes`` swapped among
    themselves within each split (see the module doc); the swap's rows are kept as ``_swapped``."""
    classes = tuple(int(c) for c in classes)
    if len(set(classes)) != len(classes) or not all(0 <= c < NUM_CLASSES for c in classes):
        raise ValueError(f"classes must be distinct digits in 0..{NUM_CLASSES - 1}, got {list(classes)}")
    if len(classes) < 2:
        raise ValueError("classes must name at least two digits: swapping images within one class changes nothing")
    splits = load_av_digits(**av_overrides)
    gen = torch.Generator().manual_seed(seed)
    parts = []
    for name in ("train", "val", "test"):
        tensors = dict(splits.split(name).tensors)
        labels = tensors[LABEL]
        tensors["image"] = swap_within(tensors["image"], labels, classes, gen)
        tensors["_swapped"] = torch.isin(labels, torch.tensor(classes, dtype=labels.dtype))
        parts.append(DictDataset(tensors, splits.modalities))
    return replace(splits, name=NAME, train=parts[0], val=parts[1], test=parts[2],
                   info={**splits.info, "complementary_classes": list(classes), "swap_seed": seed})

