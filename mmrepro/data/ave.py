"""AVE (Audio-Visual Event localisation, Tian et al., ECCV 2018) in the layout of the OGM-GE/PMR line.

AVE cannot be downloaded here; this reads a local copy laid out as those repositories
prepare it::

    root/
      trainSet.txt valSet.txt testSet.txt   lines "Category&VideoID&Quality&StartTime&EndTime"
      audio_spec/<VideoID>.npy | .pkl       log-STFT spectrogram, (freq, time) float array
      visual/<VideoID>/*.jpg                frames extracted at 1 fps

The official 3,339 / 402 / 402 train / val / test lists give 28 event classes
(sorted category names).  ``audio`` is (1, freq, ``audio_frames``) (cut or
zero-padded in time); ``visual`` is ``num_frames`` evenly spaced frames resized
to ``image_size``, stacked on the channel axis (3 x num_frames, H, W), in [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import safe_pickle
from .core import LABEL, DictDataset, Splits
from .download import DataError

SPLIT_FILES = {"train": "trainSet.txt", "val": "valSet.txt", "test": "testSet.txt"}


def read_split(path: Path) -> list[tuple[str, str]]:
    """(category, video id) pairs of one AVE split file; a header line is skipped."""
    if not path.is_file():
        raise DataError(f"AVE split file {path} not found; expected {', '.join(SPLIT_FILES.values())} in the root")
    rows = []
    for line in path.read_text().splitlines():
        parts = line.strip().split("&")
        if not line.strip() or parts[0] == "Category":
            continue
        if len(parts) < 2:
            raise DataError(f"{path}: line {line!r} is not 'Category&VideoID&Quality&StartTime&EndTime'")
        rows.append((parts[0], parts[1]))
    return rows


def load_spectrogram(folder: Path, video: str, audio_frames: int) -> torch.Tensor:
    """One clip's spectrogram as (1, freq, audio_frames), from .npy (no pickles allowed) or a pickled array
    (read by ``safe_pickle``: arrays and scalars only, so a crafted file cannot run code)."""
    npy, pkl = folder / f"{video}.npy", folder / f"{video}.pkl"
    if npy.is_file():
        spec = np.load(npy)
    elif pkl.is_file():
        spec = np.asarray(safe_pickle.load(pkl))
    else:
        raise DataError(f"no spectrogram for video {video}: expected {npy} or {pkl}")
    if spec.ndim != 2:
        raise DataError(f"spectrogram of {video} must be 2-D (freq, time), got shape {spec.shape}")
    out = np.zeros((spec.shape[0], audio_frames), dtype=np.float32)
    t = min(audio_frames, spec.shape[1])
    out[:, :t] = spec[:, :t]
    return torch.from_numpy(out).unsqueeze(0)


def load_frames(folder: Path, num_frames: int, image_size: int) -> torch.Tensor:
    """``num_frames`` evenly spaced frames of one video, (3 x num_frames, S, S) in [0, 1]."""
    files = sorted(folder.glob("*.jpg"))
    if not files:
        raise DataError(f"no frames (*.jpg) in {folder}")
    picks = np.linspace(0, len(files) - 1, num_frames).round().astype(int)
    frames = []
    for i in picks:
        with Image.open(files[i]) as img:
            arr = np.asarray(img.convert("RGB").resize((image_size, image_size)), dtype=np.float32) / 255.0
        frames.append(torch.from_numpy(arr).permute(2, 0, 1))
    return torch.cat(frames)


def load_ave(root: str | Path, num_frames: int = 1, image_size: int = 224, audio_frames: int = 1004) -> Splits:
    """The AVE splits from a local copy at ``root`` (see the module docstring for the layout)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"AVE root {root} does not exist; AVE cannot be downloaded here, supply a local copy")
    if num_frames < 1 or image_size < 1 or audio_frames < 1:
        raise ValueError("num_frames, image_size and audio_frames must be >= 1, "
                         f"got {num_frames}, {image_size}, {audio_frames}")
    lists = {k: read_split(root / f) for k, f in SPLIT_FILES.items()}
    classes = sorted({c for rows in lists.values() for c, _ in rows})
    parts = {}
    for split, rows in lists.items():
        if not rows:
            raise DataError(f"AVE split {split} ({root / SPLIT_FILES[split]}) is empty")
        audio = torch.stack([load_spectrogram(root / "audio_spec", v, audio_frames) for _, v in rows])
        visual = torch.stack([load_frames(root / "visual" / v, num_frames, image_size) for _, v in rows])
        labels = torch.tensor([classes.index(c) for c, _ in rows])
        parts[split] = DictDataset({"audio": audio, "visual": visual, LABEL: labels}, ("audio", "visual"))
    return Splits("ave", parts["train"], parts["val"], parts["test"], num_classes=len(classes),
                  valid_range={"audio": None, "visual": (0.0, 1.0)}, info={"classes": classes, "root": str(root)})
