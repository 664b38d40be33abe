"""The hook interface, the joint and late-fusion baselines, the registry and the fusion/task declarations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmrepro import methods
from mmrepro.methods import REGISTRY, Joint, LateFusionTraining, Method, fusion_name, task_loss
from mmrepro.models import FUSIONS, build_model, make_fusion

from .helpers import batch as _batch
from .helpers import ctx as _ctx
from .helpers import grads as _grads


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
