"""make_synthetic: information set by the levels, seeding, regression targets, errors."""

from __future__ import annotations

import pytest
import torch

from mmrepro.data import make_synthetic


def _centroid_accuracy(x: torch.Tensor, y: torch.Tensor, k: int) -> float:
    centroids = torch.stack([x[y == c].mean(0) for c in range(k)])
    return (torch.cdist(x, centroids).argmin(1) == y).float().mean().item()


def test_synthetic_levels_set_information():
    s = make_synthetic(levels=(4.0, 0.0), dim=16, num_classes=4, sizes=(600, 100, 100), seed=1)
    assert (len(s.train), len(s.val), len(s.test)) == (600, 100, 100)
    assert s.modalities == ("m0", "m1") and s.num_classes == 4
    x, y = s.train.tensors, s.train.tensors["label"]
    assert _centroid_accuracy(x["m0"], y, 4) > 0.9
    assert _centroid_accuracy(x["m1"], y, 4) < 0.45  # level 0 is pure noise: near chance (0.25)


def test_synthetic_is_seeded_and_regression_target_is_sum_of_latents():
    a, b = make_synthetic(seed=5, sizes=(20, 5, 5)), make_synthetic(seed=5, sizes=(20, 5, 5))
    assert torch.equal(a.train.tensors["m0"], b.train.tensors["m0"])
    r = make_synthetic(levels=(1.0, 1.0, 1.0), task="regression", sizes=(50, 10, 10))
    assert r.task == "regression" and r.num_classes == 1 and r.train.tensors["label"].shape == (50, 1)
    assert r.modalities == ("m0", "m1", "m2")


@pytest.mark.parametrize("kwargs, match", [
    ({"levels": ()}, "at least one"),
    ({"levels": (1.0, -1.0)}, ">= 0"),
    ({"task": "ranking"}, "'classification', 'regression'"),
])
def test_synthetic_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_synthetic(**kwargs)
