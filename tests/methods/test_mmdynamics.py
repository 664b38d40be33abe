"""MMDynamics as its official code: feature gates, TCP-confidence scaling, the loss terms, checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmrepro.methods import MMDynamics
from mmrepro.models import build_model

from .helpers import batch, ctx


def test_forward_and_loss_are_the_codes(synthetic):
    # TencentAILabHealthcare/mmdynamics model.py MMDynamic.forward: FeatureInfo = sigmoid(W x); feature =
    # dropout(relu(Enc(x * FeatureInfo))); TCPConfidence = Linear(feature); MMfeature = cat(feature * TCPConfidence);
    # loss = CE(MM) + sum_v [mean(FeatureInfo) + MSE(TCPConfidence, p_target) + CE(TCPLogit)].
    torch.manual_seed(0)
    method = MMDynamics(build_model(synthetic), dropout=0.0)
    b = batch(synthetic, 16)
    step = method.training_step(b, ctx())
    feats = method.model.encode(b)
    expected, scaled = F.cross_entropy(step.output.logits, b["label"]), {}
    for m, x in feats.items():
        br = method.branches[m]
        gate = torch.sigmoid(br.gate(x))
        h = F.relu(br.encode(x * gate))
        c = br.confidence(h).squeeze(-1)
        logits = br.classify(h)
        p = logits.softmax(-1).gather(1, b["label"].view(-1, 1)).squeeze(1)
        expected = expected + gate.mean() + F.mse_loss(c, p) + F.cross_entropy(logits, b["label"])
        scaled[m] = h * c.unsqueeze(-1)
    assert torch.allclose(step.loss, expected, atol=1e-5)
    assert torch.allclose(step.output.logits, method.model.fuse(scaled).logits, atol=1e-5)


def test_a_zero_confidence_removes_a_modality_from_the_fused_logits(synthetic):
    torch.manual_seed(0)
    method = MMDynamics(build_model(synthetic)).eval()
    with torch.no_grad():
        method.branches["m1"].confidence.weight.zero_()
        method.branches["m1"].confidence.bias.zero_()
    b = batch(synthetic, 8)
    out = method.predict(b)
    assert torch.equal(out.weights["m1"], torch.zeros(8))
    other = {**b, "m1": torch.randn_like(b["m1"])}
    assert torch.allclose(method.predict(other).logits, out.logits)


def test_rejects_bad_settings(synthetic):
    with pytest.raises(ValueError, match=r"dropout must lie in \[0, 1\)"):
        MMDynamics(build_model(synthetic), dropout=1.0)
    with pytest.raises(ValueError, match="MMDynamics supports fusion concat"):
        MMDynamics(build_model(synthetic, fusion="late"))
    with pytest.raises(ValueError, match="at least 2"):
        MMDynamics(build_model(synthetic.select(["m0"])))
