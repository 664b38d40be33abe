"""The batch dict and datasets: DictDataset, Splits, loaders, synthetic data and AV-Digits (real files)."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest
import torch

from mmrepro.data import DATASETS, DictDataset, load, make_synthetic, train_loader
from mmrepro.data import av_digits as avd
from mmrepro.data.core import iterate


def _toy(n: int = 10) -> DictDataset:
    tensors = {"a": torch.arange(n * 2.0).view(n, 2), "b": torch.randn(n, 3), "label": torch.arange(n)}
    return DictDataset(tensors, ("a", "b"))


# --- DictDataset, Splits, loaders -------------------------------------------------


def test_getitems_matches_getitem():
    ds = _toy()
    batch = ds.__getitems__([3, 1, 7])
    for key in ("a", "b", "label"):
        assert torch.equal(batch[key], torch.stack([ds[i][key] for i in (3, 1, 7)]))


def test_subset_copies_and_select_keeps_meta():
    ds = _toy()
    sub = ds.subset([0, 2])
    sub.tensors["a"][0, 0] = -1.0
    assert ds.tensors["a"][0, 0] == 0.0, "subset must copy, not view"
    only_a = ds.select(["a"])
    assert only_a.modalities == ("a",) and "b" not in only_a.tensors and "label" in only_a.tensors
    extra = ds.with_tensors(c=torch.zeros(10, 1))
    assert extra.modalities == ("a", "b", "c")


def test_dictdataset_errors_name_the_problem():
    with pytest.raises(KeyError, match="label"):
        DictDataset({"a": torch.zeros(3)}, ("a",))
    with pytest.raises(KeyError, match=r"\['b'\]"):
        DictDataset({"a": torch.zeros(3), "label": torch.zeros(3)}, ("a", "b"))
    with pytest.raises(ValueError, match="same length"):
        DictDataset({"a": torch.zeros(3), "label": torch.zeros(4)}, ("a",))
    with pytest.raises(KeyError, match="unknown modalities"):
        _toy().select(["zzz"])


def test_splits_select_and_split_names(synthetic):
    one = synthetic.select(["m1"])
    assert one.modalities == ("m1",) and one.input_shapes() == {"m1": (8,)}
    assert len(one.test) == len(synthetic.test)
    with pytest.raises(ValueError, match="'train', 'val', 'test'"):
        synthetic.split("dev")


def test_global_batch_is_the_same_for_one_and_two_processes():
    ds = _toy(16)
    one, sampler = train_loader(ds, batch_size=4, seed=3)
    sampler.set_epoch(1)
    ranks = []
    for rank in (0, 1):
        loader, s = train_loader(ds, batch_size=4, seed=3, rank=rank, world_size=2)
        s.set_epoch(1)
        ranks.append(list(loader))
    for step, batch in enumerate(one):
        merged = torch.cat([ranks[0][step]["label"], ranks[1][step]["label"]])
        assert sorted(merged.tolist()) == sorted(batch["label"].tolist())
    with pytest.raises(ValueError, match="divisible"):
        train_loader(ds, batch_size=5, seed=0, world_size=2)


def test_iterate_covers_every_example_in_order():
    ds = _toy(10)
    assert torch.equal(torch.cat([b["label"] for b in iterate(ds, batch_size=4)]), torch.arange(10))


# --- synthetic ----------------------------------------------------------------------


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


def test_load_by_name_and_unknown_dataset_lists_valid():
    assert load("synthetic", sizes=(10, 5, 5)).name == "synthetic"
    with pytest.raises(ValueError) as err:
        load("cifar")
    assert "cifar" in str(err.value) and all(name in str(err.value) for name in DATASETS)


# --- AV-Digits (the real files) -----------------------------------------------------


def _mnist_labels() -> torch.Tensor:
    path = os.path.join(os.environ["MMREPRO_DATA_DIR"], "mnist", "t10k-labels-idx1-ubyte.gz")
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=8).astype(np.int64))


def _all(splits, key: str) -> torch.Tensor:
    return torch.cat([splits.train.tensors[key], splits.val.tensors[key], splits.test.tensors[key]])


def test_av_digits_pairs(av_digits):
    s = av_digits
    assert (len(s.train), len(s.val), len(s.test)) == (2400, 300, 300)
    assert s.modalities == ("audio", "image") and s.num_classes == 10
    assert s.input_shapes() == {"audio": (1, 32, 32), "image": (1, 28, 28)}
    chosen = _all(s, "mnist_index")
    assert len(chosen.unique()) == 3000, "every recording must get a distinct MNIST image"
    assert torch.equal(_mnist_labels()[chosen], _all(s, "label")), "image digit must equal the spoken digit"
    assert torch.bincount(_all(s, "label")).tolist() == [300] * 10


def test_av_digits_splits_follow_recording_index(av_digits):
    s = av_digits
    assert set(s.test.tensors["index"].tolist()) == set(range(5))
    assert set(s.val.tensors["index"].tolist()) == set(range(5, 10))
    assert set(s.train.tensors["index"].tolist()) == set(range(10, 50))


def test_av_digits_value_ranges(av_digits):
    image, audio = av_digits.train.tensors["image"], av_digits.train.tensors["audio"]
    assert image.min() >= 0 and image.max() <= 1 and av_digits.valid_range["image"] == (0.0, 1.0)
    assert audio.mean().abs() < 1e-3 and (audio.std() - 1).abs() < 1e-3  # standardised on train


def test_av_digits_cache_is_reused(av_digits, monkeypatch):
    def no_rebuild(cfg):
        raise AssertionError("the cached tensors should have been loaded, not rebuilt")

    monkeypatch.setattr(avd, "_build", no_rebuild)
    again = avd.load_av_digits()
    assert torch.equal(again.test.tensors["image"], av_digits.test.tensors["image"])


def test_av_digits_cache_is_keyed_by_settings(av_digits, private_cache, monkeypatch):
    default_file = private_cache / "av_digits" / f"{avd.AVDigitsConfig().key()}.pt"
    real = torch.load(default_file, weights_only=True)["tensors"]
    calls = []

    def fake_build(cfg):
        calls.append(cfg)
        return real

    monkeypatch.setattr(avd, "_build", fake_build)
    avd.load_av_digits(image_noise=0.123)
    avd.load_av_digits(image_noise=0.123)
    assert len(calls) == 1 and calls[0].image_noise == 0.123
    other = private_cache / "av_digits" / f"{avd.AVDigitsConfig(image_noise=0.123).key()}.pt"
    assert other.is_file() and other != default_file
    moved = avd.load_av_digits(val_indices=(10, 11))  # the validation split is a setting too
    assert set(moved.val.tensors["index"].tolist()) == {10, 11} and len(moved.val) == 2 * 60
    assert len(calls) == 2


@pytest.mark.parametrize("kwargs, match", [
    ({"image_noise": -0.1}, "image_noise must be a finite number >= 0, got -0.1"),
    ({"image_noise": float("nan")}, "image_noise must be a finite number >= 0, got nan"),
    ({"audio_snr_db": float("nan")}, "audio_snr_db must be a finite number of dB"),
    ({"audio_snr_db": float("-inf")}, "audio_snr_db must be a finite number of dB"),
    ({"n_mels": 0}, "n_mels must be an integer >= 1"),
    ({"val_indices": (2, 3)}, "val_indices"),
    ({"val_indices": ()}, "val_indices"),
])
def test_av_digits_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        avd.AVDigitsConfig(**kwargs)


def test_av_digits_config_and_overrides_are_exclusive():
    with pytest.raises(ValueError, match="not both"):
        avd.load_av_digits(avd.AVDigitsConfig(), image_noise=0.5)


def test_subsample_train(synthetic):
    small = synthetic.subsample_train(10, seed=1)
    assert len(small.train) == 10 and len(small.val) == len(synthetic.val) and len(small.test) == len(synthetic.test)
    assert torch.equal(small.train.tensors["m0"], synthetic.subsample_train(10, seed=1).train.tensors["m0"])
    rows = [r.tolist() for r in synthetic.train.tensors["m0"]]
    assert all(r.tolist() in rows for r in small.train.tensors["m0"])
    with pytest.raises(ValueError, match="1..96"):
        synthetic.subsample_train(97)
