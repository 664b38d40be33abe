"""Datasets, corruptions on the batch dict, and downloads; ``load(name, **options)`` knows every dataset."""

from __future__ import annotations

from functools import partial
from typing import Callable

from .av_datasets import load_cremad, load_kinetics_sounds
from .av_digits import AVDigitsConfig, load_av_digits
from .ave import load_ave
from .complementary import load_av_digits_complementary
from .core import LABEL, UID, Batch, DictDataset, Splits, is_meta, is_modality, iterate, split_rows, train_loader
from .corruptions import (Blur, GaussianNoise, GradedNoise, MissingModality, Occlusion, SaltPepper, compose,
                          make_corruption)
from .download import DataError
from .many_modalities import load_av_digits_extra, make_trimodal_regression
from .mfeat import load_mfeat
from .mosi import load_mosi
from .paired_images import load_paired_folder, make_digit_depth
from .shortcut_prompts import load_shortcut
from .synthetic import make_synthetic

#: every dataset by name; the paper datasets (cremad ... paired_folder) read a local copy
LOADERS: dict[str, Callable[..., Splits]] = {
    "av_digits": load_av_digits,
    "synthetic": make_synthetic,
    "mfeat": load_mfeat,
    "av_digits_extra": load_av_digits_extra,
    "av_digits_complementary": load_av_digits_complementary,
    "trimodal_regression": make_trimodal_regression,
    "shortcut_prompts": load_shortcut,
    "digits_rgbd": make_digit_depth,
    "mosi": partial(load_mosi, "mosi"),
    "mosei": partial(load_mosi, "mosei"),
    "cremad": load_cremad,
    "kinetics_sounds": load_kinetics_sounds,
    "ave": load_ave,
    "paired_folder": load_paired_folder,
}
DATASETS = tuple(LOADERS)


def load(name: str, **options) -> Splits:
    """A dataset by name: ``load("av_digits", split="speaker")``, ``load("mfeat", views=("fac", "mor"))``."""
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    return LOADERS[name](**options)


__all__ = [
    "AVDigitsConfig", "Batch", "Blur", "DATASETS", "DataError", "DictDataset", "GaussianNoise", "GradedNoise",
    "LABEL", "LOADERS", "MissingModality", "Occlusion", "SaltPepper", "Splits", "UID", "compose", "is_meta",
    "is_modality", "iterate", "load", "load_av_digits", "load_av_digits_complementary", "load_av_digits_extra", "load_ave", "load_cremad",
    "load_kinetics_sounds", "load_mfeat", "load_mosi", "load_paired_folder", "load_shortcut", "make_corruption",
    "make_digit_depth", "make_synthetic", "make_trimodal_regression", "split_rows", "train_loader",
]
