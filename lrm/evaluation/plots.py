"""PNG plots for a person to look at (matplotlib, no display): reward traces against time, and the
reward-quality suite's cumulative accuracy curve, reward-vs-time per trajectory and ROC curve."""

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
    while the other modalities live in [0, 1]; each axis is exactly that
    range, so that panels and plots compare by eye (markers on the edge are
    drawn unclipped).
    """
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(held)
    fig, axes = plt.subplots(len(names), 1, figsize=(8, 2.2 * len(names) + 0.6), sharex=True, squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        ax.step(times, held[name], where="post", linewidth=1.5, label="held (what PPO sees)", clip_on=False)
        ax.plot(query_times, query_values[name], "o", markersize=3, label="query", clip_on=False)
        signed = "contrastive" in name or np.nanmin(held[name], initial=0.0) < 0
        ax.set_ylim(-1.0 if signed else 0.0, 1.0)
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


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: pathlib.Path) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    logger.info("plot written to %s", path)
    return path


def _finish(fig, ax, path: str | pathlib.Path, title: str, xlabel: str, ylabel: str, *, legend: str = "lower right",
            ylim: tuple[float, float] | None = (0, 1)) -> pathlib.Path:
    """The suite's plots share one frame: x over 0..1, labels, grid, legend, title; then saved."""
    ax.set_xlim(0, 1)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(loc=legend, fontsize="small")
    ax.set_title(title, fontsize="medium")
    return _save(fig, pathlib.Path(path))


def plot_cumulative_accuracy(
    path: str | pathlib.Path, curves: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str
) -> pathlib.Path:
    """Progress accuracy against the tolerance, one line per named curve (e.g. per backend)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, (tol, acc) in curves.items():
        ax.plot(tol, acc, linewidth=1.5, label=name)
    for x in (0.1, 0.2, 0.3):
        ax.axvline(x, color="grey", linewidth=0.5, linestyle=":")
    return _finish(fig, ax, path, title, "tolerance |predicted - true progress|", "fraction within tolerance")


def plot_reward_vs_time(
    path: str | pathlib.Path,
    traces: list[tuple[np.ndarray, np.ndarray, bool]],
    title: str,
    ylabel: str = "reward",
    ylim: tuple[float, float] | None = None,
) -> pathlib.Path:
    """Reward against normalised time, one line per trajectory: green successes, red failures.

    `ylim`: the reward's range where it has one (0..1 for a probability or progress), so that
    plots of different backends compare by eye; None lets matplotlib fit an unbounded reward.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for x, y, success in traces:
        ax.plot(x, y, color="tab:green" if success else "tab:red", alpha=0.55, linewidth=1.0)
    ax.plot([], [], color="tab:green", label="success (oracle)")
    ax.plot([], [], color="tab:red", label="failure (oracle)")
    return _finish(fig, ax, path, title, "time / episode length", ylabel, legend="upper left", ylim=ylim)


def plot_roc(
    path: str | pathlib.Path, curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]], title: str
) -> pathlib.Path:
    """ROC curves (false- vs true-positive rate), each labelled with its area."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle="--", label="chance")
    for name, (fpr, tpr, auc) in curves.items():
        label = f"{name} (AUC {auc:.3f})" if auc is not None and np.isfinite(auc) else name
        ax.plot(fpr, tpr, linewidth=1.5, label=label)
    return _finish(fig, ax, path, title, "false-positive rate", "true-positive rate")
