"""Training samples per second: joint training and each method, against an official-style loop, in one process.

Three loops train the same model on the same data (AV-Digits, or synthetic tensors of its shapes):

- ``official``: what the papers' code does: fp32, a ``DataLoader`` over CPU tensors, a host-to-device copy of
  every batch, ``loss.item()`` every step (joint training only: it is the yardstick);
- ``fit``: the package's step as ``mmrepro.train.fit`` runs it (its loader, ``fabric.to_device``, Fabric's
  precision, logs kept on the device);
- ``resident``: the data on the device once, batches indexed there, no host-device sync in the step, bf16
  autocast on CUDA, and optionally ``torch.compile`` of the encoders (``--compile``).

Each loop gets warm-up steps, then ``--repeats`` interleaved rounds of ``--steps`` steps; a loop's samples per
second (wall and CPU) is its median round, and its speed-up the median over rounds of official's round time over
its own (paired).  On a shared CPU read the CPU-time columns; on a GPU the wall-time ones:

    python benchmarks/throughput.py                                  # CPU, small: joint + every method, ~2 min
    python benchmarks/throughput.py --device cuda --steps 200 --encoder resnet18 --compile \\
        --out results/throughput_cuda.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any, Callable, Iterator

import pandas as pd
import torch
from torch.utils.data import DataLoader, TensorDataset

from mmrepro import methods
from mmrepro.data import load
from mmrepro.data.core import LABEL, Splits, train_loader
from mmrepro.methods import Method
from mmrepro.models import ResNet18Encoder, SmallCNN
from mmrepro.results import provenance, write_json
from mmrepro.train import Context, TrainConfig, apply_lr_factors, device_name, make_fabric, make_optimizer, \
    seed_everything

BASELINE = "joint"
#: methods whose build needs arguments no default can give (a modality to keep)
NEEDS_ARGUMENTS = ("unimodal",)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _config(device: str, batch_size: int, precision: str | None) -> TrainConfig:
    """The benchmark chapter's optimiser settings (SGD, momentum 0.9, weight decay 1e-4), and enough epochs for
    every method's stage schedule to fit (UDML's stages start at epoch 60)."""
    return TrainConfig(epochs=100, batch_size=batch_size, optimizer="sgd", lr=0.03, momentum=0.9, weight_decay=1e-4,
                       device=device, precision=precision, progress=False)


class Loop:
    """One way of training a method; ``run(n)`` takes ``n`` steps, ``sync()`` waits for the device."""

    name = ""

    def run(self, n: int) -> None:
        raise NotImplementedError


class OfficialLoop(Loop):
    """fp32, a DataLoader over CPU tensors, a copy per batch, ``loss.item()`` per step, as in the papers' code."""

    name = "official"

    def __init__(self, method: Method, splits: Splits, cfg: TrainConfig, device: torch.device):
        self.method, self.device, self.modalities = method.to(device).train(), device, list(method.modalities)
        train = splits.train.tensors
        self.loader = DataLoader(TensorDataset(*(train[m] for m in self.modalities), train[LABEL]),
                                 batch_size=cfg.batch_size, shuffle=True, drop_last=False)
        self.optimizer = make_optimizer(method, cfg)
        self.ctx = Context.local(splits, cfg)
        self.batches = _forever(lambda: iter(self.loader))
        self.total_loss = 0.0

    def run(self, n: int) -> None:
        for _ in range(n):
            *inputs, label = next(self.batches)
            batch = {**{m: x.to(self.device) for m, x in zip(self.modalities, inputs)}, LABEL: label.to(self.device)}
            self.optimizer.zero_grad()
            out = self.method.training_step(batch, self.ctx)
            out.loss.backward()
            self.optimizer.step()
            self.total_loss += out.loss.item()


class FitLoop(Loop):
    """The step of ``mmrepro.train.fit``: its loader, Fabric's device copy and precision, logs on the device."""

    name = "fit"

    def __init__(self, method: Method, splits: Splits, cfg: TrainConfig, device: torch.device):
        self.method, self.fabric = method, make_fabric(cfg)
        self.ctx = Context(self.fabric, cfg, splits)
        method.fit_begin(self.ctx)
        self.module, self.optimizer = self.fabric.setup(method, make_optimizer(method, cfg))
        self.module.mark_forward_method("training_step")
        self.ctx.optimizer = self.optimizer
        method.epoch_begin(0, self.ctx)
        self.module.train()
        loader, self.sampler = train_loader(splits.train, cfg.batch_size, cfg.seed)
        self.batches = _forever(lambda: iter(loader))
        self.factors: dict[str, float] = {}
        self.sums: dict[str, torch.Tensor] = {}

    def run(self, n: int) -> None:
        for _ in range(n):
            batch = self.fabric.to_device(next(self.batches))
            self.optimizer.zero_grad(set_to_none=True)
            out = self.module.training_step(batch, self.ctx)
            self.fabric.backward(out.loss)
            self.method.after_backward(self.ctx)
            apply_lr_factors(self.optimizer, self.method.learning_rate_factors(), self.factors)
            self.optimizer.step()
            for k, v in out.logs.items():
                self.sums[k] = self.sums[k] + v.detach().float() if k in self.sums else v.detach().float()
            self.ctx.step += 1


