"""MWAM: block DCT, FRM, bank, weight schedule, interventions, controls, hosts."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import torch

from mmrepro.data.core import LABEL, DictDataset, Splits
from mmrepro.methods.mwam import (
    MWAM, FRMBank, MissingModalityHost, block_dct, dct_matrix, frequency_bands, frequency_filter, frm, relative_frm,
    weight_schedule,
)
from mmrepro.methods.ogm_ge import ogm_coefficients, true_class_scores
from mmrepro.models import build_model
from mmrepro.models.vit import TinyViT, build_vit_model
from mmrepro.train import Context, TrainConfig, apply_lr_factors, fit


def _splits(n: int = 48, seed: int = 0) -> Splits:
    """Two image modalities of different shapes: a smooth one and a noisy one."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    smooth = torch.linspace(0, 1, 16).view(1, 1, 1, 16).expand(n, 1, 16, 16) + y.view(-1, 1, 1, 1) * 0.3
    noisy = torch.rand(n, 3, 8, 8, generator=g) + y.view(-1, 1, 1, 1) * 0.1
    data = DictDataset({"a": smooth.contiguous(), "b": noisy, LABEL: y}, ("a", "b"))
    return Splits("toy", data, data, data, num_classes=3)


def _step(method, splits):
    """One manual training step (forward, backward, after_backward) with a minimal context."""
    ctx = Context.local(splits)
    batch = splits.train.batch(range(16))
    method.zero_grad()
    out = method.training_step(batch, ctx)
    out.loss.backward()
    method.after_backward(ctx)
    return out


def test_block_dct_matches_scipy_per_block():
    x = torch.randn(2, 3, 16, 24, dtype=torch.float64)
    coeffs = block_dct(x, 8)
    assert coeffs.shape == (2, 3, 2, 3, 8, 8)
    for i, j in [(0, 0), (1, 2), (0, 1)]:
        ref = scipy.fft.dctn(x[1, 2, 8 * i:8 * i + 8, 8 * j:8 * j + 8].numpy(), norm="ortho")
        np.testing.assert_allclose(coeffs[1, 2, i, j].numpy(), ref, atol=1e-10)
    assert torch.allclose(dct_matrix(8) @ dct_matrix(8).T, torch.eye(8, dtype=torch.float64), atol=1e-12)


def test_mirror_pairs_low_corner_with_opposite_high_corner():
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    coeffs = block_dct(x, 8)[0, 0, 0, 0]
    low, high = frequency_bands(x, 8, 2)
    assert torch.allclose(low[0, 0, 0, 0], coeffs[:2, :2])
    assert torch.isclose(high[0, 0, 0, 0, 0, 0], coeffs[7, 7])
    assert torch.isclose(high[0, 0, 0, 0, 0, 1], coeffs[7, 6])
    assert torch.isclose(high[0, 0, 0, 0, 1, 0], coeffs[6, 7])
    assert torch.isclose(high[0, 0, 0, 0, 1, 1], coeffs[6, 6])


def test_frm_is_invariant_to_batch_order_and_ranks_smooth_inputs_higher():
    torch.manual_seed(0)  # the ratio of two noisy FRMs is heavy-tailed: fix the draw (it failed about 1 in 10)
    x = torch.rand(10, 1, 16, 16)
    perm = torch.randperm(10)
    assert torch.isclose(frm(x), frm(x[perm]))
    smooth = torch.linspace(0, 1, 16).view(1, 1, 1, 16).expand(10, 1, 16, 16) + 0.01 * torch.rand(10, 1, 16, 16)
    assert frm(smooth, reduce="mean") > 10 * frm(x, reduce="mean")
    assert torch.isclose(frm(x, reduce="mean") * x.numel() / 16, frm(x))  # 2x2 of 8x8: 1/16 of the elements


