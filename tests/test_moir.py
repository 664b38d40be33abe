"""MoIR router, stand-in token model and shortcut data, on toy tensors."""

from __future__ import annotations

import math

import pytest
import torch

from mmrepro.data.core import DictDataset, Splits
from mmrepro.data.shortcut_prompts import EOS, MASK, PAD, TokenMask, TokenReplace, make_prompts
from mmrepro.methods.moir import MoIR, MoIRRouter, effective_rank, informativeness
from mmrepro.models.token_model import build_token_model

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


def test_prompts_have_hints_fillers_and_padding():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(10).repeat(50)
    prompts = make_prompts(labels, None, 1.0, g)
    assert torch.equal(prompts[:, 2] - 16, labels)
    assert (prompts == PAD).any() and ((prompts == EOS).sum(1) == 1).all()
    assert (make_prompts(labels, None, 0.0, g)[:, 2] - 16 == labels).float().mean() < 0.3


def test_text_corruptions_keep_padding():
    ids = torch.tensor([[2, 4, 20, 5, 0, 0]] * 3)
    masked = TokenMask(rate=1.0)({"text": ids})["text"]
    assert torch.equal(masked == MASK, ids != PAD) and torch.equal(masked == PAD, ids == PAD)
    replaced = TokenReplace(rate=1.0)({"text": ids})["text"]
    assert torch.equal(replaced == PAD, ids == PAD)


def toy_splits(n: int = 24) -> Splits:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 10
    ds = DictDataset({"image": torch.rand(n, 1, 28, 28, generator=g), "text": make_prompts(labels, None, 0.9, g),
                      "label": labels}, ("image", "text"))
    return Splits("toy", ds, ds, ds, 10, info={"vocab_size": 34, "pad_id": PAD})


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


def test_frame_stream_and_bad_stream_kind():
    g = torch.Generator().manual_seed(0)
    ds = DictDataset({"image": torch.rand(6, 1, 28, 28, generator=g), "audio": torch.randn(6, 1, 32, 32, generator=g),
                      "label": torch.arange(6)}, ("image", "audio"))
    splits = Splits("toy", ds, ds, ds, 10)
    model = build_token_model(splits, dim=16, router=MoIRRouter(16))
    toks = model.tokens(ds.tensors)
    assert toks["image"][0].shape == (6, 16, 16) and toks["audio"][0].shape == (6, 8, 16)
    assert model(ds.tensors).logits.shape == (6, 10)
    with pytest.raises(ValueError, match="stream kind"):
        build_token_model(splits, kinds={"audio": "words"})


def test_load_shortcut_builds_labels_prompts_and_randomised_test(monkeypatch):
    from mmrepro.data import shortcut_prompts as shortcut

    g = torch.Generator().manual_seed(0)
    n = 200
    ds = DictDataset({"image": torch.rand(n, 1, 28, 28, generator=g), "audio": torch.zeros(n, 1, 4, 4),
                      "label": torch.arange(n) % 10}, ("audio", "image"))
    monkeypatch.setattr(shortcut, "load_av_digits", lambda **kw: Splits("av_digits", ds, ds, ds, 10))
    splits = shortcut.load_shortcut(shortcut_rate=1.0, task="add", repeats=2)
    text, label, digit = (splits.train.tensors[k] for k in ("text", "label", "_digit"))
    assert len(splits.train) == 2 * n and splits.modalities == ("image", "text")
    assert torch.equal(label, (digit + text[:, 2] - shortcut.OPERANDS) % 10)
    assert torch.equal(text[:, 4] - shortcut.HINTS, label)
    randomised = splits.info["test_randomised"]
    assert torch.equal(randomised.tensors["text"][:, 2], splits.test.tensors["text"][:, 2])
    assert (randomised.tensors["text"][:, 4] - shortcut.HINTS == randomised.tensors["label"]).float().mean() < 0.3
    with pytest.raises(ValueError, match="task"):
        shortcut.load_shortcut(task="multiply")


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


def test_causal_mask_hides_later_keys_and_padding_but_never_the_query_itself():
    from mmrepro.models.token_model import causal_mask, last_valid

    valid = torch.tensor([[True, True, False]])
    expected = torch.tensor([[[False, True, True], [False, False, True], [False, False, False]]])
    assert torch.equal(causal_mask(valid), expected)
    assert last_valid(torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)).tolist() == [1, 3]


def test_causal_reasoner_reads_the_last_valid_token_and_image_tokens_cannot_see_the_prompt():
    splits = toy_splits()
    torch.manual_seed(0)
    model = build_token_model(splits, dim=16, causal=True).eval()
    batch = splits.test.batch(range(8))
    out = model(batch)
    torch.testing.assert_close(out.weights["image"] + out.weights["text"], torch.ones(8))
    toks = model.tokens(batch)
    hidden = {}
    model.blocks[-1].register_forward_hook(lambda _m, _a, res: hidden.update(x=res[0]))
    model.reason(toks)
    first = hidden["x"][:, :16].clone()
    other = {**batch, "text": torch.roll(batch["text"], 1, 0)}
    model.reason(model.tokens(other))
    torch.testing.assert_close(hidden["x"][:, :16], first)  # image positions come first and see only images
    assert not torch.allclose(model(other).logits, out.logits)


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


def test_contributions_measure_reports_drops_shares_and_channel_agreement():
    from mmrepro.measures.moir import contributions

    splits = toy_splits(30)
    splits.info["test_randomised"] = splits.test
    splits.valid_range["image"] = (0.0, 1.0)
    torch.manual_seed(0)
    method = MoIR.for_splits(splits, encoder_kwargs={"dim": 16, "causal": True, "routing": {"ratio": 0.25, "rank": 2}})
    metrics, items = contributions(method, splits)
    assert set(items) == {f"{k}@trained" for k in ("accuracy", "accuracy_randomised", "drop_image", "drop_text")}
    assert all(len(v) == 30 for v in items.values())
    assert all(v in (-1.0, 0.0, 1.0) for v in items["drop_image@trained"])
    assert metrics["share_image@trained"] + metrics["share_text@trained"] == pytest.approx(1.0)
    assert metrics["shift_image_degraded@trained"] == pytest.approx(
        metrics["share_image@trained"] - metrics["share_image_image_degraded@trained"])
    assert all(0 <= metrics[f"{k}_{m}"] <= 1 for k in ("agree", "overlap") for m in ("image", "text"))
    assert metrics["agree_image"] <= metrics["overlap_image"]


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


def test_svd_and_variance_pick_the_same_channels_at_full_rank():
    from mmrepro.measures.moir import channel_agreement

    splits = toy_splits(20)
    method = MoIR.for_splits(splits, encoder_kwargs={"dim": 16, "routing": {"ratio": 0.25, "rank": 64}})
    assert channel_agreement(method, splits.test) == {"agree_image": 1.0, "agree_text": 1.0, "overlap_image": 1.0,
                                                       "overlap_text": 1.0}
