"""The MWAM chapter's measures: per-item missing-modality scores and the data's FRM."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmrepro.data.core import LABEL, DictDataset, Splits
from mmrepro.evaluate import collapse_rate, subset_accuracies
from mmrepro.analysis.mwam import with_subset_scores
from mmrepro.measures.mwam import input_frm, missing
from mmrepro.methods import build
from mmrepro.methods.mwam import MissingModalityHost
from mmrepro.models import build_model
from mmrepro.verdict import Arm


def _splits(n: int = 40) -> Splits:
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 3, (n,), generator=g)
    smooth = torch.linspace(0, 1, 16).view(1, 1, 1, 16).expand(n, 1, 16, 16) + y.view(-1, 1, 1, 1) * 0.3
    noisy = torch.rand(n, 1, 16, 16, generator=g) + y.view(-1, 1, 1, 1) * 0.1
    data = DictDataset({"a": smooth.contiguous(), "b": noisy, LABEL: y}, ("a", "b"))
    return Splits("toy", data, data, data, num_classes=3)


def test_missing_metrics_match_the_subset_table_and_pcr():
    splits = _splits()
    torch.manual_seed(0)
    host = MissingModalityHost(build_model(splits, "cnn", "late", widths=(4, 8)), trunk=5).eval()
    metrics, items = missing(host, splits)
    table = subset_accuracies(host, splits.test, splits.modalities)
    assert set(items) == {f"acc_{s}" for s in table}  # per item: the subsets only (Average and PCR follow)
    for subset, acc in table.items():
        assert metrics[f"acc_{subset}"] == pytest.approx(acc)
        assert len(items[f"acc_{subset}"]) == 40
    assert metrics["average"] == pytest.approx(np.mean(list(table.values())))
    if table["a+b"] > 0:
        assert 100 * metrics["pcr"] == pytest.approx(collapse_rate(table, splits.modalities))
        evidence = with_subset_scores({"host": Arm([0], {k: np.array([v]) for k, v in items.items()}, [True])})
        assert evidence["host"].scores["pcr"].mean() == pytest.approx(metrics["pcr"])
        assert evidence["host"].scores["average"].mean() == pytest.approx(metrics["average"])


def test_missing_on_one_modality_has_no_pcr():
    splits = _splits().select(["a"])
    uni = build("unimodal", splits, modality="a", encoder="cnn", encoder_kwargs={"widths": (4,)})
    metrics, items = missing(uni, splits)
    assert set(items) == {"acc_a"} and "pcr" not in metrics
    assert metrics["acc_a"] == pytest.approx(metrics["average"])


def test_input_frm_ranks_the_smooth_modality_first_and_slows_it():
    metrics, items = input_frm(None, _splits(), batch_size=8)
    assert items == {}
    assert metrics["frm_a"] > 10 * metrics["frm_b"]
    assert 0.5 < metrics["K_a"] < 1.0 < metrics["K_b"] < 1.5
