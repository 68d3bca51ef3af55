"""Reward-quality metrics: arrays in, floats or dicts out (numpy + scipy, nothing else).

Four groups, as in the LRM paper's evaluation (issue 5):

- contrastive: `kendall_tau`, `spearman_rho`, `direction_accuracy`;
- progress (values on the 0.0 .. 1.0 grid of step 0.1): `progress_exact_accuracy`,
  `progress_accuracy_within`, `mae`, `rmse`, `cumulative_accuracy_curve`;
- completion (binary): `confusion_counts`, `accuracy`, `precision`, `recall`,
  `f1` and `binary_metrics`;
- per trajectory against the oracle: `roc_auc`, `pairwise_accuracy`,
  `pearson`, `per_trajectory_pearson`, `monotonicity`, `voc`, and
  `trajectory_metrics`, which computes all of them from a list of per-step
  reward arrays and the oracle's success flags.

Undefined values are NaN, never a made-up number: a correlation of a constant
input, a ROC-AUC with one class only, a precision with no predicted positive.
Callers that aggregate use `np.nanmean` and report how many entries counted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

# Float slack for comparisons on the 0.1 grid: 0.4 - 0.3 is 0.10000000000000003.
_EPS = 1e-9
DEFAULT_TOLERANCES = (0.1, 0.2, 0.3)
PROGRESS_STEP = 0.1


def _pair(x: object, y: object, name: str) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(x, dtype=float).ravel()
    b = np.asarray(y, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"{name}: inputs differ in length ({a.size} vs {b.size})")
    return a, b


def _constant(a: np.ndarray) -> bool:
    return a.size < 2 or bool(np.all(a == a[0]))


# --------------------------------------------------------------------------- correlations


def pearson(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Pearson correlation of x and y; NaN when either is constant or has fewer than 2 entries."""
    a, b = _pair(x, y, "pearson")
    if _constant(a) or _constant(b):
        return float("nan")
    a = a - a.mean()
    b = b - b.mean()
    r = float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))
    return max(-1.0, min(1.0, r))