def test_frm_variants_and_padding():
    x = torch.rand(4, 1, 8, 8, dtype=torch.float64)
    low, high = frequency_bands(x, 8, 2)
    assert torch.isclose(frm(x, variant="low"), low.abs().sum())
    assert torch.isclose(frm(x, variant="direct_sum"), low.abs().sum() + high.abs().sum())
    assert torch.isclose(frm(x, variant="weighted_sum"), 0.9 * low.abs().sum() + 0.1 * high.abs().sum())
    assert block_dct(torch.rand(2, 1, 28, 28), 8).shape == (2, 1, 4, 4, 8, 8)  # replicate-padded to 32
    with pytest.raises(ValueError, match="variant"):
        frm(x, variant="fft")
    with pytest.raises(ValueError, match="q must be"):
        frequency_bands(x, 8, 8)


def test_weight_schedule_decreasing_and_midpoint():
    t = torch.linspace(0, 2, 50, dtype=torch.float64)
    k = weight_schedule(t, 1.5, 1.0, 6.0, 0.7)
    assert torch.all(k[1:] < k[:-1])
    assert torch.all((k > 0.5) & (k < 1.5))
    assert torch.isclose(weight_schedule(torch.tensor(0.7, dtype=torch.float64), 1.5, 1.0, 6.0, 0.7),
                         torch.tensor(1.5 - 0.5, dtype=torch.float64))
    # the spec's table: K(1.0) = 0.642 with the paper's constants
    assert abs(weight_schedule(torch.tensor(1.0), 1.5, 1.0, 6.0, 0.7).item() - 0.642) < 1e-3


def test_bank_ema_and_relative_frm():
    bank = FRMBank(("a", "b"), omega=0.5)
    assert torch.equal(bank.update(torch.tensor([4.0, 2.0])), torch.tensor([4.0, 2.0]))
    assert torch.equal(bank.update(torch.tensor([0.0, 2.0])), torch.tensor([2.0, 2.0]))
    t = relative_frm(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 2.0]), sigma=0.0)
    assert torch.equal(t, torch.tensor([0.5, 1.5]))
    equal = relative_frm(torch.tensor([5.0, 5.0]), torch.tensor([5.0, 5.0]))
    k = weight_schedule(equal)
    assert torch.isclose(k[0], k[1])
    with pytest.raises(ValueError, match="expected 2 FRMs"):
        bank.update(torch.ones(3))


def _mwam(splits, **kwargs):
    torch.manual_seed(0)
    method = MWAM(build_model(splits, "cnn", "late", widths=(4, 8)), **kwargs)
    method.active = method._resolve_intervention("sgd")
    return method


def test_gradient_scaling_touches_only_the_named_encoder():
    splits = _splits()
    host = MissingModalityHost(build_model(splits, "cnn", "late", widths=(4, 8)))
    method = _mwam(splits, intervention="grad")
    method.load_state_dict(host.state_dict())
    _step(host, splits)
    _step(method, splits)
    k = method._k
    assert k[0] < 1 < k[1]  # smooth "a" has the higher FRM, so it is slowed
    for name, p in host.named_parameters():
        q = dict(method.named_parameters())[name]
        if name.startswith("model.encoders.a."):
            torch.testing.assert_close(q.grad, p.grad * k[0].float())
        elif name.startswith("model.encoders.b."):
            torch.testing.assert_close(q.grad, p.grad * k[1].float())
        else:
            torch.testing.assert_close(q.grad, p.grad)


def test_loss_weighting_scales_auxiliary_losses_only():
    splits = _splits()
    method = _mwam(splits, intervention="loss")
    out = _step(method, splits)
    k = method._k.float()
    expected = out.logs["loss_fused"] + k[0] * out.logs["loss_a"] + k[1] * out.logs["loss_b"]
    assert torch.isclose(out.loss.detach(), expected)


