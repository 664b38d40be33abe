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

from . import checkpoint, evaluate, validate
from .data.core import LABEL, DictDataset, Splits, train_loader

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
    patience: int | None = None  # early stopping: end after this many epochs without a better validation score
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
        for name in ("epochs", "batch_size", "eval_batch_size"):
            setattr(self, name, validate.number(name, getattr(self, name), 1, integer=True))
        self.seed = validate.number("seed", self.seed, 0, integer=True)
        if self.lr_step is not None:
            self.lr_step = validate.number("lr_step", self.lr_step, 1, integer=True)
        self.lr = validate.number("lr", self.lr, 0, low_open=True)
        self.lr_gamma = validate.number("lr_gamma", self.lr_gamma, 0, low_open=True)
        self.momentum = validate.number("momentum", self.momentum, 0, 1, high_open=True)
        self.weight_decay = validate.number("weight_decay", self.weight_decay, 0)
        if self.grad_clip is not None:
            self.grad_clip = validate.number("grad_clip (None: no clipping)", self.grad_clip, 0, low_open=True)
        if self.patience is not None:
            self.patience = validate.number("patience (None: no early stopping)", self.patience, 1, integer=True)


@dataclass
class Context:
    """What hooks may read: the Fabric, config, data, and the position in training."""

    fabric: Fabric
    cfg: TrainConfig
    splits: Splits
    epoch: int = 0
    step: int = 0
    optimizer: torch.optim.Optimizer | None = None
    val_metrics: dict[str, float] | None = None  # the epoch's validation metrics, for monitors

    @property
    def world_size(self) -> int:
        return self.fabric.world_size

    @property
    def device(self) -> torch.device:
        return self.fabric.device

    def all_reduce(self, tensor: torch.Tensor, reduce_op: str = "mean") -> torch.Tensor:
        """``tensor`` reduced over all processes ("sum", "mean" or "max"); the tensor itself on one process."""
        if self.world_size == 1:
            return tensor
        op = torch.distributed.ReduceOp.MAX if reduce_op == "max" else reduce_op
        return self.fabric.all_reduce(tensor, reduce_op=op)

    @classmethod
    def local(cls, splits: Splits, cfg: TrainConfig | None = None, **overrides: Any) -> "Context":
        """A one-process context on ``cfg.device`` (default: CPU), for tests and notebooks calling hooks by hand."""
        cfg = replace(cfg or TrainConfig(device="cpu", progress=False), **overrides)
        return cls(make_fabric(cfg), cfg, splits)


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


def check_inputs(method: Method, splits: Splits, cfg: TrainConfig) -> None:
    """Refuse data the method was not built for, before any training; errors name the split and modality."""
    name = type(method).__name__
    if method.task != splits.task:
        raise ValueError(f"{name} was built for task {method.task!r} but {splits.name!r} is a {splits.task} "
                         "dataset; build the method with task=splits.task")
    for part in ("train", "val", "test"):
        data = splits.split(part)
        if len(data) == 0:
            raise ValueError(f"the {part} split of {splits.name!r} is empty")
        _check_modalities(method, data, part)
        for key, tensor in data.tensors.items():
            if not validate.all_finite(tensor):
                raise ValueError(f"{splits.name!r} {part} tensor {key!r} holds NaN or inf values; clean or drop them")
        if splits.task == "classification":
            _check_labels(data.tensors[LABEL], splits.num_classes, getattr(method.model, "num_classes", None), part)
    _check_last_batch(method, len(splits.train), cfg.batch_size)


def _check_modalities(method: Method, data: DictDataset, part: str) -> None:
    expected, present = tuple(method.modalities), tuple(data.modalities)
    if set(expected) != set(present):
        raise ValueError(f"{type(method).__name__}'s model has encoders for {list(expected)} but the {part} split "
                         f"has modalities {list(present)}; build the method for these splits")
    for m, (shape, dtype) in (getattr(method.model, "input_spec", None) or {}).items():
        got = data.tensors[m]
        if tuple(got.shape[1:]) != tuple(shape) or got.dtype != dtype:
            raise ValueError(f"modality {m!r} in the {part} split has examples of shape {tuple(got.shape[1:])} and "
                             f"dtype {got.dtype}; the model was built for shape {tuple(shape)} and dtype {dtype}")


