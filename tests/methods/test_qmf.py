"""QMF: energy confidence, the rank loss, and heads fused by their confidence."""

from __future__ import annotations

import pytest
import torch

from mmrepro.data import make_synthetic
from mmrepro.methods import QMF, build
from mmrepro.methods.qmf import energy_confidence, rank_loss
from mmrepro.models import build_model

from .helpers import batch, ctx, loss_before_and_after_a_step


def test_qmf_confidence_and_rank_loss():
    sharp, flat = torch.tensor([[10.0, 0.0, 0.0]]), torch.zeros(1, 3)
    assert energy_confidence(sharp) > energy_confidence(flat)
    conf, loss = torch.tensor([1.0, 0.0]), torch.tensor([0.1, 2.0])
    assert rank_loss(conf, loss) == 0 and rank_loss(conf.flip(0), loss) > 0
    with pytest.raises(ValueError, match="QMF supports fusion late, sum; the model's is 'concat'"):
        QMF(build_model(make_synthetic(sizes=(8, 8, 8)), fusion="concat"))


def test_qmf_fuses_heads_by_energy_confidence_and_a_step_lowers_its_loss(synthetic):
    b, c = batch(synthetic, 16), ctx(1, synthetic)
    torch.manual_seed(0)
    qmf = build("qmf", synthetic)
    out = qmf.training_step(b, c).output
    fused = sum(out.weights[m].unsqueeze(-1) * out.unimodal_logits[m] for m in synthetic.modalities)
    assert torch.allclose(out.logits, fused), "QMF fuses heads weighted by their energy confidence"
    before, after = loss_before_and_after_a_step(qmf, b, c)
    assert after < before
