"""The MWAM chapter's analyses of its run records: the factorial, the weights K, comparisons and preconditions.

Arms are named ``"<factorial cell>: <arm>"``.  The factorial crosses which view is informative with the
views' spectra (depth is always the low-frequency view); the suppression of a modality is its accuracy
trained alone minus its accuracy alone in the late-fusion host.  Every interval comes from
``mmrepro.verdict.compare`` (paired by seed and test item).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..methods.mwam import relative_frm, weight_schedule
from ..verdict import Arm, Claim, fmt_interval
from .pairs import interval, paired

MODS = ("rgb", "depth")
FULL = "acc_" + "+".join(MODS)  # the full-modality accuracy's metric
CELLS = {  # factorial cell -> (depth informative, rgb informative)
    "depth strong / rgb weak": (True, False),
    "depth weak / rgb strong": (False, True),
    "both strong": (True, True),
    "both weak": (False, False),
}
MAIN = "depth strong / rgb weak"  # the paper's story: the low-frequency view is the better one
SWAPPED = "depth weak / rgb strong"
THREE = "three views"  # the main design plus an IR-like third view (outside the factorial)
THREE_MODS = (*MODS, "ir")
THREE_FULL = "acc_" + "+".join(THREE_MODS)
#: Table 9's (alpha, beta, gamma, lambda) settings, the default last (arXiv 2602.22644v1 Table 9)
TABLE9 = [(1.2, 1.0, 0.7, 6.0), (1.8, 1.0, 0.7, 6.0), (1.5, 1.3, 0.7, 6.0), (1.5, 0.7, 0.7, 6.0),
          (1.5, 1.0, 1.0, 6.0), (1.5, 1.0, 0.4, 6.0), (1.5, 1.0, 0.7, 6.3), (1.5, 1.0, 0.7, 5.7),
          (2.0, 1.5, 1.3, 6.5), (1.5, 1.0, 0.7, 6.0)]
#: the Table 9 settings trained (on the augmented late host, where K moves): every one but the default (the last)
TRAINED_TABLE9 = TABLE9[:-1]


def table9_label(setting: tuple[float, float, float, float]) -> str:
    """A Table 9 setting as the paper writes it, alpha/beta/gamma/lambda."""
    return "α/β/γ/λ " + "/".join(f"{v:g}" for v in setting)


def table9_kwargs(setting: tuple[float, float, float, float]) -> dict[str, float]:
    """A Table 9 setting as MWAM's keyword arguments."""
    a, b, g, lam = setting
    return {"alpha": a, "beta": b, "gamma": g, "lam": lam}


def arm(cell: str, name: str) -> str:
    """The arm's name: its factorial cell, then what was trained."""
    if cell not in CELLS and cell != THREE:
        raise ValueError(f"unknown factorial cell {cell!r}; valid: {', '.join([*CELLS, THREE])}")
    return f"{cell}: {name}"


def design(cell: str, weak: float, sizes: Sequence[int], rgb_noise: float = 0.1, ir_mismatch: float = 0.25) -> dict:
    """The Digits-RGBD data spec of a factorial cell: a weak view shows another digit for ``weak`` of its samples.

    ``THREE`` is the main design's two views plus the IR-like view, ``ir_mismatch`` of whose samples show
    another digit (between the strong depth and the weak rgb).
    """
    if not 0 <= weak <= 1:
        raise ValueError(f"weak must be a fraction in [0, 1], got {weak}")
    if cell == THREE:
        return {**design(MAIN, weak, sizes, rgb_noise), "ir": True, "ir_mismatch": ir_mismatch}
    depth_informative, rgb_informative = CELLS[cell]
    return {"name": "digits_rgbd", "sizes": list(sizes), "rgb_noise": rgb_noise,
            "rgb_mismatch": 0.0 if rgb_informative else weak, "depth_mismatch": 0.0 if depth_informative else weak}


def full_metric(a: Arm) -> str:
    """The arm's full-modality accuracy metric: its ``acc_<subset>`` with the most modalities."""
    subsets = [k for k in a.scores if k.startswith("acc_")]
    if not subsets:
        raise ValueError("the arm has no per-subset accuracy (acc_<subset>)")
    return max(subsets, key=lambda k: k.count("+"))


def with_subset_scores(evidence: Mapping[str, Arm]) -> dict[str, Arm]:
    """Every arm with per-item ``average`` and ``pcr`` scores derived from its per-subset correctness (``acc_<s>``).

    Per item: ``average`` is the mean correctness over subsets; ``pcr`` is the mean over incomplete subsets of
    (correct_full − correct_S) / A_full, with A_full the run's full-modality accuracy, so that its mean over
    items is the run's PCR.  An arm scored on one subset gets ``average`` only; arms without subsets are kept.
    """
    out = {}
    for name, a in evidence.items():
        subsets = [k for k in a.scores if k.startswith("acc_") and np.ndim(a.scores[k]) == 2]
        if not subsets:
            out[name] = a
            continue
        full = max(subsets, key=lambda k: k.count("+"))
        scores = {**a.scores, "average": np.mean([a.scores[k] for k in subsets], axis=0)}
        partial = [a.scores[k] for k in subsets if k != full]
        if partial:
            a_full = np.maximum(a.scores[full].mean(axis=1, keepdims=True), 1e-12)
            scores["pcr"] = np.mean([a.scores[full] - p for p in partial], axis=0) / a_full
        out[name] = Arm(a.seeds, scores, a.converged)
    return out


