"""The MoIR chapter's reading of its run records: the regimes one run holds, convergence, and the judged claims.

A gates-only run (``MoIR(regime="gates")``) trains the baseline, freezes it, attaches the router and trains the
gates, so it holds three models: the baseline, (a) the plug-in (gates at 0.5) and (b) the tuned gates.  Its
measure stores each model's scores as ``<metric>@<view>``; ``regime_records`` turns one such record into one
record per model, which ``verdict.arms_from_records`` then reads like any other arm.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd

from .. import verdict
from .pairs import interval

REGIME_ARMS = {"baseline": "baseline", "plug_in": "(a) plug-in", "gates": "(b) gates only",
               "trained": "(c) trained with router (ours)"}
SHARED = ("agree_", "overlap_")  # run metrics that are the same in every view (tokens before routing)
MAIN = "causal"  # the backbone whose arms carry no prefix and whose claims are judged
STREAMS = ("image", "text")


def arm_name(backbone: str, view: str) -> str:
    """The arm of one view: ``REGIME_ARMS[view]``, prefixed ``"<backbone>: "`` unless it is the main backbone."""
    if view not in REGIME_ARMS:
        raise ValueError(f"unknown view {view!r}; valid: {', '.join(REGIME_ARMS)}")
    return REGIME_ARMS[view] if backbone == MAIN else f"{backbone}: {REGIME_ARMS[view]}"


def _frozen_baseline(record: Mapping) -> tuple[bool, int, int]:
    """(converged, epochs, best epoch) of the baseline a gates or plug-in run trained and froze."""
    first = record["history"][0]
    if "baseline_converged" not in first:
        raise ValueError(f"record {record['arm']!r} seed {record['seed']} holds no frozen baseline (no "
                         "baseline_converged in its history)")
    epochs, best = int(first["baseline_epochs"]), int(first["baseline_best_epoch"])
    patience = record["spec"]["method_kwargs"].get("baseline", {}).get("patience")
    stalled = patience is not None and epochs - 1 - best >= patience
    return bool(first["baseline_converged"]) or stalled, epochs, best


def regime_records(records: Sequence[Mapping]) -> list[dict]:
    """One record per model each run holds, with that model's metrics and items (``@<view>`` removed).

    A run's arm is ``"<backbone>: <anything>"``.  The baseline and plug-in models carry the frozen baseline's
    convergence (nothing else trains them); the tuned gates converged when both the baseline and the gate fit
    did.  The flag is final: the copy's spec has no patience, so ``verdict.run_converged`` reads it as it is.
    """
    out = []
    for r in records:
        views = sorted({k.rpartition("@")[2] for k in r["metrics"] if "@" in k}, key=list(REGIME_ARMS).index)
        if not views:
            raise ValueError(f"record {r['arm']!r} seed {r['seed']} has no per-view metrics (<metric>@<view>)")
        backbone = r["arm"].partition(":")[0].strip()
        for view in views:
            metrics = {k: v for k, v in r["metrics"].items() if k.startswith(SHARED)}
            metrics.update({k[:-len(view) - 1]: v for k, v in r["metrics"].items() if k.endswith(f"@{view}")})
            items = {k[:-len(view) - 1]: v for k, v in r["items"].items() if k.endswith(f"@{view}")}
            ok, epochs, best = verdict.run_converged(r), r["epochs"], r["best_epoch"]
            if view in ("baseline", "plug_in"):
                ok, epochs, best = _frozen_baseline(r)
            elif view == "gates":
                ok = ok and _frozen_baseline(r)[0]
            out.append({**r, "arm": arm_name(backbone, view), "backbone": backbone, "view": view, "metrics": metrics,
                        "items": items, "converged": ok, "epochs": epochs, "best_epoch": best,
                        "spec": {**r["spec"], "train": {**r["spec"]["train"], "patience": None}}})
    return out


def convergence(views: Sequence[Mapping]) -> pd.DataFrame:
    """Per arm of ``regime_records``: runs, the longest fit, the latest best epoch, and how many converged."""
    rows = pd.DataFrame([{"arm": v["arm"], "seed": v["seed"], "epochs": v["epochs"], "best epoch": v["best_epoch"],
                          "converged": bool(v["converged"])} for v in views])
    return rows.groupby("arm", sort=False).agg(runs=("seed", "size"), epochs_max=("epochs", "max"),
                                              best_epoch_max=("best epoch", "max"), converged=("converged", "sum"))


def paired(evidence: Mapping[str, verdict.Arm], pairs: Sequence[tuple[str, str]], metrics: Mapping[str, str],
           scale: float = 100.0) -> pd.DataFrame:
    """Treatment minus control on each metric, '<effect> [<low>, <high>]' at 95% over seeds and items
    (``verdict.compare``, unjudged); '—' where fewer than two seeds are shared."""
    table: dict[str, dict[str, str]] = {}
    for metric, label in metrics.items():
        column = {}
        for t, c in pairs:
            column[t] = interval(evidence, t, c, metric, scale)
        table[label] = column
    return pd.DataFrame(table).rename_axis("minus the baseline (points)")


def claims(views: Sequence[Mapping], paper: Mapping[str, str], share_delta: float = 0.05, acc_delta: float = 0.02,
           imbalance: float = 0.4) -> tuple[list[verdict.Claim], dict[str, tuple[bool, str]]]:
    """The chapter's claims on the main backbone, with each claim's precondition, from the baseline arm alone.

    The weaker stream is the one the baseline credits less (mean Shapley share below one half); balance is the
    signed change in its share.  Preconditions: the baseline is imbalanced (weaker share below ``imbalance``)
    for the balance claims; the baseline errs on more than twice ``acc_delta`` of the clean test for accuracy;
    a degradation drops the baseline's accuracy by more than twice ``acc_delta`` for the robustness and
    dominance claims on it.  ``paper`` maps balance, accuracy, robustness and dominance to the paper's words.
    """
    base = [v for v in views if v["arm"] == REGIME_ARMS["baseline"]]
    if not base:
        raise ValueError(f"no {REGIME_ARMS['baseline']!r} arm among {sorted({v['arm'] for v in views})}")
    missing = [k for k in ("balance", "accuracy", "robustness", "dominance") if k not in paper]
    if missing:
        raise KeyError(f"paper lacks {missing}")
    mean = {m: sum(v["metrics"][m] for v in base) / len(base) for m in
            ("share_image", "share_text", "accuracy", "drop_image", "drop_text")}
    weak = min(STREAMS, key=lambda s: mean[f"share_{s}"])
    n_test = len(base[0]["labels"])
    share_reason = (f"no reported number; {100 * share_delta:.0f} points of share is the smallest shift we would "
                    "call a change in balance or dominance")
    acc_reason = (f"no reported number; {100 * acc_delta:.0f} points ({round(acc_delta * n_test)} of {n_test} test "
                  "items) is the smallest accuracy change we would call a gain")
    A, B, base_arm = REGIME_ARMS["plug_in"], REGIME_ARMS["gates"], REGIME_ARMS["baseline"]
    out = [verdict.Claim(f"{label} raises the weaker stream's ({weak}) Shapley share", f"share_{weak}", arm, base_arm,
                         share_delta, share_reason, paper=paper["balance"]) for label, arm in
           (("(a) plug-in", A), ("(b) gates-only tuning", B))]
    out += [verdict.Claim(f"{label} improves clean accuracy", "accuracy", arm, base_arm, acc_delta, acc_reason,
                          paper=paper["accuracy"]) for label, arm in (("(a) plug-in", A), ("(b) gates-only tuning", B))]
    out += [verdict.Claim(f"(b) shrinks the drop from clean when the {s if s == 'image' else 'prompt'} is degraded",
                          f"drop_{s}", B, base_arm, acc_delta, acc_reason, higher_is_better=False,
                          paper=paper["robustness"]) for s in STREAMS]
    out += [verdict.Claim(f"(b) moves dominance further away from a degraded {s if s == 'image' else 'prompt'}",
                          f"shift_{s}_degraded", B, base_arm, share_delta, share_reason, paper=paper["dominance"])
            for s in STREAMS]
    imbalanced = (mean[f"share_{weak}"] < imbalance,
                  f"the baseline's weaker stream ({weak}) has {100 * mean[f'share_{weak}']:.1f}% of the Shapley "
                  f"share; imbalance needs below {100 * imbalance:.0f}%")
    headroom = (1 - mean["accuracy"] > 2 * acc_delta, f"the baseline's clean accuracy is {100 * mean['accuracy']:.1f}%")
    hurts = {s: (mean[f"drop_{s}"] > 2 * acc_delta, f"degrading the {s} drops the baseline by "
                 f"{100 * mean[f'drop_{s}']:.1f} points; the claim needs more than {200 * acc_delta:.0f}")
             for s in STREAMS}
    pre = {out[0].name: imbalanced, out[1].name: imbalanced, out[2].name: headroom, out[3].name: headroom,
           out[4].name: hurts["image"], out[5].name: hurts["text"], out[6].name: hurts["image"],
           out[7].name: hurts["text"]}
    return out, pre
