"""Paired-image datasets: a plain folder loader (CASIA-SURF / NYUDv2 exports) and Digits-RGBD.

**Folder layout** (one subfolder per modality, the same file names in each,
split lists beside them)::

    root/
      rgb/   0001.png 0002.png ...
      depth/ 0001.png 0002.png ...
      ir/    ...
      train.txt  val.txt  test.txt      # lines "<file name> <integer label>"

Images are resized to ``size`` x ``size`` and scaled as in MWAM's official
code, ``(x - 127.5) / 128`` on 8-bit values (16-bit images are first mapped to
0-255).  Grey and 16-bit images give one channel, colour images three.

**Digits-RGBD** (our stand-in for the paper's RGB-D setting, built from the
MNIST test set): an "rgb" modality, a coloured digit stroke over random
high-frequency texture (low FRM), and a "depth" modality, a smooth height map
of the digit (Gaussian blur plus a random planar ramp, quantised to 8 bits;
high FRM).  By default depth is the clean, informative modality; the mismatch
fractions make either view uninformative for some samples whatever its spectrum,
so spectrum and informativeness can be crossed.  ``ir=True`` adds a third view,
"ir" (1 x side x side), an IR-like rendering with a spectrum between the other
two: the digit as a moderately blurred warm blob on a cool background, with the
row-wise fixed-pattern stripes and temporal noise of an uncooled sensor.  It is
drawn after the other two, so the rgb and depth views are the same with or
without it.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.functional import gaussian_blur

from .av_digits import read_mnist_test
from .core import LABEL, DictDataset, Splits, split_rows
from .download import DataError

SPLITS = ("train", "val", "test")


# ----------------------------------------------------------------------------- folder loader

def _read_split(path: Path) -> list[tuple[str, int]]:
    if not path.is_file():
        raise DataError(f"split list {path} is missing; a paired-image folder needs {', '.join(s + '.txt' for s in SPLITS)}")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DataError(f"{path}:{n}: expected '<file name> <integer label>', got {line!r}")
        rows.append((parts[0], int(parts[1])))
    if not rows:
        raise DataError(f"split list {path} is empty")
    return rows


def _read_image(path: Path, size: int) -> torch.Tensor:
    """One image as (C, size, size) float in [0, 255]."""
    if not path.is_file():
        raise DataError(f"paired image {path} is missing")
    with Image.open(path) as img:
        if img.mode in ("I;16", "I;16B", "I"):
            arr = np.asarray(img, dtype=np.float32) * (255.0 / 65535.0)
        elif img.mode in ("L", "RGB"):
            arr = np.asarray(img, dtype=np.float32)
        else:
            arr = np.asarray(img.convert("RGB"), dtype=np.float32)
    x = torch.from_numpy(arr.copy())
    x = x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)
    return F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False)[0]


def load_paired_folder(root: str | Path, modalities: Sequence[str] | None = None, size: int = 112,
                       name: str | None = None) -> Splits:
    """Splits from a paired-image folder; ``modalities`` defaults to every subfolder (sorted).

    ``size`` defaults to the paper's CASIA-SURF input side (112, a multiple of MWAM's p = 8).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"paired-image folder {root} does not exist")
    found = sorted(p.name for p in root.iterdir() if p.is_dir())
    modalities = tuple(modalities or found)
    unknown = [m for m in modalities if m not in found]
    if unknown or not modalities:
        raise DataError(f"modalities {unknown or '()'} have no subfolder in {root}; subfolders: {found}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    lists = {s: _read_split(root / f"{s}.txt") for s in SPLITS}
    labels = [y for rows in lists.values() for _, y in rows]
    if min(labels) < 0:
        raise DataError(f"labels must be >= 0, got {min(labels)}")
    parts = {}
    for split, rows in lists.items():
        tensors = {m: torch.stack([_read_image(root / m / f, size) for f, _ in rows]).sub(127.5).div(128.0) for m in modalities}
        tensors[LABEL] = torch.tensor([y for _, y in rows])
        parts[split] = DictDataset(tensors, modalities)
    bound = (-127.5 / 128.0, 127.5 / 128.0)
    return Splits(name or root.name, parts["train"], parts["val"], parts["test"], num_classes=max(labels) + 1,
                  valid_range={m: bound for m in modalities}, info={"root": str(root), "size": size})


# ----------------------------------------------------------------------------- Digits-RGBD

@functools.lru_cache(maxsize=1)
def _mnist() -> tuple[torch.Tensor, torch.Tensor]:
    """The MNIST test images (float in [0, 1]) and labels, read once per process (callers index copies)."""
    images, labels = read_mnist_test()
    return images.float().div(255.0), labels


def _hue_colours(n: int, gen: torch.Generator) -> torch.Tensor:
    """(n, 3) fully saturated RGB colours of uniformly random hue."""
    hue = torch.rand(n, 1, generator=gen) * 6.0
    k = (torch.tensor([5.0, 3.0, 1.0]) + hue) % 6.0
    return 1.0 - torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)


