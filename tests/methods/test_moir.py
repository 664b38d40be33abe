"""MoIR on toy tensors: channel scores, the router, its gates and gradients, the method's hooks and plug-in training."""

from __future__ import annotations

import math

import pytest
import torch

from mmrepro.methods.moir import MoIR, MoIRRouter, effective_rank, informativeness
from mmrepro.models.token_model import build_token_model

from token_data import toy_splits


B, T, D = 4, 9, 20


def toy(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    xa = torch.randn(B, T, D, generator=g) * torch.linspace(0.1, 3.0, D)
    xb = torch.randn(B, 6, D, generator=g) + 2.0
    ma = torch.ones(B, T, dtype=torch.bool)
    mb = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]], dtype=torch.bool)
    return xa, xb, ma, mb


def explicit_scores(x: torch.Tensor, rank: int) -> torch.Tensor:
    """Eq. 1 for one sample, straight from a per-sample SVD."""
    xc = x - x.mean(0)
    _, s, vh = torch.linalg.svd(xc.double(), full_matrices=False)
    q = min(rank, len(s))
    return (s[:q, None] ** 2 * vh[:q] ** 2).sum(0).float()


@pytest.mark.parametrize("rank", [3, 64])
def test_channel_scores_match_explicit_svd(rank):
    _, xb, _, mb = toy()
    scores = informativeness(xb, mb, rank=rank)
    for n in range(B):
        expected = explicit_scores(xb[n][mb[n]], rank)
        torch.testing.assert_close(scores[n], expected, rtol=1e-4, atol=1e-4)


def test_full_rank_scores_are_the_scatter_diagonal():
    xa, _, ma, _ = toy()
    xc = xa - xa.mean(1, keepdim=True)
    torch.testing.assert_close(informativeness(xa, ma, rank=64), xc.pow(2).sum(1), rtol=1e-4, atol=1e-3)


def test_token_cap_uses_first_valid_tokens():
    xa, _, ma, _ = toy()
    torch.testing.assert_close(informativeness(xa, ma, cap=5), informativeness(xa[:, :5], ma[:, :5]))


@pytest.mark.parametrize("ratio", [0.05, 0.1, 0.25, 0.5])
@pytest.mark.parametrize("direction", ["both", "a", "b"])
def test_exactly_ceil_r_d_channels_change(ratio, direction):
    xa, xb, ma, mb = toy()
    router = MoIRRouter(D, ratio=ratio, direction=direction)
    ya, yb, _, _ = router(xa, xb, ma, mb)
    k = math.ceil(ratio * D)
    for x, y, mask, routed in ((xa, ya, ma, direction != "b"), (xb, yb, mb, direction != "a")):
        changed = ((y != x) & mask.unsqueeze(-1)).any(1).sum(1)
        assert changed.tolist() == [k if routed else 0] * B


def test_routed_channels_are_the_weakest():
    xa, xb, ma, mb = toy()
    ya, _, _, _ = MoIRRouter(D, ratio=0.25)(xa, xb, ma, mb)
    changed = (ya != xa).any(1)
    weakest = informativeness(xa, ma).topk(5, largest=False).indices
    assert torch.equal(changed, torch.zeros_like(changed).scatter_(1, weakest, True))
    ya, _, _, _ = MoIRRouter(D, ratio=0.25, select="top")(xa, xb, ma, mb)
    strongest = informativeness(xa, ma).topk(5).indices
    assert torch.equal((ya != xa).any(1), torch.zeros_like(changed).scatter_(1, strongest, True))


def test_rms_of_routed_channels_matches():
    xa, xb, ma, mb = toy()
    ya, yb, _, _ = MoIRRouter(D, ratio=0.25, gate_init=1.0, learn_gates=False)(xa, xb, ma, mb)
    for x, y, mask in ((xa, ya, ma), (xb, yb, mb)):
        region = (y != x) & mask.unsqueeze(-1)
        for n in range(B):
            before = x[n][region[n]].pow(2).mean().sqrt()
            after = y[n][region[n]].pow(2).mean().sqrt()
            torch.testing.assert_close(after, before, rtol=1e-3, atol=1e-3)


def test_padding_never_contributes_and_is_never_changed():
    xa, xb, ma, mb = toy()
    router = MoIRRouter(D, ratio=0.25)
    ya, yb, _, _ = router(xa, xb, ma, mb)
    garbage = torch.where(mb.unsqueeze(-1), xb, torch.full_like(xb, 1e3))
    ya2, yb2, _, _ = router(xa, garbage, ma, mb)
    torch.testing.assert_close(ya2, ya)
    torch.testing.assert_close(yb2[mb], yb[mb])
    torch.testing.assert_close(yb2[~mb], garbage[~mb])


def test_zero_gate_leaves_tokens_unchanged():
    xa, xb, ma, mb = toy()
    ya, yb, _, _ = MoIRRouter(D, gate_init=0.0, learn_gates=False)(xa, xb, ma, mb)
    assert torch.equal(ya, xa) and torch.equal(yb, xb)


