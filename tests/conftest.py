"""Shared fixtures: a private cache per test session, tiny synthetic splits, and the real AV-Digits data.

Tests never touch ``~/.cache`` and never download: AV-Digits tests read
``MMREPRO_DATA_DIR`` (CI sets it) or, failing that, the user's existing cache
(read only), and skip with the reason when neither holds the files.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from mmrepro.data import make_synthetic
from mmrepro.data.download import cache_dir

os.environ.setdefault("MMREPRO_PROGRESS", "0")
os.environ.setdefault("MPLBACKEND", "Agg")
# Unit tests run tiny ops, where a second intra-op thread only adds spin-waiting: on a busy
# 2-core machine a 4-epoch toy fit took 8 s with 2 threads and 0.5 s with 1.
torch.set_num_threads(1)

_RAW = ("fsdd", "mnist")


def _raw_data_root() -> Path | None:
    """The folder holding fsdd/ and mnist/: MMREPRO_DATA_DIR, else the user's cache (before we redirect it)."""
    env = os.environ.get("MMREPRO_DATA_DIR")
    roots = [Path(env)] if env else []
    roots.append(cache_dir() / "data")
    for root in roots:
        if all((root / name).is_dir() and any((root / name).iterdir()) for name in _RAW):
            return root
    return None


RAW_DATA_ROOT = _raw_data_root()


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory):
    """Point MMREPRO_CACHE_DIR at a fresh folder for the whole session (and the raw data root, if found)."""
    saved = {k: os.environ.get(k) for k in ("MMREPRO_CACHE_DIR", "MMREPRO_DATA_DIR")}
    os.environ["MMREPRO_CACHE_DIR"] = str(tmp_path_factory.mktemp("mmrepro_cache"))
    if RAW_DATA_ROOT is not None:
        os.environ["MMREPRO_DATA_DIR"] = str(RAW_DATA_ROOT)
    yield Path(os.environ["MMREPRO_CACHE_DIR"])
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def av_digits(private_cache):
    """The default AV-Digits splits, built once per session into the private cache."""
    if RAW_DATA_ROOT is None:
        pytest.skip("AV-Digits raw files not found: set MMREPRO_DATA_DIR to a folder holding fsdd/ and mnist/ "
                    "(see shared/data/README.md); tests never download")
    from mmrepro.data import load_av_digits

    return load_av_digits()


@pytest.fixture(scope="session")
def mfeat(private_cache):
    """UCI Multiple Features (all six views) from the raw data root."""
    if RAW_DATA_ROOT is None or not (RAW_DATA_ROOT / "mfeat").is_dir():
        pytest.skip("UCI Multiple Features not found: set MMREPRO_DATA_DIR to a folder holding mfeat/ "
                    "(see shared/data/README.md); tests never download")
    from mmrepro.data import load_mfeat

    return load_mfeat()


@pytest.fixture
def synthetic():
    """Two-modality classification data, m0 more informative than m1; sizes divisible by 8 and 16."""
    return make_synthetic(levels=(3.0, 0.5), dim=8, num_classes=3, sizes=(96, 48, 48), seed=0)