def test_controls_static_inverted_random():
    splits = _splits()
    dynamic = _mwam(splits)
    _step(dynamic, splits)
    inverted = _mwam(splits, weights="inverted")
    _step(inverted, splits)
    assert torch.allclose(inverted._k, 2 * 1.5 - 1.0 - dynamic._k)
    static = _mwam(splits, weights="static")
    mean_frm, static_k = static.dataset_weights(splits.train, 16)
    assert static_k[0] < static_k[1] and mean_frm[0] > mean_frm[1]
    rand = _mwam(splits, weights="random")
    _step(rand, splits)
    assert torch.all((rand._k > 0.5) & (rand._k < 1.5))
    with pytest.raises(ValueError, match="weights"):
        _mwam(splits, weights="learned")


def test_lr_intervention_scales_encoder_groups_with_adam():
    splits = _splits()
    method = MWAM(build_model(splits, "cnn", "late", widths=(4, 8)), intervention="auto")
    result = fit(method, splits, TrainConfig(epochs=1, batch_size=16, lr=1e-3, optimizer="adam", progress=False))
    assert method.active == "lr"
    assert {"train_K_a", "train_K_b", "train_frm_a"} <= set(result.history.columns)
    groups = {g["name"]: g for g in torch.optim.Adam(method.parameter_groups(), lr=1e-3).param_groups}
    assert set(groups) == {"shared", "a", "b"}
    n_params = sum(len(g["params"]) for g in groups.values())
    assert n_params == len(list(method.parameters()))


def test_lr_scale_keeps_scheduler_factor():
    splits = _splits()
    method = _mwam(splits, intervention="lr")
    opt = torch.optim.SGD(method.parameter_groups(), lr=0.1)

    ctx = Context.local(splits)
    ctx.optimizer = opt
    batch, applied = splits.train.batch(range(16)), {}
    method.training_step(batch, ctx)
    assert set(method.learning_rate_factors()) == {"a", "b"}
    apply_lr_factors(opt, method.learning_rate_factors(), applied)  # what the runner does before each step
    k = method._k
    assert abs(opt.param_groups[1]["lr"] - 0.1 * float(k[0])) < 1e-9
    for g in opt.param_groups:  # a scheduler halves every lr
        g["lr"] *= 0.5
    method.training_step(batch, ctx)
    apply_lr_factors(opt, method.learning_rate_factors(), applied)
    assert abs(opt.param_groups[2]["lr"] - 0.05 * float(method._k[1])) < 1e-9
    assert opt.param_groups[0]["lr"] == 0.05
    with pytest.raises(KeyError, match="'c'"):
        apply_lr_factors(opt, {"c": 2.0}, applied)
    method.active = "grad"
    assert method.learning_rate_factors() == {}, "only the lr intervention scales learning rates"


def test_modality_dropout_host_masks_samples():
    splits = _splits()
    host = MissingModalityHost(build_model(splits, "cnn", "late", widths=(4, 8)), modality_dropout=True)
    torch.manual_seed(0)
    mask = host.presence(splits.train.batch(range(48)))
    assert mask.shape == (48, 2) and torch.all(mask.sum(1) >= 1)
    assert {tuple(r) for r in mask.tolist()} == {(1.0, 0.0), (0.0, 1.0), (1.0, 1.0)}
    with pytest.raises(ValueError, match="supports fusion late; the model's is 'concat'"):
        MissingModalityHost(build_model(splits, "cnn", "concat", widths=(4, 8)))


def test_tiny_vit_shapes_and_training():
    enc = TinyViT(3, (28, 28), patch=4, dim=16, depth=1, heads=2)
    assert enc(torch.rand(2, 3, 28, 28)).shape == (2, 16)
    splits = _splits()
    method = MWAM(build_vit_model(splits, patch=4, dim=16, depth=1, heads=2))
    result = fit(method, splits, TrainConfig(epochs=1, batch_size=16, lr=0.01, optimizer="sgd", progress=False))
    assert result.history["train_K_a"].iloc[0] < result.history["train_K_b"].iloc[0]