def test_no_rms_match_blends_the_raw_pooled_vector():
    xa, xb, ma, mb = toy()
    ya, _, _, _ = MoIRRouter(D, ratio=0.25, rms_match=False, direction="a")(xa, xb, ma, mb)
    pooled = (xb * mb.unsqueeze(-1)).sum(1) / mb.sum(1, keepdim=True)
    region = ya != xa
    expected = 0.5 * pooled.unsqueeze(1).expand_as(xa) + 0.5 * xa
    torch.testing.assert_close(ya[region], expected[region])


def test_token_level_routes_ceil_r_t_tokens_on_all_channels():
    xa, xb, ma, mb = toy()
    _, yb, _, _ = MoIRRouter(D, ratio=0.5, level="token")(xa, xb, ma, mb)
    changed = (yb != xb).any(-1)
    assert changed.sum(1).tolist() == [math.ceil(0.5 * n) for n in mb.sum(1).tolist()]
    assert not (changed & ~mb).any()


def test_append_adds_one_valid_token_per_direction():
    xa, xb, ma, mb = toy()
    ya, yb, ma2, mb2 = MoIRRouter(D, inject="append")(xa, xb, ma, mb)
    assert ya.shape == (B, T + 1, D) and yb.shape == (B, 7, D)
    assert ma2[:, -1].all() and mb2[:, -1].all() and torch.equal(ya[:, :T], xa)


def test_gradients_reach_gates_and_source_but_not_scores():
    xa, xb, ma, mb = toy()
    xb.requires_grad_(True)
    router = MoIRRouter(D, direction="a")
    ya, _, _, _ = router(xa, xb, ma, mb)
    ya.sum().backward()
    assert router.gate_logits.grad[0].abs().sum() > 0 and xb.grad.abs().sum() > 0


def test_router_is_amp_safe_and_keeps_dtype():
    xa, xb, ma, mb = toy()
    ya, yb, _, _ = MoIRRouter(D)(xa.bfloat16(), xb.bfloat16(), ma, mb)
    assert ya.dtype == torch.bfloat16 and torch.isfinite(ya.float()).all()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="ratio"):
        MoIRRouter(D, ratio=0.0)
    with pytest.raises(ValueError, match="select"):
        MoIRRouter(D, select="middle")
    with pytest.raises(ValueError, match="gate_init"):
        MoIRRouter(D, gate_init=0.0, learn_gates=True)


def test_effective_rank_bounds():
    assert effective_rank(torch.eye(6).unsqueeze(0)).item() == pytest.approx(6.0, rel=1e-4)
    rank_one = torch.ones(1, 5, 1) * torch.randn(1, 1, 8)
    assert effective_rank(rank_one).item() == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("routing", [False, True])
def test_method_fits_the_core_hooks(routing):
    splits = toy_splits()
    model = build_token_model(splits, dim=16, router=MoIRRouter(16) if routing else None)
    method = MoIR(model, modality_dropout=0.5)
    batch = splits.train.batch(range(8))
    step = method.training_step(batch, None)
    step.loss.backward()
    out = method.predict(batch)
    assert out.logits.shape == (8, 10) and set(out.unimodal_logits) == {"image", "text"}
    torch.testing.assert_close(out.weights["image"] + out.weights["text"], torch.ones(8))
    alone = method.predict({"image": batch["image"], "label": batch["label"]})
    torch.testing.assert_close(alone.logits, out.unimodal_logits["image"])


def test_modality_dropout_drops_at_most_one_stream():
    method = MoIR(build_token_model(toy_splits(), dim=16), modality_dropout=0.9)
    keep = method.keep_masks(toy_splits(200).train.tensors)
    assert (keep["image"] | keep["text"]).all() and (~keep["image"]).any() and (~keep["text"]).any()


def test_token_ranks_before_and_after_routing_per_stream_and_joint():
    from mmrepro.methods.moir import token_ranks

    splits = toy_splits()
    torch.manual_seed(0)
    plain = build_token_model(splits, dim=16)
    ranks = token_ranks(plain, splits.test.batch(range(8)))
    assert set(ranks) == {(w, m) for w in ("before", "after") for m in ("image", "text", "joint")}
    assert all(ranks[("before", m)] == ranks[("after", m)] for m in ("image", "text", "joint")), "no router: no change"
    routed = build_token_model(splits, dim=16, router=MoIRRouter(16, ratio=0.5))
    after = token_ranks(routed, splits.test.batch(range(8)))
    assert any(after[("before", m)] != after[("after", m)] for m in ("image", "text"))
    assert all(1.0 <= v <= 16.0 for v in after.values()), "an effective rank lies between 1 and the width"


