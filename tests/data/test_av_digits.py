"""AV-Digits on the real files: pairing, splits (by recording and by speaker), value ranges, cache, errors."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest
import torch

from mmrepro.data import av_digits as avd


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