def test_shared_trunk_host_predicts_from_the_trunk_with_absent_modalities_zeroed():
    splits = _splits()
    torch.manual_seed(0)
    host = MissingModalityHost(build_model(splits, "cnn", "late", widths=(4, 8)), trunk=6).eval()
    batch = splits.test.batch(range(5))
    full = host.predict(batch)
    assert full.logits.shape == (5, 3) and set(full.unimodal_logits) == {"a", "b"}
    features = host.model.encode(batch)
    expected = host.trunk(torch.cat([features["a"], torch.zeros_like(features["b"])], 1))
    only_a = host.predict({k: v for k, v in batch.items() if k != "b"})
    assert torch.allclose(only_a.logits, expected) and set(only_a.unimodal_logits) == {"a"}
    with torch.no_grad():  # the auxiliary heads do not vote: changing them leaves the prediction
        for p in host.model.fusion.parameters():
            p.add_(1.0)
    assert torch.allclose(host.predict(batch).logits, full.logits)
    assert any(g["name"] == "shared" and any(p is host.trunk[0].weight for p in g["params"])
               for g in host.parameter_groups())


def test_shared_trunk_mwam_trains_and_scales_only_encoders():
    splits = _splits()
    method = MWAM(build_model(splits, "cnn", "late", widths=(4, 8)), trunk=8, intervention="grad")
    result = fit(method, splits, TrainConfig(epochs=2, batch_size=16, lr=0.01, optimizer="sgd", progress=False))
    assert result.history["train_K_a"].iloc[-1] < result.history["train_K_b"].iloc[-1]
    with pytest.raises(ValueError, match="trunk width"):
        MissingModalityHost(build_model(splits, "cnn", "late", widths=(4, 8)), trunk=0)


def test_frequency_filters_split_the_image_and_are_projections():
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    low, high = frequency_filter(x, "low", 5), frequency_filter(x, "high", 5)
    torch.testing.assert_close(low + high, x)
    torch.testing.assert_close(frequency_filter(low, "low", 5), low, atol=1e-5, rtol=0)
    assert frequency_filter(high, "low", 5).abs().max() < 1e-5
    torch.testing.assert_close(high.mean((-2, -1)), torch.zeros(2, 3), atol=1e-5, rtol=0)  # the mean is low
    stripes = torch.cos(torch.arange(16.0) * torch.pi).expand(1, 1, 16, 16)  # the highest frequency only
    assert frequency_filter(stripes, "low", 5).abs().max() < 1e-5
    for kind, window in (("band", 5), ("low", 4), ("low", 16), ("high", 0)):
        with pytest.raises(ValueError, match="filter"):
            frequency_filter(x, kind, window)


def test_host_with_input_filter_trains_and_predicts_on_filtered_inputs():
    splits = _splits()
    torch.manual_seed(0)
    plain = MissingModalityHost(build_model(splits, "cnn", "late", widths=(4, 8))).eval()
    filtered = MissingModalityHost(build_model(splits, "cnn", "late", widths=(4, 8)), input_filter=["low", 3]).eval()
    filtered.load_state_dict(plain.state_dict())
    batch = splits.test.batch(range(6))
    smooth = {k: frequency_filter(v, "low", 3) if k in ("a", "b") else v for k, v in batch.items()}
    torch.testing.assert_close(filtered.predict(batch).logits, plain.predict(smooth).logits)
    assert filtered.input_filter == ("low", 3)
    with pytest.raises(ValueError, match="input_filter"):
        MissingModalityHost(build_model(splits, "cnn", "late", widths=(4, 8)), input_filter=["band", 3])


