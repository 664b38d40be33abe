"""Where the wall time of one training run goes: steps, validation, monitor, data movement, the rest.

Runs one run record's body (``experiment.execute``) at the benchmark chapter's book settings (joint training,
CNN encoders, SGD, batch 64, the Shapley monitor, the probe measure) and times its pieces from outside the
package, by wrapping the functions ``fit`` calls.  Time is given to the outermost timed piece, so the
predictions the Shapley monitor makes count as the monitor, not as validation:

    python benchmarks/profile_run.py --epochs 5 --threads 1
    python benchmarks/profile_run.py --epochs 5 --threads 1 --no-pool-cap   # BLAS/OpenMP pools at their defaults
    python benchmarks/profile_run.py --epochs 5 --checkpoint-dir /tmp/ckpt   # with a checkpoint per epoch
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import tempfile
import time
from collections import defaultdict
from typing import Any, Callable, Iterator

import pandas as pd
import torch
from lightning_fabric import Fabric
from sklearn.linear_model import LogisticRegression

from mmrepro import evaluate, experiment, records
from mmrepro import train as training
from mmrepro.experiment import RunSpec

#: the benchmark chapter's book training settings (book/benchmark.md), epochs and patience set per call
BOOK_TRAIN = dict(batch_size=64, optimizer="sgd", lr=0.03, momentum=0.9, weight_decay=1e-4, lr_step=20, lr_gamma=0.2)
#: pieces of a training step; their sum is the share the issue calls "training steps"
STEP_PARTS = ("forward (training_step)", "backward", "optimiser step", "after_backward + lr factors")


class Profiler:
    """Wall seconds per named piece; a piece timed inside another counts for the outer one only.

    A ``frame`` (the whole run, ``fit``) is only a context: it is not timed and does not hide what it holds.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._open: list[tuple[str, bool]] = []

    @contextlib.contextmanager
    def piece(self, name: str, frame: bool = False) -> Iterator[None]:
        counted = not frame and not any(timed for _, timed in self._open)
        self._open.append((name, counted))
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self._open.pop()
            if counted:
                self.seconds[name] += time.perf_counter() - start
                self.cpu[name] += time.process_time() - cpu_start
                self.calls[name] += 1

    def inside(self, name: str) -> bool:
        return any(open_name == name for open_name, _ in self._open)

    def frame(self, function: Callable, name: str) -> Callable:
        """``function`` run inside the frame ``name`` (untimed)."""
        @functools.wraps(function)
        def framed(*args: Any, **kwargs: Any) -> Any:
            with self.piece(name, frame=True):
                return function(*args, **kwargs)
        return framed

    def wrap(self, function: Callable, name: str | Callable[[], str]) -> Callable:
        """``function`` timed as ``name`` (or as what ``name()`` returns at call time)."""
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.piece(name() if callable(name) else name):
                return function(*args, **kwargs)
        return timed


class _TimedLoader:
    """A DataLoader whose ``next`` is timed as batch loading (and whose ``len`` is the loader's)."""

    def __init__(self, loader: Any, profiler: Profiler):
        self.loader, self.profiler = loader, profiler

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        iterator = iter(self.loader)
        while True:
            with self.profiler.piece("batch loading (DataLoader)"):
                batch = next(iterator, None)
            if batch is None:
                return
            yield batch


def _timed_method_class(cls: type, profiler: Profiler) -> type:
    """A subclass of the method's class whose hooks are timed (the step's forward, after_backward, epoch_end)."""
    hooks = {"training_step": "forward (training_step)", "after_backward": "after_backward + lr factors",
             "epoch_end": "epoch_end hook", "fit_begin": "fit_begin hook"}
    return type(f"Timed{cls.__name__}", (cls,), {h: profiler.wrap(getattr(cls, h), n) for h, n in hooks.items()})


@contextlib.contextmanager
def instrumented(profiler: Profiler) -> Iterator[None]:
    """Wrap what ``execute`` and ``fit`` call with timers for the duration of the block."""
    make_optimizer = training.make_optimizer

    def timed_optimizer(method: Any, cfg: Any) -> torch.optim.Optimizer:
        optimizer = make_optimizer(method, cfg)
        optimizer.step = profiler.wrap(optimizer.step, "optimiser step")
        return optimizer

    def build_method(spec: RunSpec, splits: Any) -> Any:
        with profiler.piece("model build"):
            method = build(spec, splits)
        method.__class__ = _timed_method_class(type(method), profiler)
        return method

    predict_name = lambda: "validation" if profiler.inside("fit") else "test predictions"  # noqa: E731
    build = RunSpec.build_method
    patches = [
        (RunSpec, "splits", profiler.wrap(RunSpec.splits, "data set-up (load, cached)")),
        (RunSpec, "build_method", build_method),
        (experiment, "fit", profiler.frame(experiment.fit, "fit")),
        (training, "train_loader", lambda *a, **k: _wrap_loader(training_loader(*a, **k), profiler)),
        (training, "make_optimizer", timed_optimizer),
        (training, "apply_lr_factors", profiler.wrap(training.apply_lr_factors, "after_backward + lr factors")),
        (training, "_save", profiler.wrap(training._save, "checkpointing")),
        (Fabric, "to_device", profiler.wrap(Fabric.to_device, "host-to-device copy")),
        (Fabric, "backward", profiler.wrap(Fabric.backward, "backward")),
        (evaluate, "predict", profiler.wrap(evaluate.predict, predict_name)),
        (evaluate, "features", profiler.wrap(evaluate.features, "probe: encoder features")),
        (LogisticRegression, "fit", profiler.wrap(LogisticRegression.fit, "probe: logistic regression fit")),
        (experiment.MONITORS, "shapley", profiler.wrap(experiment.MONITORS["shapley"], "Shapley monitor")),
    ]
    training_loader = training.train_loader
    saved = [(owner, name, _get(owner, name)) for owner, name, _ in patches]
    try:
        for owner, name, value in patches:
            _set(owner, name, value)
        yield
    finally:
        for owner, name, value in saved:
            _set(owner, name, value)


