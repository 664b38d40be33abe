"""Greedy as its official code: MMTM gates, the utilisation gap, guided re-balancing windows."""

from __future__ import annotations

import math

import pytest
import torch

from mmrepro.methods import Greedy
from mmrepro.methods.greedy import utilisation_gap
from mmrepro.models import build_model

from .helpers import batch, ctx


def test_gap_is_the_codes_difference_of_log_ratios():
    # nyukat/greedy_multimodal_learning src/callbacks.py L226-232:
    # BDR_i = log10(M_bypass_i / M_main_i); d_BDR = BDR_0 - BDR_1.
    acc = torch.tensor([[2.0, 8.0], [4.0, 1.0]])  # rows: branch; columns: main, bypass
    assert utilisation_gap(acc).item() == pytest.approx(math.log10(8 / 2) - math.log10(1 / 4))


def test_a_window_opens_for_the_branch_that_leans_on_the_other(synthetic):
    torch.manual_seed(0)
    method = Greedy(build_model(synthetic, fusion="late"), epsilon=0.0, window=2, starting_epoch=0)
    b = batch(synthetic)
    states = []
    for _ in range(4):
        method.zero_grad()
        step = method.training_step(b, ctx())
        step.loss.backward()
        method.after_backward(ctx())
        states.append((bool(method.curating), float(step.logs["frozen_m0"] + step.logs["frozen_m1"])))
    assert states[0] == (True, 0.0)  # gap measured after the first step opens a window
    assert states[1][1] == 1.0 and states[2][1] == 1.0  # two re-balancing steps, one gate frozen
    assert int(method.caring) == int(method.gap < 0)  # code L244-251: d > 0 -> caring modality 0


def test_frozen_gate_is_its_running_average(synthetic):
    torch.manual_seed(0)
    method = Greedy(build_model(synthetic, fusion="late"))
    features = method.model.encode(batch(synthetic))
    method.mmtm(features)  # one training step sets the averages to this batch's mean gates
    gated = method.mmtm.eval()(features, torch.tensor([True, False]))
    assert torch.allclose(gated["m0"], features["m0"] * method.mmtm.avg_m0)


def test_no_rebalancing_before_the_starting_epoch(synthetic):
    method = Greedy(build_model(synthetic, fusion="late"), epsilon=0.0, starting_epoch=2)
    method.training_step(batch(synthetic), ctx(1)).loss.backward()
    method.after_backward(ctx(1))
    assert not method.curating and method.accumulated.sum() > 0


def test_rejects_bad_settings(synthetic):
    with pytest.raises(ValueError, match="Greedy supports fusion late"):
        Greedy(build_model(synthetic))
    with pytest.raises(ValueError, match="window >= 1"):
        Greedy(build_model(synthetic, fusion="late"), window=0)
    with pytest.raises(ValueError, match="epsilon"):
        Greedy(build_model(synthetic, fusion="late"), epsilon=-1.0)
