"""Resume is exact for every registered method, and refuses a checkpoint of another run.

Each method trains 4 epochs uninterrupted; the same run is stopped at the end of
epoch 2 (before that epoch's checkpoint) and resumed from epoch 1's checkpoint
into a method built with other initial weights. History, weights and test
predictions must be identical to the last bit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from mmrepro.checkpoint import CheckpointError
from mmrepro.data import LABEL, DictDataset, Splits, make_synthetic
from mmrepro.data.shortcut_prompts import PAD, make_prompts
from mmrepro.evaluate import predict
from mmrepro.methods import REGISTRY, Method, build
from mmrepro.train import TrainConfig, fit, seed_everything

CFG = TrainConfig(epochs=4, batch_size=16, lr=1e-2, device="cpu", seed=3, progress=False)
#: small settings so that every schedule (UDML's stages, TMC's annealing) moves within 4 epochs
_STAGES = {"noise_epoch": 1, "weight_epoch": 2, "predictor_hidden": 8}
KWARGS = {"udml": _STAGES, "eau": {"noise_epoch": 1, "weight_epoch": 2}, "iibalance": {"budget_epochs": 1},
          "tmc": {"annealing_epochs": 2}, "ogm_ge": {"alpha": 0.5}}


def _images(splits: Splits) -> Splits:
    """The synthetic vectors as 1x8x8 images (MWAM's block DCT needs images)."""
    def shaped(d: DictDataset) -> DictDataset:
        return DictDataset({k: v.view(-1, 1, 8, 8) if k in d.modalities else v for k, v in d.tensors.items()},
                           d.modalities)
    return Splits(splits.name, shaped(splits.train), shaped(splits.val), shaped(splits.test), splits.num_classes)


DATA = _images(make_synthetic(levels=(3.0, 0.5), dim=64, num_classes=3, sizes=(96, 32, 32), seed=0))


def _prompts() -> Splits:
    """Images with tokenised prompts: the data MoIR's token model is built for."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(64) % 10
    ds = DictDataset({"image": torch.rand(64, 1, 28, 28, generator=g), "text": make_prompts(labels, None, 0.9, g),
                      LABEL: labels}, ("image", "text"))
    return Splits("prompts", ds, ds, ds, 10, info={"vocab_size": 34, "pad_id": PAD})


#: the data each method is built for: row ids for BTW's per-example weights, token prompts for MoIR
DATA_FOR = {"btw": DATA.with_uids(), "moir": _prompts()}
ENCODER = {"moir": {"dim": 16}}


def data(name: str) -> Splits:
    return DATA_FOR.get(name, DATA)


def make(name: str, seed: int = 0) -> Method:
    seed_everything(seed)
    return build(name, data(name), encoder="mlp", encoder_kwargs=ENCODER.get(name, {"hidden": 16, "out_dim": 8}),
                 **KWARGS.get(name, {}))


class _Stop(Exception):
    """Stands for a crash."""


def _crash_at_epoch_2(method, ctx) -> dict[str, float]:
    if ctx.epoch == 2:
        raise _Stop
    return {}


def _assert_same_run(resumed: Method, result, reference: Method, expected, name: str = "") -> None:
    pd.testing.assert_frame_equal(result.history.drop(columns="epoch_time"),
                                  expected.history.drop(columns="epoch_time"), check_exact=True)
    assert (result.best_epoch, result.best_score) == (expected.best_epoch, expected.best_score)
    a, b = resumed.state_dict(), reference.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "weights differ"
    test = data(name).test
    assert torch.equal(predict(resumed, test).logits, predict(reference, test).logits)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_resume_after_a_crash_is_exact(name, tmp_path):
    reference = make(name)
    expected = fit(reference, data(name), CFG)
    with pytest.raises(_Stop):
        fit(make(name), data(name), CFG, checkpoint_dir=str(tmp_path), monitor=_crash_at_epoch_2)
    resumed = make(name, seed=99)  # other initial weights: everything must come from the checkpoint
    result = fit(resumed, data(name), CFG, checkpoint_dir=str(tmp_path), resume=True)
    _assert_same_run(resumed, result, reference, expected, name)


def test_resume_after_sigkill_is_exact(tmp_path):
    """MWAM (its FRM bank and lr scale live outside the weights) killed by SIGKILL in a subprocess."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(Path(__file__).parent / "resume_worker.py"), "mwam", str(tmp_path), "2"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"], "no half-written file left behind"
    reference = make("mwam")
    expected = fit(reference, DATA, CFG)
    resumed = make("mwam", seed=99)
    _assert_same_run(resumed, fit(resumed, DATA, CFG, checkpoint_dir=str(tmp_path), resume=True), reference, expected)


