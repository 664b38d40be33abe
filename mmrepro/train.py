"""The training loop: Lightning Fabric underneath, the method's hooks around each step.

Device, precision and distribution are chosen here and nowhere else.  The same
loop runs on CPU, one GPU, or many GPUs/nodes under ``torchrun`` (DDP).
Model selection uses the validation split only; the best epoch's weights are
restored at the end.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pandas as pd
import torch
from lightning_fabric import Fabric
from tqdm.auto import tqdm

from . import evaluate
from .data.core import Splits, train_loader

if TYPE_CHECKING:  # methods import the training loop (sub-models), not the other way round
    from .methods.base import Method

OPTIMIZERS = ("sgd", "adam", "adamw")


@dataclass
class TrainConfig:
    """Everything that shapes a training run; saved with every result."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_step: int | None = None  # StepLR period in epochs (None: constant)
    lr_gamma: float = 0.1
    grad_clip: float | None = None
    seed: int = 0
    device: str = "auto"  # "cpu", "cuda", "mps" or "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"  # "ddp" for multi-process runs
    precision: str | None = None  # None: bf16-mixed on CUDA, 32-true elsewhere
    select: str = "best"  # "best": restore the best validation epoch; "last": keep the last
    checkpoint_dir: str | None = None
    resume: bool = False
    progress: bool = field(default_factory=lambda: os.environ.get("MMREPRO_PROGRESS", "1") != "0")
    eval_batch_size: int = 512

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
        if self.select not in ("best", "last"):
            raise ValueError(f"select must be 'best' or 'last', got {self.select!r}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


@dataclass
class Context:
    """What hooks may read: the Fabric, config, data, and the position in training."""

    fabric: Fabric
    cfg: TrainConfig
    splits: Splits
    epoch: int = 0
    step: int = 0
    optimizer: torch.optim.Optimizer | None = None

    @property
    def world_size(self) -> int:
        return self.fabric.world_size

    @property
    def device(self) -> torch.device:
        return self.fabric.device


@dataclass
class FitResult:
    """Per-epoch history, the selected epoch, and provenance of the run."""

    history: pd.DataFrame
    best_epoch: int
    best_score: float
    wall_time: float
    device: str
    config: dict[str, Any]


def make_fabric(cfg: TrainConfig) -> Fabric:
    """The one place that turns the config into a device, precision and strategy."""
    accelerator = cfg.device
    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    precision = cfg.precision or ("bf16-mixed" if accelerator == "cuda" else "32-true")
    fabric = Fabric(accelerator=accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes,
                    strategy=cfg.strategy, precision=precision)
    fabric.launch()
    return fabric


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices); CPU runs then repeat to the last digit."""
    from lightning_fabric.utilities.seed import seed_everything as _seed

    _seed(seed, verbose=False)


def make_optimizer(method: Method, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = method.parameter_groups()
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return cls(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def device_name(fabric: Fabric) -> str:
    if fabric.device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(fabric.device)} x{fabric.world_size}"
    return f"{fabric.device.type} x{fabric.world_size} ({torch.get_num_threads()} threads)"


def apply_lr_factors(optimizer: torch.optim.Optimizer, factors: dict[str, float], applied: dict[str, float]) -> None:
    """Set each named parameter group's lr to (its scheduled lr) x factor: the factor ``applied`` last time is
    divided out first, so a scheduler's own factors are kept.  ``applied`` is updated in place."""
    groups = {g.get("name"): g for g in optimizer.param_groups}
    for name, factor in factors.items():
        if name not in groups:
            raise KeyError(f"learning-rate factor for group {name!r}, but the optimiser's groups are named "
                           f"{[g.get('name') for g in optimizer.param_groups]} (see Method.parameter_groups)")
        groups[name]["lr"] = groups[name]["lr"] * (factor / applied.get(name, 1.0))
        applied[name] = factor


def _validation_score(metrics: dict[str, float], task: str) -> float:
    return metrics["accuracy"] if task == "classification" else -metrics["mse"]


Monitor = Callable[["Method", "Context"], dict[str, float]]


