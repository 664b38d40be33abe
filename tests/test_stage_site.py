"""The smoke site is rendered from the notebooks nbval executed: tools/nbval_keep.py keeps them, with outputs,
and tools/stage_site.py stages them with execution off (``make smoke-site``)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("stage_site", ROOT / "tools" / "stage_site.py")
stage_site = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(stage_site)

FRONT = "---\nkernelspec:\n  display_name: Python 3\n  language: python\n  name: python3\n---\n"
CHAPTER = FRONT + "# Chapter\n\nSee [the intro](intro.md).\n\n```{code-cell} ipython3\nprint('hi')\n```\n"
INTRO = "# Intro\n\nRead [the chapter](chapter.md#claims), [the web](https://example.org/x.md) and [notes](notes.md).\n"


def executed(path: Path, outputs: bool = True) -> Path:
    """A notebook of CHAPTER's cells, its code cell with an output when ``outputs``."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Chapter\n\nSee [the intro](intro.md)."),
                                               nbformat.v4.new_code_cell("print('hi')")])
    if outputs:
        notebook.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi\n")]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A tiny book: one notebook chapter, one plain page, the package folder, configuration and toc."""
    root = tmp_path / "repo"
    (root / "book").mkdir(parents=True)
    (root / "book" / "chapter.md").write_text(CHAPTER)
    (root / "book" / "intro.md").write_text(INTRO)
    (root / "book" / "figure.svg").write_text("<svg/>")
    (root / "mmrepro").mkdir()
    (root / "_config.yml").write_text(yaml.safe_dump({"title": "t", "exclude_patterns": ["_build", "**.ipynb"],
                                                      "execute": {"execute_notebooks": "force", "timeout": 60}}))
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/chapter\n")
    (root / "_build").mkdir()
    return root


def test_links_to_a_notebook_chapter_point_at_its_notebook_and_others_are_left_alone():
    text = stage_site.point_links_at_notebooks(INTRO, {"chapter"})
    assert "](chapter.ipynb#claims)" in text
    assert "](https://example.org/x.md)" in text and "](notes.md)" in text


def test_the_staged_configuration_executes_nothing_and_reads_notebooks():
    config = stage_site.staged_config({"exclude_patterns": ["_build", "**.ipynb"], "execute": {"timeout": 9}})
    assert config["execute"] == {"timeout": 9, "execute_notebooks": "off"}
    assert config["exclude_patterns"] == ["_build"]


def test_stage_puts_the_executed_notebook_in_place_of_its_chapter(repo: Path, tmp_path: Path):
    kept = executed(tmp_path / "kept" / "chapter.ipynb").parent
    out = repo / "_build" / "smoke"
    assert stage_site.stage(kept, out, repo) == ["chapter"]
    assert not (out / "book" / "chapter.md").exists()
    notebook = nbformat.read(out / "book" / "chapter.ipynb", as_version=4)
    assert notebook.cells[1].outputs[0]["text"] == "hi\n"
    assert "](chapter.ipynb#claims)" in (out / "book" / "intro.md").read_text()
    assert (out / "book" / "figure.svg").is_file() and (out / "mmrepro").is_symlink()
    assert not (out / "_build").exists()  # the repository's build folder is not linked in
    assert yaml.safe_load((out / "_config.yml").read_text())["execute"]["execute_notebooks"] == "off"


def test_a_chapter_without_an_executed_notebook_is_named(repo: Path, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="chapter"):
        stage_site.stage(tmp_path / "nothing", repo / "_build" / "smoke", repo)


def test_a_notebook_that_was_not_executed_is_refused(repo: Path, tmp_path: Path):
    kept = executed(tmp_path / "kept" / "chapter.ipynb", outputs=False).parent
    with pytest.raises(ValueError, match="no cell outputs"):
        stage_site.stage(kept, repo / "_build" / "smoke", repo)


@pytest.mark.slow
def test_nbval_keeps_the_notebook_it_executed_with_each_cells_outputs(tmp_path: Path):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('hello')\n1 + 1"),
                                               nbformat.v4.new_markdown_cell("text"),
                                               nbformat.v4.new_code_cell("x = 3")])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, tmp_path / "chapter.ipynb")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tools"), os.environ.get("PYTHONPATH", "")])}
    env.pop("MPLBACKEND", None)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "nbval_keep",
                             "--nbval-lax", "--nbval-keep", str(tmp_path / "kept"), str(tmp_path / "chapter.ipynb")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    kept = nbformat.read(tmp_path / "kept" / "chapter.ipynb", as_version=4)
    nbformat.validate(kept)
    first, _, last = kept.cells
    assert [o["output_type"] for o in first.outputs] == ["stream", "execute_result"]
    assert first.outputs[0]["text"] == "hello\n" and first.outputs[1]["data"]["text/plain"] == "2"
    assert first.execution_count == 1 and last.execution_count == 2 and last.outputs == []
