"""CREMA-D and Kinetics-Sounds loaders on tiny fixture folders written by the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import wavfile

from mmrepro.data import DataError
from mmrepro.data.av_datasets import AVConfig, load_cremad, load_kinetics_sounds, read_audio

SMALL = dict(sample_rate=8000, duration=0.5, n_fft=64, hop_length=32, image_size=16)


def _wav(path: Path, seconds: float = 0.3, rate: int = 16000, freq: float = 440.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    wavfile.write(path, rate, (0.5 * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16))


def _frames(folder: Path, n: int, value: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((20, 24, 3), value, dtype=np.uint8)).save(folder / f"{i:03d}.jpg")


@pytest.fixture
def cremad_root(tmp_path: Path) -> Path:
    labels = ["NEU", "HAP", "SAD", "FEA", "DIS", "ANG"]
    for split, n in (("train", 12), ("test", 6)):
        rows = []
        for i in range(n):
            clip = f"10{i:02d}_{split}_{labels[i % 6]}_XX"
            rows.append(f"{clip},{labels[i % 6]}")
            _wav(tmp_path / "AudioWAV" / f"{clip}.wav", freq=200 + 100 * (i % 6))
            _frames(tmp_path / "Image-01-FPS" / clip, 2, 40 * (i % 6))
        (tmp_path / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def test_cremad_loads_standardised_audio_and_frames(cremad_root: Path):
    splits = load_cremad(cremad_root, **SMALL, val_fraction=0.25)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (9, 3, 6)
    assert splits.num_classes == 6 and splits.modalities == ("audio", "image")
    shapes = splits.input_shapes()
    assert shapes["image"] == (3, 16, 16) and shapes["audio"][0] == 1
    train_audio = torch.cat([splits.train.tensors["audio"], splits.val.tensors["audio"]])
    assert abs(train_audio.mean().item()) < 1e-4 and train_audio.std().item() == pytest.approx(1.0, abs=1e-3)
    image = splits.test.tensors["image"]
    assert image.min() >= 0 and image.max() <= 1 and splits.valid_range["image"] == (0.0, 1.0)
    labels = splits.test.tensors["label"]
    assert torch.equal(labels, torch.arange(6))  # NEU HAP SAD FEA DIS ANG -> 0..5, in file order
    assert image[labels == 3].mean().item() == pytest.approx(120 / 255, abs=0.02)  # frames of clip 3 have value 120


def test_missing_root_names_the_layout(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("MMREPRO_CREMAD_DIR", raising=False)
    with pytest.raises(DataError, match="AudioWAV"):
        load_cremad(tmp_path / "nowhere")
    with pytest.raises(DataError, match="train.csv"):
        load_cremad(tmp_path)  # exists but empty
    with pytest.raises(DataError, match="class.txt"):
        load_kinetics_sounds(tmp_path)


def test_cremad_rejects_unknown_labels(cremad_root: Path):
    (cremad_root / "test.csv").write_text("1000_test_NEU_XX,CALM\n")
    with pytest.raises(DataError, match="unknown label 'CALM'"):
        load_cremad(cremad_root, **SMALL)


def test_kinetics_sounds_drops_short_clips_and_stacks_frames(tmp_path: Path):
    classes = ["playing bass guitar", "tap dancing"]
    (tmp_path / "class.txt").write_text(",".join(classes))
    for a_split, v_split in (("train", "train_img"), ("test", "val_img")):
        for c, name in enumerate(classes):
            name = name.replace(" ", "_")
            for v in range(3):
                video = f"vid{c}{v}"
                _wav(tmp_path / "audio" / a_split / name / f"{video}.wav", seconds=0.2)
                _frames(tmp_path / "visual" / v_split / "Image-01-FPS" / name / video, 2 if v == 0 else 3, 100)
    splits = load_kinetics_sounds(tmp_path, **SMALL, val_fraction=0.25)
    assert splits.num_classes == 2 and splits.info["classes"] == ["playing_bass_guitar", "tap_dancing"]
    assert len(splits.test) == 4  # the two-frame videos are dropped (fewer than 3 frames)
    assert splits.input_shapes()["image"] == (9, 16, 16)  # 3 frames x RGB on channels


def test_read_audio_tiles_short_clips(tmp_path: Path):
    _wav(tmp_path / "a.wav", seconds=0.1, rate=8000)
    spec = read_audio(tmp_path / "a.wav", AVConfig(**SMALL))
    assert spec.shape == (1, 33, 4000 // 32 + 1) and torch.isfinite(spec).all()
