"""The tri-modal regression data: its instance variant and the modalities it keeps."""

from __future__ import annotations

import pytest
import torch

from mmrepro.data.many_modalities import make_trimodal_regression


def test_instance_variant_marks_its_informative_examples():
    splits = make_trimodal_regression("instance", sizes=(400, 100, 100), informative_fraction=0.3)
    assert splits.modalities == ("strong", "weak", "partial")
    assert 0.2 < splits.train.tensors["_informative"].float().mean() < 0.4
    assert splits.train.tensors["label"].abs().max() <= 3
    with pytest.raises(ValueError, match="variant"):
        make_trimodal_regression("shuffle")


def test_trimodal_regression_keeps_the_named_modalities_with_identical_values():
    full = make_trimodal_regression("noise", sizes=(50, 20, 20), seed=3)
    two = make_trimodal_regression("noise", sizes=(50, 20, 20), seed=3, keep=["strong", "weak"])
    assert two.modalities == ("strong", "weak")
    assert torch.equal(two.test.tensors["weak"], full.test.tensors["weak"])
    with pytest.raises(ValueError, match="keep must name some of"):
        make_trimodal_regression("noise", keep=["video"])
