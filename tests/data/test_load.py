"""mmrepro.data.load: datasets by name, with their options."""

from __future__ import annotations

import pytest

from mmrepro.data import DATASETS, load


def test_load_by_name_and_unknown_dataset_lists_valid():
    assert load("synthetic", sizes=(10, 5, 5)).name == "synthetic"
    with pytest.raises(ValueError) as err:
        load("cifar")
    assert "cifar" in str(err.value) and all(name in str(err.value) for name in DATASETS)


def test_load_passes_options_to_the_loader():
    assert load("synthetic", sizes=(10, 5, 5), levels=(1.0, 1.0, 1.0)).modalities == ("m0", "m1", "m2")
    assert {"av_digits", "mfeat", "synthetic", "mosi", "ave"} <= set(DATASETS)
