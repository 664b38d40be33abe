"""AV-Digits: spoken digits (FSDD) paired with handwritten digits (MNIST test set).

Each of the 3,000 FSDD recordings gets a distinct MNIST test image of the same
digit (a fixed-seed pairing, AV-MNIST style).  Two splits:

- ``split="recording"`` (default) follows FSDD's own convention by recording
  index: 0-4 test, 5-49 train, and a validation split carved from train by
  index (default 5-9), so model selection never sees test.  Every speaker
  appears in every split.
- ``split="speaker"`` holds speakers out: the test set is every clip of
  ``TEST_SPEAKERS`` (two of FSDD's six voices, 1,000 clips), validation every
  clip of ``VAL_SPEAKERS`` (one voice, 500 clips), and train the other three
  voices (1,500 clips), so test voices are never heard in training or model
  selection.  Two test voices rather than one keep the test set from measuring
  a single voice; preprocessing is the same (standardised on this split's train).

Metadata keys: ``_speaker`` (index into ``fsdd_speakers()``), ``_index`` (FSDD's
recording index) and ``_mnist_index`` (the paired MNIST test image).

Difficulty controls make the modality imbalance adjustable: ``image_noise``
(std of fixed per-image Gaussian pixel noise, pixels in [0, 1]) and
``audio_snr_db`` (white noise added to the waveform).  Preprocessed tensors
are cached on disk, keyed by a hash of every setting.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torchaudio
from scipy.io import wavfile

from .core import LABEL, DictDataset, Splits
from .download import DataError, cache_dir, cached_tensors, fsdd_source, locate, mnist_source

_NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")
PREPROCESSING_VERSION = 2  # 2: the cache file holds its tensors' checksum
SPLITS = ("recording", "speaker")
TEST_SPEAKERS = ("theo", "yweweler")
VAL_SPEAKERS = ("nicolas",)


@dataclass(frozen=True)
class AVDigitsConfig:
    """Every setting that changes the tensors; its hash keys the on-disk cache."""

    sample_rate: int = 8000
    num_samples: int = 7936  # clips zero-padded or cut to 0.99 s (31 hops + 1 = 32 frames)
    n_fft: int = 256
    hop_length: int = 256  # 32 frames per second of audio: a 1 x 32 x 32 log-mel input
    n_mels: int = 32
    image_noise: float = 0.0  # clean images: the fast, dominant modality
    audio_snr_db: float | None = 0.0  # noisy speech: the slow, weak modality
    val_indices: tuple[int, ...] = field(default=(5, 6, 7, 8, 9))
    pairing_seed: int = 0
    noise_seed: int = 1

    def __post_init__(self) -> None:
        if not _finite(self.image_noise) or self.image_noise < 0:
            raise ValueError(f"image_noise must be a finite number >= 0, got {self.image_noise!r}")
        if self.audio_snr_db is not None and not _finite(self.audio_snr_db):
            raise ValueError(f"audio_snr_db must be a finite number of dB (or None: no noise), got {self.audio_snr_db!r}")
        for name in ("sample_rate", "num_samples", "n_fft", "hop_length", "n_mels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        bad = [i for i in self.val_indices if not 5 <= i <= 49]
        if bad or not self.val_indices:
            raise ValueError(f"val_indices must be a non-empty subset of the training indices 5-49, got {bad or '()'}")

    def key(self) -> str:
        payload = json.dumps({**asdict(self), "version": PREPROCESSING_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (the MNIST format) into a uint8 array."""
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def read_mnist_test() -> tuple[torch.Tensor, torch.Tensor]:
    """The 10,000 MNIST test images (uint8, N x 28 x 28) and their labels (int64), located and verified."""
    folder = locate(mnist_source())
    images = torch.from_numpy(read_idx(folder / "t10k-images-idx3-ubyte.gz").copy())
    labels = torch.from_numpy(read_idx(folder / "t10k-labels-idx1-ubyte.gz").astype(np.int64))
    return images, labels


def fsdd_speakers() -> tuple[str, ...]:
    """FSDD's speaker names in sorted order (``_speaker`` indexes this tuple)."""
    return tuple(sorted({_NAME.match(Path(n).name).group(2) for n in fsdd_source().manifest}))


def _load_waveform(path: Path, cfg: AVDigitsConfig) -> np.ndarray:
    rate, wave = wavfile.read(path)
    if rate != cfg.sample_rate:
        raise DataError(f"{path} has sample rate {rate}, expected {cfg.sample_rate}")
    wave = wave.astype(np.float32) / 32768.0
    out = np.zeros(cfg.num_samples, dtype=np.float32)
    out[: min(len(wave), cfg.num_samples)] = wave[: cfg.num_samples]
    return out


def _add_white_noise(waves: torch.Tensor, snr_db: float, generator: torch.Generator) -> torch.Tensor:
    """White noise at a fixed signal-to-noise ratio per clip (signal power over its own length)."""
    power = waves.pow(2).mean(dim=1, keepdim=True).clamp_min(1e-10)
    noise = torch.randn(waves.shape, generator=generator)
    return waves + noise * torch.sqrt(power / 10 ** (snr_db / 10))


