"""IIBalance: intrinsic information budgets instead of forced modality balance.

Xiong, Li, Tang, Li, Kong and Hu, "Beyond Forced Modality Balance: Intrinsic
Information Budgets for Multimodal Learning", ICME 2026 (arXiv:2603.17347).
The paper's text and code were not reachable: this is the reconstruction of
``shared/papers/iibalance.md`` (every equation there is tagged [R]).

1. **Task-grounded budget** ``B_m``: a unimodal model per modality, trained on
   the training split and evaluated on validation, gives either the usable
   (V-)information ``H(Y) - CE_val`` in nats or the chance-corrected accuracy.
   The budgets become a prior ``pi_m = B_m / sum B``, an anchor (the largest
   budget) and budgeted relative potentials ``rho*_m = B_m / B_anchor``; they
   are estimated once, before training, and kept fixed.
2. **EMA class prototypes** per modality and a prototype contrastive loss
   ``CE(cos(z_m, P_m) / tau, y)``.
3. **Budget-gated relative alignment**: per batch the realised information of
   each modality (same units as its budget, measured by its prototype
   classifier, or by its unimodal head with ``realised_from="head"``) relative
   to the anchor's is ``rho_m``; the gate
   ``g_m = relu(rho*_m - rho_m) / rho*_m`` is zero for the anchor and for a
   modality that meets its budget.  Loss: ``CE(fused) + lambda(t) sum g_m L_proto_m``
   with a linear ramp ``lambda(t)``.
4. **Probabilistic gate** at inference: temperature-calibrated unimodal
   predictions ``p_m``, normalised entropy ``u_m``, weights
   ``w = softmax(log pi - u / T_g)`` (parameter-free) or
   ``softmax(log pi + MLP([u, max p]))`` (gate network), fused as the mixture
   ``sum w_m p_m`` or a weighted product of experts (``fusion_form``; "auto"
   picks the one with the lower validation NLL).
   Temperatures, ``T_g`` and the gate network are fitted on the validation split
   after every epoch (so the selected epoch keeps its matching gate).

Ablations are constructor flags: ``trigger`` ("budget", "always", "forced",
"off"), ``realised_from`` ("proto", "head"), ``estimator`` ("vinfo", "accuracy"), ``gate`` ("bayes", "mlp", "none"),
``gate_prior``, ``fusion_form`` ("auto", "mixture", "product").
"""

from __future__ import annotations

import copy
import math
from typing import Mapping

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import evaluate, validate
from ..data.core import LABEL, Batch, DictDataset, Splits
from ..models.fusion import make_fusion
from ..models.multimodal import MultimodalModel, Output
from .base import Joint, Method, StepOut, fit_submodel

ESTIMATORS = ("vinfo", "accuracy")
TRIGGERS = ("budget", "always", "forced", "off")
GATES = ("bayes", "mlp", "none")
FORMS = ("mixture", "product")
_T_GRID = torch.logspace(-1.3, 1.3, 40)  # temperature candidates, ~0.05 .. 20
_TG_GRID = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 1e3)  # gate temperatures; 1e3 ~ prior only


# ---- 1. budgets -------------------------------------------------------------------------------

def label_entropy(labels: Tensor, num_classes: int) -> float:
    """``H(Y)`` in nats from the empirical class frequencies."""
    freq = torch.bincount(labels, minlength=num_classes).float()
    freq = freq[freq > 0] / freq.sum()
    return float(-(freq * freq.log()).sum())


def budget_from_predictions(logits: Tensor, labels: Tensor, entropy: float) -> dict[str, float]:
    """Both budget estimators from one unimodal model's validation logits.

    ``vinfo = max(0, H(Y) - CE)`` (nats, a lower bound on ``I(X_m; Y)``);
    ``accuracy = max(0, (acc - 1/C) / (1 - 1/C))`` (chance-corrected).
    """
    c = logits.shape[-1]
    nll = float(F.cross_entropy(logits.float(), labels))
    acc = float((logits.argmax(-1) == labels).float().mean())
    return {"vinfo": max(0.0, entropy - nll), "accuracy": max(0.0, (acc - 1 / c) / (1 - 1 / c)),
            "val_nll": nll, "val_accuracy": acc}