def _texture(n: int, side: int, gen: torch.Generator) -> torch.Tensor:
    """(n, 3, side, side) random oriented gratings at high spatial frequency, values in [0, 1]."""
    yy, xx = torch.meshgrid(torch.arange(side, dtype=torch.float32), torch.arange(side, dtype=torch.float32), indexing="ij")
    angle = torch.rand(n, 3, 1, 1, generator=gen) * math.pi
    freq = 0.35 + 0.4 * torch.rand(n, 3, 1, 1, generator=gen)  # periods of 2.7-5.7 pixels: high DCT bands of 8x8 blocks
    phase = torch.rand(n, 3, 1, 1, generator=gen) * 2 * math.pi
    wave = torch.sin(math.pi * freq * (xx * torch.cos(angle) + yy * torch.sin(angle)) + phase)
    return 0.5 + 0.5 * wave


def _depth_maps(digits: torch.Tensor, blur: float, ramp: float, gen: torch.Generator) -> torch.Tensor:
    """(n, 1, side, side) smooth height maps: blurred digit + planar ramp, rescaled to [0, 1], 8-bit quantised."""
    n, _, side, _ = digits.shape
    kernel = 2 * math.ceil(3 * blur) + 1
    height = gaussian_blur(digits, [kernel, kernel], [blur, blur])
    height = height / height.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-6)
    coords = torch.linspace(-1.0, 1.0, side)
    slope = (torch.rand(n, 2, 1, 1, generator=gen) * 2 - 1) * ramp
    plane = slope[:, :1] * coords.view(1, 1, 1, side) + slope[:, 1:] * coords.view(1, 1, side, 1)
    depth = height + plane
    low, high = depth.amin(dim=(-2, -1), keepdim=True), depth.amax(dim=(-2, -1), keepdim=True)
    return torch.round((depth - low) / (high - low).clamp_min(1e-6) * 255.0) / 255.0


#: the scalings of Digits-RGBD pixels: the official code's ``(x - 127.5) / 128`` on 8-bit values, or [0, 1]
SCALES = ("official", "unit")


def _ir_maps(digits: torch.Tensor, blur: float, noise: float, gen: torch.Generator) -> torch.Tensor:
    """(n, 1, side, side) IR-like views: a blurred warm digit (0.8) on a cool background (0.3, random offset),
    per-row fixed-pattern offsets (std ``noise / 2``) and pixel noise (std ``noise``), clipped and 8-bit quantised."""
    n, _, side, _ = digits.shape
    kernel = 2 * math.ceil(3 * blur) + 1
    heat = gaussian_blur(digits, [kernel, kernel], [blur, blur])
    heat = heat / heat.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-6)
    background = 0.3 + 0.1 * (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1)
    stripes = 0.5 * noise * torch.randn(n, 1, side, 1, generator=gen)
    ir = background + (0.8 - background) * heat + stripes + noise * torch.randn(n, 1, side, side, generator=gen)
    return torch.round(ir.clamp(0.0, 1.0) * 255.0) / 255.0


def _mismatched(n: int, fraction: float, gen: torch.Generator) -> torch.Tensor:
    """Row indices: each row itself, or (with probability ``fraction``) a random row, so its label is lost."""
    source = torch.arange(n)
    swap = torch.rand(n, generator=gen) < fraction
    source[swap] = torch.randint(n, (int(swap.sum()),), generator=gen)
    return source


