"""Which uses two cores better for a grid of runs: 2 processes of 1 thread, or 1 process of 2 threads?

One layout trains a small grid of AV-Digits runs with the grid runner (``records.run_grid(..., processes=P,
threads=T, save=False)``; nothing is saved).  ``--compare`` times both layouts from outside, each in a fresh
Python process (start-up, imports and data loading included, as in a book build), alternating which goes first
in each pair, and prints every pair, the median wall time of each layout and the median of the paired ratios:

    python benchmarks/grid_workers.py --processes 2 --threads 1              # one layout, once
    python benchmarks/grid_workers.py --compare --pairs 3 --epochs 8 --subsample 2000

The grid is joint and OGM-GE over ``--seeds`` seeds on a subsample of ``--subsample`` examples.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: the two layouts compared on two cores: (processes, threads)
LAYOUTS = {"2 processes x 1 thread": (2, 1), "1 process x 2 threads": (1, 2)}
TRAIN = dict(batch_size=64, optimizer="sgd", lr=0.03, momentum=0.9, weight_decay=1e-4)


def specs(seeds: int, epochs: int, subsample: int) -> list:
    """Joint and OGM-GE runs over ``seeds`` seeds: the benchmark chapter's settings, smaller."""
    from mmrepro.experiment import RunSpec
    arms = {"joint": ("joint", {}), "OGM-GE": ("ogm_ge", {"alpha": 0.8})}
    return [RunSpec(arm=arm, method=method, seed=seed, data={"name": "av_digits"}, train={**TRAIN, "epochs": epochs},
                    method_kwargs=kwargs, build={"encoder": "cnn"}, subsample=subsample)
            for arm, (method, kwargs) in arms.items() for seed in range(seeds)]


def train_grid(processes: int, threads: int, seeds: int, epochs: int, subsample: int) -> int:
    """Train the grid with this layout (nothing saved); the number of runs trained."""
    from mmrepro import records
    with tempfile.TemporaryDirectory() as root:
        grid = records.run_grid("grid-workers", specs(seeds, epochs, subsample), device="cpu",
                                processes=processes, threads=threads, root=Path(root), save=False)
    return grid.computed


def time_layout(processes: int, threads: int, grid_args: list[str]) -> float:
    """Wall seconds of one fresh process training the grid with this layout."""
    command = [sys.executable, __file__, "--processes", str(processes), "--threads", str(threads), *grid_args]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def compare(pairs: int, grid_args: list[str]) -> dict[str, float]:
    """``pairs`` paired timings of the two layouts, alternating which runs first; medians and the paired ratio."""
    if pairs < 1:
        raise ValueError(f"--pairs must be at least 1, got {pairs}")
    names = list(LAYOUTS)
    times: dict[str, list[float]] = {n: [] for n in names}
    for pair in range(pairs):
        for name in (names if pair % 2 == 0 else names[::-1]):
            times[name].append(time_layout(*LAYOUTS[name], grid_args))
        print(f"pair {pair + 1}: " + ", ".join(f"{n} {times[n][-1]:.1f} s" for n in names), flush=True)
    ratios = [a / b for a, b in zip(*times.values())]
    summary = {**{f"median {n} (s)": statistics.median(t) for n, t in times.items()},
               "median ratio (2x1 / 1x2)": statistics.median(ratios), "min ratio": min(ratios),
               "max ratio": max(ratios)}
    for label, value in summary.items():
        print(f"{label}: {value:.2f}")
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--subsample", type=int, default=600)
    parser.add_argument("--compare", action="store_true", help="time both layouts, alternating, in fresh processes")
    parser.add_argument("--pairs", type=int, default=3, help="with --compare: timed pairs of layouts")
    args = parser.parse_args(argv)
    grid_args = ["--seeds", str(args.seeds), "--epochs", str(args.epochs), "--subsample", str(args.subsample)]
    if args.compare:
        print(f"grid: 2 arms x {args.seeds} seeds, {args.epochs} epochs on {args.subsample} examples", flush=True)
        compare(args.pairs, grid_args)
        return
    start = time.perf_counter()
    runs = train_grid(args.processes, args.threads, args.seeds, args.epochs, args.subsample)
    print(f"{runs} runs, {args.processes} process(es) x {args.threads} thread(s): "
          f"{time.perf_counter() - start:.1f} s wall")


if __name__ == "__main__":
    main()