def _fresh_copy(encoder: nn.Module) -> nn.Module:
    """A re-initialised copy of an encoder (same architecture, new weights)."""
    enc = copy.deepcopy(encoder)
    for module in enc.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return enc


def estimate_budgets(model: MultimodalModel, splits: Splits, cfg, epochs: int | None = None) -> pd.DataFrame:
    """Train one unimodal model per modality (the model's own encoder architecture, a linear
    head) on the training split and measure both budget estimators on the validation split.

    Returns one row per modality with columns vinfo, accuracy, val_nll, val_accuracy.
    """
    entropy = label_entropy(splits.train.tensors[LABEL], splits.num_classes)
    rows = {}
    for m in model.modalities:
        enc = _fresh_copy(model.encoders[m])
        uni = Joint(MultimodalModel({m: enc}, make_fusion("sum", {m: int(enc.out_dim)}, splits.num_classes)))
        one = splits.select([m])
        fit_submodel(uni, one, cfg, epochs=epochs or cfg.epochs)
        p = evaluate.predict(uni, one.val)
        rows[m] = budget_from_predictions(p.logits, p.labels, entropy)
    return pd.DataFrame.from_dict(rows, orient="index")


def budget_prior(budgets: Mapping[str, float], kind: str = "linear", temperature: float = 1.0) -> dict[str, float]:
    """``pi_m = B_m / sum B`` ("linear"; uniform if every budget is 0) or ``softmax(B / T)``."""
    b = torch.tensor([float(v) for v in budgets.values()])
    if (b < 0).any():
        raise ValueError(f"budgets must be >= 0, got {dict(budgets)}")
    if kind == "linear":
        pi = b / b.sum() if b.sum() > 0 else torch.full_like(b, 1 / len(b))
    elif kind == "softmax":
        pi = (b / temperature).softmax(0)
    else:
        raise ValueError(f"unknown prior {kind!r}; valid: 'linear', 'softmax'")
    return dict(zip(budgets, pi.tolist()))


# ---- 2. prototypes ----------------------------------------------------------------------------

def ema_update(protos: Tensor, seen: Tensor, z: Tensor, y: Tensor, momentum: float) -> None:
    """In place: ``p_c <- mu p_c + (1 - mu) mean(z | y = c)`` for classes in the batch; a class
    seen for the first time starts at its batch mean."""
    c = protos.shape[0]
    z = z.detach().to(protos.dtype)
    counts = torch.bincount(y, minlength=c).to(protos.dtype)
    means = torch.zeros_like(protos).index_add_(0, y, z) / counts.clamp_min(1).unsqueeze(1)
    blended = torch.where(seen.unsqueeze(1), momentum * protos + (1 - momentum) * means, means)
    present = counts > 0
    protos.copy_(torch.where(present.unsqueeze(1), blended, protos))
    seen |= present


def prototype_logits(z: Tensor, protos: Tensor, tau: float) -> Tensor:
    """Cosine similarity to each class prototype over ``tau`` (prototypes carry no gradient)."""
    return F.normalize(z.float(), dim=-1) @ F.normalize(protos.detach(), dim=-1).T / tau


# ---- 3. budget-gated relative alignment -------------------------------------------------------

def realised(proto_logits: Tensor, labels: Tensor, estimator: str, entropy: float, eps: float = 1e-4) -> Tensor:
    """The batch's realised task information, in the units of the budget estimator."""
    if estimator == "vinfo":
        return (entropy - F.cross_entropy(proto_logits, labels)).clamp_min(eps)
    c = proto_logits.shape[-1]
    acc = (proto_logits.argmax(-1) == labels).float().mean()
    return ((acc - 1 / c) / (1 - 1 / c)).clamp_min(eps)


