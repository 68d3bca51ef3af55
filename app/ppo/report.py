"""Per-iteration metrics of a PPO run: how well the reward agreed with the simulator, and where they go.

`agreement(queries, success)` compares every reward-model query of one
iteration with the simulator's values at the same moment (the oracle):

- absolute modalities (progress, completion) and the mixed reward: ROC-AUC
  and pairwise accuracy of each env's mean queried reward against the env's
  oracle success, Pearson of every query against the oracle dense reward
  (global) and per trajectory (`lrm.evaluation.metrics.trajectory_metrics`);
- contrastive: direction accuracy against the sign of the oracle dense
  reward's change since the env's previous query, progress recall (the same
  over the queries where the oracle did progress), and monotonicity of the
  implied progress (the running sum of r_cont) in successful episodes.

`MetricsLog` appends one JSON line per iteration to OUTPUT/metrics.jsonl and
rebuilds OUTPUT/metrics.rrd (rerun scalars on an `iteration` timeline) and
OUTPUT/learning_curve.png from the whole file each time, so a resumed run's
plots cover the iterations before the restart too. Its `tracker` (common.tracking,
without `jsonl`: the file above is PPO's own, in its own format) gets the
same row at step = iteration, for TensorBoard or W&B.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.ppo.rewards import QueryRecord
from common.tracking import read_rows
from lrm.evaluation import metrics as M

log = logging.getLogger(__name__)

__all__ = ["MetricsLog", "agreement"]

# key -> panel title; a title says which units a value is in where scaling could mislead
CURVES = {"success_rate": "success rate (sampled actions)", "mean_reward": "reward per step (unscaled)",
          "mean_return": "return of a first decision (scaled)", "explained_variance_before": "explained variance",
          "approx_kl": "approx KL", "clipfrac": "clip fraction", "entropy": "entropy", "std": "exploration std",
          "env_steps_per_s": "env steps per s"}


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; None reads as "undefined this iteration"
    if isinstance(value, (np.floating, np.integer)):
        return _clean(value.item())
    return value


def agreement(queries: Sequence[QueryRecord], success: np.ndarray) -> dict[str, Any]:
    """Reward-vs-oracle agreement of one iteration's queries (module doc); keys `<modality>/<metric>`."""
    if not queries:
        return {}
    by_env: dict[int, list[QueryRecord]] = defaultdict(list)
    for q in queries:
        by_env[q.env].append(q)
    envs = sorted(by_env)
    flags = np.array([bool(success[e]) for e in envs])
    dense = [np.array([q.dense_reward for q in by_env[e]]) for e in envs]
    out: dict[str, Any] = {}
    modalities = sorted({m for q in queries for m in q.values})
    series = {m: [np.array([q.values.get(m, np.nan) for q in by_env[e]]) for e in envs] for m in modalities}
    series["reward"] = [np.array([q.reward for q in by_env[e]]) for e in envs]
    for name, traces in series.items():
        if name == "contrastive":
            out.update(_contrastive(traces, dense, flags))
            continue
        stats = M.trajectory_metrics(traces, flags, oracle_values=dense)
        for key in ("roc_auc", "pairwise_accuracy", "pearson_global", "pearson_per_trajectory"):
            out[f"{name}/{key}"] = stats[key]
    return out


def _contrastive(traces: list[np.ndarray], dense: list[np.ndarray], flags: np.ndarray) -> dict[str, float]:
    predicted, truth = [], []
    for values, oracle in zip(traces, dense, strict=True):
        predicted.append(values[1:])  # the first query has nothing to compare with
        truth.append(np.diff(oracle))
    p = np.concatenate(predicted) if predicted else np.array([])
    t = np.concatenate(truth) if truth else np.array([])
    t = np.where(np.abs(t) <= 1e-3, 0.0, t)  # the oracle backend's "no change" tolerance
    rising = t > 0
    mono = [M.monotonicity(np.cumsum(v)) for v, f in zip(traces, flags, strict=True) if f and v.size > 1]
    mono = [m for m in mono if not np.isnan(m)]
    return {
        "contrastive/direction_accuracy": M.direction_accuracy(p, t) if p.size else float("nan"),
        "contrastive/progress_recall": M.direction_accuracy(p[rising], t[rising]) if rising.any() else float("nan"),
        "contrastive/monotonicity": float(np.mean(mono)) if mono else float("nan"),
    }


class MetricsLog:
    """OUTPUT/metrics.jsonl (+ .rrd, + learning_curve.png); `truncate(n)` drops rows of iterations >= n."""

    def __init__(self, out: Path, *, rerun: bool = True, plot: bool = True, title: str = "PPO",
                 tracker: Any = None) -> None:
        self.path = out / "metrics.jsonl"
        self.rrd = out / "metrics.rrd"
        self.png = out / "learning_curve.png"
        self.rerun, self.plot, self.title = rerun, plot, title
        self.tracker = tracker  # a common.tracking.Tracker without jsonl, or None

    def rows(self) -> list[dict[str, Any]]:
        return read_rows(self.path)

    def truncate(self, iterations: int) -> None:
        """Keep only rows of iterations already covered by the checkpoint a run resumes from."""
        rows = [r for r in self.rows() if r["iteration"] < iterations]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def append(self, row: dict[str, Any]) -> None:
        row = {k: _clean(v) for k, v in row.items()}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tracker is not None:
            self.tracker.log({k: v for k, v in row.items() if k != "iteration"}, row["iteration"])
        rows = self.rows()
        if self.rerun:
            self._write_rerun(rows)
        if self.plot:
            self._write_png(rows)

    def _write_rerun(self, rows: list[dict[str, Any]]) -> None:
        import rerun as rr

        rec = rr.RecordingStream("lrm-robot-ppo")
        tmp = self.rrd.with_suffix(".rrd.tmp")
        rec.save(str(tmp))
        keys = sorted({k for r in rows for k, v in r.items() if isinstance(v, (int, float)) and k != "iteration"})
        iterations = np.array([r["iteration"] for r in rows], dtype=np.int64)
        for key in keys:
            values = np.array([r.get(key) if isinstance(r.get(key), (int, float)) else np.nan for r in rows], float)
            keep = ~np.isnan(values)
            if keep.any():
                rr.send_columns(f"ppo/{key}", indexes=[rr.TimeColumn("iteration", sequence=iterations[keep])],
                                columns=rr.Scalars.columns(scalars=values[keep]), recording=rec)
        rec.flush()
        rec.disconnect()
        tmp.replace(self.rrd)

    def _write_png(self, rows: list[dict[str, Any]]) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        steps = [r["env_steps"] for r in rows]
        cols = 3
        fig, grid = plt.subplots(-(-len(CURVES) // cols), cols, figsize=(4 * cols, 3 * -(-len(CURVES) // cols)))
        for ax, (key, title) in zip(grid.flat, CURVES.items(), strict=False):
            ax.plot(steps, [r.get(key) if r.get(key) is not None else np.nan for r in rows], marker="o", ms=3)
            ax.set_title(title)
            ax.set_xlabel("env steps")
            ax.grid(alpha=0.3)
        fig.suptitle(self.title)
        fig.tight_layout()
        tmp = self.png.with_suffix(".tmp.png")
        fig.savefig(tmp, dpi=80)
        plt.close(fig)
        tmp.replace(self.png)
