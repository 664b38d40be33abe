"""A training run that SIGKILLs its own process at the end of one epoch (run as a subprocess by test_resume)."""

from __future__ import annotations

import os
import signal
import sys

import torch

torch.set_num_threads(1)


def main(name: str, checkpoint_dir: str, kill_epoch: int) -> None:
    from test_resume import CFG, DATA, make

    def kill(method, ctx):
        if ctx.epoch == kill_epoch:
            os.kill(os.getpid(), signal.SIGKILL)
        return {}

    from mmrepro.train import fit

    fit(make(name), DATA, CFG, checkpoint_dir=checkpoint_dir, monitor=kill)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
