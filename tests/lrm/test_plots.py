"""The reward-evaluation plots: an axis that carries a probability or a rate spans exactly 0..1 (issue 17)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lrm.evaluation import plots


@pytest.fixture
def kept_figures(monkeypatch):
    """Each figure the plots save, kept open to look at its axes."""
    kept = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: kept.append(fig) or Path(path))
    yield kept
    import matplotlib.pyplot as plt

    for fig in kept:
        plt.close(fig)


def test_roc_and_accuracy_plots_span_zero_to_one(kept_figures, tmp_path: Path) -> None:
    rate = np.array([0.0, 0.5, 1.0])
    plots.plot_roc(tmp_path / "roc.png", {"lite": (rate, rate, 0.5)}, "ROC")
    plots.plot_cumulative_accuracy(tmp_path / "acc.png", {"lite": (rate, np.array([0.2, 0.9, 1.0]))}, "accuracy")
    plots.plot_reward_vs_time(tmp_path / "t.png", [(rate, rate, True)], "P(done)", ylim=(0, 1))
    assert [(fig.axes[0].get_xlim(), fig.axes[0].get_ylim()) for fig in kept_figures] == [((0.0, 1.0), (0.0, 1.0))] * 3
