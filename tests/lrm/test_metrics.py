"""lrm.evaluation.metrics against cases computed by hand (values in the comments), ties and degenerate inputs included."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lrm.evaluation import metrics as m

# --------------------------------------------------------------------------- contrastive


def test_kendall_tau_without_ties():
    # pairs of (1,2,3,4) vs (1,3,2,4): 5 concordant, 1 discordant -> (5 - 1) / 6
    assert m.kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)


def test_kendall_tau_b_with_ties():
    # x=(1,2,2,3), y=(1,2,3,3): C=4, D=0, one pair tied in x, one in y -> 4 / sqrt(5 * 5)
    assert m.kendall_tau([1, 2, 2, 3], [1, 2, 3, 3]) == pytest.approx(0.8)
    assert m.kendall_tau([4, 3, 2, 1], [1, 2, 3, 4]) == pytest.approx(-1.0)


def test_spearman_without_and_with_ties():
    # no ties: 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 2 / 60
    assert m.spearman_rho([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    # ranks (1, 2.5, 2.5, 4) and (1, 2, 3.5, 3.5): deviations dot 3.75, norms^2 4.5 and 4.5
    assert m.spearman_rho([1, 2, 2, 3], [1, 2, 3, 3]) == pytest.approx(3.75 / 4.5)


def test_correlations_of_constant_input_are_nan():
    assert math.isnan(m.kendall_tau([1, 1, 1], [1, 2, 3]))
    assert math.isnan(m.spearman_rho([1, 2, 3], [0, 0, 0]))
    assert math.isnan(m.pearson([5, 5, 5], [1, 2, 3]))
    assert math.isnan(m.pearson([1.0], [2.0]))


def test_direction_accuracy_skips_zero_truth_and_counts_zero_prediction_wrong():
    # entries with truth 1, -1, 1 count; predictions 0.5 (right), -1 (right), 0 (wrong)
    assert m.direction_accuracy([0.5, -1, 0, 1], [1, -1, 1, 0]) == pytest.approx(2 / 3)
    assert math.isnan(m.direction_accuracy([1, -1], [0, 0]))


def test_length_mismatch_names_the_metric():
    with pytest.raises(ValueError, match="kendall_tau"):
        m.kendall_tau([1, 2, 3], [1, 2])


# --------------------------------------------------------------------------- progress

PRED = [0.0, 0.14, 0.31, 0.9, 1.0]
TRUTH = [0.0, 0.1, 0.1, 0.6, 0.5]  # errors 0, .04, .21, .3, .5


def test_progress_exact_accuracy_snaps_to_grid():
    # snapped predictions 0, 1, 3, 9, 10 vs truth 0, 1, 1, 6, 5
    assert m.progress_exact_accuracy(PRED, TRUTH) == pytest.approx(2 / 5)
    assert m.progress_exact_accuracy([0.05, 0.149], [0.1, 0.1]) == 1.0  # halves round up


def test_progress_accuracy_within_includes_the_boundary():
    assert m.progress_accuracy_within(PRED, TRUTH, 0.1) == pytest.approx(2 / 5)
    assert m.progress_accuracy_within(PRED, TRUTH, 0.2) == pytest.approx(2 / 5)
    # 0.9 - 0.6 is 0.30000000000000004 in floats and still counts as within 0.3
    assert m.progress_accuracy_within(PRED, TRUTH, 0.3) == pytest.approx(4 / 5)


def test_mae_rmse():
    assert m.mae(PRED, TRUTH) == pytest.approx(1.05 / 5)
    assert m.rmse(PRED, TRUTH) == pytest.approx(math.sqrt((0.0016 + 0.0441 + 0.09 + 0.25) / 5))
    assert math.isnan(m.mae([], []))


def test_cumulative_curve():
    tol, acc = m.cumulative_accuracy_curve(PRED, TRUTH, [0.0, 0.05, 0.25, 1.0])
    np.testing.assert_allclose(acc, [0.2, 0.4, 0.6, 1.0])
    tol, acc = m.cumulative_accuracy_curve(PRED, TRUTH)
    assert tol[0] == 0.0 and tol[-1] == 1.0 and len(tol) == 101
    assert np.all(np.diff(acc) >= 0) and acc[-1] == 1.0


def test_progress_metrics_dict():
    d = m.progress_metrics(PRED, TRUTH)
    assert d["accuracy_within_0.3"] == pytest.approx(0.8)
    assert d["exact_accuracy"] == pytest.approx(0.4)
    assert d["n"] == 5
    assert len(d["cumulative_curve"]["tolerance"]) == len(d["cumulative_curve"]["accuracy"]) == 101


# --------------------------------------------------------------------------- completion


def test_binary_metrics_by_hand():
    # thresholded (>= 0.5): 1 0 1 0 1 vs 1 0 0 1 1 -> tp 2, fp 1, tn 1, fn 1
    d = m.binary_metrics([0.9, 0.2, 0.6, 0.4, 0.5], [1, 0, 0, 1, 1])
    assert (d["tp"], d["fp"], d["tn"], d["fn"]) == (2, 1, 1, 1)
    assert d["accuracy"] == pytest.approx(3 / 5)
    assert d["precision"] == pytest.approx(2 / 3)
    assert d["recall"] == pytest.approx(2 / 3)
    assert d["f1"] == pytest.approx(2 / 3)


def test_binary_metrics_booleans_and_degenerate():
    counts = m.confusion_counts(np.array([True, False]), np.array([False, False]))
    assert counts == {"tp": 0, "fp": 1, "tn": 1, "fn": 0}
    assert math.isnan(m.recall(counts))  # nothing actually positive
    nothing_predicted = m.confusion_counts([0, 0], [1, 0])
    assert math.isnan(m.precision(nothing_predicted))
    assert m.f1(nothing_predicted) == 0.0  # a positive was missed
    all_negative = m.binary_metrics([0, 0], [0, 0])
    assert all_negative["accuracy"] == 1.0
    assert math.isnan(all_negative["f1"])


# --------------------------------------------------------------------------- trajectories


def test_roc_auc_by_hand_and_ties():
    # positives 0.35, 0.8 vs negatives 0.1, 0.4: 3 of 4 pairs right
    assert m.roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    # positives 0.5, 0.9 vs negatives 0.5, 0.2: one tie (1/2) + 3 right -> 3.5 / 4
    assert m.roc_auc([0.5, 0.5, 0.2, 0.9], [1, 0, 0, 1]) == pytest.approx(0.875)
    assert m.roc_auc([0.3, 0.3, 0.3], [1, 0, 1]) == pytest.approx(0.5)


def test_roc_auc_one_class_is_nan():
    assert math.isnan(m.roc_auc([0.1, 0.9], [1, 1]))
    assert math.isnan(m.roc_auc([0.1, 0.9], [0, 0]))
    assert m.roc_curve([0.1], [1])[0].size == 0


def test_roc_curve_with_ties_by_hand():
    fpr, tpr = m.roc_curve([0.5, 0.5, 0.2, 0.9], [1, 0, 0, 1])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 1, 1])
    assert np.trapezoid(tpr, fpr) == pytest.approx(0.875)


def test_pairwise_accuracy_strict_ties():
    assert m.pairwise_accuracy([0.5, 0.5, 0.2, 0.9], [1, 0, 0, 1]) == pytest.approx(0.75)
    assert m.pairwise_accuracy([0.3, 0.3, 0.3], [1, 0, 1]) == 0.0
    # continuous targets: pairs (0,1) right, (0,2) right, (1,2) wrong
    assert m.pairwise_accuracy([0.1, 0.5, 0.4], [0.0, 0.2, 0.6]) == pytest.approx(2 / 3)
    assert math.isnan(m.pairwise_accuracy([0.1, 0.2], [1, 1]))


def test_pearson_by_hand():
    # deviations (-1, 0, 1) and (-7/3, -1/3, 8/3): 5 / sqrt(2 * 114 / 9)
    assert m.pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(15 / math.sqrt(228))


def test_monotonicity_and_voc():
    assert m.monotonicity([0.1, 0.3, 0.2, 0.2, 0.5]) == pytest.approx(3 / 4)  # one drop, a flat step counts
    assert math.isnan(m.monotonicity([0.4]))
    # (0, .5, 1) vs time: 1; (.2, .1, .3) vs time: 0.1 / sqrt(2 * 0.02) = 0.5; constant left out
    value, n = m.voc([[0, 0.5, 1], [0.2, 0.1, 0.3], [0.4, 0.4, 0.4]])
    assert value == pytest.approx(0.75) and n == 2
    value, n = m.voc([[0.4, 0.4]])
    assert math.isnan(value) and n == 0


REWARDS = [[0, 0.5, 1], [0.2, 0.1, 0.3], [0.3, 0.3], [0.0, 0.1]]  # means .5, .2, .3, .05
SUCCESS = [True, True, False, False]


def test_trajectory_metrics_by_hand():
    d = m.trajectory_metrics(REWARDS, SUCCESS)
    assert d["n_trajectories"] == 4 and d["n_success"] == 2
    # mean scores: (A .5, B .2) vs (C .3, D .05): B < C only -> 3 / 4
    assert d["roc_auc"] == pytest.approx(0.75)
    assert d["pairwise_accuracy"] == pytest.approx(0.75)
    assert d["monotonicity_success"] == pytest.approx(0.75)  # A 1, B 1/2
    assert d["voc"] == pytest.approx(0.75) and d["voc_n"] == 2
    # point-biserial over the 10 steps: cov sum 0.42, flag var sum 2.4, reward var sum 0.796
    assert d["pearson_global"] == pytest.approx(0.42 / math.sqrt(2.4 * 0.796))
    assert math.isnan(d["pearson_per_trajectory"]) and d["pearson_per_trajectory_n"] == 0


def test_trajectory_metrics_final_score_and_oracle_values():
    oracle = [[0, 1, 2], [0, 1, 2], [1, 1], [0, 1]]
    d = m.trajectory_metrics(REWARDS, SUCCESS, oracle_values=oracle, score="final")
    # final scores A 1, B .3 vs C .3, D .1: one tie -> AUC 3.5 / 4, strict pairwise 3 / 4
    assert d["roc_auc"] == pytest.approx(0.875)
    assert d["pairwise_accuracy"] == pytest.approx(0.75)
    # per trajectory: 1, 0.5, (constant oracle, left out), 1
    assert d["pearson_per_trajectory"] == pytest.approx(2.5 / 3) and d["pearson_per_trajectory_n"] == 3
    flat_r = np.concatenate([np.asarray(r, float) for r in REWARDS])
    flat_o = np.concatenate([np.asarray(o, float) for o in oracle])
    assert d["pearson_global"] == pytest.approx(np.corrcoef(flat_r, flat_o)[0, 1])


def test_trajectory_metrics_bad_input():
    with pytest.raises(ValueError, match="success flags"):
        m.trajectory_metrics(REWARDS, [True])
    with pytest.raises(ValueError, match="oracle_values"):
        m.trajectory_metrics(REWARDS, SUCCESS, oracle_values=[[0, 1, 2]] * 4)
    with pytest.raises(ValueError, match="unknown score"):
        m.trajectory_metrics(REWARDS, SUCCESS, score="median")


def test_contrastive_metrics_dict():
    d = m.contrastive_metrics([1, -1, 1, 1], [1, -1, -1, 1])
    assert d["direction_accuracy"] == pytest.approx(3 / 4)
    assert d["n"] == 4
    assert d["kendall_tau"] == pytest.approx(m.kendall_tau([1, -1, 1, 1], [1, -1, -1, 1]))
