"""A tiny image + prompt token data set, shared by the token-model, MoIR and MoIR-measure tests."""

from __future__ import annotations

import torch

from mmrepro.data.core import DictDataset, Splits
from mmrepro.data.shortcut_prompts import PAD, make_prompts


def toy_splits(n: int = 24) -> Splits:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 10
    ds = DictDataset({"image": torch.rand(n, 1, 28, 28, generator=g), "text": make_prompts(labels, None, 0.9, g),
                      "label": labels}, ("image", "text"))
    return Splits("toy", ds, ds, ds, 10, info={"vocab_size": 34, "pad_id": PAD})
