"""The UDML chapter's analysis of its run records: the premises of a setting, the setting search, paired
descriptions, the estimator's rank correlations and the deltas taken from the reported numbers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .. import verdict
from .pairs import interval

PREMISES = ("imbalance", "dual suppression", "per-sample noise", "off the ceiling")


@dataclass(frozen=True)
class Thresholds:
    """What a setting must show for UDML's argument to be testable in it."""

    ratio_min: float = 2.0  # strong/weak dependency ratio of the static-weight recipe, at least
    weak_weight_max: float = 0.9  # EAU's clean weight of the weak modality (weights sum to 2), at most
    ceiling: float = 0.95  # static clean accuracy, at most: room for a fusion rule to matter

    def __post_init__(self) -> None:
        for name in ("ratio_min", "weak_weight_max", "ceiling"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"threshold {name} must be a finite number >= 0, got {value!r}")


def premises(runs: pd.DataFrame, static: str, eau: str) -> dict[str, float]:
    """The measured premises of one setting, as means over seeds: the static-weight recipe's clean accuracy,
    dependency ratio and spread of the mixed test levels, and EAU's clean weight of the weak modality."""
    needed = {"arm", "accuracy", "dependency_ratio", "weight_weak", "mixed_level_std"}
    if missing := needed - set(runs.columns):
        raise KeyError(f"runs lack the columns {sorted(missing)}")
    rows = {arm: runs[runs.arm == arm] for arm in (static, eau)}
    if empty := [arm for arm, r in rows.items() if r.empty]:
        raise ValueError(f"no runs of arm(s) {empty}; arms present: {sorted(runs.arm.unique())}")
    s, e = rows[static], rows[eau]
    return {"static clean accuracy": float(s.accuracy.mean()), "dependency ratio": float(s.dependency_ratio.mean()),
            "EAU weight of the weak audio": float(e.weight_weak.mean()),
            "spread of mixed test levels": float(s.mixed_level_std.mean())}


def holds(p: Mapping[str, float], t: Thresholds) -> dict[str, bool]:
    """Which premise each measured value meets, in the order of ``PREMISES``."""
    return {"imbalance": p["dependency ratio"] >= t.ratio_min,
            "dual suppression": p["EAU weight of the weak audio"] <= t.weak_weight_max,
            "per-sample noise": p["spread of mixed test levels"] > 0,
            "off the ceiling": p["static clean accuracy"] <= t.ceiling}


def describe(p: Mapping[str, float], t: Thresholds) -> dict[str, str]:
    """Each premise's measured value and its threshold, as the verdict table's precondition text."""
    return {"imbalance": f"dependency ratio {p['dependency ratio']:.2f} (needs >= {t.ratio_min})",
            "dual suppression": f"EAU's weak-audio weight {p['EAU weight of the weak audio']:.3f} "
                                f"(needs <= {t.weak_weight_max})",
            "per-sample noise": f"spread of the mixed test levels {p['spread of mixed test levels']:.2f} (needs > 0)",
            "off the ceiling": f"static clean accuracy {100 * p['static clean accuracy']:.1f}% "
                               f"(needs <= {100 * t.ceiling:.0f}%)"}


def search(runs: pd.DataFrame, candidates: Sequence[Mapping], t: Thresholds, static: str = "static recipe",
           eau: str = "EAU") -> pd.DataFrame:
    """One row per candidate setting (arms named ``"search {i}: {arm}"``): its premises and which hold, and the
    chosen one: the first where every premise holds, else the largest imbalance off the ceiling, else the
    largest imbalance."""
    if not candidates:
        raise ValueError("no candidate settings to search")
    rows = []
    for i, setting in enumerate(candidates):
        p = premises(runs, f"search {i}: {static}", f"search {i}: {eau}")
        rows.append({**setting, **p, **holds(p, t)})
    table = pd.DataFrame(rows)
    every = table[list(PREMISES)].all(axis=1)
    pool = table[table["off the ceiling"]] if table["off the ceiling"].any() else table
    pick = every.idxmax() if every.any() else pool["dependency ratio"].idxmax()
    return table.assign(chosen=table.index == pick)


def needs(ok: Mapping[str, bool], text: Mapping[str, str], *names: str) -> tuple[bool, str]:
    """A claim's precondition: whether all ``names`` hold, and what was measured for them."""
    if unknown := [n for n in names if n not in ok]:
        raise KeyError(f"unknown premise(s) {unknown}; valid: {list(ok)}")
    return all(ok[n] for n in names), "; ".join(text[n] for n in names)


def rank_strength(arms: Mapping[str, verdict.Arm], names: Sequence[str],
                  modalities: Sequence[str] = ("audio", "image")) -> dict[str, verdict.Arm]:
    """``names`` with one more run-level metric, ``rho_abs``: the mean over ``modalities`` of ``|rho_<m>|``, how
    strongly a score ranks the level whichever way it runs (a score that falls with the noise ranks it too, but
    inverse-uncertainty weights built on it would up-weight the noisy input)."""
    out = {}
    for name in names:
        arm = arms[name]
        per = [np.abs(arm.take(f"rho_{m}", arm.seeds)[:, 0]) for m in modalities]
        out[name] = verdict.Arm(arm.seeds, {**arm.scores, "rho_abs": np.mean(per, axis=0)}, arm.converged)
    return out


def rank_table(arms: Mapping[str, verdict.Arm], names: Sequence[str], metrics: Sequence[str],
               reference: str | None = None) -> pd.DataFrame:
    """Per arm and metric, the mean Spearman rho over seeds with its 95% interval (seed noise only: one value per
    run); with ``reference``, also each arm's paired difference from it, seed by seed."""
    cols: dict[str, dict[str, str]] = {}
    for metric in metrics:
        cols[metric] = {}
        for name in names:
            cols[metric][name] = interval(arms, name, None, metric, 1.0, 2)
        if reference is not None:
            cols[f"{metric}: {reference} − arm"] = {name: "—" if name == reference else
                                                     interval(arms, reference, name, metric, 1.0, 2) for name in names}
    return pd.DataFrame(cols).loc[list(names)]


def reported_deltas(reported: pd.DataFrame) -> dict[str, float]:
    """Half the effects the secondary sources report on CREMA-D, as accuracy fractions: ``clean`` ([KO] UDML clean
    minus [PN] static fusion), ``noisy`` ([KO] UDML noisy minus the strongest baseline [KO] quotes beside it) and
    ``dependency`` (half the gain [PN] gives the dependency term)."""
    value = reported.set_index(["dataset", "setting", "method"])["value"]
    get = {"ko clean": ("clean test", "UDML"), "pn static": ("clean test (unverified)", "static fusion"),
           "ko noisy": ("noisy test", "UDML"), "ko noisy base": ("noisy test", "strongest baseline (unnamed)"),
           "pn dependency": ("clean test (unverified)", "gain of the dependency term")}
    v = {}
    for name, (setting, method) in get.items():
        if ("CREMA-D", setting, method) not in value.index:
            raise KeyError(f"reported numbers lack CREMA-D / {setting} / {method}")
        v[name] = float(value[("CREMA-D", setting, method)])
    return {**v, "clean": (v["ko clean"] - v["pn static"]) / 200, "noisy": (v["ko noisy"] - v["ko noisy base"]) / 200,
            "dependency": v["pn dependency"] / 200}
