"""The MoIR chapter's measurements: contribution shares, drops under degradation, and SVD/variance agreement.

``contributions`` is a run-spec measure: on the test set clean, with the image
degraded and with the prompt degraded (each corruption drawn once from a fixed
seed), it scores every item and computes each stream's exact Shapley value, for
every model the run holds (``MoIR.view``: a gates-only run holds the frozen
baseline, the plug-in and the tuned gates), each name suffixed ``@<view>``.
Single-stream subsets are scored with the router idle (it needs both streams),
the same way in every arm.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import evaluate
from ..data.core import LABEL, DictDataset, Splits, iterate
from ..data.corruptions import make_corruption
from ..methods.base import Method
from ..methods.moir import VIEWS, MoIRRouter, informativeness

STREAMS = ("image", "text")


def degraded(dataset: DictDataset, splits: Splits, kind: str, modality: str, level: float, seed: int = 0) -> DictDataset:
    """``dataset`` with one stream corrupted once, from a fixed seed (the same corrupted items for every arm)."""
    corrupt = make_corruption(kind, modality, level, splits.valid_range.get(modality))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return dataset.with_tensors(**{modality: corrupt(dict(dataset.tensors))[modality]})


def correct(method: Method, dataset: DictDataset) -> list[float]:
    """Per-item correctness of the fused prediction."""
    p = evaluate.predict(method, dataset)
    return (p.logits.argmax(-1) == p.labels).float().tolist()


def image_share(method: Method, dataset: DictDataset) -> float:
    """|phi_image| / (|phi_image| + |phi_text|) for accuracy (exact two-player Shapley)."""
    phi = evaluate.shapley(method, dataset, STREAMS)
    a, b = abs(phi["image"]), abs(phi["text"])
    return a / max(a + b, 1e-9)


@torch.no_grad()
def channel_agreement(method: Method, dataset: DictDataset) -> dict[str, float]:
    """Per stream: the fraction of test items whose k' weakest channels are the same set under SVD energy
    (the router's rank q) and under per-channel variance (``agree_<stream>``), and the mean shared fraction
    of channels (``overlap_<stream>``)."""
    model = method.model.eval()
    device = next(model.parameters()).device
    router: MoIRRouter = model.router
    k = router.channels_routed()
    same: dict[str, list[Tensor]] = {m: [] for m in STREAMS}
    shared: dict[str, list[Tensor]] = {m: [] for m in STREAMS}
    for batch in iterate(dataset, 512):
        for m, (x, mask) in model.tokens({k: v.to(device) for k, v in batch.items()}).items():
            picks = [informativeness(x, mask, "channel", scoring, router.rank, router.cap).topk(k, 1, largest=False)
                     .indices.sort(1).values for scoring in ("svd", "variance")]
            common = (picks[0].unsqueeze(2) == picks[1].unsqueeze(1)).any(2).float().mean(1)
            same[m].append((common == 1).float())
            shared[m].append(common)
    return {**{f"agree_{m}": torch.cat(v).mean().item() for m, v in same.items()},
            **{f"overlap_{m}": torch.cat(v).mean().item() for m, v in shared.items()}}


def contributions(method: Method, splits: Splits, image_noise: float = 0.5,
                  text_mask: float = 0.5) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Per view of the run (``<name>@<view>``): accuracy clean and on the randomised-hint test, the drop from clean
    with each stream degraded (per item), the image's Shapley share clean and degraded and its shifts; and, for a
    routed model, the channel agreement (once: the tokens before routing are the same in every view)."""
    test = splits.test
    worse = {"image": degraded(test, splits, "gaussian", "image", image_noise),
             "text": degraded(test, splits, "token_mask", "text", text_mask)}
    metrics: dict[str, float] = {}
    items: dict[str, list[float]] = {}
    for view in VIEWS[getattr(method, "regime", "trained")]:
        with method.view(view):
            view_metrics, view_items = _scores(method, test, splits.info["test_randomised"], worse)
        metrics.update({f"{k}@{view}": v for k, v in view_metrics.items()})
        items.update({f"{k}@{view}": v for k, v in view_items.items()})
    if getattr(method.model, "router", None) is not None:
        metrics.update(channel_agreement(method, test))
    return metrics, items


def _scores(method: Method, test: DictDataset, randomised: DictDataset,
            worse: dict[str, DictDataset]) -> tuple[dict[str, float], dict[str, list[float]]]:
    """One model's accuracies, drops, shares and shifts (the body of ``contributions``)."""
    clean = correct(method, test)
    items = {"accuracy": clean, "accuracy_randomised": correct(method, randomised)}
    for m, data in worse.items():
        items[f"drop_{m}"] = [c - d for c, d in zip(clean, correct(method, data))]
    share = {"clean": image_share(method, test), **{m: image_share(method, data) for m, data in worse.items()}}
    metrics = {k: sum(v) / len(v) for k, v in items.items()}
    metrics.update(share_image=share["clean"], share_text=1 - share["clean"], share_image_image_degraded=share["image"],
                   share_image_text_degraded=share["text"],
                   shift_image_degraded=share["clean"] - share["image"],  # > 0: dominance leaves the noisy image
                   shift_text_degraded=share["text"] - share["clean"])  # > 0: dominance leaves the masked prompt
    return metrics, items
