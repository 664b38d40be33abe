"""MWAM: frequency-ratio weighting of modality branches for robustness to missing modalities.

Lu et al., "Plug, Play, and Fortify: A Low-Cost Module for Robust Multimodal
Image Understanding Models", ICLR 2026 (arXiv 2602.22644).  Per mini-batch:

1. **Frequency extraction**: an orthonormal 8x8 block DCT-II of each modality's
   *input*; the top-left q x q coefficients of every block are the low band, the
   bottom-right q x q the high band, mirrored so that (u, v) meets (p-1-u, p-1-v).
2. **FRM** (Eq. 4): ``sum |low / (mirrored high + sigma)|`` over the batch, one
   scalar per modality (the mean per element when modalities differ in shape).
3. **FRM bank** (Eq. 2): an exponential moving average with ``omega = 0.5``.
4. **Weight allocation** (Eq. 5-6): ``T_m = FRM_m / (mean_c bank_c + sigma)``,
   ``K_m = alpha - beta * sigmoid(lambda * (T_m - gamma))``, decreasing in FRM.
5. **Intervention**: scale modality m's encoder gradients by ``K_m`` ("grad"),
   its auxiliary loss ("loss"), both ("hybrid"), or its learning rate ("lr",
   Algorithm 1; the one that survives Adam's normalisation, through the
   ``learning_rate_factors`` hook that the runner applies).

The host has per-modality encoders and auxiliary heads, fused late (the heads'
mean) or in a shared trunk on the concatenated features (the paper's hosts),
trained on full data or with random per-sample modality dropout.  ``input_filter``
trains and scores the host on low- or high-pass filtered inputs (the paper's
motivating filter experiment, Sec. 3.1).  ``augment="photometric"`` draws, per
training batch and modality, a brightness shift, a contrast factor and (half the
time) a Gaussian blur, so the inputs' spectra, and with them FRM and K, vary from
batch to batch (``augment_batch``; prediction sees the inputs unchanged).
``MWAM(weights="ogm_ge")`` puts OGM-GE's
coefficients in place of K on the same host, for the comparison of Tables 13-14.
MWAM is training-only: ``predict`` is the host's.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms.functional import gaussian_blur

from .. import validate
from ..data.core import LABEL, Batch, DictDataset, iterate
from ..evaluate import modality_subsets
from ..models.multimodal import MultimodalModel, Output
from ..models.vit import build_vit_model
from .base import Method, StepOut
from .ogm_ge import modulate_gradients, ogm_coefficients, true_class_scores

#: (alpha, beta, lambda, gamma): the paper's defaults, the official code's SURF class, small batches (A.10)
PAPER_CONSTANTS = {"alpha": 1.5, "beta": 1.0, "lam": 6.0, "gamma": 0.7}
CODE_CONSTANTS = {"alpha": 1.5, "beta": 1.0, "lam": 10.0, "gamma": 1.0}
SMALL_BATCH_CONSTANTS = {"alpha": 1.5, "beta": 1.0, "lam": 4.0, "gamma": 1.0}

FRM_VARIANTS = ("ratio", "low", "direct_sum", "weighted_sum")
REDUCTIONS = ("auto", "sum", "mean")
INTERVENTIONS = ("auto", "grad", "loss", "hybrid", "lr")
WEIGHTINGS = ("dynamic", "static", "inverted", "random", "ogm_ge")
FILTERS = ("low", "high")
AUGMENTATIONS = ("photometric",)
#: per batch and modality: brightness shift range, contrast factor range, blur probability, blur sigma range
PHOTOMETRIC = {"brightness": 0.2, "contrast": (0.7, 1.3), "blur_p": 0.5, "sigma": (0.5, 1.5)}
EMA_IN = ("denominator", "both")


# ----------------------------------------------------------------------------- frequency extraction

def dct_matrix(p: int, dtype: torch.dtype = torch.float64, device: torch.device | None = None) -> Tensor:
    """The orthonormal DCT-II matrix ``D`` (p x p): ``D @ x`` is ``scipy.fft.dct(x, norm="ortho")``."""
    n = torch.arange(p, dtype=dtype, device=device)
    d = torch.cos(math.pi * (2 * n[None, :] + 1) * n[:, None] / (2 * p)) * math.sqrt(2.0 / p)
    d[0] /= math.sqrt(2.0)
    return d


def block_dct(x: Tensor, p: int = 8) -> Tensor:
    """2-D orthonormal DCT-II of every non-overlapping p x p block: (B, C, H, W) -> (B, C, H/p, W/p, p, p).

    Sides that are not a multiple of ``p`` are padded by replicating the last row
    and column (e.g. 28 x 28 MNIST -> 32 x 32); the paper's inputs need no padding.
    """
    d = dct_matrix(p, x.dtype, x.device)
    return d @ _blocks(x, p) @ d.T


def _blocks(x: Tensor, p: int) -> Tensor:
    """(B, C, H, W) -> (B, C, H/p, W/p, p, p) non-overlapping blocks, replicate-padded to a multiple of p."""
    if x.dim() != 4:
        raise ValueError(f"block DCT needs a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    if p < 1:
        raise ValueError(f"patch size p must be >= 1, got {p}")
    pad_h, pad_w = (-x.shape[-2]) % p, (-x.shape[-1]) % p
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    b, c, h, w = x.shape
    return x.reshape(b, c, h // p, p, w // p, p).transpose(3, 4)


def frequency_bands(x: Tensor, p: int = 8, q: int = 2) -> tuple[Tensor, Tensor]:
    """Low band (top-left q x q of each block) and the mirrored high band (bottom-right, flipped).

    For q > p/2 the two bands overlap, as in the paper's q = 6 ablation with p = 8.

    ``high[..., u, v]`` is the block's coefficient ``(p-1-u, p-1-v)``, so element-wise
    ``low / high`` pairs (0,0) with (p-1,p-1) as in the paper's Eq. 4.
    """
    if not 1 <= q < p:
        raise ValueError(f"q must be in 1..p-1 = 1..{p - 1}, got {q}")
    blocks = _blocks(x, p)
    d = dct_matrix(p, x.dtype, x.device)
    low_rows, high_rows = d[:q], d[p - q:]  # only the rows of D the two bands need
    low = low_rows @ blocks @ low_rows.T
    high = high_rows @ blocks @ high_rows.T
    return low, high.flip(-2, -1)


def frm(x: Tensor, p: int = 8, q: int = 2, sigma: float = 1e-6, variant: str = "ratio",
        reduce: str = "sum", omega: float = 0.9) -> Tensor:
    """The Frequency Ratio Metric of one modality's batch (a 0-d float64 tensor).

    ``variant``: "ratio" (Eq. 4, the paper's FRM), "low" (Eq. 3, low band only),
    "direct_sum" (Eq. 27, |low| + |high|), "weighted_sum" (Eq. 28, omega |low| + (1-omega) |high|).
    ``reduce``: "sum" over batch, channels, blocks and band positions (the code), or "mean".
    """
    if variant not in FRM_VARIANTS:
        raise ValueError(f"unknown FRM variant {variant!r}; valid: {', '.join(FRM_VARIANTS)}")
    if reduce not in ("sum", "mean"):
        raise ValueError(f"reduce must be 'sum' or 'mean', got {reduce!r}")
    if x.dim() == 3:  # (B, H, W) single-channel
        x = x.unsqueeze(1)
    low, high = frequency_bands(x.detach().double(), p, q)
    if variant == "ratio":
        terms = (low / (high + sigma)).abs()
    elif variant == "low":
        terms = low.abs()
    elif variant == "direct_sum":
        terms = low.abs() + high.abs()
    else:
        terms = omega * low.abs() + (1 - omega) * high.abs()
    return terms.sum() if reduce == "sum" else terms.mean()


def frequency_filter(x: Tensor, kind: str, window: int) -> Tensor:
    """Low-pass (keep) or high-pass (remove) the centred ``window`` x ``window`` square of each image's 2-D FFT.

    The paper's motivating experiment (Sec. 3.1): centred FFT, keep or zero the centre window, inverse FFT.
    The window is odd, so that it holds each frequency with its conjugate (frequencies -r..r, r = window // 2)
    and the filtered image is real.  ``x`` is (B, C, H, W); the result has its shape and dtype.  The two
    filters sum to the input, and each is a projection (applying it twice changes nothing).
    """
    if kind not in FILTERS:
        raise ValueError(f"filter kind must be one of {FILTERS}, got {kind!r}")
    if x.dim() != 4:
        raise ValueError(f"a frequency filter needs a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if not isinstance(window, int) or window % 2 == 0 or not 1 <= window < min(h, w):
        raise ValueError(f"filter window must be an odd integer in 1..{min(h, w) - 1}, got {window!r}")
    spectrum = torch.fft.fftshift(torch.fft.fft2(x.double()), dim=(-2, -1))
    keep = torch.zeros(h, w, dtype=torch.bool, device=x.device)
    top, left = h // 2 - window // 2, w // 2 - window // 2
    keep[top:top + window, left:left + window] = True
    if kind == "high":
        keep = ~keep
    kept = torch.fft.ifftshift(spectrum * keep, dim=(-2, -1))
    return torch.fft.ifft2(kept).real.to(x.dtype)


def augment_batch(x: Tensor, bound: float = 127.5 / 128.0, brightness: float = PHOTOMETRIC["brightness"],
                  contrast: tuple[float, float] = PHOTOMETRIC["contrast"], blur_p: float = PHOTOMETRIC["blur_p"],
                  sigma: tuple[float, float] = PHOTOMETRIC["sigma"]) -> Tensor:
    """One photometric augmentation drawn for the whole (B, C, H, W) batch (torch's global generator).

    Contrast ``c`` about the batch mean, then a brightness shift ``b`` (in input units), then with probability
    ``blur_p`` a 5x5 Gaussian blur of std in ``sigma``, clipped to [-bound, bound].  One draw per batch (not per
    sample), so that the batch's FRM moves: per-sample draws would average out in a batch-level FRM.
    """
    if x.dim() != 4:
        raise ValueError(f"augmentation needs a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    u = torch.rand(4).tolist()
    c = contrast[0] + (contrast[1] - contrast[0]) * u[0]
    b = brightness * (2 * u[1] - 1)
    mean = x.mean()
    out = (x - mean) * c + mean + b
    if u[2] < blur_p:
        s = sigma[0] + (sigma[1] - sigma[0]) * u[3]
        out = gaussian_blur(out, [5, 5], [s, s])
    return out.clamp(-bound, bound)


# ----------------------------------------------------------------------------- bank and weights

class FRMBank:
    """Per-modality exponential moving average of the FRM (Eq. 2): the first value, then ``w*old + (1-w)*new``."""

    def __init__(self, modalities: Sequence[str], omega: float = 0.5):
        if not 0 <= omega < 1:
            raise ValueError(f"bank omega must be in [0, 1), got {omega}")
        self.modalities, self.omega = tuple(modalities), omega
        self.values: Tensor | None = None  # (M,) float64, on the batch's device

    def update(self, frms: Tensor) -> Tensor:
        """Fold in one batch's FRMs (shape (M,)) and return the bank."""
        if frms.shape != (len(self.modalities),):
            raise ValueError(f"expected {len(self.modalities)} FRMs for {self.modalities}, got shape {tuple(frms.shape)}")
        self.values = frms.clone() if self.values is None else self.omega * self.values + (1 - self.omega) * frms
        return self.values

    def reset(self) -> None:
        self.values = None


def relative_frm(frms: Tensor, bank: Tensor, sigma: float = 1e-6, ema_in: str = "denominator") -> Tensor:
    """``T_m`` (Eq. 5): the current FRM (code) or the bank (``ema_in="both"``) over the bank's mean."""
    if ema_in not in EMA_IN:
        raise ValueError(f"ema_in must be one of {EMA_IN}, got {ema_in!r}")
    numerator = frms if ema_in == "denominator" else bank
    return numerator / (bank.mean() + sigma)


def weight_schedule(t: Tensor, alpha: float = 1.5, beta: float = 1.0, lam: float = 6.0, gamma: float = 0.7) -> Tensor:
    """``K = alpha - beta * sigmoid(lam * (T - gamma))`` (Eq. 6): strictly decreasing in T, in (alpha-beta, alpha)."""
    return alpha - beta * torch.sigmoid(lam * (t - gamma))


# ----------------------------------------------------------------------------- the paper's metrics

# ----------------------------------------------------------------------------- host

class MissingModalityHost(Method):
    """Per-modality encoders and auxiliary heads, fused late or in a shared trunk; ``CE(fused) + sum_m w_m CE(head_m)``.

    ``trunk=None``: late fusion, the fused logits are the mean of the present heads,
    so the auxiliary heads are also the inference heads.  ``trunk=h``: the paper's
    hosts' shape, the features (zeros for an absent modality) concatenated into a
    shared trunk (linear h, ReLU, linear) that alone makes the prediction; the heads
    are auxiliary only.  ``modality_dropout=True`` draws, per sample, one non-empty
    subset uniformly (MMANet's "average" mode); absent modalities leave the fusion
    and their auxiliary loss for that sample.  ``input_filter=(kind, window)`` passes
    every modality's input through ``frequency_filter`` in training and prediction;
    ``augment="photometric"`` augments each modality's training batch (``augment_batch``).
    """

    fusions = ("late",)  # the per-modality heads (auxiliary heads, and the late-fusion prediction)
    tasks = ("classification",)

    def __init__(self, model: MultimodalModel, modality_dropout: bool = False, aux_weight: float = 1.0,
                 trunk: int | None = None, input_filter: Sequence | None = None, augment: str | None = None,
                 task: str = "classification"):
        super().__init__(model, task)
        if augment is not None and augment not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {augment!r}; valid: None, {', '.join(AUGMENTATIONS)}")
        self.augment = augment
        validate.number("aux_weight", aux_weight, 0)
        if input_filter is not None:
            if len(input_filter) != 2 or input_filter[0] not in FILTERS:
                raise ValueError(f"input_filter must be (kind, window) with kind in {FILTERS}, got {input_filter!r}")
            validate.number("input_filter window", input_filter[1], 1, integer=True)
        self.input_filter = None if input_filter is None else (input_filter[0], int(input_filter[1]))
        self.modality_dropout, self.aux_weight = modality_dropout, aux_weight
        subsets = modality_subsets(range(len(self.modalities)))
        masks = torch.zeros(len(subsets), len(self.modalities))
        for i, s in enumerate(subsets):
            masks[i, list(s)] = 1.0
        self.register_buffer("subset_masks", masks, persistent=False)
        self.trunk = None if trunk is None else self._trunk(validate.number("trunk width", trunk, 1, integer=True))

    @classmethod
    def make_model(cls, splits, encoder: str = "auto", fusion: str | None = None, **encoder_kwargs: Any) -> nn.Module:
        """The host's model; ``encoder="vit"`` gives a ``TinyViT`` per modality (``encoder_kwargs`` its sizes)."""
        if encoder == "vit":
            return build_vit_model(splits, fusion or cls.fusions[0], **encoder_kwargs)
        return super().make_model(splits, encoder, fusion, **encoder_kwargs)

    def _trunk(self, width: int) -> nn.Sequential:
        dims = sum(int(self.model.encoders[m].out_dim) for m in self.modalities)
        return nn.Sequential(nn.Linear(dims, width), nn.ReLU(), nn.Linear(width, self.model.num_classes))

    def presence(self, batch: Batch) -> Tensor:
        """(B, M) 0/1 mask of the modalities each sample keeps this step."""
        n = len(batch[LABEL])
        if not self.modality_dropout:
            return self.subset_masks.new_ones(n, len(self.modalities))
        draw = torch.randint(len(self.subset_masks), (n,), device=self.subset_masks.device)
        return self.subset_masks[draw]

    def fused(self, out: Output, mask: Tensor) -> Tensor:
        """Fused logits of the present modalities (``mask``: (B, M) 0/1): the heads' mean, or the trunk."""
        if self.trunk is None:
            uni = torch.stack([out.unimodal_logits[m] for m in self.modalities], 1)
            return (uni * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return self.trunk(torch.cat([out.features[m] * mask[:, i:i + 1] for i, m in enumerate(self.modalities)], 1))

    def aux_weights(self, batch: Batch) -> dict[str, Tensor | float]:
        """Weight of each modality's auxiliary loss (MWAM overrides this)."""
        return {m: self.aux_weight for m in self.modalities}

    def inputs(self, batch: Batch) -> Batch:
        """The batch the model sees: each modality's input frequency-filtered when ``input_filter`` is set."""
        if self.input_filter is None:
            return batch
        kind, window = self.input_filter
        return {k: frequency_filter(v, kind, window) if k in self.modalities else v for k, v in batch.items()}

    def training_inputs(self, batch: Batch) -> Batch:
        """The training batch the model sees: filtered (``input_filter``), then augmented (``augment``)."""
        batch = self.inputs(batch)
        if self.augment is None:
            return batch
        return {k: augment_batch(v) if k in self.modalities else v for k, v in batch.items()}

    def training_step(self, batch: Batch, ctx) -> StepOut:
        return self._step(self.training_inputs(batch))

    def _step(self, batch: Batch) -> StepOut:
        """The host's loss on an already filtered batch."""
        out = self.model(batch)
        mask = self.presence(batch)
        fused = self.fused(out, mask)
        y = batch[LABEL]
        fused_loss = F.cross_entropy(fused, y)
        weights = self.aux_weights(batch)
        aux = {m: (F.cross_entropy(out.unimodal_logits[m], y, reduction="none") * mask[:, i]).sum()
               / mask[:, i].sum().clamp_min(1) for i, m in enumerate(self.modalities)}
        loss = fused_loss + sum(weights[m] * aux[m] for m in self.modalities)
        logs = {"loss": loss.detach(), "loss_fused": fused_loss.detach(), **{f"loss_{m}": v.detach() for m, v in aux.items()}}
        return StepOut(loss, Output(fused, out.unimodal_logits, out.features), logs)

    def predict(self, batch: Batch) -> Output:
        """The host's prediction from the modalities present in ``batch`` (an absent one is a zero feature)."""
        batch = self.inputs(batch)
        if self.trunk is None:
            return self.model(batch)
        features = self.model.encode(batch)
        some = next(iter(features.values()))
        mask = torch.tensor([[float(m in features) for m in self.modalities]], device=some.device)
        full = {m: features.get(m, some.new_zeros(some.shape[0], int(self.model.encoders[m].out_dim)))
                for m in self.modalities}
        out = self.model.fuse(full)
        uni = {m: out.unimodal_logits[m] for m in features}
        return Output(self.fused(out, mask.expand(some.shape[0], -1)), uni, features)

    def parameter_groups(self) -> list[dict[str, Any]]:
        """One group for the shared heads, then one per modality encoder (so MWAM can scale their lr)."""
        encoder_ids = {id(p) for p in self.model.encoders.parameters()}
        shared = [p for p in self.parameters() if p.requires_grad and id(p) not in encoder_ids]
        groups = [{"params": shared, "name": "shared"}]
        groups += [{"params": [p for p in self.model.encoders[m].parameters() if p.requires_grad], "name": m}
                   for m in self.modalities]
        return groups


# ----------------------------------------------------------------------------- MWAM

class MWAM(MissingModalityHost):
    """The host plus the Multimodal Weight Allocation Module (training only).

    Flags (each an ablation or control of the chapter):
      ``intervention``: "grad" (scale encoder gradients, the code), "loss" (scale the
      auxiliary losses), "hybrid" (both; the auxiliary path then sees K^2), "lr"
      (scale each encoder's learning rate, Algorithm 1), "auto" ("lr" under Adam,
      where a gradient scale cancels, else "grad");
      ``weights``: "dynamic" (FRM per batch, the method), "static" (one K from the
      training set's FRM, computed once), "inverted" (``2*alpha - beta - K``: boosts
      the high-FRM modality), "random" (uniform in (alpha-beta, alpha) every step),
      "ogm_ge" (not MWAM: OGM-GE's coefficients from the auxiliary heads' true-class
      scores, with ``ogm_alpha``, on weight gradients, plus its Gaussian noise of the
      unmodulated gradient's std; the "grad" intervention only);
      ``variant``, ``p``, ``q``, ``sigma``: the FRM (see ``frm``); ``reduce``: "auto" takes
      the mean per element when modalities differ in shape, else the code's sum;
      ``omega``: the bank's EMA factor; ``ema_in``: where the bank enters T;
      ``alpha, beta, lam, gamma``: the weight schedule (paper defaults);
      ``augment``: the host's training augmentation; FRM and K are computed on the augmented batch, the
      static control's K on the unaugmented training set.
    """

    def __init__(self, model: MultimodalModel, intervention: str = "auto", weights: str = "dynamic",
                 variant: str = "ratio", p: int = 8, q: int = 2, sigma: float = 1e-6, reduce: str = "auto",
                 omega: float = 0.5, ema_in: str = "denominator", alpha: float = PAPER_CONSTANTS["alpha"],
                 beta: float = PAPER_CONSTANTS["beta"], lam: float = PAPER_CONSTANTS["lam"],
                 gamma: float = PAPER_CONSTANTS["gamma"], modality_dropout: bool = False, aux_weight: float = 1.0,
                 trunk: int | None = None, input_filter: Sequence | None = None, ogm_alpha: float = 0.1,
                 augment: str | None = None, task: str = "classification"):
        super().__init__(model, modality_dropout, aux_weight, trunk, input_filter, augment, task)
        for name, value, valid in (("intervention", intervention, INTERVENTIONS), ("weights", weights, WEIGHTINGS),
                                   ("variant", variant, FRM_VARIANTS), ("reduce", reduce, REDUCTIONS), ("ema_in", ema_in, EMA_IN)):
            if value not in valid:
                raise ValueError(f"unknown MWAM {name} {value!r}; valid: {', '.join(valid)}")
        if not 1 <= q < p:
            raise ValueError(f"q must be in 1..p-1 = 1..{p - 1}, got {q}")
        validate.several_modalities("MWAM", self.modalities, "its weights compare each modality's FRM to the mean")
        validate.number("MWAM beta (K must decrease with FRM)", beta, 0, low_open=True)
        validate.number("MWAM alpha (K lies in (alpha - beta, alpha): alpha < beta gives negative weights)", alpha, beta)
        validate.number("MWAM lam (the sigmoid's slope)", lam, 0, low_open=True)
        validate.number("MWAM gamma", gamma)
        validate.number("MWAM sigma", sigma, 0, low_open=True)
        validate.number("MWAM p", p, 2, integer=True)
        validate.number("OGM-GE alpha", ogm_alpha, 0)
        if weights == "ogm_ge" and intervention not in ("auto", "grad"):
            raise ValueError(f"weights='ogm_ge' edits gradients as OGM-GE does; intervention {intervention!r} is not valid")
        self.ogm_alpha = ogm_alpha
        self.intervention, self.weighting, self.variant = intervention, weights, variant
        self.p, self.q, self.sigma, self.reduce, self.ema_in = p, q, sigma, reduce, ema_in
        self.constants = {"alpha": alpha, "beta": beta, "lam": lam, "gamma": gamma}
        self.bank = FRMBank(self.modalities, omega)
        self._k: Tensor | None = None  # (M,) weights of the current step
        self._static_k: Tensor | None = None
        self.active: str | None = None  # the resolved intervention, set by fit_begin

    # -- FRM and K ------------------------------------------------------------------------------

    def _reduction(self, batch: Batch) -> str:
        if self.reduce != "auto":
            return self.reduce
        shapes = {tuple(batch[m].shape[1:]) for m in self.modalities}
        return "sum" if len(shapes) == 1 else "mean"

    def batch_frm(self, batch: Batch) -> Tensor:
        """(M,) float64 FRM of each modality's input in this batch."""
        missing = [m for m in self.modalities if m not in batch]
        if missing:
            raise KeyError(f"MWAM needs every modality's input to compute FRM; the batch lacks {missing}")
        reduce = self._reduction(batch)
        return torch.stack([frm(batch[m], self.p, self.q, self.sigma, self.variant, reduce) for m in self.modalities])

    def weights_from_frm(self, frms: Tensor, bank: Tensor) -> Tensor:
        """K (M,) from this batch's FRMs and the bank."""
        return weight_schedule(relative_frm(frms, bank, self.sigma, self.ema_in), **self.constants)

    @torch.no_grad()
    def dataset_weights(self, dataset: DictDataset, batch_size: int = 64) -> tuple[Tensor, Tensor]:
        """The static control: mean batch FRM over a dataset, and the K it gives (no bank)."""
        device = self.subset_masks.device
        frms = torch.stack([self.batch_frm({k: v.to(device) for k, v in b.items()}) for b in iterate(dataset, batch_size)])
        mean = frms.mean(0)
        return mean, self.weights_from_frm(mean, mean)

    def extra_state(self) -> dict[str, Tensor | None]:
        """The FRM bank, which lives outside the module (saved in checkpoints for an exact resume)."""
        return {"bank": self.bank.values}

    def load_extra_state(self, state: dict[str, Tensor | None]) -> None:
        self.bank.values = state["bank"]

    def _resolve_intervention(self, optimizer: str) -> str:
        if self.intervention != "auto" or self.weighting == "ogm_ge":
            return "grad" if self.intervention == "auto" else self.intervention
        return "lr" if optimizer in ("adam", "adamw") else "grad"

    # -- hooks ----------------------------------------------------------------------------------

    def fit_begin(self, ctx) -> None:
        self.bank.reset()
        self.active = self._resolve_intervention(ctx.cfg.optimizer)
        if self.weighting == "static":
            self._static_k = self.dataset_weights(ctx.splits.train, ctx.cfg.batch_size)[1].to(ctx.device)

    @torch.no_grad()
    def _step_weights(self, batch: Batch, ctx) -> tuple[Tensor, Tensor]:
        frms = self.batch_frm(batch)
        frms = ctx.all_reduce(frms, "sum" if self._reduction(batch) == "sum" else "mean")  # same K everywhere
        bank = self.bank.update(frms)
        a, b = self.constants["alpha"], self.constants["beta"]
        if self.weighting == "static":
            k = self._static_k
        elif self.weighting == "random":
            k = a - b * torch.rand(len(self.modalities), dtype=torch.float64, device=frms.device)
        else:
            k = self.weights_from_frm(frms, bank)
            if self.weighting == "inverted":
                k = 2 * a - b - k
        return frms, k

    def aux_weights(self, batch: Batch) -> dict[str, Tensor | float]:
        if self.active in ("loss", "hybrid"):
            return {m: self.aux_weight * self._k[i].float() for i, m in enumerate(self.modalities)}
        return super().aux_weights(batch)

    def training_step(self, batch: Batch, ctx) -> StepOut:
        if self.active is None:
            raise RuntimeError("MWAM.training_step needs fit_begin(ctx) first (train it with mmrepro.train.fit)")
        batch = self.training_inputs(batch)
        frms, self._k = self._step_weights(batch, ctx)
        step = self._step(batch)
        if self.weighting == "ogm_ge":
            self._k = self._ogm_weights(step.output.unimodal_logits, batch[LABEL], ctx)
        step.logs.update({f"frm_{m}": frms[i].float() for i, m in enumerate(self.modalities)})
        step.logs.update({f"K_{m}": self._k[i].float() for i, m in enumerate(self.modalities)})
        step.logs.update({f"K2_{m}": self._k[i].float() ** 2 for i, m in enumerate(self.modalities)})  # epoch std
        return step

    @torch.no_grad()
    def _ogm_weights(self, unimodal_logits: dict[str, Tensor], labels: Tensor, ctx) -> Tensor:
        """OGM-GE's coefficients (M,) from the heads' summed true-class probabilities (every process alike)."""
        scores = {m: ctx.all_reduce(s, "sum") for m, s in true_class_scores(unimodal_logits, labels).items()}
        coeffs = ogm_coefficients(scores, self.ogm_alpha)
        return torch.stack([coeffs[m] for m in self.modalities]).double()

    def learning_rate_factors(self) -> dict[str, float]:
        """Under the "lr" intervention, K_m on the learning rate of encoder m's group (Algorithm 1).

        The optimiser needs Python floats: one host sync per step, in lr mode only.
        """
        if self.active != "lr":
            return {}
        return {m: float(k) for m, k in zip(self.modalities, self._k)}

    def after_backward(self, ctx) -> None:
        if self.active not in ("grad", "hybrid"):
            return
        for i, m in enumerate(self.modalities):
            params = self.model.encoders[m].parameters()
            if self.weighting == "ogm_ge":  # OGM-GE's own edit: weights only, plus its noise
                modulate_gradients(params, self._k[i])
                continue
            for param in params:
                if param.grad is not None:
                    param.grad.mul_(self._k[i].to(param.grad.dtype))
