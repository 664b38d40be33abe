"""PDF as its official code: co-belief, relative calibration, detached weights, confidence regression."""

from __future__ import annotations

import pytest
import torch

from mmrepro.methods import PDF
from mmrepro.methods.pdf import co_belief, pdf_weights, relative_calibration
from mmrepro.models import build_model

from .helpers import batch, ctx


def test_co_belief_and_calibration_are_the_codes():
    # Yinan-Xia/PDF src/models/latefusion_pdf.py L44-51 (train) and L56-76 (test):
    # txt_holo = log(img_tcp) / (log(txt_tcp * img_tcp) + 1e-8); cb = tcp + holo;
    # du = mean |p - 1/C|; the larger du keeps 1, the other du / du_max; w = softmax(cb * rc).
    t, i = torch.tensor([0.9]), torch.tensor([0.3])
    cb_t = t + torch.log(i) / (torch.log(t * i) + 1e-8)
    cb_i = i + torch.log(t) / (torch.log(t * i) + 1e-8)
    assert torch.allclose(co_belief(torch.stack([t, i], -1)), torch.stack([cb_t, cb_i], -1))
    p = torch.tensor([[[0.7, 0.2, 0.1], [0.4, 0.3, 0.3]]])
    du = (p - 1 / 3).abs().mean(-1)
    assert torch.allclose(relative_calibration(p), torch.stack([torch.ones(1), du[:, 1] / du[:, 0]], -1))
    w = pdf_weights(torch.stack([t, i], -1), p)
    assert torch.allclose(w, torch.softmax(torch.stack([cb_t, cb_i * du[:, 1] / du[:, 0]], -1), -1))


def test_training_fuses_with_detached_weights_and_regresses_confidence(synthetic):
    torch.manual_seed(0)
    method = PDF(build_model(synthetic, fusion="late"))
    b = batch(synthetic)
    step = method.training_step(b, ctx())
    w = torch.stack([step.output.weights[m] for m in ("m0", "m1")], -1)
    uni = torch.stack([step.output.unimodal_logits[m] for m in ("m0", "m1")], 1)
    assert torch.allclose(step.output.logits, (w.unsqueeze(-1) * uni).sum(1), atol=1e-6)
    step.loss.backward()
    assert method.confid["m0"].net[0].weight.grad.abs().sum() > 0
    # confidence nets read detached features: the L1 loss alone leaves the encoders untouched
    method.zero_grad()
    conf = method._forward(b, calibrated=False)[1]
    conf.sum().backward()
    assert all(p.grad is None for p in method.model.encoders.parameters())


def test_weight_moves_to_the_modality_whose_confidence_is_higher():
    w = pdf_weights(torch.tensor([[0.9, 0.2]]))
    assert w[0, 0] > w[0, 1]


def test_rejects_bad_settings(synthetic):
    with pytest.raises(ValueError, match="PDF supports fusion late, sum"):
        PDF(build_model(synthetic))
    with pytest.raises(ValueError, match="classification"):
        PDF(build_model(synthetic, fusion="late"), task="regression")