def _get(owner: Any, name: str) -> Any:
    return owner[name] if isinstance(owner, dict) else owner.__dict__[name] if isinstance(owner, type) \
        else getattr(owner, name)


def _set(owner: Any, name: str, value: Any) -> None:
    if isinstance(owner, dict):
        owner[name] = value
    else:
        setattr(owner, name, value)


def _wrap_loader(pair: tuple[Any, Any], profiler: Profiler) -> tuple[_TimedLoader, Any]:
    loader, sampler = pair
    return _TimedLoader(loader, profiler), sampler


def profile(spec: RunSpec, device: str = "cpu") -> tuple[pd.DataFrame, dict[str, Any]]:
    """The table of pieces (seconds, share of the run) for one executed ``spec``, and the run's record body."""
    profiler = Profiler()
    start, cpu_start = time.perf_counter(), time.process_time()
    with instrumented(profiler):
        record = experiment.execute(spec, device)
    total = {"seconds": time.perf_counter() - start, "CPU s": time.process_time() - cpu_start}
    return _table(profiler, total, record), record


def _table(profiler: Profiler, total: dict[str, float], record: dict[str, Any]) -> pd.DataFrame:
    """One row per piece (wall and CPU seconds, shares of the run), then the step/everything-else totals."""
    rows = [{"piece": k, "calls": profiler.calls[k], "seconds": v, "CPU s": profiler.cpu[k]}
            for k, v in profiler.seconds.items()]
    rest = {c: total[c] - sum(r[c] for r in rows) for c in ("seconds", "CPU s")}
    rows.append({"piece": "other (set-up, logging, history rows, best-weights copy)", "calls": None, **rest})
    frame = pd.DataFrame(rows).sort_values("CPU s", ascending=False)
    steps = frame["piece"].isin(STEP_PARTS)
    frame = pd.concat([frame, pd.DataFrame([
        {"piece": "= training steps (the four step pieces)", **frame.loc[steps, ["seconds", "CPU s"]].sum()},
        {"piece": "= everything else", **frame.loc[~steps, ["seconds", "CPU s"]].sum()},
        {"piece": "= run", **total}])], ignore_index=True)
    frame.insert(3, "wall %", 100 * frame["seconds"] / total["seconds"])
    frame["CPU %"] = 100 * frame["CPU s"] / total["CPU s"]
    frame.attrs.update(epochs=record["epochs"], device=record["device"])
    return frame


def book_spec(epochs: int, seed: int = 0, monitor: str | None = "shapley") -> RunSpec:
    """The benchmark chapter's joint arm at the book profile, with ``epochs`` (no early stopping)."""
    return RunSpec(arm="joint", method="joint", seed=seed, data={"name": "av_digits"},
                   train={**BOOK_TRAIN, "epochs": epochs}, build={"encoder": "cnn"}, monitor=monitor,
                   measures=("probe",))


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the grid runner's workers use 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-monitor", action="store_true", help="profile the run without the Shapley monitor")
    parser.add_argument("--checkpoint-dir", default=None, help="also write a checkpoint after every epoch here")
    parser.add_argument("--no-pool-cap", action="store_true",
                        help="leave BLAS/OpenMP pools at their defaults (grid workers cap them to torch's threads)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    spec = book_spec(args.epochs, monitor=None if args.no_monitor else "shapley")
    pools = contextlib.nullcontext() if args.no_pool_cap else records.capped_pools()
    with _checkpointing(args.checkpoint_dir), pools:
        table, record = profile(spec, args.device)
    cap = "at their defaults" if args.no_pool_cap else f"capped to {args.threads} thread(s), as in a grid worker"
    print(f"one AV-Digits run: {table.attrs['epochs']} epochs on {table.attrs['device']}; BLAS/OpenMP pools {cap}")
    print(table.to_string(index=False, float_format="{:.2f}".format, na_rep=""))
    return table


@contextlib.contextmanager
def _checkpointing(folder: str | None) -> Iterator[None]:
    """With ``folder``, every ``fit`` writes a checkpoint per epoch there (a temporary subfolder, removed after)."""
    if folder is None:
        yield
        return
    fit = training.fit
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        experiment.fit = functools.wraps(fit)(lambda *a, **k: fit(*a, **{**k, "checkpoint_dir": tmp}))
        try:
            yield
        finally:
            experiment.fit = fit


if __name__ == "__main__":
    main()