def suppression_arm(host: Arm, alone: Arm, modality: str) -> Arm:
    """An arm whose metric ``suppression`` is, per seed and item, trained alone minus alone in the host
    (positive: the host under-trains ``modality``), on the seeds both arms share."""
    seeds = [s for s in host.seeds if s in alone.seeds]
    if len(seeds) == 0:
        raise ValueError("the host and the alone arm share no seed")
    gap = alone.take(f"acc_{modality}", seeds) - host.take(f"acc_{modality}", seeds)
    converged = [host.converged[host.seeds.index(s)] and alone.converged[alone.seeds.index(s)] for s in seeds]
    return Arm(seeds, {"suppression": gap}, converged)


def with_suppression(evidence: Mapping[str, Arm], cells: Sequence[str] = tuple(CELLS)) -> dict[str, Arm]:
    """``evidence`` plus, per cell and modality, the arm ``"<cell>: <m> suppression"``."""
    out = dict(evidence)
    for cell in cells:
        for m in MODS:
            out[arm(cell, f"{m} suppression")] = suppression_arm(evidence[arm(cell, "late host")],
                                                                 evidence[arm(cell, f"{m} alone")], m)
    return out


def mean_of(evidence: Mapping[str, Arm], name: str, metric: str) -> float:
    """An arm's mean of ``metric`` over seeds and items."""
    return float(np.mean(evidence[name].scores[metric]))


def factorial(evidence: Mapping[str, Arm]) -> pd.DataFrame:
    """Per cell: each view's FRM, accuracy alone, suppression (with 95% interval) and which is more accurate.

    ``evidence`` must hold the suppression arms (``with_suppression``).
    """
    rows = {}
    for cell in CELLS:
        host, supp = arm(cell, "late host"), {m: arm(cell, f"{m} suppression") for m in MODS}
        alone = {m: mean_of(evidence, arm(cell, f"{m} alone"), f"acc_{m}") for m in MODS}
        rows[cell] = {
            **{f"FRM {m}": f"{mean_of(evidence, host, f'frm_{m}'):.3g}" for m in MODS},
            **{f"{m} alone (%)": f"{100 * alone[m]:.1f}" for m in MODS},
            **{f"{m} suppression": interval(evidence, supp[m], None, "suppression") for m in MODS},
            "rgb minus depth suppression": interval(evidence, supp["rgb"], supp["depth"], "suppression"),
            "more accurate alone": max(alone, key=alone.get)}
    return pd.DataFrame(rows).T.rename_axis("cell (ours, points)")


def factorial_reading(evidence: Mapping[str, Arm]) -> dict[str, str]:
    """Per cell, which modality the 95% interval of (rgb − depth suppression) shows as the more suppressed."""
    out = {}
    for cell in CELLS:
        cmp = paired(evidence, arm(cell, "rgb suppression"), arm(cell, "depth suppression"), "suppression")
        if cmp is None or cmp.low <= 0 <= cmp.high:
            out[cell] = "no difference resolved"
        else:
            out[cell] = "rgb (as FRM says)" if cmp.low > 0 else "depth (against FRM)"
    return out


def k_trajectories(records: Sequence[Mapping]) -> pd.DataFrame:
    """Long table of the epoch-mean K of every run that logs it: arm, seed, epoch, modality, K, and the
    within-epoch standard deviation of the steps' K where the run logs K^2 (``train_K2_<m>``), else NaN.

    The logs are float32 epoch means, so a variance below 1e-6 (a std below 0.001) is rounding: it reads 0.
    """
    rows = []
    for r in records:
        for h in r["history"]:
            for key in h:
                if not key.startswith("train_K_"):
                    continue
                m = key[len("train_K_"):]
                k, k2 = h[key], h.get(f"train_K2_{m}")
                var = k2 - k * k if k2 is not None else float("nan")
                std = float(np.sqrt(var)) if var > 1e-6 else (0.0 if k2 is not None else float("nan"))
                rows.append({"arm": r["arm"], "seed": r["seed"], "epoch": h["epoch"], "modality": m, "K": k,
                             "K std within epoch": std})
    if not rows:
        raise ValueError("no record logs K (train_K_<modality>)")
    return pd.DataFrame(rows)


