"""build_model and MultimodalModel: encoder choice, metadata, missing and unknown modalities."""

from __future__ import annotations

import pytest
import torch

from mmrepro.data import DictDataset, Splits
from mmrepro.models import ENCODERS, FUSIONS, MLPEncoder, SmallCNN, build_model, make_encoder, make_fusion


def test_model_ignores_metadata_and_rejects_an_unknown_modality(synthetic):
    model = build_model(synthetic)
    batch = synthetic.with_uids().train.batch(range(4))
    assert model(batch).logits.shape == (4, synthetic.num_classes)
    with pytest.raises(KeyError, match=r"\['extra'\]"):
        model({**batch, "extra": torch.zeros(4)})


def _image_splits() -> Splits:
    n = 8
    ds = DictDataset({"img": torch.rand(n, 1, 12, 12), "vec": torch.randn(n, 5), "label": torch.arange(n) % 3},
                     ("img", "vec"))
    return Splits("toy", ds, ds, ds, num_classes=3)


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
