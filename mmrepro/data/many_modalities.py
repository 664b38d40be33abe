"""Data with three or more modalities: tri-modal synthetic regression and AV-Digits with added modalities.

Every split gets a ``_uid`` key (``Splits.with_uids``: a row id unique across
train, val and test) so that a method can keep per-example state such as BTW's
instance weights.

Regression (labels in [-3, 3], like CMU-MOSI's sentiment scores): two
independent latent factors ``s1, s2 ~ N(0, 1)`` and ``y = clip(1.5 s1 + s2, -3, 3)``.
``strong`` sees ``s1`` clearly, ``weak`` sees ``s2`` through
heavy noise (weak but complementary), and the third modality is pure noise
(``variant="noise"``) or sees ``s2`` clearly on a random ``informative_fraction``
of the examples and is pure noise elsewhere (``variant="instance"``, instance-level
noise; the mask is kept as ``_informative``).

AV-Digits extras, added in this order unless named (``extras=``): ``noise`` (Gaussian noise shaped like the
image), ``shuffled`` (the images of a random permutation of the examples, so
digit-like but unrelated to the label), ``occluded`` (a copy of the image with a
large patch blanked on a random half of the examples, kept as ``_occluded``),
``shuffled_audio`` (the same for audio).  ``features="pca"`` replaces every
modality by its projection on the top principal components of the training
split (label-free pre-extracted features), which makes many runs affordable
on a CPU.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal, Sequence

import torch

from .av_digits import load_av_digits
from .core import LABEL, DictDataset, Splits, split_rows
from .corruptions import Occlusion

EXTRAS = ("noise", "shuffled", "occluded", "shuffled_audio")
VARIANTS = ("noise", "instance")


def _view(signal: torch.Tensor, level: float, dim: int, gen: torch.Generator) -> torch.Tensor:
    direction = torch.nn.functional.normalize(torch.randn(dim, generator=gen), dim=0)
    return level * signal.unsqueeze(1) * direction + torch.randn(len(signal), dim, generator=gen)


def make_trimodal_regression(variant: Literal["noise", "instance"] = "noise", sizes: tuple[int, int, int] = (2000, 500, 1000),
                             dim: int = 16, noise_dim: int = 128, informative_fraction: float = 0.3,
                             seed: int = 0, keep: Sequence[str] | None = None) -> Splits:
    """Regression with a ``strong``, a ``weak`` complementary and a ``noisy`` (or ``partial``) modality;
    ``keep`` names the modalities to keep (None: all three), e.g. ``("strong", "weak")``."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid: {', '.join(VARIANTS)}")
    if not 0 < informative_fraction < 1:
        raise ValueError(f"informative_fraction must lie in (0, 1), got {informative_fraction}")
    gen = torch.Generator().manual_seed(seed)
    n = sum(sizes)
    s1, s2 = torch.randn(2, n, generator=gen)
    y = (1.5 * s1 + s2).clamp(-3, 3)
    tensors = {"strong": _view(s1, 3.0, dim, gen), "weak": _view(s2, 1.0, dim, gen)}
    if variant == "noise":
        third = "noisy"
        tensors[third] = 2.0 * torch.randn(n, noise_dim, generator=gen)
    else:
        third = "partial"
        informative = torch.rand(n, generator=gen) < informative_fraction
        tensors[third] = torch.where(informative.unsqueeze(1), _view(s2, 4.0, noise_dim, gen),
                                     2.0 * torch.randn(n, noise_dim, generator=gen))
        tensors["_informative"] = informative
    tensors[LABEL] = y.unsqueeze(1)
    modalities = ("strong", "weak", third)
    if keep is not None and (not keep or any(m not in modalities for m in keep)):
        raise ValueError(f"keep must name some of {list(modalities)}, got {keep}")
    train, val, test = split_rows(tensors, modalities, sizes)
    splits = Splits(f"trimodal_regression_{variant}", train, val, test, num_classes=1, task="regression",
                    valid_range={m: None for m in modalities},
                    info={"variant": variant, "dim": dim, "noise_dim": noise_dim, "seed": seed,
                          "informative_fraction": informative_fraction if variant == "instance" else None})
    return (splits if keep is None else splits.select(list(keep))).with_uids()


