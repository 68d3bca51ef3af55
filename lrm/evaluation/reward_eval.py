"""The reward-quality suite: score held-out episodes with any backend and compare with ground truth.

`lrm-robot eval-reward --config CONFIG` (configs/lrm/eval/*.yaml) runs
`run_reward_eval`; `evaluate_reward_model` does the work for any RewardModel
object (the benchmark also passes floors that are not backends).

Episodes: the sources (episode stores and/or LeRobotDatasets) go through the
dataset builder with the config's `dataset` section, so `split: val` gives
exactly the episodes a model trained with the same `dataset` section never
saw (same seed, same val_fraction); `split: all` evaluates every usable
episode (e.g. tasks the model never saw). Ground truth, per episode:
time-based progress (keyframe p = t / (T - 1)) on successful episodes, and the
success verdict (the simulator's oracle in sim).

What is measured (lrm.evaluation.metrics for the definitions):
- progress, on the keyframe examples of successful episodes: exact
  accuracy on the 0.1 grid, accuracy within 0.1 / 0.2 / 0.3, MAE, RMSE and the
  cumulative accuracy-vs-tolerance curve;
- completion, on the completion examples (final frames of successes vs
  non-final, failed and clipped frames; a value >= 0.5 means "completed"):
  accuracy, precision, recall, F1, and accuracy per kind of example;
- contrastive: direction accuracy over the pair examples; and, per
  successful episode, a full round robin of its keyframes (every ordered pair,
  `contrastive_ranking`) ranks them by a Borda score (each pair adds the
  predicted value to its "current" frame and subtracts it from its
  "previous" one); Kendall tau and Spearman rho between that score and time,
  averaged over episodes. A complete round robin in both orders is what makes
  the ranking fair: a backend that always answers "current" gives every frame
  the same score (no ranking, NaN), not a perfect one;
- per trajectory, for each of `trajectory_modalities`: every `every`-th
  frame of each episode (and its last) is scored as the RL loop would
  (`lrm.evaluation.score_episode`), and the trace is compared with the oracle: ROC-AUC
  and pairwise accuracy of the trajectory score against success, global and
  per-trajectory Pearson against the stored `dense_reward` trace where every
  episode has one (else global Pearson against the success flag),
  monotonicity and VOC on successes;
- beside those, under "openloop_reference", the same traces measured exactly as
  the LRM paper's evaluation script measures them (lrm.evaluation.openloop_reference,
  its key names): ROC-AUC and pairwise accuracy of each trajectory's final
  score, global Pearson of per-trajectory sums against the total oracle reward,
  per-trajectory Pearson against the cumulative oracle reward (progress,
  completion); direction accuracy counting ties, progress recall and
  monotonicity of the cumulative score (contrastive). The oracle there is the
  `dense_reward` trace read as the reference's env reward: per step the change
  dense[t] - dense[t - 1] (from 0 before the first frame, as a relative reward
  starts), cumulative dense[t]; an episode without the trace has no oracle
  rewards, and the metrics that need them are left out, as there. The scores
  are those of the trajectory section: every `every`-th frame and the last
  (the reference scores progress so, completion at every frame: equal for
  `every: 1`); for contrastive the `every` grid only, its first entry the
  first query's 0, as the reference's placeholder. As there, the k-th score
  meets the oracle's k-th step, position by position: exact for `every: 1`,
  the reference's own pairing otherwise.

Video models are told the rate of the frames they get (the source's fps, and
fps / `every` for the query frames of a trajectory), so that a baseline shows
them at its own rate (lrm.backends.video).

The `oracle` backend reads the simulator's values from the stored
`dense_reward` / `success` traces, as `lrm-robot score` does.

`run_reward_eval` also logs the summary numbers (`summary_metrics`: one row,
step 0) to the run's tracker, `report_to` (common.tracking): OUTPUT/metrics.jsonl,
written anew each run like metrics.json, and TensorBoard / W&B.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TYPE_CHECKING

import numpy as np

from common.config import ConfigFile, config_file, config_to_dict
from common.numbers import Count, Pixels, Positive
from common.tracking import ReportTo, make_tracker, parse_report_to, report_to_field
from lrm.backends import RewardBackendConfig, build_reward_backend
from lrm.evaluation import metrics, openloop_reference
from lrm.evaluation.score_episode import query_steps, score_query_frames
from lrm.training.dataset import DatasetConfig, Example, build_dataset, episode_outcome, keyframe_indices
from lrm.types import MODALITIES, Reward, RewardModel, RewardRequest, resize_image
from recordings.selection import hash_rank

if TYPE_CHECKING:
    from recordings.episode import EpisodeSource

log = logging.getLogger(__name__)

__all__ = [
    "ConstantRewardModel",
    "RewardEvalConfig",
    "evaluate_reward_model",
    "evaluation_episodes",
    "run_reward_eval",
    "to_jsonable",
    "write_report",
]


@dataclass
class RewardEvalConfig:
    """One evaluation run (module doc); configs/lrm/eval/*.yaml."""

    sources: list[str] = field(default_factory=list)  # episode stores and/or LeRobotDatasets
    assume_success: bool | None = None  # for LeRobotDatasets without a verdict (lrm.lerobot_source)
    # a backend YAML, configs/lrm/backends/*.yaml, loaded with this config, `backend_overrides` applied
    backend: ConfigFile[RewardBackendConfig] = config_file(RewardBackendConfig, overrides="backend_overrides")
    backend_overrides: list[str] = field(default_factory=list)  # KEY=VALUE, as `--set` of `score`
    dataset: DatasetConfig = field(default_factory=lambda: DatasetConfig(contrastive_pairs_per_episode=20))
    split: Literal["val", "all"] = "val"
    max_episodes: Count | None = None  # a seeded pick, successes and failures alternating
    modalities: list[str] | None = None  # example-level modalities; None: all the backend answers
    trajectory_modalities: list[str] = field(default_factory=lambda: ["progress"])
    every: Positive = 1  # query every K frames along a trajectory
    trajectory_score: str = "mean"  # mean | final | max reward of a trajectory, for ROC-AUC / pairwise
    image_size: list[Pixels] | None = None  # [H, W] frames are resized to before scoring; None: as stored
    batch_requests: Count = 64
    output_dir: str = "outputs/eval_reward"
    plots: bool = True
    max_plotted_trajectories: int = 40
    contrastive_ranking: bool = True  # the keyframe round robin for Kendall tau / Spearman rho (module doc)
    report_to: ReportTo = report_to_field()  # jsonl (OUTPUT/metrics.jsonl), tensorboard, wandb, none (common.tracking)

    def __post_init__(self) -> None:
        self.report_to = parse_report_to(self.report_to)
        if self.every < 1:
            raise ValueError(f"every must be at least 1, got {self.every}")
        if self.trajectory_score not in metrics.TRAJECTORY_SCORES:
            raise ValueError(f"trajectory_score must be one of {metrics.TRAJECTORY_SCORES}, got {self.trajectory_score!r}")
        for name, values in (("modalities", self.modalities or []), ("trajectory_modalities", self.trajectory_modalities)):
            unknown = [m for m in values if m not in MODALITIES]
            if unknown:
                raise ValueError(f"{name}: unknown modalities {unknown}, expected some of {MODALITIES}")
        if self.image_size is not None and (len(self.image_size) != 2 or min(self.image_size) < 8):
            raise ValueError(f"image_size must be [H, W] of at least 8 pixels, got {self.image_size}")
        if self.max_episodes is not None and self.max_episodes < 1:
            raise ValueError(f"max_episodes must be positive, got {self.max_episodes}")
        if self.batch_requests < 1:
            raise ValueError(f"batch_requests must be positive, got {self.batch_requests}")


class ConstantRewardModel:
    """A floor: the same answer to every request, whatever the frames.

    Defaults: progress 0.5 (the mean progress label), completion 0.0 ("no",
    the majority answer), contrastive +1 ("current is more complete", right on
    half of the pairs shown in both orders).
    """

    needs_video = False

    def __init__(self, progress: float = 0.5, completion: float = 0.0, contrastive: float = 1.0) -> None:
        self.values = {"progress": progress, "completion": completion, "contrastive": contrastive}

    def score(self, requests: Sequence[RewardRequest]) -> list[Reward]:
        return [Reward(self.values[r.modality], "constant", probs=None, parsed_ok=True) for r in requests]


# --------------------------------------------------------------------------- episodes


def evaluation_episodes(
    source: EpisodeSource, dataset_config: DatasetConfig, split: str, max_episodes: int | None
) -> tuple[list[int], list[Example], str]:
    """(episode indices, their examples, camera) of the chosen split, through the dataset builder."""
    ds = build_dataset(source, dataset_config)
    if split == "val":
        episodes, examples = list(ds.val_episodes), list(ds.val)
    else:
        episodes, examples = sorted(ds.train_episodes + ds.val_episodes), ds.train + ds.val
    if not episodes:
        what = "held-out (val_fraction > 0 and at least 2 episodes per outcome are needed)" if split == "val" else "usable"
        raise ValueError(f"{source.path}: no {what} episodes with a success verdict to evaluate")
    if max_episodes is not None and len(episodes) > max_episodes:
        seed = dataset_config.seed
        wins = sorted((e for e in episodes if episode_outcome(source.record(e).meta)), key=lambda e: hash_rank(seed, e))
        losses = sorted((e for e in episodes if not episode_outcome(source.record(e).meta)), key=lambda e: hash_rank(seed, e))
        alternating = [e for pair in zip(wins, losses, strict=False) for e in pair]
        rest = wins[len(losses):] if len(wins) > len(losses) else losses[len(wins):]
        episodes = sorted((alternating + rest)[:max_episodes])
        keep = set(episodes)
        examples = [ex for ex in examples if ex.episode in keep]
    return episodes, examples, ds.camera


# --------------------------------------------------------------------------- scoring


@dataclass
class _EpisodeData:
    index: int
    task: str
    success: bool
    length: int
    images: Any  # indexable by frame: (H, W, 3) uint8
    traces: Mapping[str, np.ndarray]
    real: np.ndarray | None = None  # (T,) bool: the camera's image was rendered; None: all were


def _oracle_at(ep: _EpisodeData, t: int, previous: int | None = None) -> dict[str, float]:
    if "dense_reward" not in ep.traces:
        raise ValueError(
            f"episode {ep.index}: the oracle backend needs the simulator's per-frame values; the episode has no "
            "'dense_reward' trace (record it in simulation, with 'success' for completion)"
        )
    values = {"dense_reward": float(ep.traces["dense_reward"][t])}
    if "success" in ep.traces:
        values["success"] = float(ep.traces["success"][t])
    if previous is not None:
        values["previous_dense_reward"] = float(ep.traces["dense_reward"][previous])
    return {k: v for k, v in values.items() if not math.isnan(v)}


def _example_request(
    ex: Example,
    ep: _EpisodeData,
    size: tuple[int, int] | None,
    needs_video: bool,
    needs_oracle: bool,
    i: int,
    fps: float | None = None,
) -> RewardRequest:
    frames = {key: resize_image(np.ascontiguousarray(ep.images[t]), size) for key, t in ex.frames.items()}
    t = ex.frames["current"]
    video = None
    if needs_video:
        shown = [s for s in range(t + 1) if ep.real is None or ep.real[s]]  # the unrendered are not seen
        video = np.stack([resize_image(np.ascontiguousarray(ep.images[s]), size) for s in shown])
    oracle = _oracle_at(ep, t, ex.frames.get("previous")) if needs_oracle else None
    video_fps = fps if needs_video else None
    return RewardRequest(ex.modality, frames, ex.task, request_id=i, video=video, oracle=oracle, video_fps=video_fps)  # type: ignore[arg-type]


def _score_all(model: RewardModel, requests: list[RewardRequest], batch: int) -> list[Reward]:
    out: list[Reward] = []
    for start in range(0, len(requests), batch):
        out.extend(model.score(requests[start : start + batch]))
    return out


def _all_real(ep: _EpisodeData, frames: Any) -> bool:
    return ep.real is None or all(bool(ep.real[t]) for t in frames)


def _round_robin(ep: _EpisodeData, dataset: DatasetConfig) -> list[Example]:
    """Every ordered pair of distinct keyframes of one episode, as contrastive examples."""
    keys = sorted(set(keyframe_indices(ep.length, dataset.num_keyframes)))
    out = []
    for prev in keys:
        for cur in keys:
            if prev != cur:
                frames = {"previous": prev, "current": cur, **({"first": 0} if dataset.contrastive_anchor else {})}
                out.append(Example("contrastive", ep.index, frames, ep.task, 1.0 if cur > prev else -1.0, "round_robin"))
    return out


def _borda_ranking(pairs: list[Example], values: list[float]) -> tuple[float, float]:
    """Kendall tau and Spearman rho between keyframe time and its Borda score over the pairs."""
    scores: dict[int, float] = {}
    for ex, v in zip(pairs, values, strict=True):
        scores[ex.frames["current"]] = scores.get(ex.frames["current"], 0.0) + v
        scores[ex.frames["previous"]] = scores.get(ex.frames["previous"], 0.0) - v
    frames = sorted(scores)
    borda = [scores[f] for f in frames]
    return metrics.kendall_tau(borda, frames), metrics.spearman_rho(borda, frames)


def evaluate_reward_model(
    model: RewardModel,
    source: EpisodeSource,
    config: RewardEvalConfig,
    *,
    answers: Sequence[str] = MODALITIES,
    needs_oracle: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Score the chosen episodes of `source` with `model`; the report as a dict (module doc).

    `answers`: the modalities the model answers; `needs_oracle`: requests carry
    the stored simulator values (the oracle backend). The report keeps the
    per-trajectory traces under "trajectories" (for plots and re-analysis).
    `progress(done, total)` is called after each episode is scored.
    """
    episodes, examples, camera = evaluation_episodes(source, config.dataset, config.split, config.max_episodes)
    wanted = [m for m in (config.modalities or MODALITIES) if m in answers]
    traj_modalities = [m for m in config.trajectory_modalities if m in answers]
    examples = [ex for ex in examples if ex.modality in wanted]
    size = tuple(config.image_size) if config.image_size else None
    needs_video = bool(getattr(model, "needs_video", False))
    fps = getattr(source, "fps", None) or None  # of the recorded frames; None: unknown
    by_episode: dict[int, list[int]] = {}
    for i, ex in enumerate(examples):
        by_episode.setdefault(ex.episode, []).append(i)

    rank_contrastive = "contrastive" in wanted and config.contrastive_ranking
    ranking: list[tuple[float, float]] = []
    values: list[float] = [math.nan] * len(examples)
    parsed: list[bool] = [True] * len(examples)
    trajectories: list[dict[str, Any]] = []
    reference: dict[str, list[openloop_reference.ReferenceTrajectory]] = {m: [] for m in traj_modalities}
    seconds, n_requests = 0.0, 0
    left_out: set[int] = set()  # examples with an unrendered frame
    unrendered_steps = 0
    for k, index in enumerate(episodes):
        record = source.record(index)
        view = source.load_episode(index)
        ep = _EpisodeData(
            index=index,
            task=record.meta.task,
            success=bool(episode_outcome(record.meta)),
            length=record.length,
            images=view.images[camera],
            traces={name: np.asarray(v, dtype=np.float64) for name, v in (getattr(view, "rewards", None) or {}).items()},
            real=view.real_mask(camera) if hasattr(view, "real_mask") else None,
        )
        # Only rendered frames are scored: an unrendered one is a black placeholder, and a judge's
        # answer on it (P(done) = 0.99 on black, say) is about nothing the robot did.
        mine = [i for i in by_episode.get(index, []) if _all_real(ep, examples[i].frames.values())]
        left_out.update(set(by_episode.get(index, [])) - set(mine))
        requests = [_example_request(examples[i], ep, size, needs_video, needs_oracle, i, fps) for i in mine]
        robin = _round_robin(ep, config.dataset) if rank_contrastive and ep.success else []
        robin = [ex for ex in robin if _all_real(ep, ex.frames.values())]
        requests += [_example_request(ex, ep, size, needs_video, needs_oracle, -1, fps) for ex in robin]
        started = time.perf_counter()
        rewards = _score_all(model, requests, config.batch_requests)
        seconds += time.perf_counter() - started
        n_requests += len(requests)
        for i, reward in zip(mine, rewards[: len(mine)], strict=True):
            values[i], parsed[i] = float(reward.value), bool(reward.parsed_ok)
        if robin:
            ranking.append(_borda_ranking(robin, [float(r.value) for r in rewards[len(mine) :]]))
        if traj_modalities:
            steps = np.unique(np.r_[query_steps(ep.length, config.every), ep.length - 1])
            if ep.real is not None:
                unrendered_steps += int((~ep.real[steps]).sum())
                steps = steps[ep.real[steps]]
        if traj_modalities and len(steps):
            frames = [resize_image(np.ascontiguousarray(ep.images[t]), size) for t in steps]
            oracle = [_oracle_at(ep, int(t)) for t in steps] if needs_oracle else None
            started = time.perf_counter()
            scores = score_query_frames(
                model,
                frames,
                ep.task,
                traj_modalities,
                steps=steps,
                oracle=oracle,
                batch_requests=config.batch_requests,
                video_fps=fps / config.every if fps else None,
            )
            seconds += time.perf_counter() - started
            n_requests += len(steps) * len(traj_modalities)
            dense = ep.traces.get("dense_reward")
            trajectories.append(
                {
                    "episode": index,
                    "task": ep.task,
                    "success": ep.success,
                    "length": ep.length,
                    "steps": steps.tolist(),
                    "rewards": {m: scores.values(m).tolist() for m in traj_modalities},
                    "dense_reward": None if dense is None else dense[steps].tolist(),
                    "parse_failures": {m: scores.failures(m) for m in traj_modalities},
                }
            )
            for m in traj_modalities:
                reference[m].append(_reference_trajectory(ep, steps, scores.values(m), m, config.every))
        if progress is not None:
            progress(k + 1, len(episodes))

    scored = [i for i in range(len(examples)) if i not in left_out]
    unrendered_examples = len(left_out)
    if unrendered_examples or unrendered_steps:
        if not scored and not trajectories:
            raise ValueError(
                f"none of the {len(examples)} examples and trajectory frames of camera {camera!r} was rendered "
                "(the episodes were recorded with on-demand capture): nothing to score"
            )
        log.warning("eval-reward: %d examples and %d trajectory frames were not rendered (camera %r); "
                    "they are left out", unrendered_examples, unrendered_steps, camera)
        examples = [examples[i] for i in scored]
        values = [values[i] for i in scored]
        parsed = [parsed[i] for i in scored]
    report: dict[str, Any] = {
        "split": config.split,
        "camera": camera,
        "episodes": {
            "count": len(episodes),
            "successes": sum(bool(episode_outcome(source.record(e).meta)) for e in episodes),
            "indices": episodes,
            "tasks": sorted({source.record(e).meta.task for e in episodes}),
        },
        "unrendered": {"examples_left_out": unrendered_examples, "trajectory_frames_left_out": unrendered_steps},
        "timing": {
            "seconds": round(seconds, 3),
            "requests": n_requests,
            "requests_per_second": round(n_requests / seconds, 1) if seconds > 0 else None,
        },
    }
    report.update(_example_metrics(examples, values, parsed, wanted))
    if "contrastive" in report:
        taus = [t for t, _ in ranking if not math.isnan(t)]
        rhos = [r for _, r in ranking if not math.isnan(r)]
        report["contrastive"].update(
            kendall_tau=float(np.mean(taus)) if taus else float("nan"),
            spearman_rho=float(np.mean(rhos)) if rhos else float("nan"),
            ranked_episodes=len(taus),
            round_robin_episodes=len(ranking),
        )
    report["trajectory"] = {m: _trajectory_report(trajectories, m, config.trajectory_score) for m in traj_modalities}
    if traj_modalities:
        report["openloop_reference"] = _reference_report(reference)
    report["trajectories"] = trajectories
    return report


def _example_metrics(
    examples: list[Example], values: list[float], parsed: list[bool], wanted: Sequence[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for modality in wanted:
        idx = [i for i, ex in enumerate(examples) if ex.modality == modality]
        pred = np.array([values[i] for i in idx], dtype=float)
        truth = np.array([examples[i].label for i in idx], dtype=float)
        failures = sum(not parsed[i] for i in idx)
        if modality == "progress":
            section: dict[str, Any] = metrics.progress_metrics(pred, truth)
        elif modality == "completion":
            section = metrics.binary_metrics(pred, truth)
            kinds = sorted({examples[i].kind for i in idx})
            section["accuracy_by_kind"] = {
                kind: float(np.mean([(values[i] >= 0.5) == (examples[i].label >= 0.5) for i in idx if examples[i].kind == kind]))
                for kind in kinds
            }
            section["n"] = len(idx)
        else:
            section = {"direction_accuracy": metrics.direction_accuracy(pred, truth), "n": len(idx)}
        section["parse_failures"] = failures
        out[modality] = section
    return out


def _trajectory_report(trajectories: list[dict[str, Any]], modality: str, score: str) -> dict[str, Any]:
    rewards = [np.asarray(t["rewards"][modality]) for t in trajectories]
    success = [t["success"] for t in trajectories]
    dense = [t["dense_reward"] for t in trajectories]
    have_oracle = bool(dense) and all(d is not None and not np.isnan(d).any() for d in dense)
    result = metrics.trajectory_metrics(rewards, success, oracle_values=dense if have_oracle else None, score=score)
    result["oracle_values"] = "dense_reward trace" if have_oracle else "none (global Pearson against the success flag)"
    if rewards:
        scores = [metrics.trajectory_score(r, score) for r in rewards]
        fpr, tpr = metrics.roc_curve(scores, success)
        result["roc_curve"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
    result["parse_failures"] = sum(t["parse_failures"][modality] for t in trajectories)
    return result


def _reference_trajectory(
    ep: _EpisodeData, steps: np.ndarray, values: np.ndarray, modality: str, every: int
) -> openloop_reference.ReferenceTrajectory:
    """One scored trajectory as the reference's script reads it (module doc)."""
    values = np.asarray(values, dtype=float)
    if modality == "contrastive":  # the reference compares on the grid only; the appended last frame is off it
        values = values[np.asarray(steps) % every == 0]
    dense = ep.traces.get("dense_reward")
    if dense is None or len(dense) == 0 or np.isnan(dense).any():
        return openloop_reference.ReferenceTrajectory(success=ep.success, scores=values.tolist())
    per_step = np.diff(dense, prepend=0.0)  # a relative reward: the change since the previous frame, 0 before
    return openloop_reference.ReferenceTrajectory(
        success=ep.success,
        scores=values.tolist(),
        oracle_rewards=per_step.tolist(),
        cumulative_oracle=dense.tolist(),
        total_oracle_reward=float(dense[-1]),
    )


_REFERENCE_MODES = {"progress": "progress", "completion": "completion", "contrastive": openloop_reference.COMPARISON}


def _reference_report(reference: dict[str, list[openloop_reference.ReferenceTrajectory]]) -> dict[str, Any]:
    """The "openloop_reference" section: one reference output per trajectory modality, and what the oracle was."""
    episodes = next(iter(reference.values()), [])  # every modality holds the same episodes
    with_oracle, total = sum(bool(len(t.oracle_rewards)) for t in episodes), len(episodes)
    out: dict[str, Any] = {
        "source": openloop_reference.SOURCE,
        "oracle": (
            f"dense_reward trace in {with_oracle} of {total} trajectories: per-step reward dense[t] - dense[t-1] "
            "(from 0), cumulative dense[t], total dense[-1]; none elsewhere"
        ),
    }
    for modality, trajectories in reference.items():
        out[modality] = openloop_reference.openloop_metrics(trajectories, _REFERENCE_MODES[modality])
    return out


# --------------------------------------------------------------------------- output


def to_jsonable(value: Any) -> Any:
    """NaN and infinities become null: strict JSON has no NaN, and a reader must see "undefined"."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_report(report: dict[str, Any], out_dir: str | Path, *, name: str = "metrics.json") -> Path:
    """Write the report as strict JSON (NaN -> null) into `out_dir`; returns the file."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    path.write_text(json.dumps(to_jsonable(report), indent=1, allow_nan=False) + "\n")
    return path


def write_plots(report: dict[str, Any], out_dir: str | Path, label: str, max_trajectories: int = 40) -> list[Path]:
    """The cumulative accuracy curve, reward vs time per trajectory, and the ROC curve, as PNGs."""
    from lrm.evaluation import plots

    out = Path(out_dir)
    written: list[Path] = []
    if "progress" in report and report["progress"].get("n"):
        curve = report["progress"]["cumulative_curve"]
        written.append(
            plots.plot_cumulative_accuracy(
                out / "progress_cumulative_accuracy.png",
                {label: (np.asarray(curve["tolerance"]), np.asarray(curve["accuracy"]))},
                title=f"progress accuracy vs tolerance ({report['progress']['n']} keyframes)",
            )
        )
    trajectories = report.get("trajectories", [])
    for modality, section in report.get("trajectory", {}).items():
        shown = trajectories[:max_trajectories]
        traces = [
            (np.asarray(t["steps"]) / max(1, t["length"] - 1), np.asarray(t["rewards"][modality]), t["success"])
            for t in shown
        ]
        written.append(
            plots.plot_reward_vs_time(
                out / f"trajectories_{modality}.png",
                traces,
                title=f"{label}: {modality} along {len(shown)} of {len(trajectories)} trajectories",
                ylabel=modality,
                # progress and P(completed) are probabilities-like 0..1; the contrastive trace is a cumulative sum
                ylim=(0.0, 1.0) if modality in ("progress", "completion") else None,
            )
        )
        if section.get("roc_curve") and section["roc_curve"]["fpr"]:
            written.append(
                plots.plot_roc(
                    out / f"roc_{modality}.png",
                    {label: (np.asarray(section["roc_curve"]["fpr"]), np.asarray(section["roc_curve"]["tpr"]), section["roc_auc"])},
                    title=f"success from the {section['trajectory_score']} {modality} of a trajectory",
                )
            )
    return written


_SUMMARY = {
    "progress": ("n", "exact_accuracy", "accuracy_within_0.1", "accuracy_within_0.2", "accuracy_within_0.3", "mae",
                 "rmse"),
    "completion": ("n", "accuracy", "precision", "recall", "f1"),
    "contrastive": ("n", "direction_accuracy", "kendall_tau", "spearman_rho"),
}
_TRAJECTORY_SUMMARY = ("roc_auc", "pairwise_accuracy", "pearson_global", "pearson_per_trajectory",
                       "monotonicity_success", "voc")


def summary_metrics(report: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers the command's summary prints, flat (`progress/mae`, `trajectory/progress/roc_auc`, ...)."""
    out: dict[str, Any] = {"episodes": report["episodes"]["count"], "successes": report["episodes"]["successes"]}
    for section, keys in _SUMMARY.items():
        for key in keys:
            if key in report.get(section, {}):
                out[f"{section}/{key}"] = report[section][key]
    for modality, stats in report.get("trajectory", {}).items():
        for key in _TRAJECTORY_SUMMARY:
            if key in stats:
                out[f"trajectory/{modality}/{key}"] = stats[key]
    timing = report.get("timing") or {}
    for key in ("seconds", "requests_per_second"):
        if timing.get(key) is not None:
            out[f"timing/{key}"] = timing[key]
    return out


def run_reward_eval(config: RewardEvalConfig, progress: Callable[[int, int], None] | None = None) -> tuple[dict[str, Any], Path]:
    """Build the backend and the sources of `config`, evaluate, write JSON and PNGs; (report, JSON path).

    Raises ValueError (one line) for anything wrong with the config, the
    sources or the backend.
    """
    from lrm.training.lerobot_source import open_sources

    if not config.sources:
        raise ValueError("sources: name at least one episode store or LeRobotDataset")
    if not config.backend:
        raise ValueError("backend: name a backend YAML (configs/lrm/backends/*.yaml)")
    backend_config = config.backend.config
    for path in config.sources:
        if not Path(path).exists():
            raise ValueError(f"sources: {path} does not exist")
    source = open_sources(config.sources, assume_success=config.assume_success)
    model = build_reward_backend(backend_config)
    try:
        report = evaluate_reward_model(
            model,
            source,
            config,
            answers=backend_config.modalities,
            needs_oracle=backend_config.serves == "oracle",
            progress=progress,
        )
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
    report = {"backend": backend_config.describe(), "sources": list(config.sources), **report}
    report["config"] = config_to_dict(config)
    out = Path(config.output_dir)
    report["plots"] = [str(p) for p in write_plots(report, out, backend_config.type, config.max_plotted_trajectories)] if config.plots else []
    path = write_report(report, out)
    with make_tracker(config.report_to, out, run_name=f"eval-reward-{out.name}", config=report["config"],
                      fresh=True) as tracker:
        tracker.log(summary_metrics(report), 0)
    return report, path
