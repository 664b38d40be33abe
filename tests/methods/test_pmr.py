"""PMR as its official code: prototype momentum 0.2, PCE on the weaker modality, checks."""

from __future__ import annotations

import pytest
import torch

from mmrepro.methods import PMR
from mmrepro.methods.pmr import class_means, distance_logits, pce_weights
from mmrepro.models import build_model
from mmrepro.train import fit

from .helpers import CFG, ctx


def test_prototypes_blend_with_the_official_momentum(synthetic):
    # fanyunfeng-bit/Modal-Imbalance-PMR main_Prototype_grad.py L39 (momentum_coef 0.2) and
    # L439-440: proto = (1 - momentum_coef) * new + momentum_coef * old.
    method = PMR(build_model(synthetic, fusion="sum"))
    assert method.momentum == 0.2
    c = ctx(splits=synthetic)
    method.fit_begin(c)
    method.epoch_begin(0, c)
    old = method.proto_m0.clone()
    with torch.no_grad():
        for p in method.model.encoders["m0"].parameters():
            p.mul_(1.5)
    method.epoch_begin(1, c)
    fresh = PMR(method.model, momentum=0.0)
    fresh.fit_begin(c)
    fresh.epoch_begin(1, c)
    assert torch.allclose(method.proto_m0, 0.8 * fresh.proto_m0 + 0.2 * old, atol=1e-6)


def test_pce_goes_to_the_weaker_modality_with_weight_alpha():
    # main_Prototype_grad.py L169-178: ratio_a_p > 1 -> visual gets alpha * loss_proto_v, audio 0.
    assert pce_weights(torch.tensor([30.0, 10.0]), alpha=2.0).tolist() == [0.0, 2.0]
    assert pce_weights(torch.tensor([10.0, 10.0]), alpha=2.0).tolist() == [0.0, 0.0]


def test_no_prototype_loss_outside_the_window(synthetic):
    torch.manual_seed(0)
    method = PMR(build_model(synthetic, fusion="sum"), modulation_ends=0)
    c = ctx(splits=synthetic)
    method.fit_begin(c)
    method.epoch_begin(0, c)
    b = synthetic.train.batch(range(48))
    assert float(method.training_step(b, ctx(0, synthetic)).logs["pce_coef_m1"]) + float(
        method.training_step(b, ctx(0, synthetic)).logs["pce_coef_m0"]) > 0
    late = method.training_step(b, ctx(1, synthetic))
    assert late.logs["pce_coef_m0"] == late.logs["pce_coef_m1"] == 0


@pytest.mark.parametrize("bad, match", [({"momentum": 1.0}, r"momentum must lie in \[0, 1\)"),
                                        ({"momentum": -0.1}, "momentum"), ({"alpha": -1}, "alpha"),
                                        ({"proto_fraction": 0}, r"proto_fraction must lie in \(0, 1\]"),
                                        ({"modulation_starts": 5, "modulation_ends": 1}, "modulation_starts"),
                                        ({"task": "regression"}, "classification")])
def test_rejects_bad_settings(synthetic, bad, match):
    with pytest.raises(ValueError, match=match):
        PMR(build_model(synthetic, fusion="sum"), **bad)


def test_pmr_prototypes_and_forced_weights():
    feats = torch.tensor([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0]])
    means = class_means(feats, torch.tensor([0, 0, 2]), 3)
    assert torch.allclose(means, torch.tensor([[1.0, 0.0], [0.0, 0.0], [10.0, 10.0]]))
    assert distance_logits(torch.tensor([[1.0, 0.0]]), means).argmax() == 0
    scores = torch.tensor([8.0, 2.0, 8.0])
    assert pce_weights(scores, alpha=0.5).tolist() == [0.0, 0.5, 0.0]  # only the weaker modality, towards ratio 1
    assert pce_weights(scores, alpha=0.5, scaled=True).tolist() == [0.0, 1.5, 0.0]


def test_pmr_fits_and_fires_on_the_weak_modality(four_classes):
    torch.manual_seed(0)
    result = fit(PMR(build_model(four_classes, "mlp", "sum")), four_classes, CFG)
    assert result.history["train_fired_m1"].mean() > result.history["train_fired_m0"].mean()
