"""Every baseline builds on AV-Digits by name with its declared default fusion, and takes a training step."""

from __future__ import annotations

import pytest
import torch

from mmrepro import methods

from .helpers import batch, ctx

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
    step = method.training_step(batch(av_digits, 16), c)
    step.loss.backward()
    method.after_backward(c)
    assert torch.isfinite(step.loss)
