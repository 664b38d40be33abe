"""The hook interface, the baselines (joint, late fusion) and OGM-GE on toy tensors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmrepro import methods
from mmrepro.methods import (
    OGMGE, REGISTRY, Joint, LateFusionTraining, Method, fusion_name, ogm_coefficients, task_loss, true_class_scores,
)
from mmrepro.models import FUSIONS, LateFusion, build_model, make_fusion

from .helpers import batch as _batch
from .helpers import ctx as _ctx
from .helpers import grads as _grads


def _pretrained_joint(splits, steps: int = 10) -> OGMGE:
    """An OGM-GE method whose model was briefly trained jointly, so that m0 (level 3) dominates m1 (level 0.5)."""
    torch.manual_seed(0)
    method = OGMGE(build_model(splits), alpha=0.5)
    opt = torch.optim.Adam(method.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        Joint.training_step(method, _batch(splits, 96), _ctx()).loss.backward()
        opt.step()
    return method


# --- OGM-GE's coefficient ------------------------------------------------------------


def test_ogm_no_modulation_with_alpha_zero_or_equal_scores():
    assert all(c == 1 for c in ogm_coefficients({"a": torch.tensor(30.0), "b": torch.tensor(1.0)}, 0.0).values())
    assert all(c == 1 for c in ogm_coefficients({"a": torch.tensor(5.0), "b": torch.tensor(5.0)}, 3.0).values())


def test_true_class_scores_sum_the_true_class_probability():
    logits = {"a": torch.tensor([[2.0, 0.0], [0.0, 1.0]])}
    labels = torch.tensor([0, 0])
    expected = F.softmax(logits["a"], -1)[:, 0].sum()
    assert torch.isclose(true_class_scores(logits, labels)["a"], expected)


def test_ogm_ge_training_step_finds_the_dominant_modality(synthetic):
    method = _pretrained_joint(synthetic)
    step = method.training_step(_batch(synthetic), _ctx())
    assert step.logs["coeff_m0"] < 1 and step.logs["coeff_m1"] == 1
    assert torch.isclose(step.loss, F.cross_entropy(step.output.logits, _batch(synthetic)["label"]))


# --- OGM-GE's gradient modulation ------------------------------------------------------


def _modulated(synthetic, coeffs: dict[str, float], epoch: int = 0, **kwargs):
    torch.manual_seed(0)
    method = OGMGE(build_model(synthetic), **kwargs)
    step = method.training_step(_batch(synthetic), _ctx(epoch))
    step.loss.backward()
    before = _grads(method)
    method._coeffs = {m: torch.tensor(c) for m, c in coeffs.items()}
    method.after_backward(_ctx(epoch))
    return before, _grads(method)


def test_coefficients_scale_only_the_named_encoders_weight_gradients(synthetic):
    before, after = _modulated(synthetic, {"m0": 0.25, "m1": 1.0}, gaussian=False)
    scaled = [k for k in before if k.startswith("model.encoders.m0.") and before[k].dim() >= 2]
    assert scaled
    for k in before:
        if k in scaled:
            assert torch.allclose(after[k], 0.25 * before[k]), k
        else:  # other encoder, fusion head, and biases are untouched
            assert torch.equal(after[k], before[k]), k


def test_generalisation_enhancement_adds_noise_of_the_gradient_scale(synthetic):
    before, after = _modulated(synthetic, {"m0": 1.0, "m1": 1.0}, gaussian=True)
    key = "model.encoders.m1.net.0.weight"
    noise = after[key] - before[key]
    assert not torch.equal(after[key], before[key])
    assert 0.5 < (noise.std() / before[key].std()).item() < 1.5
    assert torch.equal(after["model.fusion.fc.weight"], before["model.fusion.fc.weight"])


def test_ogm_ge_rejects_bad_settings(synthetic):
    with pytest.raises(ValueError, match="alpha"):
        OGMGE(build_model(synthetic), alpha=-1.0)
    with pytest.raises(ValueError, match="classification"):
        OGMGE(build_model(synthetic), task="regression")


# --- baselines and the registry ---------------------------------------------------------


def test_late_fusion_trains_each_head_on_its_own_loss(synthetic):
    torch.manual_seed(0)
    method = LateFusionTraining(build_model(synthetic, fusion="late"))
    batch = _batch(synthetic)
    step = method.training_step(batch, _ctx())
    y = batch["label"]
    own = {m: F.cross_entropy(step.output.unimodal_logits[m], y) for m in ("m0", "m1")}
    assert torch.isclose(step.loss, own["m0"] + own["m1"])
    assert torch.isclose(step.logs["loss_m1"], own["m1"])
    step.loss.backward()
    full = _grads(method)["model.encoders.m0.net.0.weight"]
    method.zero_grad()
    F.cross_entropy(method.model(batch).unimodal_logits["m0"], y).backward()
    assert torch.allclose(_grads(method)["model.encoders.m0.net.0.weight"], full, atol=1e-6)


def test_joint_loss_is_cross_entropy_of_fused_logits(synthetic):
    torch.manual_seed(0)
    method = Joint(build_model(synthetic))
    batch = _batch(synthetic)
    step = method.training_step(batch, _ctx())
    assert torch.isclose(step.loss, F.cross_entropy(step.output.logits, batch["label"]))
    assert not step.logs["loss"].requires_grad
    assert sum(p.numel() for g in method.parameter_groups() for p in g["params"]) == \
        sum(p.numel() for p in method.parameters())


def test_base_method_requires_a_training_step(synthetic):
    with pytest.raises(NotImplementedError, match="Method"):
        Method(build_model(synthetic)).training_step({}, _ctx())


def test_task_loss():
    assert torch.isclose(task_loss(torch.tensor([[1.0], [3.0]]), torch.tensor([[0.0], [1.0]]), "regression"),
                         torch.tensor(2.5))
    with pytest.raises(ValueError, match="'classification', 'regression'"):
        task_loss(torch.zeros(1, 2), torch.zeros(1), "ranking")


def test_build_by_name(synthetic):
    for name in ("joint", "late", "ogm_ge", "qmf", "iibalance", "btw"):
        method = methods.build(name, synthetic.with_uids())
        assert fusion_name(method.model) == REGISTRY[name].fusions[0], f"{name}: the default head is fusions[0]"
    assert methods.build("late", synthetic, fusion="sum").model.fusion.name == "sum"
    assert methods.build("ogm_ge", synthetic, alpha=0.3).alpha == 0.3, "keyword arguments reach the constructor"
    uni = methods.build("unimodal", synthetic, modality="m1")
    assert uni.modalities == ("m1",)
    assert uni.predict(synthetic.select(["m1"]).test.batch(range(4))).logits.shape == (4, 3)
    with pytest.raises(ValueError) as err:
        methods.build("magic", synthetic)
    assert "magic" in str(err.value) and all(name in str(err.value) for name in ["unimodal", *REGISTRY])
    with pytest.raises(ValueError, match=r"\['m0', 'm1'\]"):
        methods.build("unimodal", synthetic, modality="m7")
    with pytest.raises(ValueError, match="only for 'unimodal'"):
        methods.build("joint", synthetic, modality="m0")


def test_alpha_zero_without_ge_leaves_every_gradient_alone(synthetic):
    torch.manual_seed(0)
    method = _pretrained_joint(synthetic)
    method.alpha, method.gaussian = 0.0, False
    step = method.training_step(_batch(synthetic), _ctx())
    assert step.logs["coeff_m0"] == 1 and step.logs["coeff_m1"] == 1
    step.loss.backward()
    before = _grads(method)
    method.after_backward(_ctx())
    assert all(torch.equal(g, before[k]) for k, g in _grads(method).items())


def test_every_method_declares_its_fusion_heads_and_tasks():
    known = {*FUSIONS, "moe", "token"}
    for name, cls in REGISTRY.items():
        assert cls.fusions and set(cls.fusions) <= known, name
        assert cls.tasks and set(cls.tasks) <= {"classification", "regression"}, name


def test_constructor_checks_fusion_and_task_against_the_declaration(synthetic):
    with pytest.raises(ValueError, match="LateFusionTraining supports fusion late, sum; the model's is 'concat'"):
        LateFusionTraining(build_model(synthetic, fusion="concat"))
    with pytest.raises(ValueError, match="QMF supports task classification; got 'regression'"):
        methods.QMF(build_model(synthetic, fusion="late"), task="regression")


def test_fusion_heads_expose_name_and_num_classes():
    for kind in FUSIONS:
        head = make_fusion(kind, {"a": 4, "b": 2}, num_classes=5)
        assert head.name == kind and head.num_classes == 5
        logits, _ = head({"a": torch.zeros(3, 4), "b": torch.zeros(3, 2)})
        assert logits.shape == (3, head.num_classes)
