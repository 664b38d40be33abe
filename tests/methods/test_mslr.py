"""MSLR as AGM's code implements it: per-modality gradient factors from validation-accuracy ratios."""

from __future__ import annotations

import pytest
import torch

from mmrepro import evaluate
from mmrepro.methods import MSLR
from mmrepro.methods.mslr import accuracy_ratio
from mmrepro.models import build_model

from .helpers import backward, batch, ctx


def test_ratio_is_accuracy_over_the_mean_of_the_last_five_epochs():
    # lihong2303/AGM_ICCV2023 run/AVMNIST_main.py L540-552: ratio 1 until 5 accuracies are remembered,
    # then accuracy_a / mean(audio_lr_memory).
    history = [torch.tensor([0.5, 0.2]) for _ in range(4)]
    assert torch.equal(accuracy_ratio(history, torch.tensor([0.6, 0.3]), 5), torch.ones(2))
    history = [torch.tensor([0.4, 0.2]), *history]
    expected = torch.tensor([0.6, 0.3]) / torch.tensor([0.48, 0.2])
    assert torch.allclose(accuracy_ratio(history, torch.tensor([0.6, 0.3]), 5), expected)


def test_each_branchs_gradients_are_scaled_by_its_factor(synthetic):
    torch.manual_seed(0)
    method = MSLR(build_model(synthetic, fusion="sum"), lr_scales={"m0": 1.3, "m1": 0.7})  # the code's AV-MNIST values
    before, after = backward(method, batch(synthetic), ctx())
    for k, g in before.items():
        factor = 1.3 if ".m0." in k else 0.7
        assert torch.allclose(after[k], factor * g), k


def test_epoch_end_updates_the_ratio_once_memory_is_full(synthetic):
    torch.manual_seed(0)
    method = MSLR(build_model(synthetic, fusion="sum"), memory=2)
    method.epoch_end(0, ctx(splits=synthetic))
    assert torch.equal(method.ratio, torch.ones(2))
    method._history = [torch.tensor([0.8, 0.1]), torch.tensor([0.6, 0.3])]
    method.epoch_end(1, ctx(splits=synthetic))
    p = evaluate.predict(method, synthetic.val)
    acc = torch.stack([(p.unimodal_logits[m].argmax(-1) == p.labels).float().mean() for m in ("m0", "m1")])
    assert torch.allclose(method.ratio, acc / torch.tensor([0.7, 0.2]))
    assert torch.equal(method._history[-1], acc)


def test_rejects_bad_settings(synthetic):
    model = build_model(synthetic, fusion="sum")
    with pytest.raises(ValueError, match="unknown modalities"):
        MSLR(model, lr_scales={"audio": 1.0})
    with pytest.raises(ValueError, match=r"lr_scales\['m0'\] must lie in \(0"):
        MSLR(model, lr_scales={"m0": 0.0})
    with pytest.raises(ValueError, match="memory"):
        MSLR(model, memory=0)
    with pytest.raises(ValueError, match="MSLR supports fusion sum, late"):
        MSLR(build_model(synthetic))
