"""Benchmark: an improve run's judge recipe retrained with several training seeds, scored on the run's round-1 rollouts.

Why: issue 16's first bar asks for a judge worth trusting: ROC-AUC >= 0.95 and
precision >= 0.85 at its operating threshold on the terminal frames of round-1
rollouts it never saw, with a spread of at most 0.03 in ROC-AUC over 5 training
seeds. This takes a finished sim run directory and the config it ran (with the
same --set overrides), trains the judge exactly as the run does
(`app.improve.judge.train_judge` on the demonstrations and the calibration
episodes, cross-fitted folds where the config has them, never a rollout) with
training and split seeds moved by 0..N-1 (as a run seed moves them), and for
each seed reports:
- ROC-AUC, precision and recall on the run's round-1 rollouts (the oracle's
  flags), at the threshold the precision floor chose for the round
  (`app.improve.rules.check_threshold`) and at 0.5;
- what the floor read: precision and recall on the held-out calibration
  episodes.

Example (the result committed as benchmarks/results/improve_judge_seeds_pushcube.json):
    .venv/bin/python benchmarks/improve_judge_seeds.py --config configs/improve/pushcube_cpu.yaml \
        --run outputs/bench/improve_seeds/seed0-oracle --seeds 0 1 2 3 4 \
        --out benchmarks/results/improve_judge_seeds_pushcube.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.improve.config import ImproveConfig  # noqa: E402
from app.improve.judge import (calibration_label, held_out_calibration, held_out_scores, judge_episode,  # noqa: E402
                               load_judge, train_judge)
from app.improve.report import filter_metrics, phase_records  # noqa: E402
from app.improve.rules import check_threshold  # noqa: E402
from common.config import load_config  # noqa: E402
from lrm.evaluation.metrics import roc_auc  # noqa: E402
from recordings.store import EpisodeStore  # noqa: E402


def _at(scores: list[float], labels: list[bool], threshold: float) -> dict:
    m = filter_metrics([s >= threshold for s in scores], labels)
    return {"threshold": threshold, "precision": m["precision"], "recall": m["recall"],
            "kept": m["tp"] + m["fp"], "tp": m["tp"], "fp": m["fp"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="the config the run ran")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="the run's overrides")
    parser.add_argument("--run", type=Path, required=True, help="a finished sim run directory (round 1 rolled out)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--work", type=Path, help="where the judges go (default: RUN_judge_seeds)")
    parser.add_argument("--out", type=Path, help="also write the result JSON here")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    cfg = load_config(args.config, ImproveConfig, args.set)
    work = args.work or args.run.with_name(args.run.name + "_judge_seeds")
    rows = []
    with EpisodeStore.open(args.run / "store", mode="r") as store:
        demos = [r.index for r in store.episodes(source="demo", aborted=False)]
        calibration = [r.index for r in phase_records(store, 0, "calibration") if not r.meta.aborted]
        rollouts = [r.index for r in phase_records(store, 1, "rollout") if not r.meta.aborted]
        labels = [bool(store.record(i).meta.oracle_success) for i in rollouts]
        for seed in args.seeds:
            judge = dataclasses.replace(cfg, seed=seed).run_judge()  # the judge a run with this seed trains
            started = time.perf_counter()
            checkpoint = work / f"seed{seed}"
            train_judge(store, demos, calibration, judge, checkpoint, label_source=judge.calibration_labels,
                        progress=False)
            model = load_judge(judge, checkpoint)
            held = held_out_calibration(store, calibration, judge, judge.calibration_labels)
            check = check_threshold(held_out_scores(model, store, held, judge),
                                    [calibration_label(store, i, judge.calibration_labels) for i in held],
                                    how=judge.combine, threshold=judge.threshold, floor=judge.min_precision)
            scores = [judge_episode(model, store, i, judge).score for i in rollouts]
            row = {"seed": seed, "roc_auc": roc_auc(scores, [float(y) for y in labels]),
                   "at_operating_threshold": _at(scores, labels, check["threshold"]),
                   "at_0.5": _at(scores, labels, 0.5),
                   "held_out_calibration": {k: check.get(k) for k in ("episodes", "successes", "precision", "recall",
                                                                      "threshold", "action")},
                   "seconds": round(time.perf_counter() - started, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    aucs = [r["roc_auc"] for r in rows]
    precisions = [r["at_operating_threshold"]["precision"] for r in rows]
    summary = {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "run": str(args.run), "judge": {"folds": cfg.judge.folds, "calibration_episodes": cfg.judge.calibration_episodes,
                                        "min_precision": cfg.judge.min_precision},
        "round1_rollouts": len(rollouts), "round1_successes": sum(labels), "seeds": rows,
        "roc_auc_min": min(aucs), "roc_auc_spread": max(aucs) - min(aucs),
        "precision_min": min(p for p in precisions if p is not None) if any(p is not None for p in precisions) else None,
        "bars": {"roc_auc_at_least_0.95": min(aucs) >= 0.95, "spread_at_most_0.03": max(aucs) - min(aucs) <= 0.03,
                 "precision_at_least_0.85": all(p is not None and p >= 0.85 for p in precisions)},
    }
    print(f"ROC-AUC {[round(a, 4) for a in aucs]} (spread {summary['roc_auc_spread']:.4f}); precision at the operating "
          f"threshold {precisions}; {len(rollouts)} round-1 rollouts, {sum(labels)} successes")
    print("bars: " + json.dumps(summary["bars"]))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
