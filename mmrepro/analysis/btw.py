"""The BTW chapter's grid and analyses: its settings and run plan, and the tables and claims read from its records.

The grid is built here so that the chapter only picks sizes; every table takes the chapter's verdict arms
(``verdict.arms_from_records``) or its run table (``run_table``) and returns a frame for display.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .. import verdict
from ..data.mfeat import VIEWS
from ..experiment import RunSpec
from ..measures import btw as measures

METHODS = {  # table name -> (registered method, constructor options); every "btw" arm is the same MoE backbone
    "MoE": ("btw", {"weighting": "none"}),
    "concat": ("joint", {}),
    "late": ("late", {}),
    "KL-only": ("btw", {"weighting": "kl"}),
    "MI-only": ("btw", {"weighting": "mi"}),
    "BTW": ("btw", {"weighting": "kl+mi"}),
    "BTW, official scaling": ("btw", {"weighting": "kl+mi", "scaling": "official"}),
    "BTW, L1 loss, MAE-driven alpha": ("btw", {"weighting": "kl+mi", "loss": "l1"}),
    "BTW, inverse KL": ("btw", {"weighting": "kl+mi", "inverse_kl": True}),
    "BTW, update on improvement": ("btw", {"weighting": "kl+mi", "update": "improvement"}),
}
MAIN = ["MoE", "concat", "late", "KL-only", "MI-only", "BTW"]
ABLATIONS = ["BTW, official scaling", "BTW, L1 loss, MAE-driven alpha", "BTW, inverse KL", "BTW, update on improvement"]
AV_EXTRAS = ["noise", "shuffled", "occluded", "shuffled_audio"]

Setting = tuple[dict[str, Any], "str | None", bool]  # data options, mask key of noisy/informative items, main setting


def mfeat_views(k: int, strongest: bool = True) -> list[str]:
    """The ``k`` strongest (or weakest) mfeat views, in that order."""
    return list(VIEWS[:k] if strongest else VIEWS[::-1][:k])


def mfeat_name(k: int, strongest: bool = True) -> str:
    """The setting name of mfeat with ``k`` views, added from the strongest (or the weakest)."""
    return "mfeat, all 6 views" if k == len(VIEWS) else f"mfeat, {k} {'strongest' if strongest else 'weakest'} views"


def _require(size: Mapping[str, Any], keys: Sequence[str]) -> None:
    missing = [k for k in keys if k not in size]
    if missing:
        raise KeyError(f"the chapter's size table lacks {missing}; it has {sorted(size)}")


def settings(size: Mapping[str, Any], image_noise: float) -> dict[str, Setting]:
    """Every setting of the chapter at one profile's ``size``: setting -> (data options, mask key, main setting)."""
    _require(size, ["reg_sizes", "av_train", "av_ms", "mfeat_ks", "mfeat_per_class"])
    reg = {"name": "trimodal_regression", "sizes": size["reg_sizes"]}
    av = {"name": "av_digits_extra", "num_modalities": None, "features": "pca", "train_size": size["av_train"],
          "image_noise": image_noise}
    return {
        "reg, strong+weak": ({**reg, "keep": ["strong", "weak"]}, None, False),
        "reg, +noisy": (reg, None, True),
        "reg, instance": ({**reg, "variant": "instance"}, "_informative", False),
        "AV, audio+image": ({**av, "extras": []}, None, False),
        **{f"AV, +{e}": ({**av, "extras": [e]}, "_occluded" if e == "occluded" else None, e == "noise")
           for e in AV_EXTRAS},
        **{f"AV, M={m}": ({**av, "extras": AV_EXTRAS[: m - 2]}, "_occluded" if m > 4 else None, False)
           for m in size["av_ms"]},
        **{mfeat_name(k, s): ({"name": "mfeat", "views": mfeat_views(k, s), "per_class": size["mfeat_per_class"]},
                              None, k == len(VIEWS))
           for k in [*size["mfeat_ks"], len(VIEWS) - 1, len(VIEWS)] for s in (True, False)},
    }