def budget_gate(rho: Tensor, rho_star: Tensor, anchor: int, mode: str = "budget") -> Tensor:
    """Per-modality alignment gate in [0, 1]; always 0 for the anchor.

    "budget": ``relu(rho* - rho) / rho*`` (0 once a modality meets its budgeted share);
    "forced": the same with target ratio 1 (PMR-like forced balance);
    "always": 1 (no trigger); "off": 0 (no alignment).
    """
    if mode == "budget":
        g = torch.where(rho_star > 0, torch.relu(rho_star - rho) / rho_star.clamp_min(1e-8), torch.zeros_like(rho))
    elif mode == "forced":
        g = torch.relu(1 - rho)
    elif mode == "always":
        g = torch.ones_like(rho)
    elif mode == "off":
        g = torch.zeros_like(rho)
    else:
        raise ValueError(f"unknown trigger {mode!r}; valid: {', '.join(TRIGGERS)}")
    keep = torch.ones_like(g)
    keep[anchor] = 0
    return g * keep


def linear_schedule(epoch: int, start: int, ramp: int, lam_max: float) -> float:
    """``lambda(t)``: 0 before ``start``, then a linear ramp to ``lam_max`` over ``ramp`` epochs."""
    if epoch < start:
        return 0.0
    return lam_max * min(1.0, (epoch - start + 1) / max(ramp, 1))


# ---- 4. probabilistic gate --------------------------------------------------------------------

def normalised_entropy(probs: Tensor) -> Tensor:
    """``H(p) / log C`` in [0, 1]: the per-sample uncertainty of a predictive distribution."""
    return -(probs * probs.clamp_min(1e-12).log()).sum(-1) / math.log(probs.shape[-1])


def fit_temperature(logits: Tensor, labels: Tensor) -> float:
    """The temperature (from a log-spaced grid) that minimises validation NLL."""
    nll = torch.stack([F.cross_entropy(logits / t, labels) for t in _T_GRID])
    return float(_T_GRID[nll.argmin()])


def gate_fuse(probs: Tensor, scores: Tensor, form: str = "mixture",
              temperature: float | Tensor = 1.0) -> tuple[Tensor, Tensor]:
    """Weights ``w = softmax_m(scores)`` (B, M) and the fused distribution (B, C).

    "mixture": ``sum_m w_m p_m``; "product": a weighted product of experts,
    ``softmax(sum_m M w_m log p_m / T)`` (equal weights give the plain sum of
    calibrated logits).  Absent modalities have ``-inf`` scores, so zero weight.
    """
    w = scores.softmax(-1)
    if form == "mixture":
        return w, torch.einsum("bm,mbc->bc", w, probs)
    if form == "product":
        logits = torch.einsum("bm,mbc->bc", w * w.shape[-1], probs.clamp_min(1e-12).log())
        return w, (logits / temperature).softmax(-1)
    raise ValueError(f"unknown fusion form {form!r}; valid: {', '.join(FORMS)}")


class GateNet(nn.Module):
    """The small gate network: per-sample ``[u_1..u_M, max p_1..max p_M] -> psi_m``."""

    def __init__(self, num_modalities: int, hidden: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * num_modalities, hidden), nn.ReLU(), nn.Linear(hidden, num_modalities))

    def forward(self, uncertainty: Tensor, confidence: Tensor) -> Tensor:
        return self.net(torch.cat([uncertainty, confidence], -1))


# ---- the method -------------------------------------------------------------------------------

