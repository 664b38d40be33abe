"""The step options benchmark: every variant starts from the same weights."""

from __future__ import annotations

import torch

from .scripts import load

step_options = load("step_options")


def test_step_variants_start_from_the_same_weights(synthetic):
    cfg = step_options["_config"]("cpu", 16, None)
    variants = {name: step_options["VARIANTS"][name] for name in ("plain", "channels_last", "SGD foreach")}
    loops, first = step_options["build"](variants, "joint", "auto", synthetic, cfg, torch.device("cpu"), 0)
    weights = [torch.cat([p.flatten() for p in loop.method.parameters()]) for loop in loops.values()]
    assert all(torch.equal(weights[0], w) for w in weights[1:]) and set(first) == set(variants)
    assert loops["SGD foreach"].optimizer.defaults["foreach"] is True
