"""The training loop: determinism, resume, model selection, a two-process DDP run, and config errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mmrepro.evaluate import evaluate
from mmrepro.experiment import mean_std, train_seeds
from mmrepro.methods import OGMGE, Joint
from mmrepro.models import build_model
from mmrepro.train import Context, TrainConfig, fit, seed_everything

sys.path.insert(0, str(Path(__file__).parent))
import ddp_worker  # noqa: E402

CFG = TrainConfig(epochs=4, batch_size=16, lr=1e-2, device="cpu", seed=3, progress=False)


class _Stop(Exception):
    """Stands for a crash or a killed job."""


def _crash_at_epoch_1(method, ctx) -> dict[str, float]:
    """A monitor that dies at the end of epoch 1, before that epoch's checkpoint."""
    if ctx.epoch == 1:
        raise _Stop
    return {}


def _ogm(splits, seed: int = 0) -> OGMGE:
    seed_everything(seed)
    return OGMGE(build_model(splits, hidden=16, out_dim=8), alpha=0.5)  # GE noise uses the RNG: resume must restore it


def _history(result) -> pd.DataFrame:
    return result.history.drop(columns="epoch_time")


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"{k} differs"


def test_same_seed_gives_identical_runs_on_cpu(synthetic):
    runs = [(m := _ogm(synthetic), fit(m, synthetic, CFG)) for _ in range(2)]
    pd.testing.assert_frame_equal(_history(runs[0][1]), _history(runs[1][1]), check_exact=True)
    assert evaluate(runs[0][0], synthetic.test) == evaluate(runs[1][0], synthetic.test)
    _assert_same_weights(runs[0][0], runs[1][0])
    other = _ogm(synthetic)
    assert not _history(fit(other, synthetic, CFG, seed=4)).equals(_history(runs[0][1]))


def test_resume_after_a_crash_matches_an_uninterrupted_run(synthetic, tmp_path):
    full = _ogm(synthetic)
    reference = fit(full, synthetic, CFG, checkpoint_dir=str(tmp_path / "full"))
    with pytest.raises(_Stop):
        fit(_ogm(synthetic), synthetic, CFG, checkpoint_dir=str(tmp_path / "crash"), monitor=_crash_at_epoch_1)
    resumed = _ogm(synthetic, seed=99)  # fresh weights: everything must come from the checkpoint
    result = fit(resumed, synthetic, CFG, checkpoint_dir=str(tmp_path / "crash"), resume=True)
    pd.testing.assert_frame_equal(_history(result), _history(reference), check_exact=True)
    assert (result.best_epoch, result.best_score) == (reference.best_epoch, reference.best_score)
    _assert_same_weights(resumed, full)
    assert evaluate(resumed, synthetic.test) == evaluate(full, synthetic.test)


def test_resume_of_a_finished_run_trains_nothing(synthetic, tmp_path):
    first = _ogm(synthetic)
    fit(first, synthetic, CFG, epochs=2, checkpoint_dir=str(tmp_path))
    again = _ogm(synthetic, seed=5)
    result = fit(again, synthetic, CFG, epochs=2, checkpoint_dir=str(tmp_path), resume=True)
    assert list(result.history["epoch"]) == [0, 1]
    _assert_same_weights(again, first)


def test_history_and_model_selection(synthetic):
    method = _ogm(synthetic)
    best = fit(method, synthetic, CFG, select="best")
    h = best.history
    assert list(h["epoch"]) == [0, 1, 2, 3]
    assert {"train_loss", "train_coeff_m0", "val_accuracy", "val_accuracy_m0", "lr", "epoch_time"} <= set(h.columns)
    assert best.best_epoch == int(h["val_accuracy"].idxmax()) and best.best_score == h["val_accuracy"].max()
    assert evaluate(method, synthetic.val)["accuracy"] == best.best_score, "the best epoch's weights are restored"
    last = fit(_ogm(synthetic), synthetic, CFG, select="last")
    assert last.best_epoch == 3 and last.best_score == last.history["val_accuracy"].iloc[-1]
    assert best.device.startswith("cpu x1") and best.config["epochs"] == 4


def test_step_lr_schedule(synthetic):
    result = fit(Joint(build_model(synthetic)), synthetic, CFG, epochs=3, lr_step=1, lr_gamma=0.5, optimizer="sgd")
    assert result.history["lr"].tolist() == pytest.approx([5e-3, 2.5e-3, 1.25e-3])


