"""PNG plots of reward traces against time, for a person to look at (matplotlib, no display)."""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Mapping

import numpy as np

logger = logging.getLogger(__name__)


def plot_traces(
    path: str | pathlib.Path,
    times: np.ndarray,
    held: Mapping[str, np.ndarray],
    query_times: np.ndarray,
    query_values: Mapping[str, np.ndarray],
    title: str,
) -> pathlib.Path:
    """One panel per trace: the held reward as a step curve, query points as markers.

    A panel each, not one shared axis, because contrastive lives in [-1, 1]
    while the other modalities live in [0, 1].
    """
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(held)
    fig, axes = plt.subplots(len(names), 1, figsize=(8, 2.2 * len(names) + 0.6), sharex=True, squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        ax.step(times, held[name], where="post", linewidth=1.5, label="held (what PPO sees)")
        ax.plot(query_times, query_values[name], "o", markersize=3, label="query")
        signed = "contrastive" in name or np.nanmin(held[name], initial=0.0) < 0
        low = -1.05 if signed else -0.05
        ax.set_ylim(low, 1.05)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper left", fontsize="small")
    axes[-1, 0].set_xlabel("time [s]")
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    logger.info("plot written to %s", path)
    return path
