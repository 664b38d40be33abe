"""Every baseline builds on AV-Digits by name with its declared default fusion, and one step lowers its own loss."""

from __future__ import annotations

import pytest
import torch

from mmrepro import methods

from .helpers import batch, ctx, loss_before_and_after_a_step

BASELINES = ("ogm_ge", "pmr", "mmpareto", "gblending", "eau", "agm", "mslr", "greedy", "pdf", "mmdynamics")


@pytest.mark.parametrize("name", BASELINES)
def test_builds_on_av_digits_and_steps(av_digits, name):
    torch.manual_seed(0)
    method = methods.build(name, av_digits, encoder_kwargs={"widths": (4, 8)})
    cls = methods.REGISTRY[name]
    assert isinstance(method, cls) and methods.fusion_name(method.model) == cls.fusions[0]
    assert "classification" in cls.tasks
    c = ctx(splits=av_digits)
    method.fit_begin(c)
    method.epoch_begin(0, c)
    before, after = loss_before_and_after_a_step(method, batch(av_digits, 16), c)
    assert after < before, f"one SGD step on {name}'s own gradients must lower its loss on that batch"
