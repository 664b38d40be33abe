"""Issue 13's hostile-user cases: each bad input now fails fast with an error that says what is wrong.

One test per row of the README's "Bad inputs" table (the papermill, resume and
download rows live in test_chapter_params.py, test_resume.py and test_download.py).
"""

from __future__ import annotations

import os
import pickle
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mmrepro import results
from mmrepro.chapter import ParameterError, build_each
from mmrepro.data import DataError, DictDataset, Splits, make_synthetic
from mmrepro.data.download import cached_tensors, tensor_checksum
from mmrepro.data.mosi import load_mosi
from mmrepro.methods import QMF, TMC, IIBalance, Joint, OGMGE, UDML, build
from mmrepro.methods.btw import BTW
from mmrepro.methods.moir import MoIRRouter
from mmrepro.methods.noise_augmented import NoiseAugmented
from mmrepro.methods.mwam import MWAM
from mmrepro.models import build_model
from mmrepro.models.moe import build_moe_model
from mmrepro.train import TrainConfig, fit

CFG = TrainConfig(epochs=2, batch_size=16, lr=1e-2, device="cpu", seed=0, progress=False)


@pytest.fixture
def data() -> Splits:
    return make_synthetic(levels=(3.0, 0.5), dim=8, num_classes=3, sizes=(96, 48, 48), seed=0)


def _with(splits: Splits, part: str = "train", **tensors: torch.Tensor) -> Splits:
    dataset = splits.split(part)
    return replace(splits, **{part: DictDataset({**dataset.tensors, **tensors}, dataset.modalities)})


# ----------------------------------------------------------------------------- non-finite values (§2)

@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_inputs_are_refused_before_training(data, value):
    x = data.train.tensors["m0"].clone()
    x[3, 1] = value
    with pytest.raises(ValueError, match="'synthetic' train tensor 'm0' holds NaN or inf values"):
        fit(Joint(build_model(data)), _with(data, m0=x), CFG)


class _NaNAtStep8(Joint):
    """Joint training whose loss turns NaN at global step 8 (epoch 1, its 3rd step of 6)."""

    def training_step(self, batch, ctx):
        out = super().training_step(batch, ctx)
        return replace(out, loss=out.loss * float("nan")) if ctx.step == 8 else out


def test_a_non_finite_loss_stops_training_naming_method_epoch_and_step(data, tmp_path):
    with pytest.raises(FloatingPointError, match=r"_NaNAtStep8: the training loss became non-finite .* at epoch 1, "
                                                 r"step 3 of 6"):
        fit(_NaNAtStep8(build_model(data)), data, CFG, checkpoint_dir=str(tmp_path))
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert saved["epoch"] == 0, "the NaN epoch was not checkpointed"


def test_ogm_ge_alpha_nan_is_refused_before_training(data):
    with pytest.raises(ValueError, match=r"OGM-GE alpha must lie in \[0, inf\], got nan"):
        OGMGE(build_model(data), alpha=float("nan"))


def test_a_non_finite_loss_stops_training_at_the_first_epoch_end(data):
    with pytest.raises(FloatingPointError, match="Joint: the training loss became non-finite .* at epoch 0"):
        fit(Joint(build_model(data)), data, CFG, lr=1e30)


def test_nan_tensors_are_never_cached(tmp_path):
    path = tmp_path / "cache.pt"
    with pytest.raises(DataError, match=r"preprocessing toy data gave NaN or inf in \['x'\]; .*nothing was cached"):
        cached_tensors(path, lambda: {"x": torch.tensor([1.0, float("nan")])}, "toy data")
    assert not path.exists()


# ----------------------------------------------------------------------------- settings (§6, §7)

@pytest.mark.parametrize("factory, match", [
    (lambda d: MWAM(build_model(d, fusion="late"), alpha=0.5, beta=1.0),
     r"MWAM alpha .* gives negative weights\) must be a finite number >= 1.0, got 0.5"),
    (lambda d: MWAM(build_model(d, fusion="late"), lam=float("nan")), "MWAM lam .* got nan"),
    (lambda d: UDML(build_model(d), gamma=-1.0), "UDML gamma must be a finite number >= 0, got -1.0"),
    (lambda d: UDML(build_model(d.select(["m0"]))), r"UDML needs at least two modalities .*got \['m0'\]"),
    (lambda d: MWAM(build_model(d.select(["m0"]), fusion="late")), "MWAM needs at least two modalities"),
    (lambda d: IIBalance(build_model(d.select(["m0"]), fusion="sum")), "IIBalance needs at least two modalities"),
    (lambda d: BTW(build_moe_model(d.select(["m0"]))), "BTW needs at least two modalities"),
    (lambda d: build_model(d, encoder={"m0": "mlp", "mO": "mlp"}), r"encoder names modalities \['mO'\] the splits"),
    (lambda d: QMF(build_model(d, fusion="late"), temperature=float("nan")), "QMF temperature .* got nan"),
    (lambda d: TMC(build_model(d, fusion="late"), annealing_epochs=2.5), "TMC annealing_epochs must be an integer"),
    (lambda d: MoIRRouter(dim=0), "MoIR dim must be an integer >= 1, got 0"),
    (lambda d: NoiseAugmented(Joint(build_model(d)), None, start_epoch=-1), "start_epoch must be an integer >= 0"),
    (lambda d: BTW(build_moe_model(d), alpha_step=float("nan")), "BTW alpha_step must be a finite number >= 0"),
    (lambda d: IIBalance(build_model(d, fusion="sum"), tau=0.0), r"IIBalance tau .* must be a finite number > 0"),
])
def test_constructors_refuse_impossible_settings(data, factory, match):
    with pytest.raises(ValueError, match=match):
        factory(data)


