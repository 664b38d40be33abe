"""Corruptions as transforms on the batch dict, one modality at a time.

They draw from the global RNG of the tensor's device, so they run where the
batch lives; callers that need the same corruption twice (evaluation sweeps)
wrap them in ``torch.random.fork_rng`` with a seed (see ``mmrepro.evaluate``).
Values are clipped to the modality's valid range when one is given.

``GradedNoise`` (at the end) is graded Gaussian noise on the inputs: UDML's training
corruption, with its level as a label.

Levels run from 1 (clean) to ``levels`` (the input replaced by noise), as in
the official UDML code.  A level maps to a standard deviation per modality,
``std_m(k) = scale_m * ((k - 1) / (levels - 1)) ** power_m``, so ``power=2``
mirrors the code's quadratic image scale and ``power=1`` its linear audio
scale.  Noisy values are clipped to the modality's valid range (the released
code let negative pixels wrap around; this is the fix).  Levels are drawn per
sample from the global RNG of the batch's device, every time (the released
code fixed them once per dataset and re-seeded its audio RNG on every call).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping, Sequence

import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor

from .core import Batch, DictDataset, Splits, Transform
from .shortcut_prompts import TokenMask, TokenReplace

Range = tuple[float, float] | None


def _clip(x: Tensor, valid_range: Range) -> Tensor:
    return x if valid_range is None else x.clamp(*valid_range)


def _per_sample(value: float | Tensor, x: Tensor) -> Tensor | float:
    """Broadcast a per-sample tensor of shape (B,) against ``x``; floats pass through."""
    if isinstance(value, Tensor):
        if value.shape != (x.shape[0],):
            raise ValueError(f"per-sample level must have shape ({x.shape[0]},), got {tuple(value.shape)}")
        return value.to(x).view(-1, *([1] * (x.dim() - 1)))
    return value


@dataclass
class Corruption:
    """Base: replaces ``batch[modality]`` by ``self.apply(batch[modality])``."""

    modality: str

    def __call__(self, batch: Batch) -> Batch:
        if self.modality not in batch:
            raise KeyError(f"cannot corrupt {self.modality!r}: the batch has {sorted(batch)}")
        return {**batch, self.modality: self.apply(batch[self.modality])}

    def apply(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass
class GaussianNoise(Corruption):
    """Additive zero-mean Gaussian noise; ``std`` may be one value per sample."""

    std: float | Tensor = 0.0
    valid_range: Range = None

    def apply(self, x: Tensor) -> Tensor:
        return _clip(x + _per_sample(self.std, x) * torch.randn_like(x), self.valid_range)


@dataclass
class Blur(Corruption):
    """Gaussian blur over the last two axes (image or spectrogram); ``sigma`` 0 is identity."""

    sigma: float = 1.0

    def apply(self, x: Tensor) -> Tensor:
        if self.sigma <= 0:
            return x
        size = 2 * int(3 * self.sigma) + 1
        return TF.gaussian_blur(x, kernel_size=[size, size], sigma=[self.sigma, self.sigma])


@dataclass
class Occlusion(Corruption):
    """A square patch covering ``fraction`` of each side, at a random place per sample, set to ``fill``."""

    fraction: float = 0.25
    fill: float = 0.0

    def apply(self, x: Tensor) -> Tensor:
        if not 0 <= self.fraction <= 1:
            raise ValueError(f"occlusion fraction must lie in [0, 1], got {self.fraction}")
        h, w = x.shape[-2:]
        ph, pw = round(self.fraction * h), round(self.fraction * w)
        top = (torch.rand(x.shape[0], device=x.device) * (h - ph + 1)).floor().view(-1, 1, 1)
        left = (torch.rand(x.shape[0], device=x.device) * (w - pw + 1)).floor().view(-1, 1, 1)
        rows = torch.arange(h, device=x.device).view(1, -1, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, -1)
        box = (rows >= top) & (rows < top + ph) & (cols >= left) & (cols < left + pw)
        return torch.where(box.view(x.shape[0], *([1] * (x.dim() - 3)), h, w), torch.full_like(x, self.fill), x)


@dataclass
class SaltPepper(Corruption):
    """A fraction ``density`` of entries set to the low or high end of the range (half each)."""

    density: float = 0.1
    valid_range: Range = None

    def apply(self, x: Tensor) -> Tensor:
        if not 0 <= self.density <= 1:
            raise ValueError(f"salt-and-pepper density must lie in [0, 1], got {self.density}")
        flat = x.flatten(1)
        lo, hi = self.valid_range or (flat.amin(1).view(-1, *([1] * (x.dim() - 1))), flat.amax(1).view(-1, *([1] * (x.dim() - 1))))
        u = torch.rand_like(x)
        x = torch.where(u < self.density / 2, lo, x)
        return torch.where(u > 1 - self.density / 2, hi, x)


@dataclass
class MissingModality(Corruption):
    """The modality is absent: zeroed (``mode="zero"``) or removed from the batch (``"drop"``)."""

    mode: Literal["zero", "drop"] = "zero"

    def __call__(self, batch: Batch) -> Batch:
        if self.mode not in ("zero", "drop"):
            raise ValueError(f"unknown missing-modality mode {self.mode!r}; valid: 'zero', 'drop'")
        if self.modality not in batch:
            raise KeyError(f"cannot remove {self.modality!r}: the batch has {sorted(batch)}")
        if self.mode == "drop":
            return {k: v for k, v in batch.items() if k != self.modality}
        return {**batch, self.modality: torch.zeros_like(batch[self.modality])}


def fixed_noise(dataset: DictDataset, modality: str, std: float, valid_range: Range = None,
                seed: int = 0) -> DictDataset:
    """The dataset with one modality perturbed once by seeded Gaussian noise, clipped to its valid range
    (a harder but fixed dataset, unlike the corruptions above, which draw anew on every batch)."""
    x = dataset.tensors[modality]
    noisy = _clip(x + std * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)), valid_range)
    return dataset.with_tensors(**{modality: noisy})


def compose(transforms: Sequence[Transform]) -> Transform:
    """Apply transforms left to right."""

    def run(batch: Batch) -> Batch:
        for t in transforms:
            batch = t(batch)
        return batch

    return run


KINDS = ("gaussian", "blur", "occlusion", "salt_pepper", "missing", "token_mask", "token_replace")


def make_corruption(kind: str, modality: str, level: float,
                    valid_range: Range = None) -> Corruption | TokenMask | TokenReplace:
    """One corruption by name, with ``level`` its severity (std, sigma, side fraction, density, token
    rate, or unused); the token kinds corrupt prompt ids (``shortcut_prompts``) and ignore ``valid_range``."""
    if kind == "token_mask":
        return TokenMask(modality, level)
    if kind == "token_replace":
        return TokenReplace(modality, level)
    if kind == "gaussian":
        return GaussianNoise(modality, std=level, valid_range=valid_range)
    if kind == "blur":
        return Blur(modality, sigma=level)
    if kind == "occlusion":
        return Occlusion(modality, fraction=level)
    if kind == "salt_pepper":
        return SaltPepper(modality, density=level, valid_range=valid_range)
    if kind == "missing":
        return MissingModality(modality)
    raise ValueError(f"unknown corruption {kind!r}; valid: {', '.join(KINDS)}")


@dataclass
class GradedNoise:
    """Per-sample integer noise levels per modality and the noisy batch they produce."""

    scale: Mapping[str, float]
    power: Mapping[str, float] = field(default_factory=dict)
    valid_range: Mapping[str, tuple[float, float] | None] = field(default_factory=dict)
    levels: int = 11
    clean_fraction: float = 0.5  # share of samples forced clean (both modalities), as in the code
    replace_top: bool = True  # the top level replaces the input by noise, as in the code

    def __post_init__(self) -> None:
        if self.levels < 2:
            raise ValueError(f"GradedNoise needs at least 2 levels (1 = clean), got {self.levels}")
        if not 0 <= self.clean_fraction <= 1:
            raise ValueError(f"clean_fraction must lie in [0, 1], got {self.clean_fraction}")
        bad = {m: s for m, s in self.scale.items() if s < 0}
        if bad:
            raise ValueError(f"noise scales must be >= 0, got {bad}")

    @classmethod
    def for_splits(cls, splits: Splits, scale: Mapping[str, float], power: Mapping[str, float] | None = None,
                   **kwargs) -> "GradedNoise":
        """A noise model for ``splits``'s modalities, clipping to their valid ranges."""
        unknown = [m for m in scale if m not in splits.modalities]
        if unknown:
            raise KeyError(f"noise scale for unknown modalities {unknown}; the data has {list(splits.modalities)}")
        return cls(dict(scale), dict(power or {}), {m: splits.valid_range.get(m) for m in scale}, **kwargs)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.scale)

    def std(self, modality: str, level: Tensor | float) -> Tensor:
        """The noise std of ``modality`` at ``level`` (1 = clean, ``levels`` = the largest)."""
        level = torch.as_tensor(level, dtype=torch.float32)
        if ((level < 1) | (level > self.levels)).any():
            raise ValueError(f"noise levels must lie in [1, {self.levels}], got {level.unique().tolist()}")
        frac = (level - 1) / (self.levels - 1)
        return self.scale[modality] * frac ** self.power.get(modality, 1.0)

    def sample_levels(self, batch_size: int, device: torch.device) -> dict[str, Tensor]:
        """Independent uniform levels per modality; a ``clean_fraction`` of samples reset to 1 everywhere."""
        levels = {m: torch.randint(1, self.levels + 1, (batch_size,), device=device) for m in self.modalities}
        clean = torch.rand(batch_size, device=device) < self.clean_fraction
        return {m: torch.where(clean, torch.ones_like(k), k) for m, k in levels.items()}

    def apply(self, batch: Batch, levels: Mapping[str, Tensor]) -> Batch:
        """The batch with each modality corrupted at its per-sample level."""
        out = dict(batch)
        for m, k in levels.items():
            x = out[m]
            if self.replace_top:
                top = (k == self.levels).view(-1, *([1] * (x.dim() - 1)))
                x = torch.where(top, torch.zeros_like(x) if self.valid_range.get(m) is None
                                else torch.full_like(x, sum(self.valid_range[m]) / 2), x)
            out[m] = GaussianNoise(m, std=self.std(m, k).to(x), valid_range=self.valid_range.get(m)).apply(x)
        return out

    def __call__(self, batch: Batch) -> tuple[Batch, dict[str, Tensor]]:
        """Draw levels for this batch and apply them: ``(noisy_batch, levels)``."""
        any_mod = batch[self.modalities[0]]
        levels = self.sample_levels(any_mod.shape[0], any_mod.device)
        return self.apply(batch, levels), levels

    def at_level(self, level: int, modalities: tuple[str, ...] | None = None):
        """A deterministic-level transform for evaluation sweeps (same level for every sample)."""
        targets = modalities or self.modalities

        def run(batch: Batch) -> Batch:
            n = batch[targets[0]].shape[0]
            return self.apply(batch, {m: torch.full((n,), level, device=batch[m].device) for m in targets})

        return run
