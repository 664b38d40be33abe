"""MoIR, the Multi-modal Information Router (Kim, Prabhushankar & AlRegib, arXiv 2604.16264).

Before the reasoning transformer sees them, each modality's tokens are
scored per feature channel by their energy in the token matrix's principal
subspace (Eq. 1, a batched truncated SVD), and the weakest fraction ``r`` of
channels receives the other modality's mean-pooled token, RMS-matched and
blended through a per-channel gate (Eq. 3).  ``MoIRRouter`` is the module
(it sits between any two token streams of the same width); ``MoIR`` is the
training recipe for a ``TokenModel`` that carries one (or none: the baseline).

Every ablation is a constructor flag: ``level`` (channel / token),
``select`` (bottom / top / random), ``scoring`` (svd / variance),
``rms_match``, ``direction`` (both / a / b), ``inject`` (blend / append),
``learn_gates`` and ``gate_init``; ``MoIR(modality_dropout=p)`` is the
classic balancing baseline the chapter compares with.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import validate
from ..data.av_digits import load_av_digits, read_mnist_test
from ..data.core import LABEL, Batch, Splits
from ..models.multimodal import Output
from ..models.token_model import TokenModel, build_token_model
from ..train import Context, fit
from .base import Method, StepOut

Level = Literal["channel", "token"]
Select = Literal["bottom", "top", "random"]
Scoring = Literal["svd", "variance"]
Direction = Literal["both", "a", "b"]
Inject = Literal["blend", "append"]
EPS = 1e-6
SCALE_CLIP = (0.1, 10.0)


def _check(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(map(repr, valid))}")


def first_valid(mask: Tensor, cap: int) -> Tensor:
    """The mask restricted to each sample's first ``cap`` valid tokens (the port's token cap)."""
    return mask & (mask.cumsum(1) <= cap)


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over valid tokens, (B, T, D) -> (B, D); zero for a sample with none."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


def centred(x: Tensor, mask: Tensor) -> Tensor:
    """Tokens minus their masked mean, with padded rows set to zero (so they add nothing to an SVD)."""
    return (x - masked_mean(x, mask).unsqueeze(1)) * mask.unsqueeze(-1).to(x.dtype)


@torch.no_grad()
def informativeness(x: Tensor, mask: Tensor, level: Level = "channel", scoring: Scoring = "svd",
                    rank: int = 64, cap: int = 256) -> Tensor:
    """Eq. 1, batched: channel energy S_d = sum_i sigma_i^2 V_{d,i}^2 (B, D), or token leverage (B, T).

    Computed in float32 on each sample's first ``cap`` valid tokens, centred;
    ``rank`` is the SVD truncation q.  ``scoring="variance"`` uses the centred
    per-channel (or per-token) energy instead, as does any sample whose SVD is
    not finite.  Tokens beyond the cap get leverage +inf (never "weak").
    """
    _check("level", level, ("channel", "token"))
    _check("scoring", scoring, ("svd", "variance"))
    x, valid = x.float(), first_valid(mask, cap)
    xc = centred(x, valid)
    n = valid.sum(1, keepdim=True).clamp_min(1).float()
    variance = xc.pow(2).sum(1) / n if level == "channel" else xc.pow(2).sum(2)
    if scoring == "variance":
        scores = variance
    else:
        u, s, vh = torch.linalg.svd(xc, full_matrices=False)  # one batched call, no loop over samples
        q = min(rank, s.shape[-1])
        energy = s[:, :q].pow(2)
        scores = (vh[:, :q].pow(2) * energy.unsqueeze(-1)).sum(1) if level == "channel" \
            else (u[:, :, :q].pow(2) * energy.unsqueeze(1)).sum(2)
        finite = torch.isfinite(scores).all(-1, keepdim=True)
        scores = torch.where(finite, scores, variance)
    if level == "token":
        scores = scores.masked_fill(mask & ~valid, float("inf"))
    return scores


@torch.no_grad()
def token_ranks(model: TokenModel, batch: Batch) -> dict[tuple[str, str], float]:
    """Mean effective rank of each stream's and of the joint token matrix, before and after the router,
    keyed ``("before" | "after", stream | "joint")``."""
    model = model.eval()
    device = next(model.parameters()).device
    raw = model.tokens({k: v.to(device) for k, v in batch.items()})
    ranks = {}
    for when, toks in (("before", raw), ("after", model.route(raw))):
        for m, (x, mask) in toks.items():
            ranks[(when, m)] = effective_rank(x, mask).mean().item()
        x = torch.cat([t[0] for t in toks.values()], 1)
        mask = torch.cat([t[1] for t in toks.values()], 1)
        ranks[(when, "joint")] = effective_rank(x, mask).mean().item()
    return ranks


def effective_rank(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """exp of the entropy of the normalised singular values of each sample's token matrix (B,)."""
    x = x.float() if mask is None else x.float() * mask.unsqueeze(-1)
    s = torch.linalg.svdvals(x)
    p = s / s.sum(-1, keepdim=True).clamp_min(EPS)
    return torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum(-1))


