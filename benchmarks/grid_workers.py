"""Train a small grid of AV-Digits runs with the grid runner, with a given number of processes and threads.

Time the whole process from outside, alternating the two layouts, to see which uses two cores better:

    for i in 1 2 3; do
      /usr/bin/time -f "2x1 %e s" python benchmarks/grid_workers.py --processes 2 --threads 1
      /usr/bin/time -f "1x2 %e s" python benchmarks/grid_workers.py --processes 1 --threads 2
    done

Nothing is saved (``save=False``); the grid is joint and OGM-GE over ``--seeds`` seeds on a subsample.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from mmrepro import records
from mmrepro.experiment import RunSpec

TRAIN = dict(batch_size=64, optimizer="sgd", lr=0.03, momentum=0.9, weight_decay=1e-4)


def specs(seeds: int, epochs: int, subsample: int) -> list[RunSpec]:
    """Joint and OGM-GE runs over ``seeds`` seeds: the benchmark chapter's settings, smaller."""
    arms = {"joint": ("joint", {}), "OGM-GE": ("ogm_ge", {"alpha": 0.8})}
    return [RunSpec(arm=arm, method=method, seed=seed, data={"name": "av_digits"}, train={**TRAIN, "epochs": epochs},
                    method_kwargs=kwargs, build={"encoder": "cnn"}, subsample=subsample)
            for arm, (method, kwargs) in arms.items() for seed in range(seeds)]


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--subsample", type=int, default=600)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        grid = records.run_grid("grid-workers", specs(args.seeds, args.epochs, args.subsample), device="cpu",
                                processes=args.processes, threads=args.threads, root=Path(root), save=False)
    seconds = time.perf_counter() - start
    print(f"{grid.computed} runs, {args.processes} process(es) x {args.threads} thread(s): {seconds:.1f} s wall")
    return seconds


if __name__ == "__main__":
    main()