def plan(size: Mapping[str, Any], seeds: Sequence[int], explore: Sequence[int]) -> dict[tuple[str, str], list[int]]:
    """(setting, method) -> seeds: the profile's ``seeds`` for the confirmatory arms, ``explore`` for the others."""
    _require(size, ["av_ms", "mfeat_ks"])
    runs: dict[tuple[str, str], list[int]] = {}

    def add(names: Sequence[str], methods: Sequence[str], run_seeds: Sequence[int]) -> None:
        for s in names:
            for m in methods:
                runs[s, m] = max(runs.get((s, m), []), list(run_seeds), key=len)

    add(["reg, +noisy", "AV, +noise", "mfeat, all 6 views"], MAIN, seeds)  # main tables
    add(["reg, strong+weak", "AV, audio+image", mfeat_name(len(VIEWS) - 1)], ["MoE"], seeds)  # motivation
    add(["reg, +noisy"], ABLATIONS, seeds)
    add(["AV, +noise"], [a for a in ABLATIONS if "L1" not in a], explore)  # L1 is a regression loss
    add(["reg, instance"], ["MoE", "KL-only", "BTW"], seeds)
    add([f"AV, +{e}" for e in AV_EXTRAS[1:]] + ["AV, audio+image"] + [f"AV, M={m}" for m in size["av_ms"]],
        ["MoE", "BTW"], explore)  # which extra hurts; scaling
    add([mfeat_name(k, s) for k in size["mfeat_ks"] for s in (True, False)] + [mfeat_name(len(VIEWS) - 1)],
        ["MoE", "BTW"], explore)
    return runs


def specs_for(setting: str, method: str, run_seeds: Sequence[int], all_settings: Mapping[str, Setting],
              train: Mapping[str, Any], train_av: Mapping[str, Any]) -> list[RunSpec]:
    """The runs of one arm: its data, method, and the measures that apply to it."""
    data, mask, main = all_settings[setting]
    name, kwargs = METHODS[method]
    extra: list[Any] = []
    if data["name"] == "trimodal_regression":
        extra.append("mmrepro.measures.btw:sentiment")
    if name == "btw":
        extra.append(("mmrepro.measures.btw:token_weights", {"mask": mask}) if mask else "mmrepro.measures.btw:token_weights")
        if main:
            extra.append("mmrepro.measures.btw:missing")
        if data["name"] == "mfeat":
            kwargs = {**kwargs, "uid_key": "_row"}  # mfeat's row id, unique across its splits
    run_train = train_av if data["name"] == "av_digits_extra" else train
    return [RunSpec(arm=f"{setting}: {method}", method=name, seed=seed, data=data, train=run_train, method_kwargs=kwargs,
                    measures=tuple(extra)) for seed in run_seeds]


def specs(runs: Mapping[tuple[str, str], Sequence[int]], all_settings: Mapping[str, Setting],
          train: Mapping[str, Any], train_av: Mapping[str, Any]) -> list[RunSpec]:
    """Every run of the plan ``runs``, arm by arm in the plan's order."""
    return [spec for (setting, method), run_seeds in runs.items()
            for spec in specs_for(setting, method, run_seeds, all_settings, train, train_av)]


def arm_names(setting: str, methods: Sequence[str]) -> list[str]:
    """The arm names of ``methods`` in one setting."""
    return [f"{setting}: {m}" for m in methods]


MOTIVATION = {  # dataset -> (without, with, metric)
    "regression (MAE)": ("reg, strong+weak: MoE", "reg, +noisy: MoE", "MAE"),
    "AV-Digits (accuracy)": ("AV, audio+image: MoE", "AV, +noise: MoE", "accuracy"),
    "mfeat (accuracy)": (f"{mfeat_name(len(VIEWS) - 1)}: MoE", "mfeat, all 6 views: MoE", "accuracy"),
}


def motivation(arms: Mapping[str, verdict.Arm]) -> pd.DataFrame:
    """Per data set, the unweighted MoE with and without the added modality: means and the paired difference."""
    return pd.concat({name: measures.versus(arms, without, [with_], [metric]).set_axis(["mean", "with − without"], axis=1)
                      for name, (without, with_, metric) in MOTIVATION.items()})


def run_table(table: pd.DataFrame) -> pd.DataFrame:
    """A grid's run table with its arm split into ``setting`` and ``method``."""
    if "arm" not in table:
        raise KeyError(f"the run table needs an 'arm' column; it has {list(table.columns)}")
    runs = table.copy()
    parts = runs.arm.str.rsplit(": ", n=1, expand=True)
    runs["setting"], runs["method"] = parts[0], parts[1]
    return runs


def scaling_rows(runs: pd.DataFrame, size: Mapping[str, Any]) -> pd.DataFrame:
    """Per run: data set, order, M, method and accuracy, for the scaling arms."""
    orders = {mfeat_name(k, s): ("mfeat", "strongest first" if s else "weakest first", k)
              for k in [*size["mfeat_ks"], len(VIEWS) - 1] for s in (True, False)}
    orders.update({"AV, audio+image": ("AV-Digits", "extras in order", 2), "AV, +noise": ("AV-Digits", "extras in order", 3),
                   **{f"AV, M={m}": ("AV-Digits", "extras in order", m) for m in size["av_ms"]}})
    rows = []
    for _, r in runs[runs.method.isin(["MoE", "BTW"])].iterrows():
        if r.setting == "mfeat, all 6 views":
            rows += [{**r, "data": "mfeat", "order": o, "M": len(VIEWS)} for o in ("strongest first", "weakest first")]
        elif r.setting in orders:
            data, order, m = orders[r.setting]
            rows.append({**r, "data": data, "order": order, "M": m})
    scaling = pd.DataFrame(rows)
    scaling["curve"] = scaling.method + ", " + scaling.order
    return scaling