def _rms(x: Tensor, region: Tensor) -> Tensor:
    """RMS(Z) = sqrt(mean(Z^2) + eps) over the entries of ``region``, per sample (B,)."""
    r = region.to(x.dtype)
    return torch.sqrt((x.pow(2) * r).flatten(1).sum(1) / r.flatten(1).sum(1).clamp_min(1.0) + EPS)


class MoIRRouter(nn.Module):
    """Routes each modality's pooled token into the other's least informative channels (Eq. 1-3).

    ``forward(xa, xb, mask_a, mask_b)`` takes two token streams (B, T, D) with
    validity masks (B, T) and returns the routed streams and their masks (the
    masks change only with ``inject="append"``, which adds one token).  Padding
    never enters a score, a pooled vector or an RMS, and is never modified.
    """

    def __init__(self, dim: int, ratio: float = 0.10, rank: int = 64, cap: int = 256, gate_init: float = 0.5,
                 learn_gates: bool = True, level: Level = "channel", select: Select = "bottom",
                 scoring: Scoring = "svd", rms_match: bool = True, direction: Direction = "both",
                 inject: Inject = "blend"):
        super().__init__()
        if not 0 < ratio <= 1:
            raise ValueError(f"ratio (the exchange ratio r) must lie in (0, 1], got {ratio}")
        for name, value in (("dim", dim), ("rank", rank), ("cap", cap)):
            validate.number(f"MoIR {name}", value, 1, integer=True)
        if not 0 <= gate_init <= 1 or (learn_gates and gate_init in (0.0, 1.0)):
            raise ValueError(f"gate_init must lie in [0, 1] (open interval (0, 1) when learn_gates), got {gate_init}")
        for name, value, valid in (("level", level, ("channel", "token")), ("select", select, ("bottom", "top", "random")),
                                   ("scoring", scoring, ("svd", "variance")), ("direction", direction, ("both", "a", "b")),
                                   ("inject", inject, ("blend", "append"))):
            _check(name, value, valid)
        self.dim, self.ratio, self.rank, self.cap = dim, ratio, rank, cap
        self.level, self.select, self.scoring, self.rms_match = level, select, scoring, rms_match
        self.direction, self.inject = direction, inject
        logits = torch.full((2, dim), math.log(gate_init) - math.log1p(-gate_init) if 0 < gate_init < 1
                            else (float("inf") if gate_init == 1 else float("-inf")))
        if learn_gates:
            self.gate_logits = nn.Parameter(logits)  # theta: one vector per direction (into a, into b)
        else:
            self.register_buffer("gate_logits", logits)

    @property
    def gates(self) -> Tensor:
        """alpha = sigmoid(theta), shape (2, D): row 0 gates routing into a, row 1 into b."""
        return torch.sigmoid(self.gate_logits)

    def channels_routed(self) -> int:
        """k' = ceil(r * D), the number of channels that receive the other modality per sample."""
        return math.ceil(self.ratio * self.dim)

    def weak(self, x: Tensor, mask: Tensor) -> Tensor:
        """The region (B, T, D) of valid entries that receives the other modality."""
        if self.select == "random":
            scores = torch.rand(x.shape[0], x.shape[1] if self.level == "token" else x.shape[2], device=x.device)
        else:
            scores = informativeness(x, mask, self.level, self.scoring, self.rank, self.cap)
            if self.select == "top":  # tokens beyond the cap (+inf) stay unselectable
                scores = torch.where(torch.isinf(scores), scores, -scores)
        if self.level == "channel":
            idx = scores.topk(self.channels_routed(), dim=1, largest=False).indices
            chosen = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, idx, True)
            return mask.unsqueeze(-1) & chosen.unsqueeze(1)
        scores = scores.masked_fill(~mask, float("inf"))
        rank_of = scores.argsort(dim=1, stable=True).argsort(dim=1)
        k = torch.ceil(self.ratio * mask.sum(1, keepdim=True).float())
        return (mask & (rank_of < k)).unsqueeze(-1).expand_as(x)

    def route(self, x: Tensor, mask: Tensor, source: Tensor, active: Tensor, gate: Tensor) -> Tensor:
        """Eq. 3: x~ = alpha * s * pooled + (1 - alpha) * x on the weak region; x elsewhere."""
        region = self.weak(x, mask) & active.view(-1, 1, 1)
        src = source.unsqueeze(1).expand_as(x)
        scale = (_rms(x, region) / (_rms(src, region) + EPS)).clamp(*SCALE_CLIP) if self.rms_match \
            else torch.ones(x.shape[0], device=x.device)
        routed = gate * scale.view(-1, 1, 1) * src + (1 - gate) * x
        return torch.where(region, routed, x)

    def append(self, x: Tensor, mask: Tensor, source: Tensor, active: Tensor) -> tuple[Tensor, Tensor]:
        """The ablation: the pooled other-modality vector (RMS-matched) as one extra token."""
        scale = (_rms(x, mask.unsqueeze(-1).expand_as(x)) / (_rms(source, torch.ones_like(source, dtype=torch.bool))
                 + EPS)).clamp(*SCALE_CLIP) if self.rms_match else torch.ones(x.shape[0], device=x.device)
        token = (scale.unsqueeze(-1) * source * active.unsqueeze(-1)).unsqueeze(1)
        return torch.cat([x, token], 1), torch.cat([mask, active.unsqueeze(1)], 1)

    def forward(self, xa: Tensor, xb: Tensor, mask_a: Tensor, mask_b: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        if xa.shape[-1] != self.dim or xb.shape[-1] != self.dim:
            raise ValueError(f"both streams must have width {self.dim}, got {xa.shape[-1]} and {xb.shape[-1]}")
        dtype = xa.dtype
        with torch.autocast(device_type=xa.device.type, enabled=False):  # SVD and RMS in float32
            xa, xb = xa.float(), xb.float()
            na, nb = mask_a.sum(1), mask_b.sum(1)
            pa, pb = masked_mean(xa, mask_a), masked_mean(xb, mask_b)  # from the unrouted inputs
            into_a, into_b = (na >= 2) & (nb >= 1), (nb >= 2) & (na >= 1)
            ya, yb, mask_a2, mask_b2 = xa, xb, mask_a, mask_b
            gates = self.gates
            if self.direction in ("both", "a"):
                ya, mask_a2 = self.append(xa, mask_a, pb, into_a) if self.inject == "append" \
                    else (self.route(xa, mask_a, pb, into_a, gates[0]), mask_a)
            if self.direction in ("both", "b"):
                yb, mask_b2 = self.append(xb, mask_b, pa, into_b) if self.inject == "append" \
                    else (self.route(xb, mask_b, pa, into_b, gates[1]), mask_b)
            ya, yb = _finite_or(ya, xa), _finite_or(yb, xb)
        return ya.to(dtype), yb.to(dtype), mask_a2, mask_b2

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, ratio={self.ratio}, level={self.level}, select={self.select}, scoring={self.scoring}, "
                f"rms_match={self.rms_match}, direction={self.direction}, inject={self.inject}")


