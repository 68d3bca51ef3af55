"""The LRM paper's open-loop metrics, defined exactly as its public evaluation script defines them.

Source of the definitions: `eval/compute_openloop_metrics.py` of
github.com/physical-superintelligence-lab/Large-Reward-Models (commit 5845ab0f),
re-implemented here from their description (that repository has no license).
They sit next to this project's own metrics (lrm.evaluation.metrics) because
they differ from them, so a number is only comparable with the paper's when it
comes from here. `eval-reward` writes them under "openloop_reference", with the
reference's own key names.

A trajectory is its success flag, its reward model's scores in order and the
oracle's per-step rewards (`ReferenceTrajectory`). Progress and completion scores
(any mode but "comparison") give:

- `roc_auc`: ROC-AUC of each trajectory's final score against success (a tie
  counts one half, as sklearn's `roc_auc_score`); needs both outcomes.
- `pairwise_acc_pct`: 100 x the share of (success, failure) pairs whose success
  has the strictly higher final score (a tie counts as wrong); needs both outcomes.
- `global_pearson`: Pearson r, over trajectories, of the sum of all scores of a
  trajectory against its total oracle reward; needs >= 3 trajectories and a
  standard deviation > 1e-8 on both sides.
- `per_traj_pearson`: mean over trajectories of Pearson r between the k-th score
  and the k-th step's cumulative oracle reward, position by position (the k-th
  score is paired with step k even when scores were taken every K steps),
  truncated to the shorter; a trajectory with < 3 points or a standard
  deviation < 1e-8 on either side, or whose r is NaN, is left out.

Contrastive scores (mode "comparison"; the first entry is the placeholder 0 of the
first query, which has nothing to compare with) give:

- `direction_acc_pct`: 100 x the share of (score k, per-step oracle reward k)
  pairs, pooled over trajectories, position by position, truncated to the
  shorter, whose signs agree: both > 0, both < 0 or both exactly 0 (a tie of
  zeros counts as right, a 0 against a change as wrong).
- `progress_recall_pct`: 100 x, among those pairs with an oracle reward > 0, the
  share with a score > 0.
- `monotonicity_success`: mean over successful trajectories with >= 2 scores of
  the share of increments of the cumulative score that are >= 0.

Edge cases as the reference: a metric whose denominator is empty is left out
(the key is absent, not null); when any trajectory has no scores at all, the
whole group is left out. NaN behaves as it does there: a comparison with NaN is
false (a NaN final score loses every pair; a NaN score or oracle reward is a
wrong direction and no recalled progress; a NaN in a cumulative score turns
every later increment non-monotone), a NaN standard deviation fails the
"> 1e-8" test (no global_pearson), a NaN r is left out of per_traj_pearson.
One departure: the reference's sklearn call raises on a NaN final score, which
would end the evaluation; here `roc_auc` is left out instead.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from lrm.evaluation import metrics

SOURCE = (
    "eval/compute_openloop_metrics.py of github.com/physical-superintelligence-lab/Large-Reward-Models "
    "(commit 5845ab0f)"
)
COMPARISON = "comparison"  # the reference's name of the contrastive mode


@dataclasses.dataclass(frozen=True)
class ReferenceTrajectory:
    """One trajectory as the reference's script reads one.

    `scores`: the reward model's scores in order (progress, completion or
    contrastive). `oracle_rewards`: the oracle's reward of every step (the
    per-step change of the env's shaped reward there). `cumulative_oracle`: its
    running total per step; None, or all zero, means the cumulative sum of
    `oracle_rewards`, as the reference. `total_oracle_reward`: None means the
    last cumulative value (0 for none).
    """

    success: bool
    scores: Sequence[float]
    oracle_rewards: Sequence[float] = ()
    cumulative_oracle: Sequence[float] | None = None
    total_oracle_reward: float | None = None

    def cumulative(self) -> list[float]:
        given = list(self.cumulative_oracle or [])
        if not given or all(c == 0 for c in given):
            return [float(c) for c in np.cumsum(np.asarray(self.oracle_rewards, dtype=float))]
        return [float(c) for c in given]

    def total(self) -> float:
        if self.total_oracle_reward is not None:
            return float(self.total_oracle_reward)
        cumulative = self.cumulative()
        return cumulative[-1] if cumulative else 0.0


def progress_completion_metrics(trajectories: Sequence[ReferenceTrajectory]) -> dict[str, float]:
    """roc_auc, pairwise_acc_pct, global_pearson, per_traj_pearson (module doc)."""
    out: dict[str, float] = {}
    if not trajectories or not all(len(t.scores) > 0 for t in trajectories):
        return out
    labels = np.array([int(bool(t.success)) for t in trajectories])
    both = 0 < labels.sum() < len(labels)
    final = np.array([float(t.scores[-1]) for t in trajectories])
    if both and not np.isnan(final).any():
        out["roc_auc"] = metrics.roc_auc(final, labels)  # equals sklearn's roc_auc_score, ties one half
    if both:
        wins, losses = final[labels == 1], final[labels == 0]
        out["pairwise_acc_pct"] = float(np.mean(wins[:, None] > losses[None, :]) * 100)
    sums = np.array([sum(float(x) for x in t.scores) for t in trajectories])  # Python's sum, as the reference
    totals = np.array([t.total() for t in trajectories])
    if len(trajectories) >= 3 and _spread(sums) and _spread(totals):
        out["global_pearson"] = float(stats.pearsonr(sums, totals)[0])
    rs = []
    for t in trajectories:
        scores, cumulative = np.asarray(t.scores, dtype=float), np.asarray(t.cumulative(), dtype=float)
        if len(scores) < 3 or len(cumulative) < 3:
            continue
        n = min(len(scores), len(cumulative))
        scores, cumulative = scores[:n], cumulative[:n]
        if not (np.std(scores) >= 1e-8 and np.std(cumulative) >= 1e-8):  # NaN: pearsonr would give NaN, left out
            continue
        r = float(stats.pearsonr(scores, cumulative)[0])
        if not np.isnan(r):
            rs.append(r)
    if rs:
        out["per_traj_pearson"] = float(np.mean(rs))
    return out


def contrastive_metrics(trajectories: Sequence[ReferenceTrajectory]) -> dict[str, float]:
    """direction_acc_pct, progress_recall_pct, monotonicity_success (module doc)."""
    out: dict[str, float] = {}
    if not trajectories or not all(len(t.scores) > 0 for t in trajectories):
        return out
    pairs = [_aligned(t.scores, t.oracle_rewards) for t in trajectories]
    scores = np.concatenate([p[0] for p in pairs])
    oracle = np.concatenate([p[1] for p in pairs])
    if scores.size:
        agree = ((scores > 0) & (oracle > 0)) | ((scores < 0) & (oracle < 0)) | ((scores == 0) & (oracle == 0))
        out["direction_acc_pct"] = float(np.mean(agree) * 100)
    progressed = oracle > 0
    if progressed.any():
        out["progress_recall_pct"] = float(np.mean(scores[progressed] > 0) * 100)
    mono = []
    for t in trajectories:
        values = np.asarray(t.scores, dtype=float)
        if t.success and len(values) >= 2:
            mono.append(float(np.mean(np.diff(np.cumsum(values)) >= 0)))  # literally, so NaN propagates as there
    if mono:
        out["monotonicity_success"] = float(np.mean(mono))
    return out


def openloop_metrics(trajectories: Sequence[ReferenceTrajectory], mode: str) -> dict[str, Any]:
    """The reference's output for one mode: {"mode", "metrics", "meta"}; "comparison" is contrastive."""
    if mode == COMPARISON:
        values = contrastive_metrics(trajectories)
    else:
        values = progress_completion_metrics(trajectories)
    n_success = sum(bool(t.success) for t in trajectories)
    out: dict[str, Any] = {
        "mode": mode,
        "metrics": values,
        "meta": {"n_trajectories": len(trajectories), "n_success": n_success, "n_failure": len(trajectories) - n_success},
    }
    if trajectories and not all(len(t.scores) > 0 for t in trajectories):
        out["warning"] = "a trajectory has no scores: the reference then reports none of this mode's metrics"
    return out


def _spread(values: np.ndarray) -> bool:
    """The reference's np.std(x) > 1e-8 (false for NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return bool(np.std(values) > 1e-8)


def _aligned(scores: Sequence[float], oracle: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Scores and per-step oracle rewards paired by position, cut to the shorter."""
    n = min(len(scores), len(oracle))
    return np.asarray(scores, dtype=float)[:n], np.asarray(oracle, dtype=float)[:n]


__all__ = [
    "COMPARISON",
    "SOURCE",
    "ReferenceTrajectory",
    "contrastive_metrics",
    "openloop_metrics",
    "progress_completion_metrics",
]
