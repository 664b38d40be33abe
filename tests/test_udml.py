"""UDML's components, its graded noise, its baselines (EAU, QMF, TMC) and its chapter's measures on toy tensors."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from mmrepro.data import make_synthetic
from mmrepro.data.corruptions import GradedNoise
from mmrepro.measures import udml as measures
from mmrepro.methods import EAU, QMF, TMC, UDML, Joint, build
from mmrepro.methods.noise_augmented import NoiseAugmented
from mmrepro.methods.qmf import energy_confidence, rank_loss
from mmrepro.methods.tmc import dempster_combine, dirichlet_loss
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


# --- graded noise --------------------------------------------------------------------------
def test_noise_levels_are_ordered_and_clipped():
    noise = GradedNoise({"img": 1.0, "aud": 2.0}, {"img": 2.0}, {"img": (0.0, 1.0), "aud": None})
    stds = [noise.std("img", k).item() for k in range(1, 12)]
    assert stds[0] == 0 and all(a < b for a, b in zip(stds, stds[1:])) and stds[-1] == pytest.approx(1.0)
    assert noise.std("aud", 6).item() == pytest.approx(1.0)  # linear: halfway between levels 1 and 11
    torch.manual_seed(0)
    batch = {"img": torch.rand(64, 1, 8, 8), "aud": torch.randn(64, 4)}
    spread = []
    for k in (1, 4, 8, 11):
        noisy = noise.at_level(k)(batch)
        assert noisy["img"].min() >= 0 and noisy["img"].max() <= 1
        spread.append((noisy["aud"] - batch["aud"]).std().item())
    assert torch.equal(noise.at_level(1)(batch)["img"], batch["img"])  # level 1 is clean
    assert spread[0] == 0 and spread[1] < spread[2]


def test_noise_rejects_bad_levels_and_samples_clean_half():
    noise = GradedNoise({"a": 1.0})
    with pytest.raises(ValueError, match="levels must lie in"):
        noise.std("a", 12)
    torch.manual_seed(0)
    levels = noise.sample_levels(4000, torch.device("cpu"))["a"]
    assert levels.min() == 1 and levels.max() == 11
    assert 0.5 < (levels == 1).float().mean() < 0.6  # 1/2 forced clean + 1/22 drawn clean


# --- UDML's components ---------------------------------------------------------------------
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


# --- baselines -----------------------------------------------------------------------------
def test_dempster_with_a_vacuous_opinion_returns_the_other():
    alpha = torch.tensor([[5.0, 2.0, 1.0]])
    assert torch.allclose(dempster_combine(alpha, torch.ones(1, 3)), alpha)
    agree = dempster_combine(alpha, alpha)
    assert agree.sum() > alpha.sum()  # two agreeing opinions: more evidence, less uncertainty
    labels = torch.tensor([0])
    assert dirichlet_loss(agree, labels, 0.0) < dirichlet_loss(alpha, labels, 0.0)


def test_qmf_confidence_and_rank_loss():
    sharp, flat = torch.tensor([[10.0, 0.0, 0.0]]), torch.zeros(1, 3)
    assert energy_confidence(sharp) > energy_confidence(flat)
    conf, loss = torch.tensor([1.0, 0.0]), torch.tensor([0.1, 2.0])
    assert rank_loss(conf, loss) == 0 and rank_loss(conf.flip(0), loss) > 0
    with pytest.raises(ValueError, match="QMF supports fusion late, sum; the model's is 'concat'"):
        QMF(build_model(make_synthetic(sizes=(8, 8, 8)), fusion="concat"))


def test_qmf_tmc_and_noise_augmented_train(toy):
    noise = default_noise(toy)
    batch = toy.train.batch(range(16))
    torch.manual_seed(0)
    qmf = build("qmf", toy)
    out = qmf.training_step(batch, _ctx(1)).output
    fused = sum(out.weights[m].unsqueeze(-1) * out.unimodal_logits[m] for m in toy.modalities)
    assert torch.allclose(out.logits, fused), "QMF fuses heads weighted by their energy confidence"
    tmc = build("tmc", toy)
    assert isinstance(tmc, TMC)
    step = tmc.training_step(batch, _ctx(1))
    step.loss.backward()
    alphas = {m: lg.exp() for m, lg in step.output.unimodal_logits.items()}
    assert torch.allclose(step.output.logits.exp(), dempster_combine(alphas["m0"], alphas["m1"]), atol=1e-5)
    assert all(((w >= 0) & (w < 1)).all() for w in step.output.weights.values()), "belief mass = 1 - uncertainty"
    assert all(tmc.model.encoders[m].net[0].weight.grad.abs().sum() > 0 for m in toy.modalities)
    joint = Joint(build_model(toy))
    wrapped = NoiseAugmented(joint, noise, start_epoch=2)
    seen = []
    joint.training_step = lambda batch, ctx: seen.append(batch["m0"].clone()) or Joint.training_step(joint, batch, ctx)
    batch = toy.train.batch(range(16))
    wrapped.training_step(batch, _ctx(1))
    wrapped.training_step(batch, _ctx(2))
    assert torch.equal(seen[0], batch["m0"]) and not torch.equal(seen[1], batch["m0"])


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


def test_noise_augmented_wraps_a_method_named_in_the_registry(toy):
    wrapped = build("noise_augmented", toy, fusion="late", method="qmf", start_epoch=1)
    assert isinstance(wrapped.method, QMF) and wrapped.start_epoch == 1
    for bad in ("noise_augmented", "nope"):
        with pytest.raises(ValueError, match="registry names"):
            build("noise_augmented", toy, method=bad)


# --- the chapter's measures ----------------------------------------------------------------
def test_mixed_levels_are_seeded_per_sample_and_in_range():
    a, b = measures.mixed_levels(500, ("x", "y"), seed=3), measures.mixed_levels(500, ("x", "y"), seed=3)
    assert all(torch.equal(a[m], b[m]) for m in a), "every run sees the same draw"
    assert not torch.equal(a["x"], a["y"]), "levels are independent per modality"
    assert a["x"].min() == 1 and a["x"].max() == 11 and a["x"].float().std() > 2


def test_rank_is_one_for_a_monotone_score_and_zero_for_a_constant():
    level = np.repeat(np.arange(1, 6), 10)
    assert measures._rank(level * 2.0 + 1, level) == pytest.approx(1.0)
    assert measures._rank(-level * 1.0, level) == pytest.approx(-1.0)
    assert measures._rank(np.ones(len(level)), level) == 0.0


def test_robustness_gives_per_item_scores_and_run_level_metrics(toy):
    torch.manual_seed(0)
    method = UDML(build_model(toy), noise_epoch=0, weight_epoch=0).eval()
    metrics, items = measures.robustness(method, toy, levels=[1, 6, 11], weak="m1", unseen={})
    n = len(toy.test)
    for name in ("accuracy_mixed", "accuracy_noisy_both", "accuracy_m0_6", "accuracy_m1_11"):
        assert len(items[name]) == n and metrics[name] == pytest.approx(np.mean(items[name]))
    assert -1 <= metrics["rho"] <= 1 and metrics["rho"] == pytest.approx((metrics["rho_m0"] + metrics["rho_m1"]) / 2)
    assert {"score_m0_1", "score_m1_11", "dependency_ratio", "weight_weak", "mixed_level_std"} <= set(metrics)
    assert 0 < metrics["weight_weak"] < 2, "the two weights sum to 2"
    again, _ = measures.robustness(method, toy, levels=[1, 6, 11], weak="m1", unseen={})
    assert again == metrics, "every corruption is drawn from a fixed seed"


def test_late_fusion_methods_get_accuracy_but_no_estimator_metrics(toy):
    torch.manual_seed(0)
    method = build("noise_augmented", toy, fusion="late", method="late").eval()
    metrics, items = measures.robustness(method, toy, levels=[1, 11], weak="m1", unseen={})
    assert "accuracy_mixed" in items and "rho" not in metrics and "dependency_ratio" not in metrics


def test_dependency_ratio_is_large_when_the_weak_modality_is_ignored(toy):
    torch.manual_seed(0)
    method = UDML(build_model(toy), uncertainty=None, dependency=None).eval()
    with torch.no_grad():
        method.model.fusion.fc.weight[:, method.model.fusion.dims["m0"]:] = 0  # the head ignores m1
    assert measures.dependency_ratio(method, toy, weak="m1")["dependency_ratio"] > 1e6