def _finite_or(y: Tensor, x: Tensor) -> Tensor:
    """The port's safety net: a sample whose routed tokens are not finite keeps its input tokens."""
    if y.shape != x.shape:
        return torch.nan_to_num(y)
    ok = torch.isfinite(y).flatten(1).all(1).view(-1, 1, 1)
    return torch.where(ok, y, x)


REGIMES = ("trained", "plug_in", "gates")
#: regime -> the views of one run's model that a measure can score (``MoIR.view``)
VIEWS = {"trained": ("trained",), "plug_in": ("baseline", "plug_in"), "gates": ("baseline", "plug_in", "gates")}


def unused_mnist(splits: Splits) -> tuple[Tensor, Tensor, Tensor]:
    """(indices, images (N, 1, 28, 28) in [0, 1], digits) of the MNIST test images that AV-Digits never pairs
    with a clip (7,000 of 10,000), for any of its splits; refuses if one of them is in ``splits``."""
    config = splits.info.get("config")
    if not isinstance(config, dict) or "pairing_seed" not in config:
        raise ValueError(f"image pretraining needs AV-Digits-based splits (info['config']['pairing_seed']); "
                         f"{splits.name!r} has info keys {sorted(splits.info)}")
    av = load_av_digits(pairing_seed=config["pairing_seed"])
    used = torch.cat([d.tensors["_mnist_index"] for d in (av.train, av.val, av.test)])
    run = [d.tensors["_mnist_index"] for d in (splits.train, splits.val, splits.test) if "_mnist_index" in d.tensors]
    if not run or not bool(torch.isin(torch.cat(run), used).all()):
        raise ValueError(f"{splits.name!r} does not record which MNIST images it uses (_mnist_index), or uses "
                         "images outside AV-Digits' pairing")
    images, digits = read_mnist_test()
    free = (~torch.isin(torch.arange(len(images)), used)).nonzero().squeeze(1)
    return free, images[free].float().div(255.0).unsqueeze(1), digits[free]


