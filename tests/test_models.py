"""Encoders, fusion heads and the multimodal model on toy tensors."""

from __future__ import annotations

import pytest
import torch

from mmrepro.data import DictDataset, Splits
from mmrepro.models import (
    ENCODERS, FUSIONS, ConcatFusion, LateFusion, MLPEncoder, ResNet18Encoder, SmallCNN, SumFusion, build_model,
    make_encoder, make_fusion,
)


def _features(b: int = 5) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {"a": torch.randn(b, 3, generator=gen), "b": torch.randn(b, 4, generator=gen)}


def _image_splits() -> Splits:
    n = 8
    ds = DictDataset({"img": torch.rand(n, 1, 12, 12), "vec": torch.randn(n, 5), "label": torch.arange(n) % 3},
                     ("img", "vec"))
    return Splits("toy", ds, ds, ds, num_classes=3)


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


def test_encoders_output_their_declared_width():
    x = torch.rand(2, 1, 28, 28)
    for norm in ("batch", "group", "none"):
        cnn = SmallCNN(1, widths=(4, 8), norm=norm)
        assert cnn(x).shape == (2, cnn.out_dim) == (2, 8)
    assert ResNet18Encoder(1)(x).shape == (2, 512)
    assert MLPEncoder(6, hidden=5, out_dim=7)(torch.rand(2, 2, 3)).shape == (2, 7)
    with pytest.raises(ValueError, match="'batch', 'group', 'none'"):
        SmallCNN(1, norm="layer")


def test_build_model_auto_picks_cnn_for_images_and_mlp_for_vectors():
    model = build_model(_image_splits())
    assert isinstance(model.encoders["img"], SmallCNN) and isinstance(model.encoders["vec"], MLPEncoder)
    model = build_model(_image_splits(), encoder={"img": "cnn", "vec": "mlp"}, fusion="late")
    assert isinstance(model.encoders["img"], SmallCNN) and isinstance(model.encoders["vec"], MLPEncoder)
    batch = _image_splits().train.batch(range(4))
    out = model(batch)
    assert out.logits.shape == (4, 3) and set(out.unimodal_logits) == {"img", "vec"} and out.weights is None
    assert out.features["img"].shape == (4, model.encoders["img"].out_dim)


def test_model_with_a_missing_modality_and_an_unknown_one(synthetic):
    model = build_model(synthetic, fusion="concat")
    batch = synthetic.train.batch(range(4))
    out = model({k: v for k, v in batch.items() if k != "m1"})
    assert set(out.unimodal_logits) == {"m0"} and out.logits.shape == (4, 3)
    with pytest.raises(KeyError, match="m9"):
        model({**batch, "m9": torch.randn(4, 8)})


def test_unknown_names_list_the_valid_ones(synthetic):
    with pytest.raises(ValueError) as err:
        build_model(synthetic, fusion="attention")
    assert "attention" in str(err.value) and all(f in str(err.value) for f in FUSIONS)
    with pytest.raises(ValueError) as err:
        make_encoder("vit", (1, 28, 28))
    assert "vit" in str(err.value) and all(e in str(err.value) for e in ENCODERS)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        make_encoder("cnn", (8,))
    with pytest.raises(ValueError, match="gated"):
        make_fusion("gated", {"a": 1}, 2)
