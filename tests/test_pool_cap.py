"""Grid workers cap the BLAS/OpenMP pools (numpy's, scikit-learn's) to their torch thread count, and a record
re-derived with or without the cap is the same, metrics and per-item scores."""

import json

import numpy  # noqa: F401  (loads the BLAS library whose pool is capped)
import pytest
import torch
from threadpoolctl import threadpool_info

from mmrepro import records
from mmrepro.experiment import RunSpec


def blas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def spec() -> RunSpec:
    return RunSpec(arm="joint", method="joint", seed=0, data={"name": "synthetic", "sizes": [200, 60, 60]},
                   train={"epochs": 2, "optimizer": "sgd", "lr": 0.05, "batch_size": 64}, measures=("probe",))


def test_the_cap_follows_torch_threads_and_is_lifted_after():
    before = blas_threads()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with records.capped_pools():
            assert blas_threads() <= {1}
        with records.capped_pools(2):
            assert blas_threads() <= {2}
    finally:
        torch.set_num_threads(threads)
    assert blas_threads() == before


def test_a_pool_of_no_threads_is_refused():
    with pytest.raises(ValueError, match="at least one thread"):
        with records.capped_pools(0):
            pass


def test_verify_compares_per_item_scores_with_and_without_the_cap(tmp_path):
    records.run_grid("toy", [spec()], root=tmp_path, processes=1)
    path = next((tmp_path / "toy").glob("*.json"))
    assert "pools capped to 1" in records.verify(tmp_path / "toy") and "uncapped" in records.verify(tmp_path / "toy",
                                                                                           cap_pools=False)
    record = json.loads(path.read_text())
    name = next(iter(record["items"]))
    record["items"][name][0] = 1.0 - record["items"][name][0]
    path.write_text(json.dumps(record))
    with pytest.raises(records.RecordError, match=f"items\\[{name}\\]"):
        records.verify(tmp_path / "toy")