def pretrain_image_stream(model: TokenModel, splits: Splits, epochs: int = 5, lr: float = 2e-3, batch_size: int = 64,
                          seed: int = 0, freeze: bool = True) -> dict[str, float]:
    """Train the model's image stream with a linear head on its mean-pooled tokens to name the digit of the
    MNIST test images AV-Digits never uses (``unused_mnist``); then, with ``freeze``, freeze all of it but the
    projector (the frozen vision encoder of a LLaVA-style model).  The global RNG is left as it was.

    Returns the head's accuracy on the last epoch's batches and on the validation images of ``splits``.
    """
    validate.number("pretraining epochs", epochs, 1, integer=True)
    if "image" not in model.streams:
        raise ValueError(f"image pretraining needs an 'image' stream; the model has {list(model.streams)}")
    stream = model.streams["image"]
    _, images, digits = unused_mnist(splits)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = nn.Linear(stream.embed.out_features, 10)
        optimizer = torch.optim.Adam([*stream.parameters(), *head.parameters()], lr=lr)
        gen = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            hits = 0
            for idx in torch.randperm(len(images), generator=gen).split(batch_size):
                logits = head(stream(images[idx])[0].mean(1))
                loss = F.cross_entropy(logits, digits[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                hits += int((logits.argmax(1) == digits[idx]).sum())
    with torch.no_grad():
        val = splits.val.tensors
        val_digits = val.get("_digit", val[LABEL])
        val_acc = float((head(stream(val["image"])[0].mean(1)).argmax(1) == val_digits).float().mean())
    if freeze:
        for name, p in stream.named_parameters():
            p.requires_grad_(name.startswith("projector."))
    return {"pretrain_images": float(len(images)), "pretrain_train_accuracy": hits / len(images),
            "pretrain_val_accuracy": val_acc}


class MoIR(Method):
    """Cross-entropy training of a ``TokenModel`` whose router (MoIR, or none) sits before the reasoner.

    ``regime`` is how the router meets the backbone: ``"trained"`` trains both
    from scratch (our extension); ``"plug_in"`` (the paper's training-free use)
    and ``"gates"`` (gates-only tuning) first train the backbone with the router
    off (``fit_begin``: the baseline, to its own early stop with ``baseline``'s
    train overrides), freeze it and switch the router on; the outer fit then
    trains only the gates, with learning rate 0 for ``"plug_in"`` (alpha stays
    at its initial value).  One ``"gates"`` run therefore holds three models
    (``view``): the baseline, the plug-in and the tuned gates.
    ``pretrain`` (options of ``pretrain_image_stream``) first trains and freezes
    the image stream on the MNIST images AV-Digits leaves unused.
    ``modality_dropout=p`` removes one randomly chosen stream from a fraction
    ``p`` of the training samples (the classic balancing baseline).
    """

    fusions = ("token",)
    tasks = ("classification",)

    def __init__(self, model: TokenModel, task: str = "classification", modality_dropout: float = 0.0,
                 regime: str = "trained", baseline: dict | None = None, pretrain: dict | None = None):
        if not 0 <= modality_dropout < 1:
            raise ValueError(f"modality_dropout must lie in [0, 1), got {modality_dropout}")
        _check("regime", regime, REGIMES)
        if regime != "trained" and not isinstance(getattr(model.router, "gate_logits", None), nn.Parameter):
            raise ValueError(f"regime {regime!r} needs a router with learn_gates=True (its gates are the only "
                             "parameters the outer fit sees); got router {model.router!r}")
        super().__init__(model, task)  # type: ignore[arg-type]
        self.modality_dropout = modality_dropout
        self.regime = regime
        self.baseline = dict(baseline or {})
        self.pretrain = None if pretrain is None else dict(pretrain)
        self.baseline_fit: dict[str, float] = {}
        self.initial_gates: Tensor | None = None

    @classmethod
    def make_model(cls, splits: Splits, encoder: str = "auto", fusion: str | None = None, dim: int = 32,
                   routing: dict | None = None, **token_kwargs) -> TokenModel:
        """A ``TokenModel`` for ``splits`` with a ``MoIRRouter(dim, **routing)`` (none if ``routing`` is None);
        ``token_kwargs`` go to ``build_token_model``, ``encoder`` is unused."""
        router = None if routing is None else MoIRRouter(dim, **routing)
        return build_token_model(splits, dim=dim, router=router, **token_kwargs)

    def fit_begin(self, ctx: Context) -> None:
        """Pretrain the image stream if asked; for the plug-in and gates regimes, then train the baseline with the
        router off and freeze it."""
        if self.pretrain is not None:
            self.baseline_fit = pretrain_image_stream(self.model, ctx.splits, seed=ctx.cfg.seed, **self.pretrain)
        if self.regime == "trained":
            return
        from ..experiment import converged  # imported here: experiment imports the method registry

        self.model.routing = False
        result = fit(MoIR(self.model, self.task), ctx.splits, ctx.cfg, checkpoint_dir=None, resume=False,
                     progress=False, **self.baseline)
        ok, best = converged(result.history)
        self.baseline_fit.update(baseline_epochs=float(len(result.history)), baseline_best_epoch=float(best),
                                 baseline_converged=float(ok), baseline_val_accuracy=result.best_score)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.model.router.gate_logits.requires_grad_(True)
        self.model.routing = True
        self.initial_gates = self.model.router.gate_logits.detach().clone()

    @contextmanager
    def view(self, name: str) -> Iterator["MoIR"]:
        """The method as one of the models its run holds (``VIEWS[regime]``): ``"baseline"`` (router off),
        ``"plug_in"`` (gates at their initial value), ``"gates"`` or ``"trained"`` (as trained)."""
        _check("view", name, VIEWS[self.regime])
        router, routing = self.model.router, self.model.routing
        saved = None if router is None else router.gate_logits.detach().clone()
        try:
            if name == "baseline":
                self.model.routing = False
            elif name == "plug_in" and self.initial_gates is not None:
                router.gate_logits.data.copy_(self.initial_gates)
            yield self
        finally:
            self.model.routing = routing
            if saved is not None:
                router.gate_logits.data.copy_(saved)

    def parameter_groups(self) -> list[dict]:
        if self.regime == "trained":
            return super().parameter_groups()
        return [{"params": [self.model.router.gate_logits], **({"lr": 0.0} if self.regime == "plug_in" else {})}]

    def epoch_end(self, epoch: int, ctx: Context) -> dict[str, float] | None:
        return dict(self.baseline_fit)  # the frozen baseline's own convergence, in every history row

    def keep_masks(self, batch: Batch) -> dict[str, Tensor] | None:
        """Per-sample stream keep-masks for modality dropout (at most one stream dropped per sample)."""
        mods = [m for m in self.model.modalities if m in batch]
        if not self.modality_dropout or len(mods) < 2:
            return None
        n = batch[mods[0]].shape[0]
        device = batch[mods[0]].device
        drop = torch.rand(n, device=device) < self.modality_dropout
        which = torch.randint(len(mods), (n,), device=device)
        return {m: ~(drop & (which == i)) for i, m in enumerate(mods)}

    def training_step(self, batch: Batch, ctx: Context) -> StepOut:
        out = self.model(batch, keep=self.keep_masks(batch), unimodal=False)
        loss = self.loss(out.logits, batch)
        return StepOut(loss, out, {"loss": loss.detach()})

    def predict(self, batch: Batch) -> Output:
        return self.model(batch)