def weight_table(arms: Mapping[str, verdict.Arm], setting: str, methods: Sequence[str],
                 all_settings: Mapping[str, Setting]) -> pd.DataFrame:
    """Mean test token weight per modality (columns, in the data's order) of each arm of one setting."""
    rows = {}
    for method in methods:
        arm = f"{setting}: {method}"
        if arm in arms:
            rows[method] = {k.removeprefix("weight_"): v.mean() for k, v in arms[arm].scores.items()
                            if k.startswith("weight_") and not k.startswith("weight_gap")}
    if not rows:
        raise KeyError(f"no arm of {setting!r} among {list(methods)} has records")
    recorded = {m for weights in rows.values() for m in weights}
    order = [m for m in modalities(all_settings[setting][0]) if m in recorded]
    return pd.DataFrame.from_dict(rows, orient="index")[order + sorted(recorded - set(order))].round(3).rename_axis(setting)


def modalities(data: Mapping[str, Any]) -> list[str]:
    """The modalities of one setting's data options, in the data's order."""
    if data["name"] == "mfeat":
        return list(data["views"])
    if data["name"] == "trimodal_regression":
        return list(data.get("keep") or ["strong", "weak", "partial" if data.get("variant") == "instance" else "noisy"])
    if data["name"] == "av_digits_extra":
        return ["audio", "image", *data["extras"]]
    raise ValueError(f"unknown data set {data['name']!r}; known: mfeat, trimodal_regression, av_digits_extra")


GAPS = [("reg, instance: KL-only", "weight_gap_partial"), ("reg, instance: BTW", "weight_gap_partial"),
        ("AV, +occluded: BTW", "weight_gap_occluded")]


def weight_gaps(arms: Mapping[str, verdict.Arm]) -> pd.DataFrame:
    """Mean and spread over seeds of the weight gaps between noisy and informative items (arms without records left out)."""
    gaps = {arm: arms[arm].scores[key] for arm, key in GAPS if arm in arms}
    return pd.DataFrame({"mean gap": {a: v.mean() for a, v in gaps.items()},
                         "std over seeds": {a: v.std(ddof=1) for a, v in gaps.items()},
                         "seeds": {a: len(v) for a, v in gaps.items()}}).round(4)


SPREAD = [("regression MAE", "reg, +noisy", "mae"), ("AV-Digits accuracy", "AV, +noise", "accuracy"),
          ("mfeat accuracy", "mfeat, all 6 views", "accuracy")]


def spread(runs: pd.DataFrame) -> pd.DataFrame:
    """BTW's and the MoE's across-seed spread per main setting, their variance ratio and its verdict."""
    def values(arm: str, metric: str) -> np.ndarray:
        return runs.loc[runs.arm == arm, metric].to_numpy()

    rows = {}
    for name, setting, metric in SPREAD:
        btw_values, moe_values = values(f"{setting}: BTW", metric), values(f"{setting}: MoE", metric)
        ratio = measures.variance_ratio(btw_values, moe_values)
        rows[name] = {"std BTW": btw_values.std(ddof=1), "std MoE": moe_values.std(ddof=1), **ratio,
                      "seeds": len(btw_values), "judged": measures.spread_verdict(ratio)}
    return pd.DataFrame(rows).T


MISSING = [("reg, +noisy", ["strong", "weak", "noisy"]), ("AV, +noise", ["audio", "image", "noise"]),
           ("mfeat, all 6 views", list(VIEWS))]


def missing_tables(arms: Mapping[str, verdict.Arm]) -> list[pd.DataFrame]:
    """Per main setting, BTW against the MoE scored with each modality removed in turn."""
    tables = []
    for setting, mods in MISSING:
        key = "MAE" if setting.startswith("reg") else "accuracy"
        tables.append(measures.versus(arms, f"{setting}: MoE", [f"{setting}: BTW"], [f"{key}_without_{m}" for m in mods])
                      .rename_axis(setting))
    return tables


