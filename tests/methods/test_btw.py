"""BTW on toy tensors: KL and MI weights, their combination, its flags, and a tiny end-to-end fit."""

from __future__ import annotations

import pytest
import torch

from mmrepro.data.many_modalities import make_trimodal_regression
from mmrepro.data.synthetic import make_synthetic
from mmrepro.methods.btw import BTW, btw_weights, kl_divergence, mutual_information, normalise
from mmrepro.models.moe import build_moe_model
from mmrepro.train import TrainConfig, fit


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_kl_is_zero_when_unimodal_equals_multimodal(task):
    torch.manual_seed(0)
    fused = torch.randn(20, 4 if task == "classification" else 1)
    other = torch.randn(20, fused.shape[1])
    uni = torch.stack([fused, other], 1)
    kl = kl_divergence(uni, fused, task)
    assert torch.allclose(kl[:, 0], torch.zeros(20), atol=1e-6)
    assert (kl[:, 1] > 1e-3).all()


def test_gaussian_kl_matches_closed_form_and_prediction_spread_is_zero_on_equal_models():
    uni = torch.tensor([[[1.0]], [[3.0]]])
    fused = torch.tensor([[0.0], [1.0]])
    assert torch.allclose(kl_divergence(uni, fused, "regression")[:, 0], torch.tensor([0.5, 2.0]))
    same = torch.randn(50, 1)
    assert kl_divergence(same.unsqueeze(1), same, "regression", spread="prediction").abs().max() < 1e-5
    with pytest.raises(ValueError, match="spread"):
        kl_divergence(uni, fused, "regression", spread="labels")


@pytest.mark.parametrize("weighting", ["kl", "mi", "kl+mi", "none"])
@pytest.mark.parametrize("inverse", [False, True])
def test_weights_are_positive_and_sum_to_one_per_example(weighting, inverse):
    torch.manual_seed(1)
    kl = torch.rand(30, 3) * torch.tensor([0.0, 1.0, 5.0])  # a zero KL is floored, not divided by
    w = btw_weights(kl, torch.tensor([0.5, 0.0, 0.2]), weighting, inverse_kl=inverse)
    assert (w > 0).all()
    assert torch.allclose(w.sum(1), torch.ones(30))


def test_kl_weight_grows_with_disagreement_and_inverse_kl_flips_it():
    kl = torch.tensor([[0.1, 1.0]])
    assert btw_weights(kl, torch.ones(2), "kl")[0, 1] > 0.9
    assert btw_weights(kl, torch.ones(2), "kl", inverse_kl=True)[0, 0] > 0.9
    with pytest.raises(ValueError, match="weighting"):
        btw_weights(kl, torch.ones(2), "pid")


def test_normalise_gives_absent_modalities_zero():
    w = normalise(torch.tensor([[1.0, 2.0, 1.0]]), torch.tensor([1.0, 0.0, 1.0]))
    assert torch.allclose(w, torch.tensor([[0.5, 0.0, 0.5]]))


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_mi_of_an_independent_modality_is_near_zero(task):
    gen = torch.Generator().manual_seed(0)
    n, c = 2000, (5 if task == "classification" else 1)
    fused = torch.randn(n, c, generator=gen)
    related = fused + 0.1 * torch.randn(n, c, generator=gen)
    independent = torch.randn(n, c, generator=gen)
    mi = mutual_information(torch.stack([related, independent], 1), fused, task)
    assert mi[1] < 0.05 and mi[0] > 0.5


@pytest.mark.slow
def test_btw_end_to_end_downweights_the_noise_modality():
    splits = make_trimodal_regression("noise", sizes=(300, 100, 100), seed=0)
    cfg = TrainConfig(epochs=3, batch_size=64, lr=3e-3, progress=False)
    method = BTW(build_moe_model(splits, dim=8, num_experts=4), task="regression", weighting="kl+mi")
    fit(method, splits, cfg)
    assert method.weights.shape == (500, 3)
    assert torch.allclose(method.weights.sum(1), torch.ones(500), atol=1e-5)
    assert method.mi[2] < method.mi[0]  # the noise modality shares the least information with the fusion
    batch = {**splits.test.tensors}
    dropped = method.token_weights({k: v for k, v in batch.items() if k != "noisy"})
    assert torch.all(dropped[:, 2] == 0) and torch.allclose(dropped.sum(1), torch.full((100,), 2.0))