def _pca(splits: Splits, dim: int) -> Splits:
    """Every modality projected on its training split's top ``dim`` principal components (scaled to unit std)."""
    out = {}
    for name in ("train", "val", "test"):
        out[name] = dict(splits.split(name).tensors)
    for m in splits.modalities:
        train = splits.train.tensors[m].flatten(1).float()
        mean = train.mean(0)
        _, _, v = torch.linalg.svd(train - mean, full_matrices=False)
        basis = v[:dim].T
        scale = ((train - mean) @ basis).std()
        for name in out:
            out[name][m] = (splits.split(name).tensors[m].flatten(1).float() - mean) @ basis / scale
    parts = [DictDataset(out[name], splits.modalities) for name in ("train", "val", "test")]
    return replace(splits, train=parts[0], val=parts[1], test=parts[2], valid_range={m: None for m in splits.modalities})


def _extra(kind: str, base: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
    """One extra modality (plus its meta mask) built from the base tensors of all rows."""
    image, audio = base["image"], base["audio"]
    n = len(image)
    if kind == "noise":
        return {kind: torch.randn(image.shape, generator=gen)}
    if kind == "shuffled":
        return {kind: image[torch.randperm(n, generator=gen)]}
    if kind == "shuffled_audio":
        return {kind: audio[torch.randperm(n, generator=gen)]}
    mask = torch.rand(n, generator=gen) < 0.5
    with torch.random.fork_rng():
        torch.manual_seed(int(torch.randint(2**31, (1,), generator=gen)))
        blanked = Occlusion("image", fraction=0.75).apply(image)
    return {kind: torch.where(mask.view(-1, 1, 1, 1), blanked, image), "_occluded": mask}


def load_av_digits_extra(num_modalities: int | None = 3, features: Literal["raw", "pca"] = "raw", pca_dim: int = 32,
                         train_size: int | None = None, seed: int = 0, extras: Sequence[str] | None = None,
                         **av_overrides) -> Splits:
    """AV-Digits (audio, image) plus extras, with ``_uid`` row ids: the named ``extras`` in that order, or
    (``extras=None``) the first ``num_modalities - 2`` of ``EXTRAS``."""
    if extras is None:
        if num_modalities is None or not 2 <= num_modalities <= 2 + len(EXTRAS):
            raise ValueError(f"num_modalities must lie in [2, {2 + len(EXTRAS)}], got {num_modalities}")
        extras = EXTRAS[: num_modalities - 2]
    extras = tuple(extras)
    if any(e not in EXTRAS for e in extras) or len(set(extras)) != len(extras):
        raise ValueError(f"extras must be distinct names from {', '.join(EXTRAS)}; got {list(extras)}")
    if num_modalities not in (None, 2 + len(extras)):
        raise ValueError(f"num_modalities={num_modalities} does not match the {len(extras)} extras {list(extras)}")
    num_modalities = 2 + len(extras)
    if features not in ("raw", "pca"):
        raise ValueError(f"unknown features {features!r}; valid: 'raw', 'pca'")
    splits = load_av_digits(**av_overrides)
    gen = torch.Generator().manual_seed(seed)
    if train_size is not None:
        if not 0 < train_size <= len(splits.train):
            raise ValueError(f"train_size must lie in [1, {len(splits.train)}], got {train_size}")
        splits = replace(splits, train=splits.train.subset(torch.randperm(len(splits.train), generator=gen)[:train_size]))
    sizes = [len(splits.train), len(splits.val), len(splits.test)]
    base = {k: torch.cat([splits.split(s).tensors[k] for s in ("train", "val", "test")]) for k in splits.train.tensors}
    added: dict[str, torch.Tensor] = {}
    for kind in extras:
        added.update(_extra(kind, base, gen))
    bounds = [0, sizes[0], sizes[0] + sizes[1], sum(sizes)]
    modalities = ("audio", "image", *extras)
    parts = [DictDataset({**splits.split(s).tensors, **{k: v[bounds[i]:bounds[i + 1]] for k, v in added.items()}}, modalities)
             for i, s in enumerate(("train", "val", "test"))]
    valid = {**splits.valid_range, "noise": None, "shuffled": (0.0, 1.0), "occluded": (0.0, 1.0), "shuffled_audio": None}
    splits = replace(splits, name=f"av_digits_{num_modalities}m", train=parts[0], val=parts[1], test=parts[2],
                     valid_range={m: valid[m] for m in modalities},
                     info={**splits.info, "extras": list(modalities[2:]), "features": features, "train_size": train_size})
    return (_pca(splits, pca_dim) if features == "pca" else splits).with_uids()