def claims(rep: pd.DataFrame) -> list[verdict.Claim]:
    """The chapter's claims, each ``delta`` half an effect of the authors' notebooks (``rep``: ``results.reported``)."""
    value = rep.set_index(["setting", "method", "metric"])["value"]
    mae_gain = -value[("MOSI test (n=686), paired error analysis", "KL weights (local residual) minus MoE", "mae_difference")]
    fourth = (value[("complete cohort, earlier run", "MoE, TS+CXR+Text", "accuracy")]
              - value[("complete cohort, earlier run", "MoE, TS+CXR+Text+ECG", "accuracy")])
    cohorts = rep[(rep.metric == "accuracy") & rep.method.isin(["BTW (KL+MI)", "MoE (unweighted)"])
                  & ~rep.setting.str.contains("earlier")]
    btw_gain = cohorts.pivot_table(index="setting", columns="method", values="value").pipe(
        lambda t: (t["BTW (KL+MI)"] - t["MoE (unweighted)"]).mean())
    mae_reason = "half the MAE gain the authors' MOSI error analysis reports for KL weights over the MoE"
    fourth_reason = "half the accuracy the MIMIC-IV MoE lost when ECG was added (authors' notebook)"
    gain_reason = "half BTW's accuracy gain over the MoE, mean of the two MIMIC-IV cohorts (authors' notebook)"
    five_views = f"{mfeat_name(len(VIEWS) - 1)}: MoE"
    return [
        verdict.Claim("adding a noise modality hurts the unweighted MoE (regression)", "MAE", "reg, strong+weak: MoE",
                      "reg, +noisy: MoE", mae_gain / 2, mae_reason, higher_is_better=False,
                      paper="Fig. 1: on MOSI the text-only model beats the tri-modal one"),
        verdict.Claim("adding a noise modality hurts the unweighted MoE (AV-Digits)", "accuracy", "AV, audio+image: MoE",
                      "AV, +noise: MoE", fourth / 2, fourth_reason, paper="Fig. 1; MIMIC-IV notebook: the fourth modality hurt"),
        verdict.Claim("adding the weak view hurts the unweighted MoE (mfeat)", "accuracy", five_views,
                      "mfeat, all 6 views: MoE", fourth / 2, fourth_reason, paper="Fig. 1 (weak rather than pure noise)"),
        verdict.Claim("BTW lowers the MAE of the MoE (regression)", "MAE", "reg, +noisy: BTW", "reg, +noisy: MoE",
                      mae_gain / 2, mae_reason, higher_is_better=False,
                      paper="abstract: 'significantly improves regression performance'"),
        verdict.Claim("BTW raises the MoE's accuracy (AV-Digits + noise)", "accuracy", "AV, +noise: BTW", "AV, +noise: MoE",
                      btw_gain / 2, gain_reason, paper="abstract: improves multiclass classification accuracy"),
        verdict.Claim("BTW raises the MoE's accuracy (mfeat, 6 views)", "accuracy", "mfeat, all 6 views: BTW",
                      "mfeat, all 6 views: MoE", btw_gain / 2, gain_reason, paper="'beyond two modalities'"),
        verdict.Claim("BTW gives the noise modality less than uniform weight (regression)", "weight_noisy",
                      "reg, +noisy: MoE", "reg, +noisy: BTW", 0.0, "any amount below uniform", kind="sanity",
                      paper="weights scale the embeddings"),
        verdict.Claim("BTW gives the noise modality less than uniform weight (AV-Digits)", "weight_noise",
                      "AV, +noise: MoE", "AV, +noise: BTW", 0.0, "any amount below uniform", kind="sanity",
                      paper="weights scale the embeddings"),
        verdict.Claim("instance level: less weight on the noise-only examples of 'partial'", "weight_gap_partial",
                      "reg, instance: BTW", "reg, instance: MoE", 0.0, "any gap in the claimed direction", kind="sanity",
                      paper="per-example control (no numbers)"),
    ]


def headroom(arms: Mapping[str, verdict.Arm], claim: verdict.Claim, seeds: Sequence[int]) -> tuple[bool, str]:
    """Whether the control leaves room for the claimed accuracy gain (more than twice delta), and the room."""
    room = 1 - arms[claim.control].take("accuracy", seeds).mean()
    return room > 2 * claim.delta, f"the MoE leaves {100 * room:.1f} points below 100%"


def preconditions(arms: Mapping[str, verdict.Arm], all_claims: Sequence[verdict.Claim],
                  seeds: Sequence[int]) -> dict[str, tuple[bool, str]]:
    """The headroom precondition of every accuracy gain claimed for BTW over the MoE."""
    gains = [c for c in all_claims if c.kind != "sanity" and c.metric == "accuracy" and c.treatment.endswith(": BTW")]
    return {c.name: headroom(arms, c, seeds) for c in gains}