def _check_labels(labels: torch.Tensor, num_classes: int, model_classes: int | None, part: str) -> None:
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"classification labels must be integers; the {part} labels are {labels.dtype}")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ValueError(f"the {part} labels span {low}..{high} but the splits declare num_classes={num_classes} "
                         f"(valid labels 0..{num_classes - 1})")
    if model_classes is not None and model_classes != num_classes:
        raise ValueError(f"the model predicts {model_classes} classes but the data has num_classes={num_classes}")


def _check_last_batch(method: Method, n: int, batch_size: int) -> None:
    if n % batch_size == 1 and any(isinstance(m, torch.nn.BatchNorm1d) for m in method.modules()):
        raise ValueError(f"the last training batch would hold 1 example ({n} examples, batch_size {batch_size}) and "
                         f"{type(method).__name__} has BatchNorm1d, which cannot normalise one example; choose a "
                         "batch_size that leaves more than one example over")


def fit(method: Method, splits: Splits, cfg: TrainConfig | None = None, monitor: Monitor | None = None,
        **overrides: Any) -> FitResult:
    """Train ``method`` on ``splits.train``, selecting on ``splits.val``; returns the history.

    ``monitor(method, ctx)``, if given, runs after each epoch's validation and its
    values join that epoch's history row (e.g. Shapley contributions over training),
    as do the logs ``method.epoch_end`` may return.  With ``checkpoint_dir`` a
    checkpoint is written after every epoch; ``resume=True`` continues from it
    exactly (same numbers as an uninterrupted run), or refuses if it is another run's.
    A non-finite training loss stops the run at the end of its epoch, naming the step.
    """
    cfg = replace(cfg or TrainConfig(), **overrides)
    check_inputs(method, splits, cfg)
    start_time = time.perf_counter()
    fabric = make_fabric(cfg)
    seed_everything(cfg.seed)
    ctx = Context(fabric, cfg, splits)
    ckpt = Path(cfg.checkpoint_dir) / "last.ckpt" if cfg.checkpoint_dir else None
    run_identity = checkpoint.identity(method, asdict(cfg))
    saved = checkpoint.read(ckpt) if cfg.resume and ckpt is not None and ckpt.is_file() else None
    if saved is not None:  # before fit_begin, which may pre-train for minutes
        checkpoint.check_same_run(saved["identity"], run_identity, ckpt)
    method.fit_begin(ctx)
    loader, sampler = train_loader(splits.train, cfg.batch_size, cfg.seed, fabric.global_rank, fabric.world_size)
    optimizer = make_optimizer(method, cfg)
    module, optimizer = fabric.setup(method, optimizer)
    module.mark_forward_method("training_step")
    ctx.optimizer = optimizer
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, cfg.lr_step, cfg.lr_gamma) if cfg.lr_step else None

    state: dict[str, Any] = {"method": module, "optimizer": optimizer, "epoch": -1, "step": 0, "history": [],
                             "best_state": None, "best_score": float("-inf"), "best_epoch": -1,
                             "identity": run_identity,
                             "lr_factors": {}}  # Method.learning_rate_factors now folded into the lrs
    if scheduler is not None:
        state["scheduler"] = scheduler
    if saved is not None:
        _restore(saved, state, method, ckpt)
        ctx.step = state["step"]

    bar = tqdm(range(state["epoch"] + 1, cfg.epochs), desc=type(method).__name__, leave=False,
               disable=not cfg.progress or fabric.global_rank != 0)
    for epoch in bar:
        ctx.epoch = epoch
        sampler.set_epoch(epoch)
        method.epoch_begin(epoch, ctx)
        module.train()
        sums: dict[str, torch.Tensor] = {}
        first_bad = torch.zeros((), dtype=torch.long, device=fabric.device)  # 1 + first non-finite step; 0: none
        steps, epoch_start = 0, time.perf_counter()
        for batch in loader:
            batch = fabric.to_device(batch)  # not setup_dataloaders: its own set_epoch would break resume
            optimizer.zero_grad(set_to_none=True)
            out = module.training_step(batch, ctx)
            fabric.backward(out.loss)
            method.after_backward(ctx)
            if cfg.grad_clip:
                fabric.clip_gradients(module, optimizer, max_norm=cfg.grad_clip)
            apply_lr_factors(optimizer, method.learning_rate_factors(), state["lr_factors"])
            optimizer.step()
            for k, v in out.logs.items():  # stays on the device: no sync in the hot loop
                sums[k] = sums[k] + v.detach().float() if k in sums else v.detach().float()
            steps += 1
            first_bad = torch.where((first_bad == 0) & ~torch.isfinite(out.loss.detach()), steps, first_bad)
            ctx.step += 1
        _check_finite(ctx.all_reduce(first_bad, "max"), method, epoch, steps)
        if scheduler is not None:
            scheduler.step()
        logs = method.epoch_end(epoch, ctx) or {}
        val = ctx.val_metrics = evaluate.metrics(evaluate.predict(method, splits.val, batch_size=cfg.eval_batch_size),
                                                 splits.task)
        train = {k: fabric.all_reduce(v / steps, reduce_op="mean") for k, v in sums.items()}  # all processes' data
        row = {"epoch": epoch, **{f"train_{k}": v.item() for k, v in train.items()},
               **{f"val_{k}": v for k, v in val.items()}, "lr": optimizer.param_groups[0]["lr"],
               "epoch_time": time.perf_counter() - epoch_start, **logs}
        if monitor is not None:
            row.update(monitor(method, ctx))
        state["history"].append(row)
        score = _validation_score(val, splits.task)
        if score > state["best_score"]:
            state["best_score"], state["best_epoch"] = score, epoch
            if cfg.select == "best":
                state["best_state"] = {k: v.detach().clone() for k, v in method.state_dict().items()}
        state["epoch"] = epoch
        bar.set_postfix(val=f"{score:.3f}")
        if ckpt is not None:
            _save(fabric, ckpt, state, method, ctx.step)
        if cfg.patience is not None and epoch - state["best_epoch"] >= cfg.patience:
            break  # early stopping: validation has not improved for `patience` epochs

    if cfg.select == "best" and state["best_state"] is not None:
        method.load_state_dict(state["best_state"])
    else:
        last = {k[4:]: v for k, v in state["history"][-1].items() if k.startswith("val_")}
        state["best_epoch"], state["best_score"] = state["epoch"], _validation_score(last, splits.task)
    return FitResult(pd.DataFrame(state["history"]), state["best_epoch"], float(state["best_score"]),
                     time.perf_counter() - start_time, device_name(fabric), asdict(cfg))


