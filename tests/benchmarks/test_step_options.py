"""The step options benchmark: every variant starts from the same weights."""

from __future__ import annotations

import torch

from .scripts import load

step_options = load("step_options")


def test_step_variants_start_from_the_same_weights(synthetic):
    cfg = step_options["_config"]("cpu", 16, None)
    variants = {name: step_options["VARIANTS"][name] for name in ("plain", "NCHW (before channels_last)", "SGD foreach")}
    loops, first = step_options["build"](variants, "joint", "auto", synthetic, cfg, torch.device("cpu"), 0)
    weights = [torch.cat([p.flatten() for p in loop.method.parameters()]) for loop in loops.values()]
    assert all(torch.equal(weights[0], w) for w in weights[1:]) and set(first) == set(variants)
    assert loops["SGD foreach"].optimizer.defaults["foreach"] is True


def test_the_nchw_variant_computes_what_the_channels_last_encoder_computes():
    from mmrepro.models import SmallCNN

    torch.manual_seed(0)
    encoder, reference = SmallCNN(1, widths=(4, 8)).eval(), SmallCNN(1, widths=(4, 8)).eval()
    reference.load_state_dict(encoder.state_dict())
    load("throughput")["as_nchw"](encoder)
    x = torch.rand(3, 1, 16, 16)
    assert all(p.is_contiguous() for p in encoder.parameters())
    assert torch.allclose(encoder(x), reference(x), atol=1e-6)