def as_nchw(encoder: torch.nn.Module) -> None:
    """Run a package CNN encoder in the default (NCHW) layout, as before channels_last was adopted: its weights
    made contiguous, its forward without the conversion to channels_last (benchmarks only)."""
    encoder.to(memory_format=torch.contiguous_format)
    if isinstance(encoder, SmallCNN):
        encoder.forward = lambda x: encoder.body(x).mean(dim=(-2, -1))
    elif isinstance(encoder, ResNet18Encoder):
        encoder.forward = encoder.net


class ResidentLoop(Loop):
    """The data on the device, batches indexed there, no sync in the step, bf16 autocast on CUDA."""

    name = "resident"

    def __init__(self, method: Method, splits: Splits, cfg: TrainConfig, device: torch.device,
                 compile_encoders: bool = False, nchw: bool = False,
                 optimizer_options: dict[str, bool] | None = None):
        self.method, self.device, self.batch_size = method.to(device), device, cfg.batch_size
        self.data = {k: v.to(device) for k, v in splits.train.tensors.items() if k in (*method.modalities, LABEL)}
        if nchw:
            for encoder in method.model.encoders.values():
                as_nchw(encoder)
        if compile_encoders:
            for name, encoder in method.model.encoders.items():
                method.model.encoders[name] = torch.compile(encoder)
        self.ctx = Context.local(splits, cfg)
        method.fit_begin(self.ctx)
        self.optimizer = make_optimizer(method, cfg) if optimizer_options is None else torch.optim.SGD(
            method.parameter_groups(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
            **optimizer_options)
        self.ctx.optimizer = self.optimizer
        method.epoch_begin(0, self.ctx)
        method.train()
        self.autocast = device.type == "cuda"
        self.order = _forever(self._epoch)
        self.factors: dict[str, float] = {}

    def _epoch(self) -> Iterator[torch.Tensor]:
        perm = torch.randperm(len(self.data[LABEL]), device=self.device)
        return iter(perm.split(self.batch_size))

    def run(self, n: int) -> None:
        for _ in range(n):
            index = next(self.order)
            batch = {k: v.index_select(0, index) for k, v in self.data.items()}
            self.optimizer.zero_grad(set_to_none=True)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                out = self.method.training_step(batch, self.ctx)
            out.loss.backward()
            self.method.after_backward(self.ctx)
            apply_lr_factors(self.optimizer, self.method.learning_rate_factors(), self.factors)
            self.optimizer.step()
            self.ctx.step += 1


def _forever(start: Callable[[], Iterator[Any]]) -> Iterator[Any]:
    """Items of ``start()``, restarted each time it runs out (an endless sequence of epochs)."""
    while True:
        yield from start()


def time_loops(loops: dict[str, Loop], device: torch.device, batch_size: int, steps: int, warmup: int,
               repeats: int, reference: str) -> pd.DataFrame:
    """Samples per wall second and per CPU second of each loop (median round), and its speed-up over
    ``reference`` (median over rounds of the paired time ratios; on a shared CPU the CPU-time ratio is the one
    that does not move with the machine's load)."""
    for loop in loops.values():
        loop.run(warmup)
    _sync(device)
    rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in loops}
    names = list(loops)
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            _sync(device)
            start, cpu_start = time.perf_counter(), time.process_time()
            loops[name].run(steps)
            _sync(device)
            rounds[name].append((time.perf_counter() - start, time.process_time() - cpu_start))
    samples = batch_size * steps

    def ratio(name: str, clock: int) -> float:
        return statistics.median(b[clock] / a[clock] for a, b in zip(rounds[name], rounds[reference]))

    return pd.DataFrame({
        "loop": names,
        "samples_per_s": [samples / statistics.median(t for t, _ in rounds[n]) for n in names],
        "samples_per_cpu_s": [samples / statistics.median(c for _, c in rounds[n]) for n in names],
        f"speedup_vs_{reference}": [ratio(n, 0) for n in names],
        f"cpu_speedup_vs_{reference}": [ratio(n, 1) for n in names]})