def fit(method: Method, splits: Splits, cfg: TrainConfig | None = None, monitor: Monitor | None = None,
        **overrides: Any) -> FitResult:
    """Train ``method`` on ``splits.train``, selecting on ``splits.val``; returns the history.

    ``monitor(method, ctx)``, if given, runs after each epoch's validation and its
    values join that epoch's history row (e.g. Shapley contributions over training).
    """
    cfg = replace(cfg or TrainConfig(), **overrides)
    start_time = time.perf_counter()
    fabric = make_fabric(cfg)
    seed_everything(cfg.seed)
    ctx = Context(fabric, cfg, splits)
    method.fit_begin(ctx)
    loader, sampler = train_loader(splits.train, cfg.batch_size, cfg.seed, fabric.global_rank, fabric.world_size)
    optimizer = make_optimizer(method, cfg)
    module, optimizer = fabric.setup(method, optimizer)
    module.mark_forward_method("training_step")
    ctx.optimizer = optimizer
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, cfg.lr_step, cfg.lr_gamma) if cfg.lr_step else None

    lr_factors: dict[str, float] = {}  # the factors of Method.learning_rate_factors now folded into the lrs
    state: dict[str, Any] = {"method": module, "optimizer": optimizer, "epoch": -1, "step": 0, "history": [],
                             "best_state": None, "best_score": float("-inf"), "best_epoch": -1}
    if scheduler is not None:
        state["scheduler"] = scheduler
    ckpt = Path(cfg.checkpoint_dir) / "last.ckpt" if cfg.checkpoint_dir else None
    if cfg.resume and ckpt is not None and ckpt.is_file():
        state["rng"] = torch.get_rng_state()
        fabric.load(ckpt, state)
        torch.set_rng_state(state["rng"])
        ctx.step = state["step"]

    bar = tqdm(range(state["epoch"] + 1, cfg.epochs), desc=type(method).__name__, leave=False,
               disable=not cfg.progress or fabric.global_rank != 0)
    for epoch in bar:
        ctx.epoch = epoch
        sampler.set_epoch(epoch)
        method.epoch_begin(epoch, ctx)
        module.train()
        sums: dict[str, torch.Tensor] = {}
        steps, epoch_start = 0, time.perf_counter()
        for batch in loader:
            batch = fabric.to_device(batch)  # not setup_dataloaders: its own set_epoch would break resume
            optimizer.zero_grad(set_to_none=True)
            out = module.training_step(batch, ctx)
            fabric.backward(out.loss)
            method.after_backward(ctx)
            if cfg.grad_clip:
                fabric.clip_gradients(module, optimizer, max_norm=cfg.grad_clip)
            apply_lr_factors(optimizer, method.learning_rate_factors(), lr_factors)
            optimizer.step()
            for k, v in out.logs.items():  # stays on the device: no sync in the hot loop
                sums[k] = sums[k] + v.detach().float() if k in sums else v.detach().float()
            steps += 1
            ctx.step += 1
        if scheduler is not None:
            scheduler.step()
        method.epoch_end(epoch, ctx)
        val = evaluate.metrics(evaluate.predict(method, splits.val, batch_size=cfg.eval_batch_size), splits.task)
        train = {k: fabric.all_reduce(v / steps, reduce_op="mean") for k, v in sums.items()}  # all processes' data
        row = {"epoch": epoch, **{f"train_{k}": v.item() for k, v in train.items()},
               **{f"val_{k}": v for k, v in val.items()}, "lr": optimizer.param_groups[0]["lr"],
               "epoch_time": time.perf_counter() - epoch_start}
        if monitor is not None:
            row.update(monitor(method, ctx))
        state["history"].append(row)
        score = _validation_score(val, splits.task)
        if cfg.select == "best" and score > state["best_score"]:
            state["best_score"], state["best_epoch"] = score, epoch
            state["best_state"] = {k: v.detach().clone() for k, v in method.state_dict().items()}
        state["epoch"] = epoch
        bar.set_postfix(val=f"{score:.3f}")
        if ckpt is not None:
            state["rng"], state["step"] = torch.get_rng_state(), ctx.step
            fabric.save(ckpt, state)

    if cfg.select == "best" and state["best_state"] is not None:
        method.load_state_dict(state["best_state"])
    else:
        last = {k[4:]: v for k, v in state["history"][-1].items() if k.startswith("val_")}
        state["best_epoch"], state["best_score"] = state["epoch"], _validation_score(last, splits.task)
    return FitResult(pd.DataFrame(state["history"]), state["best_epoch"], float(state["best_score"]),
                     time.perf_counter() - start_time, device_name(fabric), asdict(cfg))
