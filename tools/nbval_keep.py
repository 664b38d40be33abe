"""A pytest plugin that keeps the notebooks nbval executed, with their outputs, for the site build.

``make test`` runs every chapter once under nbval; with ``-p nbval_keep --nbval-keep DIR`` (``tools/`` on
``PYTHONPATH``) each notebook nbval ran is written to ``DIR/<name>.ipynb`` with the outputs its cells gave, so the
smoke site is rendered from them (``tools/stage_site.py``) instead of executing every chapter a second time.
A cell that nbval skipped keeps no outputs; a cell that raised keeps its error output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest

_KEPT = pytest.StashKey[dict]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("nbval").addoption(
        "--nbval-keep", metavar="DIR", default=None,
        help="write each notebook nbval executed, with its cells' outputs, to DIR/<name>.ipynb")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_KEPT] = {}


def _is_nbval_cell(item: pytest.Item) -> bool:
    return type(item).__name__ == "IPyNbCell" and hasattr(item, "test_outputs") and hasattr(item, "cell")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """After a cell ran (passed or failed), store the outputs it gave in its notebook's cell."""
    yield
    if item.config.getoption("nbval_keep") is None or not _is_nbval_cell(item):
        return
    outputs = item.test_outputs or []
    item.cell.outputs = [nbformat.from_dict(dict(o)) for o in outputs]
    item.cell.execution_count = item.cell_num + 1
    for output in item.cell.outputs:
        if output.get("output_type") == "execute_result":
            output["execution_count"] = item.cell.execution_count
    notebook = item.parent
    item.config.stash[_KEPT][str(notebook.fspath)] = notebook.nb


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write every notebook that had a cell run into the ``--nbval-keep`` folder."""
    folder = session.config.getoption("nbval_keep")
    if folder is None:
        return
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for source, notebook in session.config.stash[_KEPT].items():
        nbformat.write(notebook, out / Path(source).name)