def splits_for(dataset: str) -> Splits:
    """AV-Digits when its data are present, else synthetic tensors of AV-Digits' shapes."""
    if dataset != "auto":
        return load(dataset)
    try:
        return load("av_digits")
    except (FileNotFoundError, OSError):
        return _synthetic_av_digits()


def _synthetic_av_digits(n: int = 2400, seed: int = 0) -> Splits:
    """Random tensors with AV-Digits' shapes and sizes (1x32x32 audio, 1x28x28 image, 10 classes)."""
    from mmrepro.data.core import DictDataset

    g = torch.Generator().manual_seed(seed)
    part = lambda k: DictDataset({"audio": torch.randn(k, 1, 32, 32, generator=g),  # noqa: E731
                                  "image": torch.rand(k, 1, 28, 28, generator=g),
                                  LABEL: torch.randint(0, 10, (k,), generator=g)})
    return Splits("synthetic AV-Digits", part(n), part(n // 8), part(n // 8), num_classes=10)


def build_loops(method_name: str, splits: Splits, cfg: TrainConfig, device: torch.device, encoder: str,
                compile_encoders: bool, with_official: bool, seed: int = 0) -> dict[str, Loop]:
    """The loops for one method, each on its own freshly built (same-seed) model."""
    def fresh() -> Method:
        seed_everything(seed)
        return methods.build(method_name, splits, encoder=encoder)

    loops: dict[str, Loop] = {}
    if with_official:
        loops["official"] = OfficialLoop(fresh(), splits, cfg, device)
    loops["fit"] = FitLoop(fresh(), splits, cfg, device)
    loops["resident"] = ResidentLoop(fresh(), splits, cfg, device)
    if compile_encoders:
        loops["resident+compile"] = ResidentLoop(fresh(), splits, cfg, device, compile_encoders=True)
    return loops


def main(argv: list[str] | None = None) -> pd.DataFrame:
    """The command line: joint against the official-style loop, then every method's fit and resident loops."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=[m for m in methods.REGISTRY if m not in NEEDS_ARGUMENTS])
    parser.add_argument("--dataset", default="auto", help="a dataset name; auto: av_digits, else synthetic tensors")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--encoder", default="cnn", help="cnn (book) or resnet18 (full)")
    parser.add_argument("--precision", default=None, help="the fit loop's precision (default: bf16-mixed on CUDA)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time the resident loop with compiled encoders")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", default=None, help="JSON record to write")
    args = parser.parse_args(argv)
    unknown = [m for m in args.methods if m not in methods.REGISTRY]
    if unknown:
        parser.error(f"unknown methods {unknown}; registered: {', '.join(methods.REGISTRY)}")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    splits = splits_for(args.dataset)
    cfg = _config(args.device, args.batch_size, args.precision)
    tables = []
    for name in [BASELINE] + [m for m in args.methods if m != BASELINE]:
        try:
            loops = build_loops(name, splits, cfg, device, args.encoder, args.compile, with_official=name == BASELINE)
        except (ValueError, TypeError, KeyError) as err:  # a method that needs settings the defaults lack
            if name == BASELINE:
                raise
            print(f"{name}: not timed, it cannot be built or started with default settings: {err}", flush=True)
            tables.append(pd.DataFrame([{"method": name, "loop": f"not timed: {err}"}]))
            continue
        table = time_loops(loops, device, args.batch_size, args.steps, args.warmup, args.repeats,
                           reference="official" if name == BASELINE else "fit")
        tables.append(table.assign(method=name))
        print(table.assign(method=name).to_string(index=False, float_format="{:.2f}".format), flush=True)
    columns = ["method", "loop", "samples_per_s", "samples_per_cpu_s", "speedup_vs_official",
               "cpu_speedup_vs_official", "speedup_vs_fit", "cpu_speedup_vs_fit"]
    frame = pd.concat(tables, ignore_index=True).reindex(columns=columns)
    print(frame.to_string(index=False, float_format="{:.2f}".format, na_rep=""))
    if args.out:
        config = {k: v for k, v in vars(args).items() if k != "out"}
        write_json(args.out, {"config": config, "data": splits.name, "results": frame.to_dict("records"),
                              "load_average_1_5_15_min": os.getloadavg(),
                              **provenance(device_name(make_fabric(cfg)))})
    return frame


if __name__ == "__main__":
    main()
