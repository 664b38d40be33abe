"""The sparse mixture-of-experts fusion: top-2 routing, gate-weighted experts, absent tokens, load balance."""

from __future__ import annotations

import pytest
import torch

from mmrepro.models.moe import MoEFusion, SparseMoE, load_balance_loss


def test_moe_routes_each_token_to_top2_experts():
    moe = SparseMoE(num_modalities=3, dim=8, num_experts=6, top_k=2).eval()
    gates = moe.gates(torch.randn(10, 3, 8))
    assert ((gates > 0).sum(-1) == 2).all()
    assert torch.allclose(gates.sum(-1), torch.ones(10, 3))
    with pytest.raises(ValueError, match="top_k"):
        SparseMoE(3, 8, num_experts=2, top_k=3)


def test_moe_output_equals_the_gate_weighted_sum_of_its_two_experts():
    torch.manual_seed(0)
    moe = SparseMoE(num_modalities=1, dim=4, num_experts=5, top_k=2, gating="softmax").eval()
    x = torch.randn(3, 1, 4)
    y, g = moe(x)
    for b in range(3):
        chosen = g[b, 0].nonzero().squeeze(1)
        expected = sum(g[b, 0, e] * (torch.nn.functional.gelu(x[b, 0] @ moe.w1[e] + moe.b1[e]) @ moe.w2[e] + moe.b2[e])
                       for e in chosen)
        assert torch.allclose(y[b, 0], expected, atol=1e-5)


def test_moe_fusion_is_permutation_consistent_and_treats_absent_as_weight_zero():
    torch.manual_seed(0)
    fusion = MoEFusion({"a": 5, "b": 3}, num_classes=4, dim=8).eval()
    feats = {"a": torch.randn(12, 5), "b": torch.randn(12, 3)}
    perm = torch.randperm(12)
    logits = fusion(feats)[0]
    assert torch.allclose(fusion({m: f[perm] for m, f in feats.items()})[0], logits[perm], atol=1e-6)
    zero_b = fusion(feats, weights=torch.tensor([[1.0, 0.0]]).expand(12, -1))[0]
    assert torch.allclose(fusion({"a": feats["a"]})[0], zero_b, atol=1e-6)


def test_load_balance_loss_is_zero_for_uniform_use_and_positive_for_collapse():
    uniform = torch.full((10, 2, 4), 0.25)
    collapsed = torch.zeros(10, 2, 4)
    collapsed[..., 0] = 1.0
    assert load_balance_loss(uniform).abs() < 1e-6 < load_balance_loss(collapsed)
