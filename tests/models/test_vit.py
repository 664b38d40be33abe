"""The tiny ViT encoder: padding of uneven sides, the head-divisibility check, and one image encoder per modality."""

from __future__ import annotations

import pytest
import torch

from mmrepro.data import DictDataset, Splits
from mmrepro.models.vit import TinyViT, build_vit_model


def test_uneven_sides_are_padded_to_whole_patches():
    vit = TinyViT(1, (10, 7), patch=4, dim=8, depth=1, heads=2)
    assert vit.position.shape == (1, 3 * 2, 8)  # 10 -> 12 rows, 7 -> 8 columns: 3 x 2 patches
    assert vit(torch.rand(3, 1, 10, 7)).shape == (3, 8)
    with pytest.raises(ValueError, match="dim 10 must be divisible by heads 4"):
        TinyViT(1, (8, 8), dim=10, heads=4)


def test_build_vit_model_puts_a_vit_on_every_image_and_refuses_vectors():
    n = 6
    ds = DictDataset({"a": torch.rand(n, 1, 8, 8), "b": torch.rand(n, 3, 8, 8), "label": torch.arange(n) % 3}, ("a", "b"))
    model = build_vit_model(Splits("toy", ds, ds, ds, num_classes=3), patch=4, dim=8, depth=1, heads=2)
    assert all(isinstance(model.encoders[m], TinyViT) for m in ("a", "b"))
    assert model(ds.batch(range(n))).logits.shape == (n, 3)
    flat = DictDataset({"v": torch.rand(n, 5), "label": torch.arange(n) % 3}, ("v",))
    with pytest.raises(ValueError, match="modality 'v' has example shape"):
        build_vit_model(Splits("toy", flat, flat, flat, num_classes=3))
