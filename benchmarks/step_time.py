"""Time each method's training step relative to joint training, in one process on one device.

A step is what ``mmrepro.train.fit`` does per batch: ``training_step``,
``fabric.backward``, ``after_backward`` and the optimiser step, on a Fabric made
by ``make_fabric``.  Methods are timed in interleaved rounds after a warm-up, so
a slow-down of the machine hits all of them alike; a method's ratio to joint is the
median over rounds of its time divided by joint's time in the same round (paired).
The default set is every imbalance baseline of the book:

    python benchmarks/step_time.py --device cpu --threads 1 --steps 10 --repeats 5 --warmup 3 \\
        --out results/step_time_cpu.json

``--leaderboard`` times every method of the leaderboard as its grid builds it (MLP encoders, each method's
options), once per input shape of its settings (two, three and six modalities), at epoch ``--epoch`` of training
(each method's ``epoch_begin`` hooks called up to it, so staged methods are timed in their later stage):

    python benchmarks/step_time.py --leaderboard --device cpu --threads 1 --steps 20 --repeats 9 --warmup 5 \\
        --epoch 10 --out results/step_time_leaderboard.json

From Python, pass factories for any method (registered or not):
``time_steps({"joint": lambda: build("joint", splits), ...}, splits, 64, 30, "cpu")``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from typing import Callable

import pandas as pd
import torch

from mmrepro import methods
from mmrepro.analysis import leaderboard as lb
from mmrepro.data import load, train_loader
from mmrepro.data.core import Batch, Splits
from mmrepro.methods import Method
from mmrepro.results import provenance, write_json
from mmrepro.train import Context, TrainConfig, device_name, make_optimizer, make_fabric, seed_everything

BASELINE = "joint"
#: the imbalance baselines the chapters compare against (``book/baselines.md``)
BASELINES = ("ogm_ge", "pmr", "mmpareto", "gblending", "agm", "mslr", "greedy", "eau", "pdf", "mmdynamics")


class _Runner:
    """One method set up exactly as ``fit`` sets it up, able to run ``n`` training steps."""

    def __init__(self, method: Method, fabric, cfg: TrainConfig, splits: Splits, batches: list[Batch], epoch: int = 0):
        self.method, self.fabric, self.batches = method, fabric, batches
        optimizer = make_optimizer(method, cfg)
        self.module, self.optimizer = fabric.setup(method, optimizer)
        self.module.mark_forward_method("training_step")
        self.ctx = Context(fabric, cfg, splits, optimizer=self.optimizer)
        method.fit_begin(self.ctx)
        for e in range(epoch + 1):  # the hooks of every epoch up to the timed one, in order
            self.ctx.epoch = e
            method.epoch_begin(e, self.ctx)
        self.module.train()
        self._cycle = itertools.cycle(batches)

    def run(self, n: int) -> None:
        for _ in range(n):
            self.optimizer.zero_grad(set_to_none=True)
            out = self.module.training_step(next(self._cycle), self.ctx)
            self.fabric.backward(out.loss)
            self.method.after_backward(self.ctx)
            self.optimizer.step()
            self.ctx.step += 1


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(method_factories: dict[str, Callable[[], Method]], splits: Splits, batch_size: int, steps: int,
               device: str = "cpu", warmup: int = 5, repeats: int = 3, seed: int = 0,
               precision: str | None = None, epoch: int = 0, epochs: int = 100,
               patience: int | None = None) -> pd.DataFrame:
    """Milliseconds per training step of each method and its ratio to ``joint``, measured in this process.

    Every method gets ``warmup`` untimed steps, then ``repeats`` interleaved timed rounds of
    ``steps`` steps each (the order rotates per round).  ``ms_per_step`` is the median round;
    ``relative_to_joint`` the median of the per-round ratios to joint (paired by round).  The steps are those of
    epoch ``epoch`` of an ``epochs``-epoch fit with early stopping after ``patience`` epochs (what a method's
    ``fit_begin`` may train with, e.g. BTW's unimodal predictors; ``epoch_begin`` is called for every epoch up to
    ``epoch`` first).
    """
    if BASELINE not in method_factories:
        raise ValueError(f"time_steps needs a {BASELINE!r} factory to compare against; got {sorted(method_factories)}")
    if min(steps, repeats) < 1 or warmup < 0:
        raise ValueError(f"steps and repeats must be >= 1 and warmup >= 0, got {steps}, {repeats}, {warmup}")
    if not 0 <= epoch < epochs:
        raise ValueError(f"need 0 <= epoch < epochs, got {epoch} and {epochs}")
    cfg = TrainConfig(batch_size=batch_size, device=device, precision=precision, seed=seed, progress=False,
                      epochs=epochs, patience=patience)
    fabric = make_fabric(cfg)
    loader, _ = train_loader(splits.train, batch_size, seed)
    batches = [fabric.to_device(b) for b in itertools.islice(loader, max(1, len(loader)))]
    runners = {}
    for name, factory in method_factories.items():
        seed_everything(seed)
        runners[name] = _Runner(factory(), fabric, cfg, splits, batches, epoch)
        runners[name].run(warmup)
    rounds: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            _sync(fabric.device)
            start = time.perf_counter()
            runners[name].run(steps)
            _sync(fabric.device)
            rounds[name].append((time.perf_counter() - start) * 1000 / steps)
    frame = pd.DataFrame({
        "method": names, "ms_per_step": [statistics.median(rounds[n]) for n in names],
        "relative_to_joint": [statistics.median(m / j for m, j in zip(rounds[n], rounds[BASELINE])) for n in names]})
    frame.attrs["device"] = device_name(fabric)
    return frame


def leaderboard(steps: int, repeats: int, warmup: int, epoch: int, device: str = "cpu",
                settings: tuple[str, ...] = ("AV-Digits", "third modality", "mfeat")) -> pd.DataFrame:
    """Every leaderboard method on each setting's input shape, built as the leaderboard's grid builds it (the book
    profile's encoders and options): one ``time_steps`` table per setting, stacked with a ``setting`` column.
    Settings that share a shape (held-out speakers and image degraded are AV-Digits' two modalities) share its
    timing."""
    size = lb.SIZES["book"]
    tables = []
    for setting in settings:
        splits = load(**lb.SETTINGS[setting].data)
        names = [m for m in size.methods if lb.applies(m, setting)[0]]
        factories = {m: (lambda m=m: lb.build_method(m, setting, splits, size)) for m in names}
        table = time_steps(factories, splits, 64, steps, device, warmup, repeats, epoch=epoch, epochs=size.epochs,
                           patience=size.patience)
        tables.append(table.assign(setting=setting))
        print(setting, flush=True)
        print(table.to_string(index=False, float_format="{:.3f}".format), flush=True)
    out = pd.concat(tables, ignore_index=True)
    out.attrs["device"] = tables[0].attrs["device"]
    return out


def main(argv: list[str] | None = None) -> pd.DataFrame:
    """The command line: registered methods by name on a dataset by name; writes a JSON record."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=[BASELINE, *BASELINES],
                        help=f"registered names: {', '.join(methods.REGISTRY)} ('joint' is always timed)")
    parser.add_argument("--dataset", default="av_digits")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default=None, help="default: bf16-mixed on CUDA, 32-true elsewhere")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--widths", type=int, nargs="+", default=None, help="SmallCNN widths, e.g. 8 16 32")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--leaderboard", action="store_true",
                        help="every leaderboard method on each of its settings' input shapes (ignores --methods, "
                             "--dataset, --widths, --batch-size)")
    parser.add_argument("--epoch", type=int, default=0, help="the training epoch whose steps are timed")
    parser.add_argument("--out", default=None, help="JSON record to write (e.g. results/step_time_cpu.json)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.leaderboard:
        start = time.process_time()
        table = leaderboard(args.steps, args.repeats, args.warmup, args.epoch, args.device)
        if args.out:
            config = {k: v for k, v in vars(args).items() if k not in ("out", "methods", "dataset", "widths")}
            write_json(args.out, {"command": "python benchmarks/step_time.py " + " ".join(argv if argv is not None
                                                                                           else sys.argv[1:]),
                                  "config": config, "results": table.to_dict("records"),
                                  "cpu_seconds": time.process_time() - start,
                                  "load_average_1_5_15_min": os.getloadavg(), **provenance(table.attrs["device"])})
        return table
    unknown = [m for m in args.methods if m not in methods.REGISTRY]
    if unknown:
        parser.error(f"unknown methods {unknown}; registered: {', '.join(methods.REGISTRY)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    splits = load(args.dataset)
    encoder_kwargs = {"widths": tuple(args.widths)} if args.widths else {}
    names = [BASELINE] + [m for m in args.methods if m != BASELINE]
    factories = {n: (lambda n=n: methods.build(n, splits, encoder_kwargs=encoder_kwargs)) for n in names}
    table = time_steps(factories, splits, args.batch_size, args.steps, args.device, args.warmup, args.repeats,
                       precision=args.precision)
    print(table.to_string(index=False, float_format="{:.3f}".format))
    if args.out:
        config = {k: v for k, v in vars(args).items() if k != "out"}
        write_json(args.out, {"config": config, "results": table.to_dict("records"),
                              "load_average_1_5_15_min": os.getloadavg(), **provenance(table.attrs["device"])})
    return table


if __name__ == "__main__":
    main()