def test_plug_in_trains_the_baseline_first_then_only_the_gates():
    from mmrepro.train import TrainConfig, fit

    splits = toy_splits(40)
    cfg = TrainConfig(epochs=2, batch_size=16, progress=False, device="cpu")
    for regime, gates_move in (("plug_in", False), ("gates", True)):
        torch.manual_seed(0)
        method = MoIR.for_splits(splits, encoder_kwargs={"dim": 16, "causal": True, "routing": {"ratio": 0.25}},
                                 regime=regime, baseline={"epochs": 3})
        start = {k: v.clone() for k, v in method.state_dict().items()}
        result = fit(method, splits, cfg)
        end = method.state_dict()
        assert result.history["baseline_epochs"].tolist() == [3.0, 3.0]
        assert not torch.equal(start["model.head.weight"], end["model.head.weight"]), "the baseline was trained"
        assert torch.equal(start["model.router.gate_logits"], end["model.router.gate_logits"]) != gates_move
        assert method.model.routing and not method.model.head.weight.requires_grad
    with pytest.raises(ValueError, match="learn_gates"):
        MoIR.for_splits(splits, encoder_kwargs={"routing": {"learn_gates": False}}, regime="plug_in")
    with pytest.raises(ValueError, match="regime"):
        MoIR.for_splits(splits, encoder_kwargs={"routing": {}}, regime="frozen")


def test_a_gates_run_holds_the_baseline_the_plug_in_and_the_tuned_gates():
    from mmrepro.measures.moir import contributions
    from mmrepro.train import TrainConfig, fit

    splits = toy_splits(40)
    splits.info["test_randomised"] = splits.test
    splits.valid_range["image"] = (0.0, 1.0)
    cfg = TrainConfig(epochs=3, batch_size=16, progress=False, device="cpu", lr=0.05)
    enc = {"dim": 16, "causal": True}
    torch.manual_seed(0)
    gates = MoIR.for_splits(splits, encoder_kwargs={**enc, "routing": {"ratio": 0.25}}, regime="gates",
                            baseline={"epochs": 3})
    fit(gates, splits, cfg)
    torch.manual_seed(0)
    alone = MoIR.for_splits(splits, encoder_kwargs={**enc, "routing": None})
    fit(alone, splits, cfg)
    batch = splits.test.batch(range(40))
    trained = gates.model.router.gate_logits.detach().clone()
    assert not torch.equal(trained, gates.initial_gates), "the gates moved"
    with gates.view("baseline"):
        assert not gates.model.routing
        torch.testing.assert_close(gates.predict(batch).logits, alone.predict(batch).logits)
    with gates.view("plug_in"):
        assert torch.equal(gates.model.router.gates, torch.full_like(trained, 0.5))
    assert gates.model.routing and torch.equal(gates.model.router.gate_logits, trained), "a view is undone"
    with pytest.raises(ValueError, match="view"):
        with alone.view("baseline"):
            pass
    metrics, items = contributions(gates, splits)
    assert {k.rpartition("@")[2] for k in items} == {"baseline", "plug_in", "gates"}
    assert items["accuracy@baseline"] == contributions(alone, splits)[1]["accuracy@trained"]


def test_the_pretraining_images_are_the_mnist_test_images_av_digits_never_uses():
    from mmrepro.data import load
    from mmrepro.methods.moir import unused_mnist

    splits = load("shortcut_prompts", shortcut_rate=0.8)
    index, images, digits = unused_mnist(splits)
    used = torch.cat([d.tensors["_mnist_index"] for d in (splits.train, splits.val, splits.test)])
    assert len(index) == 10_000 - len(used) and not torch.isin(index, used).any()
    assert images.shape == (len(index), 1, 28, 28) and 0 <= images.min() and images.max() <= 1
    assert len(digits.unique()) == 10
    with pytest.raises(ValueError, match="AV-Digits"):
        unused_mnist(toy_splits())


def test_pretraining_freezes_all_but_the_projector_and_leaves_the_global_rng_alone():
    from mmrepro.data import load
    from mmrepro.methods.moir import pretrain_image_stream

    splits = load("shortcut_prompts", shortcut_rate=0.8)
    model = build_token_model(splits, dim=16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(3)
    state = torch.get_rng_state()
    log = pretrain_image_stream(model, splits, epochs=1, batch_size=256)
    assert torch.equal(torch.get_rng_state(), state)
    assert log["pretrain_images"] == 7000 and 0 <= log["pretrain_val_accuracy"] <= 1
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.startswith("streams.image.") and ".projector." not in n for n in trainable)
    assert "streams.image.projector.1.weight" in trainable and "streams.text.embed.weight" in trainable
    assert not torch.equal(before["streams.image.embed.weight"], model.state_dict()["streams.image.embed.weight"])
    assert torch.equal(before["streams.text.embed.weight"], model.state_dict()["streams.text.embed.weight"])
    with pytest.raises(ValueError, match="epochs"):
        pretrain_image_stream(model, splits, epochs=0)
