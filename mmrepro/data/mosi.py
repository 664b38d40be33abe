"""CMU-MOSI / CMU-MOSEI from the aligned-feature pickles their community shares, and its metrics.

The layout is the one of MulT (Tsai et al., 2019) and MMIM (Han et al., 2021):
``mosi_data.pkl`` / ``mosei_senti_data.pkl`` (``*_noalign.pkl`` for unaligned
features) hold ``{"train" | "valid" | "test": {"text": (N, L, 300) GloVe,
"audio": (N, L, 74) COVAREP, "vision": (N, L, 35 or 47) Facet,
"labels": (N, 1, 1) sentiment in [-3, 3], "id": ...}}``.  Audio holds ``-inf``
entries, which MulT's loader sets to 0; we do the same for every non-finite value.
The pickles are read with a restricted unpickler (``safe_pickle``): NumPy arrays,
dicts, lists and scalars only, so a crafted file cannot run code when loaded.
The files cannot be downloaded here (they live on Google Drive); put them in
``$MMREPRO_DATA_DIR/mosi`` (else the cache's ``data/mosi``) or pass a path.

``sentiment_metrics`` computes MAE, Pearson correlation, Acc-7, Acc-5 and binary
accuracy / weighted F1 in the two flavours of that community: "has-0"
(``>= 0`` vs ``< 0``, every example) and "non-0" (``> 0`` vs ``< 0``, zero labels dropped).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score

from . import safe_pickle
from .btw_data import with_uids
from .core import LABEL, DictDataset, Splits
from .download import DataError, cache_dir

FILES = {"mosi": "mosi_data.pkl", "mosei": "mosei_senti_data.pkl"}
MODALITIES = ("text", "audio", "vision")
SPLITS = {"train": "train", "val": "valid", "test": "test"}


def _default_path(name: str, aligned: bool) -> Path:
    file = FILES[name] if aligned else FILES[name].replace(".pkl", "_noalign.pkl")
    root = os.environ.get("MMREPRO_DATA_DIR")
    return (Path(root) if root else cache_dir() / "data") / "mosi" / file


def _split(raw: dict, key: str, path: Path) -> DictDataset:
    if key not in raw:
        raise DataError(f"{path} has no '{key}' split; found {sorted(raw)}")
    part = raw[key]
    missing = [k for k in (*MODALITIES, "labels") if k not in part]
    if missing:
        raise DataError(f"{path}['{key}'] lacks {missing}; found {sorted(part)}")
    tensors = {m: torch.from_numpy(np.nan_to_num(np.asarray(part[m], dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0))
               for m in MODALITIES}
    tensors[LABEL] = torch.from_numpy(np.asarray(part["labels"], dtype=np.float32).reshape(-1, 1))
    return DictDataset(tensors, MODALITIES)


def load_mosi(name: str = "mosi", path: str | Path | None = None, aligned: bool = True) -> Splits:
    """CMU-MOSI or CMU-MOSEI as regression splits (``text``, ``audio``, ``vision``; labels (N, 1)), with ``_uid``s."""
    if name not in FILES:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(FILES)}")
    path = Path(path) if path is not None else _default_path(name, aligned)
    if not path.is_file():
        raise DataError(f"{path} not found: download the {name.upper()} pickle of MulT/MMIM "
                        f"({FILES[name]}) and put it there, or pass path=")
    raw = safe_pickle.load(path)
    parts = {ours: _split(raw, theirs, path) for ours, theirs in SPLITS.items()}
    splits = Splits(name, parts["train"], parts["val"], parts["test"], num_classes=1, task="regression",
                    valid_range={m: None for m in MODALITIES}, info={"path": str(path), "aligned": aligned})
    return with_uids(splits)


def _multiclass_acc(preds: np.ndarray, truths: np.ndarray) -> float:
    return float(np.sum(np.round(preds) == np.round(truths)) / float(len(truths)))


def sentiment_metrics(preds: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> dict[str, float]:
    """MAE, Corr, Acc-7, Acc-5, Acc-2 / F1 (has-0 and non-0), as MulT's and MMIM's ``eval_mosei_senti``."""
    p = np.asarray(preds, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(f"{p.shape[0]} predictions for {y.shape[0]} labels")
    non_zero = y != 0
    return {
        "mae": float(np.mean(np.abs(p - y))),
        "corr": float(np.corrcoef(p, y)[0][1]),
        "acc7": _multiclass_acc(np.clip(p, -3.0, 3.0), np.clip(y, -3.0, 3.0)),
        "acc5": _multiclass_acc(np.clip(p, -2.0, 2.0), np.clip(y, -2.0, 2.0)),
        "acc2_has0": float(accuracy_score(y >= 0, p >= 0)),
        "f1_has0": float(f1_score(y >= 0, p >= 0, average="weighted")),
        "acc2_non0": float(accuracy_score(y[non_zero] > 0, p[non_zero] > 0)),
        "f1_non0": float(f1_score(y[non_zero] > 0, p[non_zero] > 0, average="weighted")),
    }
