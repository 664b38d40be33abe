"""The noise-augmented host: it wraps a registered method and corrupts its batches from its start epoch."""

from __future__ import annotations

import pytest
import torch

from mmrepro.methods import QMF, Joint, build
from mmrepro.methods.noise_augmented import NoiseAugmented
from mmrepro.methods.udml import default_noise
from mmrepro.models import build_model

from .helpers import batch, ctx


def test_noise_augmented_wraps_a_method_named_in_the_registry(synthetic):
    wrapped = build("noise_augmented", synthetic, fusion="late", method="qmf", start_epoch=1)
    assert isinstance(wrapped.method, QMF) and wrapped.start_epoch == 1
    for bad in ("noise_augmented", "nope"):
        with pytest.raises(ValueError, match="registry names"):
            build("noise_augmented", synthetic, method=bad)


def test_noise_augmented_corrupts_the_batches_from_its_start_epoch(synthetic):
    joint = Joint(build_model(synthetic))
    wrapped = NoiseAugmented(joint, default_noise(synthetic), start_epoch=2)
    seen = []
    joint.training_step = lambda b, c: seen.append(b["m0"].clone()) or Joint.training_step(joint, b, c)
    b = batch(synthetic, 16)
    torch.manual_seed(0)
    wrapped.training_step(b, ctx(1, synthetic))
    wrapped.training_step(b, ctx(2, synthetic))
    assert torch.equal(seen[0], b["m0"]) and not torch.equal(seen[1], b["m0"])
