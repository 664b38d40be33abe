"""Chapter parameters: papermill's string forms parsed, bad values refused before any training."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import RAW_DATA_ROOT
from mmrepro import chapter
from mmrepro.chapter import ParameterError, build_each, parse, parse_seeds, setup

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("text, value", [
    ("[0,1,2]", [0, 1, 2]), ("(0, 1)", (0, 1)), ("0.5", 0.5), ("3", 3), ("1e-3", 1e-3), ("None", None),
    ("True", True), ("-2", -2), ("[1, -inf]", [1, -float("inf")]), ("/data/CREMA-D", "/data/CREMA-D"),
    ("os.system('x')", "os.system('x')"), ("av_digits", "av_digits"), (0.5, 0.5), ([1], [1]),
])
def test_parse_reads_papermill_strings(text, value):
    assert parse(text) == value


def test_parse_reads_non_finite_numbers_so_they_can_be_refused():
    assert parse("nan") != parse("nan") and parse("inf") == float("inf")


@pytest.mark.parametrize("text, seeds", [("[0,1,2]", [0, 1, 2]), ("0, 1", [0, 1]), ("4", [4]), ([2, 0], [2, 0]),
                                         ((1, 3), [1, 3]), ([np.int64(5)], [5])])
def test_seed_forms(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text, match", [
    ("[]", "non-empty list of integers"), ([], "non-empty list"), ("[0,0]", r"distinct.*\[0\] more than once"),
    ("[0.5]", r"non-negative integers, got \[0.5\]"), ("[-1]", "non-negative"), ("[True]", "non-negative"),
    ("zero", "non-empty list of integers such as"),
])
def test_bad_seeds_are_refused(text, match):
    with pytest.raises(ParameterError, match=match):
        parse_seeds(text)


def test_setup_parses_checks_and_sets_the_session():
    torch.set_num_threads(2)
    params = setup("smoke", "cpu", "[1,2]", default_seeds={"smoke": [0], "book": [0, 1], "full": [0]},
                   alpha="0.8", levels="(0.0, 0.5)", data_root="/x", bounds={"alpha": (0, None)})
    assert params == {"profile": "smoke", "device": "cpu", "seeds": [1, 2], "alpha": 0.8, "levels": (0.0, 0.5),
                      "data_root": "/x"}
    assert torch.get_num_threads() == 1 and pd.get_option("display.max_colwidth") is None
    assert setup("book", default_seeds={"smoke": [0], "book": [0, 1], "full": [0]}, threads=None)["seeds"] == [0, 1]


@pytest.mark.parametrize("kwargs, match", [
    ({"profile": "huge"}, "unknown profile 'huge'; valid: smoke, book, full"),
    ({"device": "tpu0"}, "unknown device 'tpu0'; valid: auto, cpu, cuda, mps"),
    ({"alpha": "nan"}, "parameter alpha must be finite, got nan"),
    ({"levels": "[0.0, inf]"}, "parameter levels must be finite, got inf"),
    ({"alpha": -1.0, "bounds": {"alpha": (0, None)}}, r"alpha must lie in \[0, inf\], got -1.0"),
    ({"rate": "1.5", "bounds": {"rate": (0, 1)}}, r"rate must lie in \[0, 1\], got 1.5"),
    ({"rate": "high", "bounds": {"rate": (0, 1)}}, "rate must be a number, got 'high'"),
    ({"bounds": {"alhpa": (0, 1)}}, "bounds name 'alhpa', which is not a parameter"),
])
def test_setup_refuses_bad_parameters(kwargs, match):
    kwargs = {"profile": "smoke", "threads": None, **kwargs}
    with pytest.raises(ParameterError if "profile" not in match else ValueError, match=match):
        setup(**kwargs)


def test_build_each_fails_naming_the_recipe_and_leaves_the_rngs_alone():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    build_each({"ok": lambda: torch.randn(5)})
    assert torch.equal(torch.get_rng_state(), before)

    def bad():
        raise ValueError("alpha must be >= 0, got -1")

    with pytest.raises(ParameterError, match="recipe 'ogm_ge' cannot be built: alpha must be >= 0, got -1"):
        build_each({"ok": lambda: None, "ogm_ge": bad})
    assert torch.equal(torch.get_rng_state(), before)


def _papermill(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """The MoIR chapter (the quickest) as the README tells users to run it."""
    notebook = tmp_path / "moir.ipynb"
    subprocess.run([str(BIN / "jupytext"), "--quiet", "--to", "ipynb", "--output", str(notebook),
                    str(ROOT / "book" / "moir.md")], check=True)
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([str(BIN / "papermill"), "--log-level", "WARNING", str(notebook), str(tmp_path / "out.ipynb"),
                           *args], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)


needs_data = pytest.mark.skipif(RAW_DATA_ROOT is None, reason="AV-Digits raw files not found (set MMREPRO_DATA_DIR)")


@pytest.mark.slow  # a kernel runs the whole chapter at smoke size: ~20-40 s
@needs_data
@pytest.mark.skipif(shutil.which("papermill", path=str(BIN)) is None, reason="papermill is not installed")
def test_a_chapter_runs_under_papermill_with_the_documented_parameter_forms(tmp_path):
    proc = _papermill(tmp_path, "-p", "profile", "smoke", "-p", "device", "cpu", "-p", "seeds", "[1]",
                      "-p", "ratio", "0.1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert r'seeds = \"[1]\"' in (tmp_path / "out.ipynb").read_text(), "papermill injected the string form"


@pytest.mark.slow  # a kernel starts and imports the package: ~5-10 s
@pytest.mark.skipif(shutil.which("papermill", path=str(BIN)) is None, reason="papermill is not installed")
def test_a_bad_papermill_parameter_fails_in_the_first_cell(tmp_path):
    proc = _papermill(tmp_path, "-p", "profile", "smoke", "-p", "seeds", "[0,0]")
    assert proc.returncode != 0
    assert "ParameterError" in proc.stderr and "seeds must be distinct" in proc.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
def test_make_records_names_an_unknown_chapter_and_the_valid_ones_before_executing_any():
    proc = subprocess.run(["make", "-s", "-o", ".venv/bin/.installed", "records", "CHAPTERS=protocol nope"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "no chapter book/nope.md" in proc.stdout and "benchmark" in proc.stdout and "udml" in proc.stdout
    assert "records: protocol" not in proc.stdout, "no chapter runs before every name is checked"
