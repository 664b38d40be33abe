"""What channels_last, torch.compile and foreach/fused SGD do to a training step, applied from outside the package.

The package's CNN encoders run channels_last; the "NCHW" variant runs them in the default layout, as before.

Each variant trains the benchmark chapter's joint model (CNN encoders, SGD, batch 64) in the ``resident`` loop of
``throughput.py`` (data on the device, no sync in the step); the variants run in interleaved rounds and each one's
speed-up is the median over rounds of the plain loop's round time over its own (paired; wall and CPU time).  For
``torch.compile`` the compilation time (its first steps less its later steps) and the steps needed to repay it are
printed too (CPU seconds on a CPU, wall seconds on a GPU):

    python benchmarks/step_options.py --threads 1
    python benchmarks/step_options.py --device cuda --steps 200 --encoder resnet18
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")  # compile in this process: its compiler's CPU is counted

import pandas as pd  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import ResidentLoop, _config, _sync, splits_for, time_loops  # noqa: E402

from mmrepro import methods  # noqa: E402
from mmrepro.train import seed_everything  # noqa: E402

#: variant -> ResidentLoop options; "plain" is the package's step (make_optimizer's SGD, channels_last encoders)
VARIANTS = {
    "plain": {},
    "NCHW (before channels_last)": {"nchw": True},
    "SGD foreach": {"optimizer_options": {"foreach": True}},
    "SGD fused": {"optimizer_options": {"fused": True}},
    "torch.compile (encoders)": {"compile_encoders": True},
}


def _clock(device: torch.device) -> float:
    """CPU seconds on a CPU, the C++ compiler's included (steady under a shared machine's load); wall on a GPU."""
    if device.type != "cpu":
        return time.perf_counter()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def build(variants: dict[str, dict], method: str, encoder: str, splits, cfg, device: torch.device,
          first_steps: int) -> tuple[dict[str, ResidentLoop], dict[str, float]]:
    """Each variant's loop on a same-seed model, and the wall seconds of its first ``first_steps`` steps."""
    loops, first = {}, {}
    for name, options in variants.items():
        seed_everything(0)
        loops[name] = ResidentLoop(methods.build(method, splits, encoder=encoder), splits, cfg, device, **options)
        _sync(device)
        start = _clock(device)
        loops[name].run(first_steps)
        _sync(device)
        first[name] = _clock(device) - start
    return loops, first


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="joint")
    parser.add_argument("--encoder", default="cnn")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--first-steps", type=int, default=3, help="steps timed once, compilation included")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    splits = splits_for("auto")
    cfg = _config(args.device, args.batch_size, None)
    variants = {name: VARIANTS[name] for name in ["plain", *[v for v in args.variants if v != "plain"]]}
    loops, first = build(variants, args.method, args.encoder, splits, cfg, device, args.first_steps)
    table = time_loops(loops, device, args.batch_size, args.steps, 0, args.repeats, reference="plain")
    rate = "samples_per_cpu_s" if device.type == "cpu" else "samples_per_s"
    step = args.batch_size / table.set_index("loop")[rate]
    table["ms_per_step"] = 1000 * step.to_numpy()
    table["first_steps_extra_s"] = [first[n] - args.first_steps * step[n] for n in table["loop"]]
    saving = step["plain"] - step
    table["steps_to_repay"] = [table["first_steps_extra_s"][i] / saving[n] if saving[n] > 0 and n != "plain"
                               else float("nan") for i, n in enumerate(table["loop"])]
    print(table.to_string(index=False, float_format="{:.2f}".format, na_rep=""))
    return table


if __name__ == "__main__":
    main()