def test_btw_rejects_a_non_moe_model_and_unknown_weighting():
    from mmrepro.models import build_model

    splits = make_synthetic(sizes=(8, 4, 4)).with_uids()
    with pytest.raises(ValueError, match="BTW supports fusion moe; the model's is 'concat'"):
        BTW(build_model(splits))
    with pytest.raises(ValueError, match="weighting"):
        BTW(build_moe_model(splits), weighting="global")


def _fitted(splits, epochs: int = 2, **kwargs) -> BTW:
    cfg = TrainConfig(epochs=epochs, batch_size=64, lr=3e-3, progress=False)
    method = BTW(build_moe_model(splits, dim=8, num_experts=4), task=splits.task, **kwargs)
    fit(method, splits, cfg)
    return method


@pytest.mark.parametrize("key", ["weighting", "spread", "scaling", "loss", "update"])
def test_btw_flags_reject_unknown_values_naming_the_flag(key):
    splits = make_synthetic(sizes=(8, 4, 4)).with_uids()
    with pytest.raises(ValueError, match=f"unknown BTW {key} 'bogus'; valid: "):
        BTW(build_moe_model(splits), **{key: "bogus"})


def test_l1_loss_is_for_regression_only():
    splits = make_synthetic(sizes=(8, 4, 4)).with_uids()
    with pytest.raises(ValueError, match="loss='l1' is for regression"):
        BTW(build_moe_model(splits), loss="l1")


def test_official_scaling_starts_at_one_and_uses_the_stored_values_as_multipliers():
    splits = make_trimodal_regression("noise", sizes=(120, 40, 40), seed=0)
    method = _fitted(splits, epochs=1, scaling="official", warmup=5)  # warm-up longer than training: no update
    assert torch.equal(method.weights, torch.ones(200, 3))
    method.weights[:] = torch.tensor([0.5, 0.3, 0.2])
    multipliers = method.token_weights(dict(splits.test.tensors))
    assert torch.allclose(multipliers, torch.tensor([0.5, 0.3, 0.2]).expand(40, -1))
    method.scaling = "mean"  # ours: M w, uniform at 1
    assert torch.allclose(method.token_weights(dict(splits.test.tensors)), torch.tensor([1.5, 0.9, 0.6]).expand(40, -1))


def test_update_on_improvement_leaves_the_weights_alone_after_a_worse_epoch():
    splits = make_trimodal_regression("noise", sizes=(120, 40, 40), seed=0)
    method = _fitted(splits, epochs=1, update="improvement")
    before = method.weights.clone()
    method.best_val_loss = -1.0  # no validation loss can beat this
    ctx = type("Ctx", (), {"splits": splits, "device": torch.device("cpu"), "cfg": TrainConfig(progress=False)})()
    method.epoch_end(1, ctx)
    assert torch.equal(method.weights, before)
    method.update = "epoch"
    method.epoch_end(2, ctx)
    assert not torch.equal(method.weights, before)


def test_l1_loss_trains_on_absolute_error():
    splits = make_trimodal_regression("noise", sizes=(120, 40, 40), seed=0)
    method = BTW(build_moe_model(splits, dim=8, num_experts=4), task="regression", loss="l1")
    logits, labels = torch.tensor([[1.0], [-1.0]]), torch.tensor([[0.0], [1.0]])
    assert method._loss(logits, labels).item() == pytest.approx(1.5)


def test_uid_key_names_another_row_id_and_a_missing_one_is_a_clear_error():
    splits = make_trimodal_regression("noise", sizes=(60, 20, 20), seed=0)
    method = _fitted(splits, epochs=1, uid_key="_uid")
    assert method.weights.shape == (100, 3)
    with pytest.raises(KeyError, match="'_row' key"):
        _fitted(splits, epochs=1, uid_key="_row")
