"""Repeat a training recipe over seeds and summarise: what every chapter's tables are made of."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import pandas as pd
import torch

from .data.core import Splits
from .methods.base import Method
from .train import FitResult, Monitor, TrainConfig, fit, seed_everything

Factory = Callable[[], Method]


@dataclass
class Trained:
    """A trained method with its fit result and seed, and what a per-run ``measure`` hook returned."""

    method: Method
    fit: FitResult
    seed: int
    measures: dict[str, Any] = field(default_factory=dict)


#: the jobs of the running pool, read by forked workers (closures in notebooks cannot be pickled)
_JOBS: list[tuple[Factory, Splits, TrainConfig, int, Monitor | None]] = []


def _train_job(index: int) -> tuple[Method, FitResult]:
    """Seed, build (so initial weights depend on the seed) and fit job ``index``."""
    factory, splits, cfg, seed, monitor = _JOBS[index]
    seed_everything(seed)
    method = factory()
    return method, fit(method, splits, cfg, monitor=monitor, seed=seed)


def _forked_job(index: int) -> tuple[dict, FitResult]:
    method, result = _train_job(index)
    return method.state_dict(), result


def _one_thread() -> None:
    torch.set_num_threads(1)  # a forked worker shares the cores with its siblings


def _rebuilt(factory: Factory, state: dict) -> Method:
    method = factory()
    method.load_state_dict(state)
    return method.eval()


def train_seeds(factory: Factory, splits: Splits, cfg: TrainConfig, seeds: Iterable[int],
                monitor: Monitor | None = None, workers: int = 1, subsample: int | None = None,
                measure: Callable[[Trained], dict[str, Any]] | None = None) -> list[Trained]:
    """Seed, build and fit once per seed; the numbers do not depend on ``workers``.

    ``workers > 1`` trains in that many forked processes (CPU only: CUDA does not
    survive a fork) and rebuilds each method here from its trained ``state_dict``, so
    only registered parameters and buffers come back.  ``subsample=n`` trains on
    ``splits.subsample_train(n)`` (the same rows for every seed, so arms stay paired).
    ``measure(run)`` fills each run's ``measures``.
    """
    seeds = list(seeds)
    data = splits if subsample is None else splits.subsample_train(subsample)
    _JOBS[:] = [(factory, data, cfg, seed, monitor) for seed in seeds]
    try:
        if workers == 1 or len(seeds) == 1:
            results = [_train_job(i) for i in range(len(seeds))]
        else:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                     initializer=_one_thread) as pool:
                results = [(_rebuilt(factory, state), fit_result)
                           for state, fit_result in pool.map(_forked_job, range(len(seeds)))]
    finally:
        _JOBS.clear()
    runs = [Trained(method, result, seed) for seed, (method, result) in zip(seeds, results)]
    for run in runs:
        run.measures = measure(run) if measure is not None else {}
    return runs


def spread(values: Sequence[float] | pd.Series) -> float:
    """The sample standard deviation (ddof 1) over seeds; 0 for a single value."""
    series = pd.Series(values, dtype=float)
    return float(series.std(ddof=1)) if len(series) > 1 else 0.0


def mean_std(data: pd.DataFrame, by: str | Sequence[str], columns: Sequence[str], scale: float = 100.0,
             digits: int = 1) -> pd.DataFrame:
    """'mean ± std' strings per group (std over the rows of a group, i.e. over seeds)."""
    grouped = data.groupby(by, sort=False)[list(columns)]
    mean, std = grouped.mean() * scale, grouped.std(ddof=1).fillna(0.0) * scale
    text = mean.combine(std, lambda m, s: m.map(f"{{:.{digits}f}}".format) + " ± " + s.map(f"{{:.{digits}f}}".format))
    return text.mask(mean.isna(), "—")  # a column that does not apply to a group
