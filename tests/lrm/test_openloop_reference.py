"""The LRM paper's open-loop metrics (lrm.evaluation.openloop_reference), each worked out by hand."""

from __future__ import annotations

import math

import pytest

from lrm.evaluation.openloop_reference import (
    ReferenceTrajectory,
    contrastive_metrics,
    openloop_metrics,
    progress_completion_metrics,
)

NAN = float("nan")


def traj(success: bool, scores, oracle=(), cumulative=None, total=None) -> ReferenceTrajectory:
    return ReferenceTrajectory(success, list(scores), list(oracle), cumulative, total)


def test_roc_auc_and_pairwise_accuracy_of_final_scores_with_ties() -> None:
    # final scores: successes 0.9 and 0.5, failures 0.5 and 0.2 (earlier scores do not count).
    # (success, failure) pairs: 0.9>0.5 won, 0.9>0.2 won, 0.5=0.5 tied, 0.5>0.2 won.
    # ROC-AUC gives a tie half: (3 + 0.5) / 4 = 0.875; pairwise accuracy calls it wrong: 3 / 4 = 75 %.
    ts = [traj(True, [0.0, 0.9]), traj(True, [1.0, 0.5]), traj(False, [0.9, 0.5]), traj(False, [0.2])]
    out = progress_completion_metrics(ts)
    assert out["roc_auc"] == 0.875 and out["pairwise_acc_pct"] == 75.0
    # one outcome only: neither is defined, and the keys are absent (not null), as the reference
    out = progress_completion_metrics([traj(True, [0.2]), traj(True, [0.9])])
    assert "roc_auc" not in out and "pairwise_acc_pct" not in out


def test_global_pearson_of_per_trajectory_sums_against_total_oracle_reward() -> None:
    # sums of all scores: 0.5 + 0.5 = 1, 1 + 1 = 2, 1 + 2 = 3; total oracle rewards 1, 3, 2.
    # deviations (-1, 0, 1) and (-1, 1, 0): r = 1 / (sqrt(2) sqrt(2)) = 0.5
    ts = [traj(True, [0.5, 0.5], total=1.0), traj(False, [1, 1], total=3.0), traj(True, [1, 2], total=2.0)]
    assert progress_completion_metrics(ts)["global_pearson"] == pytest.approx(0.5)
    # the total defaults to the last cumulative oracle value: cumulative sums of (1, 0), (1, 2), (1, 1) -> 1, 3, 2
    ts = [traj(True, [0.5, 0.5], [1, 0]), traj(False, [1, 1], [1, 2]), traj(True, [1, 2], [1, 1])]
    assert progress_completion_metrics(ts)["global_pearson"] == pytest.approx(0.5)
    # fewer than 3 trajectories, a constant side, or a spread of 1e-9 (below 1e-8): absent
    assert "global_pearson" not in progress_completion_metrics(ts[:2])
    flat = [traj(True, [1], total=t) for t in (1.0, 2.0, 3.0)]
    assert "global_pearson" not in progress_completion_metrics(flat)
    tiny = [traj(True, [1 + k * 1e-9], total=float(k)) for k in range(3)]
    assert "global_pearson" not in progress_completion_metrics(tiny)
    # a NaN sum makes np.std NaN, which fails "> 1e-8": absent
    assert "global_pearson" not in progress_completion_metrics([*ts, traj(False, [NAN], total=5.0)])


def test_per_trajectory_pearson_pairs_scores_and_cumulative_oracle_by_position() -> None:
    # A: scores 0, 1, 2 against cumulative 0, 2, 4 (the 4th step, 100, is cut): r = 1.
    # B: scores 3, 1, 2 against 1, 2, 3 (the cumulative sum of per-step rewards 1, 1, 1):
    #    deviations (1, -1, 0) and (-1, 0, 1): r = -1 / 2 = -0.5.
    # Left out: C has 2 points, D constant scores, E a NaN score (r is NaN).
    ts = [
        traj(True, [0, 1, 2], cumulative=[0, 2, 4, 100]),
        traj(False, [3, 1, 2], oracle=[1, 1, 1]),
        traj(True, [0, 1], cumulative=[0, 1]),
        traj(True, [0.4, 0.4, 0.4], cumulative=[0, 1, 2]),
        traj(False, [0, NAN, 1], cumulative=[0, 1, 2]),
    ]
    assert progress_completion_metrics(ts)["per_traj_pearson"] == pytest.approx((1.0 - 0.5) / 2)
    # a cumulative trace of zeros is replaced by the cumulative sum of the per-step rewards (0, 1, 3)
    r = progress_completion_metrics([traj(True, [0, 1, 3], oracle=[0, 1, 2], cumulative=[0, 0, 0])])
    assert r["per_traj_pearson"] == pytest.approx(1.0)
    # scores taken every K steps are still paired with steps 0, 1, 2 (the reference's positional pairing)
    r = progress_completion_metrics([traj(True, [0, 1, 2], cumulative=[0, 5, 5, 5, 5, 9])])
    assert r["per_traj_pearson"] == pytest.approx(math.sqrt(3) / 2)  # (0,1,2) vs (0,5,5): r = 5 / (sqrt(2) sqrt(50/3))
    assert "per_traj_pearson" not in progress_completion_metrics(ts[2:4])  # none left


