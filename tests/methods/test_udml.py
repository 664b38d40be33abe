"""UDML's components on toy tensors: weights, dependency, schedule, noise predictor, estimator gradients, flags."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from scipy.stats import spearmanr

from mmrepro.data import make_synthetic
from mmrepro.methods import EAU, UDML, build
from mmrepro.methods.udml import (NoisePredictor, default_noise, gaussian_kl, inverse_uncertainty_weights,
                                  modality_dependency)
from mmrepro.models import build_model
from mmrepro.models.fusion import ConcatFusion
from mmrepro.train import Context, TrainConfig, fit


_CTX_SPLITS = make_synthetic(levels=(1.0, 1.0), dim=8, num_classes=3, sizes=(8, 8, 8), seed=0)


def _ctx(epoch: int = 0) -> Context:
    return replace(Context.local(_CTX_SPLITS), epoch=epoch)


@pytest.fixture
def toy():
    return make_synthetic(levels=(3.0, 0.5), dim=8, num_classes=3, sizes=(96, 48, 48), seed=0)


def _udml(splits, **kwargs) -> UDML:
    torch.manual_seed(0)
    return UDML(build_model(splits), noise=default_noise(splits), **kwargs)


def test_weights_sum_to_number_of_modalities(toy):
    u = torch.rand(16, 3) + 0.1
    w = inverse_uncertainty_weights(u)
    assert torch.allclose(w.sum(-1), torch.full((16,), 3.0))
    assert (w.argmax(-1) == u.argmin(-1)).all()  # the least uncertain modality gets the largest weight
    method = _udml(toy).eval()
    method.dependency.copy_(torch.tensor([3.0, 0.5]))
    out = method.predict(toy.test.batch(range(8)))
    assert torch.allclose(out.weights["m0"] + out.weights["m1"], torch.full((8,), 2.0))


def test_zeroed_modality_gets_zero_dependency():
    torch.manual_seed(0)
    fusion = ConcatFusion({"a": 4, "b": 4}, 3)
    h = {"a": torch.zeros(5, 4), "b": torch.randn(5, 4)}
    d = modality_dependency(fusion, h, "paper")
    assert d[0] == 0 and d[1] > 0
    assert modality_dependency(fusion, h, "code")[0] > 0  # the code's form keeps the head's bias


def test_schedule_switches_at_the_right_epochs(toy):
    method = _udml(toy, noise_epoch=50, weight_epoch=60)
    assert [method.stage(e) for e in (0, 49, 50, 59, 60, 99)] == [1, 1, 2, 2, 3, 3]
    calls = []
    real = method.noise
    method.noise = lambda batch: calls.append(1) or real(batch)
    batch = toy.train.batch(range(16))
    method.train()
    for epoch, expect_noise in ((49, 0), (50, 1)):
        out = method.training_step(batch, _ctx(epoch))
        assert len(calls) == expect_noise
    assert torch.allclose(out.output.weights["m0"], torch.full((16,), out.output.weights["m0"][0].item()))  # w~=1
    with pytest.raises(ValueError, match="noise_epoch <= weight_epoch"):
        _udml(toy, noise_epoch=10, weight_epoch=5)


def test_predictor_learns_levels_that_rank_correctly():
    torch.manual_seed(0)
    levels = torch.randint(1, 12, (512,)).float()
    sigma = levels.view(-1, 1) / 11 * torch.rand(1, 16) + 0.05 * torch.rand(512, 16)  # variance grows with noise
    predictor = NoisePredictor(16, hidden=32)
    opt = torch.optim.Adam(predictor.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.mse_loss(predictor(sigma), levels).backward()
        opt.step()
    predictor.eval()
    assert spearmanr(predictor(sigma).detach(), levels).statistic > 0.95


def test_estimator_gradient_stops_at_the_variance(toy):
    method = _udml(toy)
    method.train()
    parts = method.forward_parts(toy.train.batch(range(16)))
    parts.intensity["m0"].sum().backward()
    assert all(p.grad is None for p in method.heads.parameters())
    assert all(p.grad is None for p in method.model.encoders.parameters())
    assert any(p.grad is not None for p in method.predictors["m0"].parameters())


def test_kl_is_zero_at_the_prior_and_prior_scales_with_level():
    mu, logvar = torch.zeros(4, 3), torch.full((4, 3), 2.0).log()
    assert gaussian_kl(mu, logvar, torch.full((4,), 2.0)) == pytest.approx(0.0, abs=1e-6)
    assert gaussian_kl(mu, logvar, torch.ones(4)) > 0


def test_inference_is_deterministic_and_dependency_is_saved(toy):
    method = _udml(toy, noise_epoch=0, weight_epoch=0)
    method.train()
    method.training_step(toy.train.batch(range(32)), _ctx(0))
    assert method.dependency_ready and not torch.equal(method.dependency, torch.ones(2))
    state = method.state_dict()
    assert "dependency" in state
    clone = _udml(toy)
    clone.load_state_dict(state)
    clone.eval()
    batch = toy.test.batch(range(8))
    assert torch.equal(clone.predict(batch).logits, clone.predict(batch).logits)
    assert torch.equal(clone.dependency, method.dependency)


def test_scaling_and_ablation_flags(toy):
    batch = toy.test.batch(range(8))
    direct = _udml(toy, scaling="direct", uncertainty=None, dependency=False).eval()
    parts = direct.forward_parts(batch)
    assert torch.allclose(parts.fused_input["m0"], direct.heads["m0"](direct.model.encode(batch)["m0"])[0])  # w = 1
    residual = _udml(toy, uncertainty=None, dependency=None).eval()
    assert torch.allclose(residual.forward_parts(batch).fused_input["m0"], 2 * parts.fused_input["m0"])
    for bad in ({"uncertainty": "energy"}, {"dependency": "ema"}, {"scaling": "gate"}):
        with pytest.raises(ValueError, match="valid"):
            _udml(toy, **bad)
    with pytest.raises(ValueError, match="UDML supports fusion concat; the model's is 'late'"):
        UDML(build_model(toy, fusion="late"))


def test_udml_and_eau_train_end_to_end(toy):
    for make in (lambda: build("udml", toy, noise_epoch=1, weight_epoch=2),
                 lambda: EAU(build_model(toy), noise_epoch=1, weight_epoch=2)):
        torch.manual_seed(0)
        result = fit(make(), toy, TrainConfig(epochs=3, batch_size=32, lr=1e-2))
        loss = result.history["train_loss"]
        assert len(loss) == 3 and loss.iloc[-1] < loss.iloc[0], "training must lower the loss"
        assert result.history["val_accuracy"].max() > 0.6, "m0 alone separates the 3 classes well above chance"
    assert EAU(build_model(toy)).score == "code"


def test_default_noise_matches_the_codes_image_scale_at_the_top_level():
    bounded = make_synthetic(levels=(1.0, 1.0), dim=4, sizes=(8, 8, 8))
    bounded = replace(bounded, valid_range={"m0": (0.0, 1.0), "m1": None})
    noise = default_noise(bounded)
    assert noise.std("m0", 10).item() == pytest.approx(100 / 255)  # the code's k^2 on 0-255 pixels at k = 10
    assert noise.std("m0", 4).item() == pytest.approx(100 / 255 * (3 / 9) ** 2)
    assert noise.std("m0", 1).item() == 0 and noise.std("m1", 11).item() == pytest.approx(2.0)


def test_estimator_gradient_reaches_the_embedding_when_not_detached(toy):
    method = _udml(toy, detach_estimator=False)
    method.train()
    method.forward_parts(toy.train.batch(range(16))).intensity["m0"].sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.heads["m0"].logvar.parameters())
