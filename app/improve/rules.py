"""The two rules that keep `lrm-robot improve` from ending worse than it began, on any task.

Neither rule knows the task: each reads only what every run has (the judge's
scores and labels of held-out calibration episodes; success flags on the same
evaluation seeds) and decides with a number from the config.

1. The judge's precision floor (`judge.min_precision`). Before a round's
   selection the judge scores the calibration episodes it never trained on
   (`held_out_calibration`, `held_out_scores`: a held-out fifth for one judge,
   every episode by the fold that held it out for `judge.folds`), each labelled
   by the oracle or the operator, and
   `check_threshold` measures the filter's precision and recall there at the
   configured threshold. Below the floor the round judges its rollouts at the
   lowest higher threshold whose calibration precision reaches the floor while
   still keeping at least one calibration success; if none does, the round's
   selection is skipped: it fine-tunes on nothing and its policy is the one it
   started from. Without a held-out calibration episode the precision cannot be
   measured, and without a kept one it is undefined; the threshold then stays.

2. Carry forward only what is not significantly worse (`eval.regression_alpha`).
   After a round's evaluation, `carry_forward` compares its per-seed success
   with the best policy so far on the same seeds by the exact McNemar test
   (`app.improve.report.mcnemar_exact`): a lower success with p < alpha is not
   carried forward, and the next round rolls out and fine-tunes the best
   checkpoint instead. Without paired flags (a robot's evaluation, no
   evaluation) the round is carried forward, as before these rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from app.improve.judge import combine
from app.improve.report import filter_metrics, mcnemar_exact

__all__ = ["carry_forward", "check_threshold"]


def _kept(scores: Sequence[Sequence[float]], how: str, threshold: float) -> list[bool]:
    return [combine(s, how, threshold)[0] for s in scores]


def check_threshold(scores: Sequence[Sequence[float]], labels: Sequence[bool], *, how: str, threshold: float,
                    floor: float) -> dict[str, Any]:
    """Rule 1 on held-out calibration episodes: per episode the P(completed) of its judged frames, and its label.

    Returns the measurement at `threshold` (`precision`, `recall`, `counts`) and
    the decision: `action` "kept" (at or above the floor, or not measurable),
    "raised" (`threshold` is the new one; `precision_after` / `recall_after`
    there) or "skip" (no threshold above the configured one reaches the floor
    with a kept success). The verdicts are `app.improve.judge.combine`'s, so a
    threshold here means what it means for a rollout.
    """
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scored episodes but {len(labels)} labels")
    labels = [bool(x) for x in labels]
    out: dict[str, Any] = {"episodes": len(scores), "successes": sum(labels), "min_precision": floor,
                           "configured_threshold": threshold, "threshold": threshold}
    if not scores:
        return {**out, "precision": None, "recall": None, "action": "kept",
                "reason": "no held-out calibration episode: precision not measured"}
    m = filter_metrics(_kept(scores, how, threshold), labels)
    out.update(precision=m["precision"], recall=m["recall"],
               counts={k: m[k] for k in ("tp", "fp", "fn", "tn")})
    if m["precision"] is None:
        return {**out, "action": "kept",
                "reason": "the judge keeps no held-out calibration episode: precision undefined"}
    if m["precision"] >= floor:
        return {**out, "action": "kept"}
    # acceptance only changes at a frame's P or an episode's mean P: those above the threshold are every candidate
    candidates = sorted({x for s in scores for x in (*s, combine(s, how, threshold)[1]) if threshold < x < 1.0})
    for t in candidates:
        after = filter_metrics(_kept(scores, how, t), labels)
        if after["tp"] >= 1 and after["precision"] >= floor:
            return {**out, "action": "raised", "threshold": float(t), "precision_after": after["precision"],
                    "recall_after": after["recall"]}
    return {**out, "action": "skip",
            "reason": "no higher threshold reaches the floor while keeping a calibration success"}


def carry_forward(earlier: Mapping[int, Mapping[str, Any]], round_: int, current: Mapping[str, Any], *,
                  alpha: float) -> dict[str, Any]:
    """Rule 2: is round `round_`'s policy carried forward, and which round's policy does the next round start from?

    `earlier` maps each evaluated round before this one to its evaluation
    (`successes`, `success_flags`), `current` is this round's. The best so far
    is the earlier round with the most successes on the same seeds (the latest
    of equals: the line the run is on). Returns `carried_forward`, `next_from`
    (this round, or the best), `best_round` and `vs_best` (the test, best vs
    this round), or a `reason` why no test was made.
    """
    flags = current.get("success_flags")
    if not flags:
        return {"carried_forward": True, "next_from": round_, "best_round": None, "vs_best": None,
                "reason": "no per-seed success flags (no paired test)"}
    paired = {r: e for r, e in earlier.items() if r < round_ and e.get("success_flags")
              and len(e["success_flags"]) == len(flags)}
    if not paired:
        return {"carried_forward": True, "next_from": round_, "best_round": None, "vs_best": None,
                "reason": "no earlier round evaluated on the same seeds"}
    best = max(paired, key=lambda r: (sum(map(bool, paired[r]["success_flags"])), r))
    best_flags = [bool(x) for x in paired[best]["success_flags"]]
    test = mcnemar_exact(best_flags, [bool(x) for x in flags], alpha=alpha)
    worse = sum(map(bool, flags)) < sum(best_flags) and test["p_value"] < alpha
    return {"carried_forward": not worse, "next_from": best if worse else round_, "best_round": best,
            "vs_best": test}