class IIBalance(Method):
    """IIBalance on a model whose fusion exposes unimodal logits (by default ``fusion="sum"``)."""

    fusions = ("sum", "late", "concat")
    tasks = ("classification",)

    def __init__(self, model: MultimodalModel, budgets: pd.DataFrame | Mapping[str, Mapping[str, float]] | None = None,
                 estimator: str = "vinfo", prior: str = "linear", budget_epochs: int | None = None,
                 trigger: str = "budget", soft: bool = True, realised_from: str = "proto",
                 lam_max: float = 1.0, start: int = 1, ramp: int = 3,
                 tau: float = 0.1, momentum: float = 0.9, rho_momentum: float = 0.9, beta: float = 0.0,
                 gate: str = "bayes", gate_prior: bool = True, fusion_form: str = "auto", gate_hidden: int = 32,
                 gate_steps: int = 200,
                 task: str = "classification"):
        super().__init__(model, task)
        for name, value, valid in (("estimator", estimator, ESTIMATORS), ("trigger", trigger, TRIGGERS),
                                   ("gate", gate, GATES), ("fusion_form", fusion_form, ("auto", *FORMS)),
                                   ("realised_from", realised_from, ("proto", "head"))):
            if value not in valid:
                raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")
        if not 0 <= momentum < 1 or not 0 <= rho_momentum < 1:
            raise ValueError(f"momentum and rho_momentum must be in [0, 1), got {momentum}, {rho_momentum}")
        validate.several_modalities("IIBalance", self.modalities, "its budgets and gate compare modalities")
        validate.number("IIBalance lam_max", lam_max, 0)
        validate.number("IIBalance tau (prototype temperature)", tau, 0, low_open=True)
        validate.number("IIBalance beta", beta, 0)
        validate.number("IIBalance start", start, 0, integer=True)
        validate.number("IIBalance ramp", ramp, 0, integer=True)
        validate.number("IIBalance gate_steps", gate_steps, 1, integer=True)
        if budget_epochs is not None:
            validate.number("IIBalance budget_epochs", budget_epochs, 1, integer=True)
        self.estimator, self.prior_kind, self.budget_epochs = estimator, prior, budget_epochs
        self.trigger, self.soft, self.lam_max, self.start, self.ramp = trigger, soft, lam_max, start, ramp
        self.realised_from = realised_from
        self.tau, self.momentum, self.rho_momentum, self.beta = tau, momentum, rho_momentum, beta
        self.gate, self.gate_prior, self.gate_steps, self.fusion_form = gate, gate_prior, gate_steps, fusion_form
        self.budgets: pd.DataFrame | None = None
        mods = self.modalities
        n = len(mods)
        num_classes = model.fusion.num_classes
        for m in mods:
            self.register_buffer(f"proto_{m}", torch.zeros(num_classes, int(model.encoders[m].out_dim)))
            self.register_buffer(f"seen_{m}", torch.zeros(num_classes, dtype=torch.bool))
        self.register_buffer("log_prior", torch.full((n,), -math.log(n)))
        self.register_buffer("rho_star", torch.ones(n))
        self.register_buffer("anchor", torch.tensor(0))
        self.register_buffer("entropy", torch.tensor(math.log(num_classes)))
        self.register_buffer("rho_ema", torch.full((n,), -1.0))  # < 0: not started
        self.register_buffer("temperatures", torch.ones(n))
        self.register_buffer("gate_temperature", torch.tensor(1.0))
        self.register_buffer("fused_temperature", torch.tensor(1.0))
        self.register_buffer("product_form", torch.tensor(False))  # the fitted form: product (True) or mixture
        self.register_buffer("gate_ready", torch.tensor(False))
        self.gate_net = GateNet(n, gate_hidden)
        self._lam = 0.0
        if budgets is not None:
            self.set_budgets(budgets)

    # -- 1. budgets, prior, anchor --
    def set_budgets(self, budgets: pd.DataFrame | Mapping[str, Mapping[str, float]]) -> None:
        """Fix the budgets (a table with one row per modality and a column per estimator)."""
        table = budgets if isinstance(budgets, pd.DataFrame) else pd.DataFrame.from_dict(dict(budgets), orient="index")
        missing = [m for m in self.modalities if m not in table.index]
        if missing or self.estimator not in table.columns:
            raise ValueError(f"budgets need rows {list(self.modalities)} and a column {self.estimator!r}; "
                             f"got rows {list(table.index)} and columns {list(table.columns)}")
        self.budgets = table.loc[list(self.modalities)]
        b = {m: float(self.budgets.loc[m, self.estimator]) for m in self.modalities}
        pi = torch.tensor(list(budget_prior(b, self.prior_kind).values()))
        bt = torch.tensor(list(b.values()))
        self.log_prior.copy_(pi.clamp_min(1e-6).log())
        self.anchor.fill_(int(bt.argmax()))
        self.rho_star.copy_(bt / bt.max() if bt.max() > 0 else torch.ones_like(bt))

    @property
    def prior(self) -> dict[str, float]:
        return dict(zip(self.modalities, self.log_prior.exp().tolist()))

    def fit_begin(self, ctx) -> None:
        self.entropy.fill_(label_entropy(ctx.splits.train.tensors[LABEL], ctx.splits.num_classes))
        if self.budgets is None:
            self.set_budgets(estimate_budgets(self.model, ctx.splits, ctx.cfg, self.budget_epochs))

    def epoch_begin(self, epoch: int, ctx) -> None:
        self._lam = linear_schedule(epoch, self.start, self.ramp, self.lam_max)

    # -- 2 + 3. prototypes and budget-gated alignment --
    def training_step(self, batch: Batch, ctx) -> StepOut:
        out = self.model(batch)
        y = batch[LABEL]
        loss = self.loss(out.logits, batch)
        if self.beta:
            loss = loss + self.beta * sum(self.loss(lg, batch) for lg in out.unimodal_logits.values())
        proto_losses, real = [], []
        for m in self.modalities:
            logits = prototype_logits(out.features[m], getattr(self, f"proto_{m}"), self.tau)
            proto_losses.append(F.cross_entropy(logits, y))
            measured = logits if self.realised_from == "proto" else out.unimodal_logits[m]
            real.append(realised(measured.detach().float(), y, self.estimator, float(self.entropy)))
        lp, r = torch.stack(proto_losses), torch.stack(real)
        with torch.no_grad():
            rho = r / r[self.anchor]
            started = self.rho_ema[0] >= 0
            smoothed = self.rho_momentum * self.rho_ema + (1 - self.rho_momentum) * rho
            self.rho_ema.copy_(torch.where(started, smoothed, rho))
            g = budget_gate(self.rho_ema, self.rho_star, int(self.anchor), self.trigger)
            if not self.soft:
                g = (g > 0).to(g.dtype)
            for m in self.modalities:
                ema_update(getattr(self, f"proto_{m}"), getattr(self, f"seen_{m}"), out.features[m], y, self.momentum)
        align = (g * lp).sum()
        loss = loss + self._lam * align
        logs = {"loss": loss.detach(), "align": align.detach()}
        for i, m in enumerate(self.modalities):
            logs.update({f"gate_{m}": g[i], f"fired_{m}": (g[i] > 0).float(), f"rho_{m}": self.rho_ema[i].clone(),
                         f"proto_loss_{m}": lp[i].detach()})
        return StepOut(loss, out, logs)

    def parameter_groups(self):
        gate = {id(p) for p in self.gate_net.parameters()}
        return [{"params": [p for p in self.parameters() if p.requires_grad and id(p) not in gate]}]

    # -- 4. probabilistic gate --
    def epoch_end(self, epoch: int, ctx) -> None:
        if self.gate != "none":
            self.calibrate(ctx.splits.val)

    def configure_gate(self, val: DictDataset, gate: str | None = None, gate_prior: bool | None = None,
                       fusion_form: str | None = None) -> None:
        """Switch the inference gate (an inference-only ablation) and refit it on ``val``."""
        if gate is not None and gate not in GATES:
            raise ValueError(f"unknown gate {gate!r}; valid: {', '.join(GATES)}")
        if fusion_form is not None and fusion_form not in ("auto", *FORMS):
            raise ValueError(f"unknown fusion_form {fusion_form!r}; valid: auto, {', '.join(FORMS)}")
        self.gate = gate or self.gate
        self.fusion_form = fusion_form or self.fusion_form
        self.gate_prior = self.gate_prior if gate_prior is None else gate_prior
        self.gate_ready.fill_(False)
        if self.gate != "none":
            self.calibrate(val)

    def _gate_scores(self, probs: Tensor, present: Tensor) -> Tensor:
        """Gate scores (B, M) from the calibrated probabilities of every modality (absent: masked)."""
        u = normalised_entropy(probs).T  # (B, M)
        prior = self.log_prior if self.gate_prior else torch.zeros_like(self.log_prior)
        if self.gate == "bayes":
            scores = prior - u / self.gate_temperature
        else:
            scores = prior + self.gate_net(u, probs.amax(-1).T)
        return scores.masked_fill(~present, float("-inf"))

    @torch.no_grad()
    def calibrate(self, val: DictDataset) -> None:
        """Fit per-modality temperatures, then per fusion form ``T_g`` (bayes) or the gate network
        (mlp) and the fused temperature, on ``val``; "auto" keeps the form with the lower NLL."""
        self.gate_ready.fill_(False)
        p = evaluate.predict(self, val)
        dev = self.temperatures.device
        y = p.labels.to(dev)
        logits = torch.stack([p.unimodal_logits[m].to(dev) for m in self.modalities])
        self.temperatures.copy_(torch.tensor([fit_temperature(lg.cpu(), p.labels) for lg in logits], device=dev))
        probs = (logits / self.temperatures.view(-1, 1, 1)).softmax(-1)
        present = torch.ones(len(self.modalities), dtype=torch.bool, device=dev)
        forms = FORMS if self.fusion_form == "auto" else (self.fusion_form,)
        fitted = {form: self._fit_form(probs, y, present, form) for form in forms}
        best = min(fitted, key=lambda f: fitted[f][0])
        _, state = fitted[best]
        self.load_state_dict(state, strict=False)
        self.product_form.fill_(best == "product")
        self.gate_ready.fill_(True)

    def _fit_form(self, probs: Tensor, y: Tensor, present: Tensor, form: str) -> tuple[float, dict[str, Tensor]]:
        """Validation NLL of one fusion form after fitting its gate, and the fitted gate state."""
        self.fused_temperature.fill_(1.0)
        if self.gate == "bayes":
            nll = []
            for t in _TG_GRID:
                self.gate_temperature.fill_(t)
                nll.append(self._nll(probs, y, present, form))
            self.gate_temperature.fill_(_TG_GRID[int(torch.stack(nll).argmin())])
        else:
            self._train_gate_net(probs, y, present, form)
        if form == "product":
            w = self._gate_scores(probs, present).softmax(-1)
            fused_logits = torch.einsum("bm,mbc->bc", w * w.shape[-1], probs.clamp_min(1e-12).log())
            self.fused_temperature.fill_(fit_temperature(fused_logits.cpu(), y.cpu()))
        keep = ("gate_temperature", "fused_temperature", "gate_net.")
        state = {k: v.clone() for k, v in self.state_dict().items() if k.startswith(keep)}
        return float(self._nll(probs, y, present, form)), state

    def _nll(self, probs: Tensor, y: Tensor, present: Tensor, form: str) -> Tensor:
        fused = gate_fuse(probs, self._gate_scores(probs, present), form, self.fused_temperature)[1]
        return F.nll_loss(fused.clamp_min(1e-12).log(), y)

    def _train_gate_net(self, probs: Tensor, y: Tensor, present: Tensor, form: str) -> None:
        """Full-batch Adam on the fused NLL, encoders frozen (only the gate network learns)."""
        for layer in self.gate_net.net:
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()
        opt = torch.optim.Adam(self.gate_net.parameters(), lr=1e-2, weight_decay=1e-3)
        with torch.enable_grad():
            for _ in range(self.gate_steps):
                opt.zero_grad()
                self._nll(probs, y, present, form).backward()
                opt.step()

    def predict(self, batch: Batch) -> Output:
        out = self.model(batch)
        if self.gate == "none" or not bool(self.gate_ready):
            return out
        present = torch.tensor([m in out.unimodal_logits for m in self.modalities], device=out.logits.device)
        ref = next(iter(out.unimodal_logits.values()))
        logits = torch.stack([out.unimodal_logits[m] if m in out.unimodal_logits else torch.zeros_like(ref)
                              for m in self.modalities]).float()
        probs = (logits / self.temperatures.view(-1, 1, 1)).softmax(-1)
        form = "product" if bool(self.product_form) else "mixture"
        w, fused = gate_fuse(probs, self._gate_scores(probs, present), form, self.fused_temperature)
        weights = {m: w[:, i] for i, m in enumerate(self.modalities) if m in out.unimodal_logits}
        return Output(fused.clamp_min(1e-12).log(), out.unimodal_logits, out.features, weights)
