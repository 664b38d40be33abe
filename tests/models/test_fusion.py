"""The fusion heads on toy features: concat, sum and late, and a dropped modality."""

from __future__ import annotations

import pytest
import torch

from mmrepro.models import ConcatFusion, LateFusion, SumFusion


def _features(b: int = 5) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {"a": torch.randn(b, 3, generator=gen), "b": torch.randn(b, 4, generator=gen)}


def test_concat_unimodal_logits_sum_to_fused():
    torch.manual_seed(0)
    fusion = ConcatFusion({"a": 3, "b": 4}, num_classes=6)
    fused, uni = fusion(_features())
    assert torch.allclose(uni["a"] + uni["b"], fused, atol=1e-6)
    assert torch.allclose(fused, fusion.fc(torch.cat([_features()["a"], _features()["b"]], 1)), atol=1e-6)


def test_concat_dropped_modality_contributes_only_its_bias_share():
    torch.manual_seed(0)
    fusion = ConcatFusion({"a": 3, "b": 4}, num_classes=6)
    feats = _features()
    fused, uni = fusion({"a": feats["a"]})
    assert set(uni) == {"a"}
    zeroed, _ = fusion({"a": feats["a"], "b": torch.zeros_like(feats["b"])})
    assert torch.allclose(fused, zeroed, atol=1e-6)
    assert torch.allclose(fused - uni["a"], (fusion.fc.bias / 2).expand_as(fused), atol=1e-6)
    with pytest.raises(ValueError, match="at least one"):
        fusion({})


@pytest.mark.parametrize("cls, reduce", [(SumFusion, "sum"), (LateFusion, "mean")])
def test_sum_and_late_heads(cls, reduce):
    torch.manual_seed(0)
    fusion = cls({"a": 3, "b": 4}, num_classes=6)
    feats = _features()
    fused, uni = fusion(feats)
    assert torch.allclose(uni["a"], fusion.heads["a"](feats["a"]))
    stacked = torch.stack([uni["a"], uni["b"]])
    assert torch.allclose(fused, getattr(stacked, reduce)(0), atol=1e-6)
    alone, uni_alone = fusion({"b": feats["b"]})
    assert set(uni_alone) == {"b"} and torch.allclose(alone, uni["b"], atol=1e-6)
