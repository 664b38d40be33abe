"""The baselines chapter's corrupted-weight measure, on a toy method whose weights are known."""

import pytest
import torch

from mmrepro.data import make_synthetic
from mmrepro.measures.baselines import corrupted_weight
from mmrepro.methods import Joint
from mmrepro.models import build_model
from mmrepro.models.multimodal import Output


class InverseVariance(Joint):
    """A fusion weight per modality of 1 / (1 + the input's variance): noise must lower it."""

    def predict(self, batch):
        out = self.model(batch)
        weights = {m: 1 / (1 + batch[m].float().var(dim=1)) for m in self.modalities if m in batch}
        return Output(out.logits, out.unimodal_logits, out.features, weights)


@pytest.fixture
def splits():
    return make_synthetic(levels=(2.0, 1.0), sizes=(40, 20, 30))


def test_the_weight_of_a_noised_modality_drops(splits):
    metrics, items = corrupted_weight(InverseVariance(build_model(splits)), splits, std=2.0)
    for m in splits.modalities:
        assert metrics[f"weight_corrupted_{m}"] < metrics[f"weight_clean_{m}"]
        assert len(items[f"weight_drop_{m}"]) == 30
    assert metrics["weight_drop"] == pytest.approx(sum(items["weight_drop"]) / 30)
    assert metrics["weight_drop"] > 0


def test_the_noise_draw_is_the_same_for_every_call(splits):
    method = InverseVariance(build_model(splits))
    assert corrupted_weight(method, splits)[1] == corrupted_weight(method, splits)[1]


def test_a_method_without_fusion_weights_is_refused(splits):
    with pytest.raises(ValueError, match="reports no fusion weight"):
        corrupted_weight(Joint(build_model(splits)), splits)
    with pytest.raises(ValueError, match="std must be > 0"):
        corrupted_weight(InverseVariance(build_model(splits)), splits, std=0.0)