def test_udml_stages_beyond_the_last_epoch_fail_before_training(data):
    with pytest.raises(ValueError, match="noise_epoch=50 and weight_epoch=60, but training has only 2 epochs"):
        fit(UDML(build_model(data)), data, CFG)


def test_a_chapter_recipe_with_a_bad_setting_fails_before_any_training(data):
    recipes = {"joint": lambda: build("joint", data), "ogm_ge": lambda: build("ogm_ge", data, alpha=-1.0)}
    with pytest.raises(ParameterError, match=r"recipe 'ogm_ge' cannot be built: OGM-GE alpha must lie in \[0, inf\], got -1.0"):
        build_each(recipes)


def test_a_method_for_another_task_is_refused(data):
    regression = replace(data, task="regression")
    with pytest.raises(ValueError, match="Joint was built for task 'classification' but 'synthetic' is a regression"):
        fit(Joint(build_model(data)), regression, CFG)


# ----------------------------------------------------------------------------- shapes and labels (§8)

@pytest.mark.parametrize("tensor, match", [
    (torch.randn(96, 9), r"modality 'm0' in the train split has examples of shape \(9,\) .* built for shape \(8,\)"),
    (torch.randn(96, 8).double(), "modality 'm0' .* dtype torch.float64; the model was built for .* torch.float32"),
    (torch.randn(96, 1, 8, 8), r"modality 'm0' .* shape \(1, 8, 8\)"),
])
def test_inputs_must_match_what_the_model_was_built_for(data, tensor, match):
    with pytest.raises(ValueError, match=match):
        fit(Joint(build_model(data)), _with(data, m0=tensor), CFG)


def test_other_modality_names_are_refused(data):
    renamed = data.select(["m0"])
    with pytest.raises(ValueError, match=r"model has encoders for \['m0', 'm1'\] but the train split has .*\['m0'\]"):
        fit(Joint(build_model(data)), renamed, CFG)


def test_labels_beyond_num_classes_are_refused(data):
    labels = data.val.tensors["label"].clone()
    labels[0] = 7
    with pytest.raises(ValueError, match=r"the val labels span 0..7 but the splits declare num_classes=3"):
        fit(Joint(build_model(data)), _with(data, "val", label=labels), CFG)


def test_a_model_for_another_class_count_is_refused(data):
    with pytest.raises(ValueError, match="the model predicts 20 classes but the data has num_classes=3"):
        fit(Joint(build_model(replace(data, num_classes=20))), data, CFG)


@pytest.mark.parametrize("part", ["train", "val", "test"])
def test_empty_splits_are_refused(data, part):
    empty = replace(data, **{part: data.split(part).subset([])})
    with pytest.raises(ValueError, match=f"the {part} split of 'synthetic' is empty"):
        fit(Joint(build_model(data)), empty, CFG)


def test_a_last_batch_of_one_with_batchnorm_is_refused(data):
    odd = replace(data, train=data.train.subset(range(97 - 16 * 5 + 16 * 4)))  # 81 = 5 x 16 + 1
    with pytest.raises(ValueError, match=r"last training batch would hold 1 example \(81 examples, batch_size 16\)"):
        fit(UDML(build_model(data), noise_epoch=0, weight_epoch=0), odd, CFG)


# ----------------------------------------------------------------------------- files (§5, §9)

class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_a_crafted_mosi_pickle_does_not_run_its_payload(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "mosi_data.pkl"
    path.write_bytes(pickle.dumps({"train": _Payload()}))
    with pytest.raises(DataError, match=f"cannot load {path} safely: refusing to load posix.system"):
        load_mosi(path=path)
    assert not (tmp_path / "pwned.txt").exists()


@pytest.mark.parametrize("damage", ["empty", "garbage", "truncated", "bit rot"])
def test_a_corrupt_preprocessing_cache_is_rebuilt_after_a_warning(tmp_path, damage):
    path, calls = tmp_path / "cache.pt", []
    tensors = {"x": torch.arange(1000.0)}

    def build():
        calls.append(1)
        return tensors

    cached_tensors(path, build, "toy")
    body = path.read_bytes()
    if damage == "bit rot":
        saved = torch.load(path, weights_only=True)
        saved["tensors"]["x"][500] = -1.0
        torch.save(saved, path)
    else:
        path.write_bytes({"empty": b"", "garbage": b"not a torch file", "truncated": body[: len(body) // 2]}[damage])
    with pytest.warns(RuntimeWarning, match=f"preprocessing cache {path} is corrupt .*; rebuilding it"):
        again = cached_tensors(path, build, "toy")
    assert len(calls) == 2 and torch.equal(again["x"], tensors["x"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cached_tensors(path, build, "toy")  # the rebuilt file is sound: no warning, no rebuild
    assert len(calls) == 2 and torch.load(path, weights_only=True)["sha256"] == tensor_checksum(tensors)


def test_a_corrupt_results_file_names_the_file(tmp_path):
    path = tmp_path / "run.json"
    path.write_text('{"metrics": {"acc')
    with pytest.raises(ValueError, match=f"{path} is not valid JSON .* delete it to recompute"):
        results.load_or_run(path, dict)


def test_every_torch_load_in_the_package_says_weights_only():
    root = Path(__file__).resolve().parent.parent / "mmrepro"
    calls = [(p.name, line.strip()) for p in root.rglob("*.py") for line in p.read_text().splitlines()
             if "torch.load(" in line]
    assert calls and all("weights_only=True" in line for _, line in calls), calls
