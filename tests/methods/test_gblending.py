"""G-Blending: weights from the overfitting-to-generalisation ratio, separate unimodal heads, checks."""

from __future__ import annotations

import pytest
import torch

from mmrepro.methods import GBlending
from mmrepro.methods.gblending import blending_weights
from mmrepro.models import build_model
from mmrepro.train import fit

from .helpers import CFG, batch, ctx


def test_weights_are_the_papers_dg_over_do_squared():
    # Wang et al. 2020, Algorithm 1 / Eq. 5 (no official code): w_k = (dG_k / dO_k^2) / Z.
    dg, do = torch.tensor([0.5, 0.2, 0.3]), torch.tensor([0.1, 0.2, 0.3])
    raw = dg / do.pow(2)
    assert torch.allclose(blending_weights(dg, do), raw / raw.sum())


def test_unimodal_heads_are_separate_and_weighted(synthetic):
    torch.manual_seed(0)
    method = GBlending(build_model(synthetic))
    method.blend.copy_(torch.tensor([0.0, 1.0, 0.0]))  # only m0's head
    b = batch(synthetic)
    step = method.training_step(b, ctx())
    step.loss.backward()
    assert method.aux.heads["m0"].weight.grad.abs().sum() > 0
    assert method.model.fusion.fc.weight.grad is None or not method.model.fusion.fc.weight.grad.any()
    assert not method.model.encoders["m1"].net[0].weight.grad.any()


def test_rejects_bad_settings(synthetic):
    with pytest.raises(ValueError, match="super_epoch"):
        GBlending(build_model(synthetic), super_epoch=0)
    with pytest.raises(ValueError, match="classification"):
        GBlending(build_model(synthetic), task="regression")
    with pytest.raises(ValueError, match="at least 2"):
        GBlending(build_model(synthetic.select(["m0"])))


def test_blending_weights_prefer_heads_that_generalise_without_overfitting():
    w = blending_weights(torch.tensor([0.5, 0.5, -0.1]), torch.tensor([0.1, 0.5, 0.1]))
    assert w.sum() == pytest.approx(1.0) and w[0] > w[1] > w[2] == 0
    assert torch.allclose(blending_weights(torch.tensor([-1.0, -1.0]), torch.ones(2)), torch.tensor([0.5, 0.5]))


def test_gblending_updates_its_weights(four_classes):
    torch.manual_seed(0)
    method = GBlending(build_model(four_classes, "mlp", "sum"))
    result = fit(method, four_classes, CFG)
    blend = result.history[["train_blend_fused", "train_blend_m0", "train_blend_m1"]]  # the weights used, per epoch
    assert blend.iloc[0].tolist() == pytest.approx([1 / 3] * 3), "the first super-epoch blends uniformly"
    assert (blend >= 0).all().all() and blend.sum(axis=1).tolist() == pytest.approx([1.0] * len(blend))
    assert (blend.iloc[1:]["train_blend_m0"] > blend.iloc[1:]["train_blend_m1"]).all(), \
        "the informative modality's head generalises better, so it gets more weight than the weak one's"
    assert method.blend.sum().item() == pytest.approx(1.0, abs=1e-5)