def test_train_seeds_and_mean_std(synthetic):
    runs = train_seeds(lambda: Joint(build_model(synthetic, hidden=16, out_dim=8)), synthetic, CFG.__class__(
        epochs=1, batch_size=16, device="cpu", progress=False), seeds=[0, 1])
    assert [r.seed for r in runs] == [0, 1] and runs[0].fit.config["seed"] == 0
    assert not torch.equal(runs[0].method.model.fusion.fc.weight, runs[1].method.model.fusion.fc.weight)
    table = mean_std(pd.DataFrame({"method": ["a", "a", "b"], "acc": [0.5, 0.7, 0.9]}), "method", ["acc"])
    assert table.loc["a", "acc"] == "60.0 ± 14.1" and table.loc["b", "acc"] == "90.0 ± 0.0"


@pytest.mark.parametrize("kwargs, match", [
    ({"optimizer": "lbfgs"}, "'lbfgs'; valid: sgd, adam, adamw"),
    ({"select": "worst"}, "'best' or 'last'"),
    ({"epochs": 0}, "epochs must be an integer >= 1, got 0"),
    ({"epochs": 2.5}, "epochs must be an integer >= 1, got 2.5"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"eval_batch_size": 0}, "eval_batch_size must be an integer >= 1"),
    ({"lr": 0.0}, "lr must be a finite number > 0"),
    ({"lr": float("inf")}, "lr must be a finite number > 0, got inf"),
    ({"lr": float("nan")}, "lr must be a finite number > 0, got nan"),
    ({"grad_clip": -1.0}, r"grad_clip \(None: no clipping\) must be a finite number > 0, got -1.0"),
    ({"lr_gamma": -0.5}, "lr_gamma must be a finite number > 0"),
    ({"lr_step": 0}, "lr_step must be an integer >= 1"),
    ({"momentum": 1.5}, r"momentum must be a finite number in \[0, 1\)"),
    ({"weight_decay": -1e-4}, "weight_decay must be a finite number >= 0"),
    ({"seed": -1}, "seed must be an integer >= 0"),
])
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow  # three Python processes import torch: ~16 s of CPU, 50-75 s wall on this busy machine
def test_two_process_ddp_matches_one_process_of_the_same_global_batch(tmp_path):
    out = tmp_path / "ddp.pt"
    env = {**os.environ, "MMREPRO_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           "--master_addr=127.0.0.1", str(Path(ddp_worker.__file__)), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = torch.load(out, weights_only=True)
    single = ddp_worker.run(devices=1, strategy="auto")
    assert ddp["device"].startswith("cpu x2") and single["device"].startswith("cpu x1")
    assert ddp["state"].keys() == single["state"].keys()
    for k in single["state"]:
        torch.testing.assert_close(ddp["state"][k], single["state"][k], rtol=1e-4, atol=1e-5, msg=k)
    pd.testing.assert_frame_equal(pd.DataFrame(ddp["history"]), pd.DataFrame(single["history"]), rtol=1e-4, atol=1e-5)
    assert ddp["test"] == pytest.approx(single["test"], abs=1e-6)


def test_monitor_values_join_the_history(synthetic):
    seen = []

    def monitor(method, ctx):
        seen.append(ctx.epoch)
        return {"probe": float(ctx.epoch) * 10}

    result = fit(Joint(build_model(synthetic)), synthetic, CFG, epochs=2, monitor=monitor)
    assert seen == [0, 1] and result.history["probe"].tolist() == [0.0, 10.0]


def test_epoch_end_logs_join_the_history(synthetic):
    class Counting(Joint):
        def epoch_end(self, epoch, ctx):
            return {"seen_steps": float(ctx.step)}

    result = fit(Counting(build_model(synthetic)), synthetic, CFG, epochs=2)
    assert result.history["seen_steps"].tolist() == [6.0, 12.0]  # 96 examples / batch 16 per epoch


def test_context_local_and_its_all_reduce_on_one_process(synthetic):
    ctx = Context.local(synthetic)
    x = torch.tensor([1.0, 2.0])
    assert ctx.world_size == 1 and ctx.device.type == "cpu" and ctx.splits is synthetic
    assert all(ctx.all_reduce(x, op) is x for op in ("sum", "mean", "max"))


def test_config_accepts_numpy_numbers():
    cfg = TrainConfig(seed=np.int64(2), lr=np.float32(0.5), epochs=np.int32(3))
    assert (cfg.seed, cfg.epochs, cfg.lr) == (2, 3, 0.5) and type(cfg.seed) is int and type(cfg.lr) is float
