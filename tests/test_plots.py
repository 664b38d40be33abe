"""The plotting helpers: labelled axes, legends, annotated heatmaps and panel grids."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from mmrepro import plots  # noqa: E402


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({"level": [0, 1, 0, 1] * 2, "accuracy": [0.9, 0.6, 0.8, 0.5, 0.7, 0.4, 0.6, 0.3],
                         "method": ["joint"] * 4 + ["ogm_ge"] * 4, "seed": [0, 0, 1, 1] * 2})


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _labelled(ax: plt.Axes) -> bool:
    return bool(ax.get_xlabel()) and bool(ax.get_ylabel())


def test_lines_bars_scatter_label_their_axes(frame):
    ax = plots.lines(frame, "level", "accuracy", hue="method", title="t", xlabel="noise std", ylabel="accuracy")
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("noise std", "accuracy", "t")
    assert ax.get_legend() is not None and len(ax.get_lines()) >= 2
    assert _labelled(plots.bars(frame, "method", "accuracy", hue="level"))
    assert _labelled(plots.scatter(frame, "level", "accuracy", hue="method"))


def test_heatmap_and_panels(frame):
    table = frame.pivot_table(index="method", columns="level", values="accuracy")
    ax = plots.heatmap(table, xlabel="noise std", ylabel="method")
    assert _labelled(ax) and len(ax.texts) == table.size  # every cell annotated
    fig, axes = plots.panels(3, ncols=2)
    assert len(axes) == 3 and len(fig.axes) == 4 and not fig.axes[3].get_visible()
    assert _labelled(plots.lines(frame, "level", "accuracy", ax=axes[0]))