def k_summary(k_long: pd.DataFrame, low: float, high: float, tolerance: float = 0.02) -> pd.DataFrame:
    """Per arm and modality: the range of K's epoch means, its largest move within a run, the distance of its
    mean to the nearest bound of (``low``, ``high``), and whether it is saturated (that distance and its spread
    within an epoch both under ``tolerance``; an unknown spread counts as not saturated)."""
    per_run = k_long.groupby(["arm", "modality", "seed"], sort=False)["K"].agg(["min", "max", "mean"])
    grouped = per_run.groupby(level=["arm", "modality"], sort=False)
    mean = grouped["mean"].mean()
    within = (k_long.groupby(["arm", "modality"], sort=False)["K std within epoch"].mean()
              if "K std within epoch" in k_long else pd.Series(np.nan, index=mean.index))
    return pd.DataFrame({"mean": mean, "mean std within an epoch": within, "lowest epoch mean": grouped["min"].min(),
                         "highest epoch mean": grouped["max"].max(),
                         "largest move within a run": (per_run["max"] - per_run["min"]).groupby(
                             level=["arm", "modality"], sort=False).max(),
                         "distance to the nearest bound": mean.map(lambda k: min(k - low, high - k))}).assign(
        saturated=lambda t: (t["distance to the nearest bound"] < tolerance) & (t["mean std within an epoch"] < tolerance))


def host_gap(k_long: pd.DataFrame, arms: Sequence[str]) -> float:
    """The largest difference of K between ``arms`` at the same seed, epoch and modality (0: K is model-free)."""
    sub = k_long[k_long.arm.isin(arms)]
    if sub.arm.nunique() < 2:
        raise ValueError(f"need K from at least two of {list(arms)}")
    wide = sub.pivot_table(index=["seed", "epoch", "modality"], columns="arm", values="K").dropna()
    return float((wide.max(axis=1) - wide.min(axis=1)).max()) if len(wide) else float("nan")


def k_grid(frms: Mapping[str, float], settings: Sequence[tuple[float, float, float, float]] = TABLE9,
           tolerance: float = 0.01) -> pd.DataFrame:
    """The weights each (alpha, beta, gamma, lambda) setting gives for the FRMs ``frms`` (the bank at the FRMs,
    as when FRM is constant), and whether they equal the last setting's (the default) within ``tolerance``."""
    values = torch.tensor([frms[m] for m in MODS], dtype=torch.float64)
    t = relative_frm(values, values)
    rows = []
    for a, b, g, lam in settings:
        k = weight_schedule(t, alpha=a, beta=b, lam=lam, gamma=g)
        rows.append({"alpha/beta/gamma/lambda": f"{a}/{b}/{g}/{lam}", **{f"K {m}": float(v) for m, v in zip(MODS, k)},
                     "K rgb / K depth": float(k[0] / k[1])})
    table = pd.DataFrame(rows).set_index("alpha/beta/gamma/lambda")
    default = table.iloc[-1][[f"K {m}" for m in MODS]]
    table["same K as the default"] = (table[[f"K {m}" for m in MODS]] - default).abs().max(axis=1) < tolerance
    return table


def comparison(evidence: Mapping[str, Arm], pairs: Mapping[str, tuple[str, str]],
               metrics: Mapping[str, str]) -> pd.DataFrame:
    """One row per labelled (treatment, control) pair, one column per metric: the paired effect in points."""
    return pd.DataFrame({label: {name: interval(evidence, t, c, metric) for name, metric in metrics.items()}
                         for label, (t, c) in pairs.items()}).T


def preconditions(claims: Sequence[Claim], evidence: Mapping[str, Arm]) -> dict[str, tuple[bool, str]]:
    """What each claim needs before it is judged, measured on the records.

    - ``suppression``: FRM names depth (the low-frequency view) as preferred in the claim's cell;
    - ``average``: the control's Average leaves more than twice ``delta`` below 100%;
    - ``pcr``: the control collapses (PCR above twice ``delta``) and the treatment does not lower the
      full-modality accuracy (its paired 95% interval is not wholly below zero): the PCR divides by it, so a
      cut bought by a lower full-modality accuracy is no robustness gain.
    """
    out = {}
    for c in claims:
        if c.metric == "suppression":
            host = arm(c.treatment.split(": ")[0], "late host")
            f = {m: mean_of(evidence, host, f"frm_{m}") for m in MODS}
            out[c.name] = (f["depth"] > f["rgb"], f"FRM depth {f['depth']:.3g} against rgb {f['rgb']:.3g}")
        elif c.metric == "average":
            room = 1 - mean_of(evidence, c.control, "average")
            out[c.name] = (room > 2 * c.delta, f"the control's Average leaves {100 * room:.1f} points below 100%")
        elif c.metric == "pcr":
            collapse = mean_of(evidence, c.control, "pcr")
            full = paired(evidence, c.treatment, c.control, full_metric(evidence[c.control]))
            lowered = full is not None and full.high < 0
            text = fmt_interval({"effect": full.effect, "low": full.low, "high": full.high}) if full else "—"
            holds = collapse > 2 * c.delta and not lowered
            reason = (f"the full-modality accuracy changes by {text} points, so the PCR's denominator falls"
                      if lowered else f"the control's PCR is {100 * collapse:.1f}%")
            out[c.name] = (holds, reason)
        else:
            raise ValueError(f"claim {c.name!r}: no precondition is defined for metric {c.metric!r}")
    return out