def _build(cfg: AVDigitsConfig) -> dict[str, torch.Tensor]:
    fsdd = locate(fsdd_source())
    names = sorted(fsdd_source().manifest)
    meta = [_NAME.match(Path(n).name) for n in names]
    if any(m is None for m in meta):
        raise DataError(f"unexpected FSDD file names, e.g. {next(n for n, m in zip(names, meta) if m is None)}")
    digits = torch.tensor([int(m.group(1)) for m in meta])
    speakers = sorted({m.group(2) for m in meta})
    speaker = torch.tensor([speakers.index(m.group(2)) for m in meta])
    index = torch.tensor([int(m.group(3)) for m in meta])

    waves = torch.from_numpy(np.stack([_load_waveform(fsdd / n, cfg) for n in names]))
    gen = torch.Generator().manual_seed(cfg.noise_seed)
    if cfg.audio_snr_db is not None:
        waves = _add_white_noise(waves, cfg.audio_snr_db, gen)
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels
    )
    audio = torch.log(mel(waves) + 1e-6).unsqueeze(1)  # (N, 1, n_mels, frames)

    images, labels = read_mnist_test()
    pair_gen = torch.Generator().manual_seed(cfg.pairing_seed)
    chosen = torch.empty(len(names), dtype=torch.long)
    for d in range(10):
        clips = (digits == d).nonzero().squeeze(1)
        pool = (labels == d).nonzero().squeeze(1)
        chosen[clips] = pool[torch.randperm(len(pool), generator=pair_gen)[: len(clips)]]
    image = images[chosen].float().div(255.0).unsqueeze(1)
    image = (image + cfg.image_noise * torch.randn(image.shape, generator=gen)).clamp(0.0, 1.0)
    return {"audio": audio, "image": image, LABEL: digits, "speaker": speaker, "index": index, "mnist_index": chosen}


def _cached(cfg: AVDigitsConfig) -> dict[str, torch.Tensor]:
    path = cache_dir() / "av_digits" / f"{cfg.key()}.pt"
    return cached_tensors(path, lambda: _build(cfg), f"AV-Digits with {cfg}")


def _speaker_mask(speaker: torch.Tensor, names: tuple[str, ...]) -> torch.Tensor:
    known = fsdd_speakers()
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(f"unknown or no speakers {unknown or '()'}; FSDD's speakers are {list(known)}")
    return torch.isin(speaker, torch.tensor([known.index(n) for n in names]))


def _split_masks(t: dict[str, torch.Tensor], cfg: AVDigitsConfig, split: str, test_speakers: tuple[str, ...],
                 val_speakers: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Boolean row masks of train, val and test for one split scheme."""
    if split == "recording":
        is_test = t["index"] < 5
        is_val = torch.isin(t["index"], torch.tensor(cfg.val_indices))
    elif split == "speaker":
        both = sorted(set(test_speakers) & set(val_speakers))
        if both:
            raise ValueError(f"a speaker cannot be both test and validation: {both}")
        is_test, is_val = _speaker_mask(t["speaker"], test_speakers), _speaker_mask(t["speaker"], val_speakers)
    else:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    return {"train": ~is_test & ~is_val, "val": is_val, "test": is_test}


def load_av_digits(config: AVDigitsConfig | None = None, split: str = "recording",
                   test_speakers: tuple[str, ...] = TEST_SPEAKERS, val_speakers: tuple[str, ...] = VAL_SPEAKERS,
                   **overrides) -> Splits:
    """The AV-Digits splits; ``overrides`` replace fields of the default config.

    ``split`` is ``"recording"`` (FSDD's index split) or ``"speaker"`` (held-out voices; see the module doc).
    The spectrogram is standardised with the training split's mean and std;
    images stay in [0, 1] so that corruptions can clip to the valid range.
    """
    cfg = config or AVDigitsConfig(**overrides)
    if config is not None and overrides:
        raise ValueError("pass either a config or keyword overrides, not both")
    t = _cached(cfg)
    parts = _split_masks(t, cfg, split, tuple(test_speakers), tuple(val_speakers))
    audio = t["audio"]
    mean, std = audio[parts["train"]].mean(), audio[parts["train"]].std()
    tensors = {"audio": (audio - mean) / std, "image": t["image"], LABEL: t[LABEL],
               "_speaker": t["speaker"], "_index": t["index"], "_mnist_index": t["mnist_index"]}
    full = DictDataset(tensors, ("audio", "image"))
    subsets = {k: full.subset(mask.nonzero().squeeze(1)) for k, mask in parts.items()}
    info = {"config": asdict(cfg), "split": split}
    if split == "speaker":
        info["speakers"] = {"test": list(test_speakers), "val": list(val_speakers)}
    return Splits(
        "av_digits" if split == "recording" else "av_digits_speaker", subsets["train"], subsets["val"], subsets["test"],
        num_classes=10, valid_range={"audio": None, "image": (0.0, 1.0)}, info=info,
    )