def _check_finite(first_bad: torch.Tensor, method: Method, epoch: int, steps: int) -> None:
    """One host sync per epoch: raise if any step of the epoch had a non-finite loss."""
    step = int(first_bad.item())
    if step:
        raise FloatingPointError(
            f"{type(method).__name__}: the training loss became non-finite (NaN or inf) at epoch {epoch}, step {step} "
            f"of {steps}; check the inputs and the method's settings for NaN/inf, lower lr, or set grad_clip")


def _save(fabric: Fabric, path: Path, state: dict[str, Any], method: Method, step: int) -> None:
    """Write the checkpoint atomically (a kill mid-write leaves the previous epoch's file)."""
    state.update(rng=checkpoint.rng_states(), step=step, method_state=checkpoint.method_state(method))
    tmp = path.with_name(f".{path.name}.tmp")
    fabric.save(tmp, state)
    if fabric.global_rank == 0:
        os.replace(tmp, path)
    fabric.barrier()


def _restore(saved: dict[str, Any], state: dict[str, Any], method: Method, path: Path) -> None:
    """Load a checkpoint into the live objects; method state and RNGs last, after ``fit_begin`` ran."""
    try:
        method.load_state_dict(saved["method"])
        state["optimizer"].load_state_dict(saved["optimizer"])
        if "scheduler" in state:
            state["scheduler"].load_state_dict(saved["scheduler"])
        checkpoint.load_method_state(method, saved["method_state"])
    except (KeyError, RuntimeError, ValueError) as error:
        raise checkpoint.CheckpointError(f"checkpoint {path} does not fit this run ({type(error).__name__}: "
                                         f"{str(error)[:300]}); delete it to start over") from error
    for key in ("epoch", "step", "history", "best_state", "best_score", "best_epoch", "lr_factors"):
        state[key] = saved[key]
    checkpoint.set_rng_states(saved["rng"])