def spearman_rho(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman rank correlation: Pearson of the ranks, tied values sharing their average rank.

    NaN when either input is constant.
    """
    a, b = _pair(x, y, "spearman_rho")
    if _constant(a) or _constant(b):
        return float("nan")
    return pearson(stats.rankdata(a), stats.rankdata(b))


def kendall_tau(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Kendall's tau-b: (concordant - discordant) / sqrt((n0 - ties_x) (n0 - ties_y)) over all pairs.

    tau-b rather than tau-a because reward values tie a lot (eleven progress
    values, three contrastive ones); NaN when either input is constant.
    """
    a, b = _pair(x, y, "kendall_tau")
    if _constant(a) or _constant(b):
        return float("nan")
    return float(stats.kendalltau(a, b, variant="b").statistic)


def direction_accuracy(predicted: Sequence[float] | np.ndarray, truth: Sequence[float] | np.ndarray) -> float:
    """Fraction of entries whose predicted sign equals the true sign, over entries with a nonzero truth.

    A predicted 0 ("no change") on a pair that did change counts as wrong.
    NaN when no truth is nonzero.
    """
    p, t = _pair(predicted, truth, "direction_accuracy")
    keep = t != 0
    if not keep.any():
        return float("nan")
    return float(np.mean(np.sign(p[keep]) == np.sign(t[keep])))


def contrastive_metrics(predicted: Sequence[float] | np.ndarray, truth: Sequence[float] | np.ndarray) -> dict[str, float]:
    """kendall_tau, spearman_rho and direction_accuracy of predicted against true contrastive values."""
    return {
        "kendall_tau": kendall_tau(predicted, truth),
        "spearman_rho": spearman_rho(predicted, truth),
        "direction_accuracy": direction_accuracy(predicted, truth),
        "n": int(np.asarray(truth).size),
    }


# --------------------------------------------------------------------------- progress


def snap_to_grid(values: Sequence[float] | np.ndarray, step: float = PROGRESS_STEP) -> np.ndarray:
    """Nearest grid value (halves round up), as an integer number of steps."""
    v = np.asarray(values, dtype=float)
    return np.floor(v / step + 0.5 + _EPS).astype(int)


def progress_exact_accuracy(
    predicted: Sequence[float] | np.ndarray, truth: Sequence[float] | np.ndarray, step: float = PROGRESS_STEP
) -> float:
    """Fraction of predictions that land on the true grid value after both are snapped to the grid.

    Snapping makes an expectation-valued reward (e.g. 0.31) comparable to the
    paper's discrete answers. NaN on empty input.
    """
    p, t = _pair(predicted, truth, "progress_exact_accuracy")
    if p.size == 0:
        return float("nan")
    return float(np.mean(snap_to_grid(p, step) == snap_to_grid(t, step)))


def progress_accuracy_within(
    predicted: Sequence[float] | np.ndarray, truth: Sequence[float] | np.ndarray, tolerance: float
) -> float:
    """Fraction of predictions with |predicted - truth| <= tolerance (boundary included). NaN on empty input."""
    p, t = _pair(predicted, truth, "progress_accuracy_within")
    if p.size == 0:
        return float("nan")
    return float(np.mean(np.abs(p - t) <= tolerance + _EPS))


def mae(predicted: Sequence[float] | np.ndarray, truth: Sequence[float] | np.ndarray) -> float:
    """Mean absolute error; NaN on empty input."""
    p, t = _pair(predicted, truth, "mae")
    return float(np.mean(np.abs(p - t))) if p.size else float("nan")


def rmse(predicted: Sequence[float] | np.ndarray, truth: Sequence[float] | np.ndarray) -> float:
    """Root mean squared error; NaN on empty input."""
    p, t = _pair(predicted, truth, "rmse")
    return float(np.sqrt(np.mean((p - t) ** 2))) if p.size else float("nan")


def cumulative_accuracy_curve(
    predicted: Sequence[float] | np.ndarray,
    truth: Sequence[float] | np.ndarray,
    tolerances: Sequence[float] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy within each tolerance: (tolerances, accuracies), non-decreasing in the tolerance.

    Default tolerances 0.00, 0.01, ..., 1.00. Its area under the curve is 1 - MAE
    for errors in [0, 1] (up to the step of the grid).
    """
    p, t = _pair(predicted, truth, "cumulative_accuracy_curve")
    tol = np.linspace(0.0, 1.0, 101) if tolerances is None else np.asarray(tolerances, dtype=float)
    if p.size == 0:
        return tol, np.full(tol.shape, np.nan)
    err = np.abs(p - t)
    acc = np.array([np.mean(err <= x + _EPS) for x in tol])
    return tol, acc


def progress_metrics(
    predicted: Sequence[float] | np.ndarray,
    truth: Sequence[float] | np.ndarray,
    tolerances: Sequence[float] = DEFAULT_TOLERANCES,
) -> dict[str, object]:
    """exact_accuracy, accuracy_within_<tol> for each tolerance, mae, rmse, n and the cumulative curve."""
    tol, acc = cumulative_accuracy_curve(predicted, truth)
    out: dict[str, object] = {"exact_accuracy": progress_exact_accuracy(predicted, truth)}
    for x in tolerances:
        out[f"accuracy_within_{x:g}"] = progress_accuracy_within(predicted, truth, x)
    out["mae"] = mae(predicted, truth)
    out["rmse"] = rmse(predicted, truth)
    out["n"] = int(np.asarray(truth).size)
    out["cumulative_curve"] = {"tolerance": tol.round(6).tolist(), "accuracy": acc.tolist()}
    return out


# --------------------------------------------------------------------------- completion


def _binary(values: object, threshold: float, name: str) -> np.ndarray:
    v = np.asarray(values)
    if v.dtype == bool:
        return v.ravel()
    v = np.asarray(v, dtype=float).ravel()
    if np.isnan(v).any():
        raise ValueError(f"{name}: NaN among the values")
    return v >= threshold


def confusion_counts(
    predicted: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray, threshold: float = 0.5
) -> dict[str, int]:
    """tp, fp, tn, fn of binary predictions; numbers are positive when >= threshold, booleans as they are."""
    p = _binary(predicted, threshold, "predicted")
    a = _binary(actual, threshold, "actual")
    if p.shape != a.shape:
        raise ValueError(f"confusion_counts: inputs differ in length ({p.size} vs {a.size})")
    return {
        "tp": int(np.sum(p & a)),
        "fp": int(np.sum(p & ~a)),
        "tn": int(np.sum(~p & ~a)),
        "fn": int(np.sum(~p & a)),
    }


def _ratio(num: int, den: int) -> float:
    return num / den if den else float("nan")


def accuracy(counts: dict[str, int]) -> float:
    """(tp + tn) / all; NaN when there is nothing."""
    return _ratio(counts["tp"] + counts["tn"], sum(counts[k] for k in ("tp", "fp", "tn", "fn")))


def precision(counts: dict[str, int]) -> float:
    """tp / (tp + fp); NaN when nothing was predicted positive."""
    return _ratio(counts["tp"], counts["tp"] + counts["fp"])


def recall(counts: dict[str, int]) -> float:
    """tp / (tp + fn); NaN when nothing is actually positive."""
    return _ratio(counts["tp"], counts["tp"] + counts["fn"])


def f1(counts: dict[str, int]) -> float:
    """2 tp / (2 tp + fp + fn), the harmonic mean of precision and recall; NaN when tp + fp + fn is 0."""
    return _ratio(2 * counts["tp"], 2 * counts["tp"] + counts["fp"] + counts["fn"])


def binary_metrics(
    predicted: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """accuracy, precision, recall, f1 and the confusion counts of binary predictions against the truth."""
    counts = confusion_counts(predicted, actual, threshold)
    return {
        "accuracy": accuracy(counts),
        "precision": precision(counts),
        "recall": recall(counts),
        "f1": f1(counts),
        **counts,
    }


# --------------------------------------------------------------------------- trajectories vs oracle


def roc_auc(scores: Sequence[float] | np.ndarray, labels: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve from ranks (Mann-Whitney U), tied scores sharing their average rank.

    Equals P(score of a random positive > score of a random negative) with a
    tie counting one half, so a constant score gives 0.5. NaN when labels are
    all one class.
    """
    s, y = _pair(scores, labels, "roc_auc")
    pos = y >= 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = stats.rankdata(s)
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(scores: Sequence[float] | np.ndarray, labels: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rates, true-positive rates) at every distinct score threshold, from (0, 0) to (1, 1).

    Tied scores move both rates in one step (a diagonal segment), which is
    what makes the trapezoid area equal `roc_auc`. Empty arrays when one class is missing.
    """
    s, y = _pair(scores, labels, "roc_curve")
    pos = y >= 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return np.array([]), np.array([])
    order = np.argsort(-s, kind="stable")
    s, pos = s[order], pos[order]
    last_of_tie = np.r_[s[1:] != s[:-1], True]
    tp = np.cumsum(pos)[last_of_tie]
    fp = np.cumsum(~pos)[last_of_tie]
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos]


def pairwise_accuracy(scores: Sequence[float] | np.ndarray, targets: Sequence[float] | np.ndarray) -> float:
    """Over all pairs whose targets differ, the fraction the scores order the same way, strictly.

    A tie in the scores counts as wrong, so a constant score gets 0 here
    while ROC-AUC gives it 0.5: this one asks "does it rank at all".
    With binary targets these are the (success, failure) pairs. NaN when no
    two targets differ.
    """
    s, t = _pair(scores, targets, "pairwise_accuracy")
    ds = np.sign(s[:, None] - s[None, :])
    dt = np.sign(t[:, None] - t[None, :])
    upper = np.triu(np.ones(ds.shape, dtype=bool), k=1) & (dt != 0)
    if not upper.any():
        return float("nan")
    return float(np.mean(ds[upper] == dt[upper]))


def per_trajectory_pearson(
    rewards: Sequence[Sequence[float] | np.ndarray], targets: Sequence[Sequence[float] | np.ndarray]
) -> tuple[float, int]:
    """Mean over trajectories of Pearson(reward_i, target_i), and how many trajectories had it defined.

    Trajectories where either side is constant have no correlation and are
    left out of the mean (NaN when none is left).
    """
    if len(rewards) != len(targets):
        raise ValueError(f"per_trajectory_pearson: {len(rewards)} reward arrays vs {len(targets)} target arrays")
    values = [pearson(r, t) for r, t in zip(rewards, targets, strict=True)]
    defined = [v for v in values if not np.isnan(v)]
    return (float(np.mean(defined)) if defined else float("nan")), len(defined)


def monotonicity(reward: Sequence[float] | np.ndarray) -> float:
    """Fraction of consecutive steps where the reward does not decrease; NaN for fewer than 2 steps."""
    r = np.asarray(reward, dtype=float).ravel()
    if r.size < 2:
        return float("nan")
    return float(np.mean(np.diff(r) >= -_EPS))


def voc(rewards: Sequence[Sequence[float] | np.ndarray]) -> tuple[float, int]:
    """Value-order correlation: mean over trajectories of Pearson(reward, time), and how many counted.

    Meant for successful episodes, where progress should rise with time.
    A constant reward trace has no correlation and is left out (NaN when none is left).
    """
    return per_trajectory_pearson(rewards, [np.arange(len(np.asarray(r).ravel())) for r in rewards])


TRAJECTORY_SCORES = ("mean", "final", "max")


def trajectory_score(reward: Sequence[float] | np.ndarray, how: str = "mean") -> float:
    """One number per trajectory: the mean (a length-normalised return), the final or the max reward."""
    r = np.asarray(reward, dtype=float).ravel()
    if r.size == 0:
        raise ValueError("trajectory_score: empty reward array")
    if how == "mean":
        return float(r.mean())
    if how == "final":
        return float(r[-1])
    if how == "max":
        return float(r.max())
    raise ValueError(f"trajectory_score: unknown score {how!r}, expected one of {TRAJECTORY_SCORES}")


def trajectory_metrics(
    rewards: Sequence[Sequence[float] | np.ndarray],
    success: Sequence[bool] | np.ndarray,
    oracle_values: Sequence[Sequence[float] | np.ndarray] | None = None,
    score: str = "mean",
) -> dict[str, float | int | str]:
    """All per-trajectory metrics of per-step rewards against the oracle.

    - roc_auc, pairwise_accuracy: of the trajectory score (`score`: mean,
      final or max reward) against the oracle success flag;
    - pearson_global: of every step's reward against its per-step oracle
      value (`oracle_values`, e.g. the simulator's dense reward), pooled over
      trajectories; without oracle values, against the step's trajectory
      success flag (a point-biserial correlation);
    - pearson_per_trajectory: mean over trajectories of Pearson(reward,
      oracle value) (NaN without oracle values; constant traces left out,
      `pearson_per_trajectory_n` says how many counted);
    - monotonicity_success: mean `monotonicity` over successful trajectories;
    - voc: `voc` over successful trajectories (`voc_n` counted).
    """
    traces = [np.asarray(r, dtype=float).ravel() for r in rewards]
    flags = np.asarray(success, dtype=bool).ravel()
    if len(traces) != flags.size:
        raise ValueError(f"trajectory_metrics: {len(traces)} reward arrays vs {flags.size} success flags")
    if any(t.size == 0 for t in traces):
        raise ValueError("trajectory_metrics: an empty reward array")
    if oracle_values is not None:
        oracle = [np.asarray(o, dtype=float).ravel() for o in oracle_values]
        if len(oracle) != len(traces) or any(o.shape != t.shape for o, t in zip(oracle, traces, strict=False)):
            raise ValueError("trajectory_metrics: oracle_values must match rewards trajectory by trajectory, step by step")
    scores = np.array([trajectory_score(t, score) for t in traces]) if traces else np.array([])
    out: dict[str, float | int | str] = {
        "n_trajectories": len(traces),
        "n_success": int(flags.sum()),
        "trajectory_score": score,
        "roc_auc": roc_auc(scores, flags),
        "pairwise_accuracy": pairwise_accuracy(scores, flags),
    }
    if not traces:
        out.update(pearson_global=float("nan"), pearson_per_trajectory=float("nan"), pearson_per_trajectory_n=0)
    elif oracle_values is not None:
        out["pearson_global"] = pearson(np.concatenate(traces), np.concatenate(oracle))
        out["pearson_per_trajectory"], out["pearson_per_trajectory_n"] = per_trajectory_pearson(traces, oracle)
    else:
        steps_flag = np.concatenate([np.full(t.size, float(f)) for t, f in zip(traces, flags, strict=True)])
        out["pearson_global"] = pearson(np.concatenate(traces), steps_flag)
        out["pearson_per_trajectory"], out["pearson_per_trajectory_n"] = float("nan"), 0
    wins = [t for t, f in zip(traces, flags, strict=True) if f]
    mono = [m for m in (monotonicity(t) for t in wins) if not np.isnan(m)]
    out["monotonicity_success"] = float(np.mean(mono)) if mono else float("nan")
    out["voc"], out["voc_n"] = voc(wins)
    return out


__all__ = [
    "DEFAULT_TOLERANCES",
    "TRAJECTORY_SCORES",
    "accuracy",
    "binary_metrics",
    "confusion_counts",
    "contrastive_metrics",
    "cumulative_accuracy_curve",
    "direction_accuracy",
    "f1",
    "kendall_tau",
    "mae",
    "monotonicity",
    "pairwise_accuracy",
    "pearson",
    "per_trajectory_pearson",
    "precision",
    "progress_accuracy_within",
    "progress_exact_accuracy",
    "progress_metrics",
    "recall",
    "rmse",
    "roc_auc",
    "roc_curve",
    "snap_to_grid",
    "spearman_rho",
    "trajectory_metrics",
    "trajectory_score",
    "voc",
]