def make_digit_depth(sizes: tuple[int, int, int] = (3000, 1000, 2000), side: int = 32, rgb_noise: float = 0.4,
                     rgb_mismatch: float = 0.0, depth_mismatch: float = 0.0, depth_blur: float = 2.0,
                     depth_ramp: float = 0.5, scale: str = "official", ir: bool = False, ir_mismatch: float = 0.0,
                     ir_blur: float = 1.0, ir_noise: float = 0.01, seed: int = 0) -> Splits:
    """Digits-RGBD: "rgb" (3 x side x side, high-frequency) and "depth" (1 x side x side, low-frequency) views.

    ``ir=True`` adds "ir" (1 x side x side, between the two): blur ``ir_blur``, noise ``ir_noise``, a fraction
    ``ir_mismatch`` of its samples showing another image.

    Informativeness is set apart from the spectrum: ``rgb_mismatch`` / ``depth_mismatch`` is the fraction of
    samples whose view shows a random other image, ``rgb_noise`` the Gaussian pixel noise over the texture.
    ``scale="official"`` maps 8-bit values by ``(x - 127.5) / 128`` (about [-1, 1]); ``"unit"`` keeps [0, 1].
    """
    for name, value in (("rgb_mismatch", rgb_mismatch), ("depth_mismatch", depth_mismatch),
                        ("ir_mismatch", ir_mismatch)):
        if not 0 <= value <= 1:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    for name, value in (("rgb_noise", rgb_noise), ("ir_noise", ir_noise)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if ir_blur <= 0:
        raise ValueError(f"ir_blur must be > 0, got {ir_blur}")
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; valid: {', '.join(SCALES)}")
    if side < 28 or side % 8:
        raise ValueError(f"side must be a multiple of 8 that fits a 28-pixel digit (32, 40, ...), got {side}")
    images, labels = _mnist()
    if sum(sizes) > len(images) or min(sizes) < 1:
        raise ValueError(f"sizes {sizes} must be positive and sum to at most {len(images)} (the MNIST test set)")
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(images), generator=gen)[: sum(sizes)]
    pad = (side - 28) // 2
    digits = F.pad(images[idx].unsqueeze(1), (pad, side - 28 - pad, pad, side - 28 - pad))
    n = len(idx)

    depth = _depth_maps(digits[_mismatched(n, depth_mismatch, gen)], depth_blur, depth_ramp, gen)
    strokes = digits[_mismatched(n, rgb_mismatch, gen)]
    stroke = strokes * _hue_colours(n, gen).view(n, 3, 1, 1)
    background = 0.5 * _texture(n, side, gen) + rgb_noise * torch.randn(n, 3, side, side, generator=gen)
    rgb = torch.round((stroke + (1 - strokes) * background).clamp(0.0, 1.0) * 255.0) / 255.0  # 8-bit, as depth
    views = {"rgb": rgb, "depth": depth}
    if ir:  # drawn last: the other views do not depend on it
        views["ir"] = _ir_maps(digits[_mismatched(n, ir_mismatch, gen)], ir_blur, ir_noise, gen)
    bound = (0.0, 1.0)
    if scale == "official":
        views = {m: (v * 255.0 - 127.5) / 128.0 for m, v in views.items()}
        bound = (-127.5 / 128.0, 127.5 / 128.0)

    mods = tuple(views)
    parts = split_rows({**views, LABEL: labels[idx], "_index": idx}, mods, sizes)
    info = {"sizes": sizes, "side": side, "rgb_noise": rgb_noise, "rgb_mismatch": rgb_mismatch,
            "depth_mismatch": depth_mismatch, "depth_blur": depth_blur, "depth_ramp": depth_ramp, "scale": scale,
            "seed": seed}
    if ir:
        info.update(ir_mismatch=ir_mismatch, ir_blur=ir_blur, ir_noise=ir_noise)
    return Splits("digits_rgbd", *parts, num_classes=10, valid_range={m: bound for m in mods}, info=info)