@pytest.fixture
def checkpoint_of_ogm_ge(tmp_path) -> Path:
    fit(make("ogm_ge"), DATA, CFG, epochs=1, checkpoint_dir=str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("name, kwargs, match", [
    ("ogm_ge", {"lr": 0.1}, r"config lr: 0\.01 \(checkpoint\) vs 0\.1 \(now\)"),
    ("ogm_ge", {"batch_size": 32}, r"config batch_size: 16 \(checkpoint\) vs 32 \(now\)"),
    ("ogm_ge", {"optimizer": "sgd"}, r"config optimizer: 'adam' \(checkpoint\) vs 'sgd' \(now\)"),
    ("joint", {}, r"method class: mmrepro\.methods\.ogm_ge\.OGMGE \(checkpoint\) vs mmrepro\.methods\.base\.Joint"),
])
def test_resume_refuses_another_run(checkpoint_of_ogm_ge, name, kwargs, match):
    with pytest.raises(CheckpointError, match=match):
        fit(make(name), DATA, CFG, checkpoint_dir=str(checkpoint_of_ogm_ge), resume=True, **kwargs)


def test_resume_refuses_other_method_settings(checkpoint_of_ogm_ge):
    seed_everything(0)
    other = build("ogm_ge", DATA, encoder="mlp", encoder_kwargs={"hidden": 16, "out_dim": 8}, alpha=0.9)
    with pytest.raises(CheckpointError, match=r"settings alpha: 0\.5 \(checkpoint\) vs 0\.9 \(now\)"):
        fit(other, DATA, CFG, checkpoint_dir=str(checkpoint_of_ogm_ge), resume=True)


def test_resume_may_extend_the_run(checkpoint_of_ogm_ge):
    result = fit(make("ogm_ge"), DATA, CFG, epochs=2, checkpoint_dir=str(checkpoint_of_ogm_ge), resume=True)
    assert list(result.history["epoch"]) == [0, 1]


@pytest.mark.parametrize("content", [b"", b"garbage", None])
def test_corrupt_checkpoint_names_the_file(checkpoint_of_ogm_ge, content):
    path = checkpoint_of_ogm_ge / "last.ckpt"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if content is None else content)  # None: truncated
    with pytest.raises(CheckpointError, match=f"cannot read checkpoint {path}.*delete it to start over"):
        fit(make("ogm_ge"), DATA, CFG, checkpoint_dir=str(checkpoint_of_ogm_ge), resume=True)


def test_btw_resume_is_exact(tmp_path):
    """BTW (it brings its own MoE model): its alpha, best loss and per-example weights resume."""
    from mmrepro.methods.btw import BTW
    from mmrepro.models.moe import build_moe_model

    data = make_synthetic(levels=(3.0, 0.5), dim=8, num_classes=3, sizes=(96, 32, 32), seed=0).with_uids()
    cfg = replace(CFG, epochs=5)

    def btw(seed: int = 0) -> BTW:
        seed_everything(seed)
        return BTW(build_moe_model(data, dim=8, num_experts=4), unimodal_cfg=replace(cfg, epochs=1), alpha_step=0.2)

    reference = btw()
    expected = fit(reference, data, cfg)
    with pytest.raises(_Stop):
        fit(btw(), data, cfg, checkpoint_dir=str(tmp_path), monitor=_crash_at_epoch_2)
    resumed = btw(seed=99)
    result = fit(resumed, data, cfg, checkpoint_dir=str(tmp_path), resume=True)
    pd.testing.assert_frame_equal(result.history.drop(columns="epoch_time"),
                                  expected.history.drop(columns="epoch_time"), check_exact=True)
    assert (resumed.alpha_now, resumed.best_val_loss, resumed.history) == (reference.alpha_now,
                                                                           reference.best_val_loss, reference.history)
    assert torch.equal(predict(resumed, data.test).logits, predict(reference, data.test).logits)


def test_every_rng_state_round_trips_through_a_checkpoint_file(tmp_path):
    import random

    import numpy as np

    from mmrepro.checkpoint import rng_states, set_rng_states

    seed_everything(5)
    torch.save(rng_states(), tmp_path / "rng.pt")
    draws = (random.random(), float(np.random.rand()), float(torch.rand(())))
    set_rng_states(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == draws



def test_numpy_numbers_in_method_state_survive_a_weights_only_checkpoint(tmp_path):
    import numpy as np

    method = make("joint")
    method.schedule_value, method.counts = np.float32(0.25), [np.int64(3)]  # as a chapter's helper might leave them
    fit(method, DATA, CFG, epochs=1, checkpoint_dir=str(tmp_path))
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert saved["method_state"]["attributes"][""]["schedule_value"] == 0.25
    assert saved["identity"]["settings"]["counts"] == [3]