def test_ogm_ge_weighting_uses_the_heads_scores_on_weight_gradients_only():
    splits = _splits()
    torch.manual_seed(0)
    host = MissingModalityHost(build_model(splits, "cnn", "late", widths=(4, 8)))
    method = _mwam(splits, weights="ogm_ge", ogm_alpha=0.5)
    method.load_state_dict(host.state_dict())
    assert method.active == "grad"
    _step(host, splits)
    torch.manual_seed(1)
    out = _step(method, splits)
    scores = true_class_scores(out.output.unimodal_logits, splits.train.batch(range(16))[LABEL])
    expected = ogm_coefficients(scores, 0.5)
    torch.testing.assert_close(method._k.float(), torch.stack([expected["a"], expected["b"]]).float())
    grads = dict(method.named_parameters())
    for name, p in host.named_parameters():
        if name.startswith("model.encoders.") and p.dim() < 2:  # biases: untouched, as OGM-GE
            torch.testing.assert_close(grads[name].grad, p.grad)
    with pytest.raises(ValueError, match="ogm_ge"):
        _mwam(splits, weights="ogm_ge", intervention="loss")


def test_photometric_augmentation_is_one_draw_per_batch_within_bounds():
    from mmrepro.methods.mwam import augment_batch

    x = torch.rand(8, 3, 16, 16) * 1.8 - 0.9
    torch.manual_seed(0)
    outs = [augment_batch(x) for _ in range(6)]
    bound = 127.5 / 128
    assert all(o.shape == x.shape and o.min() >= -bound and o.max() <= bound for o in outs)
    assert len({round(float(o.mean()), 6) for o in outs}) == 6  # a new draw every batch
    # without blur the map is affine and shared by every sample: one contrast and one shift for the batch
    out = augment_batch(x, blur_p=0.0, bound=10.0)
    slope = (out[1] - out[0]) / (x[1] - x[0])
    assert torch.allclose(slope, slope.flatten()[0].expand_as(slope), atol=1e-3)
    assert torch.allclose(augment_batch(x, brightness=0.0, contrast=(1.0, 1.0), blur_p=0.0), x, atol=1e-6)
    with pytest.raises(ValueError, match="B, C, H, W"):
        augment_batch(torch.rand(4, 16))


def test_augmented_mwam_moves_k_and_predicts_on_clean_inputs():
    splits = _splits()
    with pytest.raises(ValueError, match="augmentation"):
        MWAM(build_model(splits, "cnn", "late", widths=(4, 8)), augment="cutout")
    plain = _mwam(splits)
    torch.manual_seed(0)
    method = _mwam(splits, augment="photometric")
    frms = []
    for _ in range(8):
        out = _step(method, splits)
        frms.append(torch.stack([out.logs["frm_a"], out.logs["frm_b"]]))
        assert torch.allclose(out.logs["K2_a"], out.logs["K_a"] ** 2)
    frms = torch.stack(frms)
    assert torch.all(frms.std(0) / frms.mean(0) > 0.01)  # the same batch, a new spectrum (and FRM) every step
    plain_ks = []
    for _ in range(3):
        _step(plain, splits)
        plain_ks.append(plain._k.clone())
    assert torch.stack(plain_ks).std(0).max() < 1e-9  # the same batch unaugmented: the same K
    method.eval()
    batch = splits.test.batch(range(5))
    assert torch.equal(method.predict(batch).logits, method.model(batch).logits)  # no augmentation at test


def test_three_modality_mwam_and_vit_host_build():
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 3, (48,), generator=g)
    views = {m: torch.rand(48, 1, 16, 16, generator=g) + y.view(-1, 1, 1, 1) * s for m, s in (("a", 0.3), ("b", 0.1), ("c", 0.2))}
    data = DictDataset({**views, LABEL: y}, ("a", "b", "c"))
    splits = Splits("toy3", data, data, data, num_classes=3)
    method = MWAM(build_model(splits, "cnn", "late", widths=(4, 8)))
    result = fit(method, splits, TrainConfig(epochs=1, batch_size=16, lr=0.01, optimizer="sgd", progress=False))
    assert {f"train_K_{m}" for m in "abc"} <= set(result.history.columns)
    vit = MissingModalityHost.for_splits(splits, "vit", None, {"patch": 4, "dim": 16, "depth": 1, "heads": 2})
    assert isinstance(vit.model.encoders["a"], TinyViT) and vit.predict(splits.test.batch(range(3))).logits.shape == (3, 3)