def test_direction_accuracy_counts_ties_and_progress_recall() -> None:
    # T1 pairs (score, per-step oracle reward): (0,0) right (a tie of zeros), (1,.2) right,
    #    (-1,-.1) right, (0,.3) wrong, (1,0) wrong.
    # T2: (0,.1) wrong, (1,.5) right; its third oracle step has no score and is cut.
    # pooled: 4 right of 7 = 57.14 %. Oracle > 0 at .2, .3 (T1), .1, .5 (T2); scored > 0 at .2 and .5: 50 %.
    t1 = traj(True, [0, 1, -1, 0, 1], [0, 0.2, -0.1, 0.3, 0])
    t2 = traj(False, [0, 1], [0.1, 0.5, 0.7])
    out = contrastive_metrics([t1, t2])
    assert out["direction_acc_pct"] == pytest.approx(400 / 7) and out["progress_recall_pct"] == 50.0
    # monotonicity on successes only: T1's cumulative score 0, 1, 0, 0, 1 has increments 1, -1, 0, 1,
    # of which 3 of 4 are >= 0; T2 failed, T3 has one score: 0.75
    t3 = traj(True, [0], [0.0])
    assert contrastive_metrics([t1, t2, t3])["monotonicity_success"] == 0.75


def test_contrastive_edge_cases() -> None:
    # no oracle rewards at all: no pairs, no direction or recall; monotonicity needs none
    out = contrastive_metrics([traj(True, [0, 1, 1])])
    assert out == {"monotonicity_success": 1.0}
    # no step made progress: no recall; both directions wrong where the oracle stood still
    out = contrastive_metrics([traj(False, [0, 1, -1], [0, 0, 0])])
    assert out == {"direction_acc_pct": pytest.approx(100 / 3)}
    # a NaN score is a wrong direction and no recalled progress; in the cumulative score it makes
    # every later increment NaN, i.e. not >= 0: increments 1, nan, nan, nan -> 1 / 4
    out = contrastive_metrics([traj(True, [0, 1, NAN, 1, 1], [0, 1, 1, 1, 1])])
    assert out["direction_acc_pct"] == 80.0 and out["progress_recall_pct"] == 75.0
    assert out["monotonicity_success"] == 0.25


def test_nan_final_scores_and_empty_inputs() -> None:
    # finals: successes NaN and 0.9, failure 0.5: NaN > 0.5 is false, so 1 of 2 pairs is right;
    # the reference's sklearn call would raise on the NaN, here roc_auc is left out instead
    out = progress_completion_metrics([traj(True, [NAN]), traj(True, [0.9]), traj(False, [0.5])])
    assert out == {"pairwise_acc_pct": 50.0}
    # any trajectory without scores: the reference reports nothing for the mode
    with_empty = [traj(True, [0.9], [0.1]), traj(False, [], [0.1])]
    assert progress_completion_metrics(with_empty) == {} and contrastive_metrics(with_empty) == {}
    assert progress_completion_metrics([]) == {} and contrastive_metrics([]) == {}
    report = openloop_metrics(with_empty, "progress")
    assert report["metrics"] == {} and "no scores" in report["warning"]
    assert report["meta"] == {"n_trajectories": 2, "n_success": 1, "n_failure": 1}


def test_the_mode_picks_the_metrics() -> None:
    ts = [traj(True, [0, 1, 1], [0, 1, 1]), traj(False, [0, -1, 1], [0, -1, 0])]
    comparison = openloop_metrics(ts, "comparison")
    assert comparison["mode"] == "comparison" and "warning" not in comparison
    assert set(comparison["metrics"]) == {"direction_acc_pct", "progress_recall_pct", "monotonicity_success"}
    # (0,0) (1,1) (1,1) right; (0,0) (-1,-1) right, (1,0) wrong: 5 / 6
    assert comparison["metrics"]["direction_acc_pct"] == pytest.approx(500 / 6)
    progress = openloop_metrics(ts, "progress")
    assert set(progress["metrics"]) == {"roc_auc", "pairwise_acc_pct", "per_traj_pearson"}  # 2 trajectories: no global
    assert progress["metrics"]["roc_auc"] == 0.5 and progress["metrics"]["pairwise_acc_pct"] == 0.0  # finals tie at 1
