"""The completion judge: a rollout's last frame(s) -> a verdict and a score, stored next to the other verdicts.

Any backend with the completion modality judges (`lrm.backends`): the compact
`lite` model trained here from the store, or the Qwen3-VL LRM with its
completion adapter on a GPU machine. P(completed) is the backend's
probability of "yes" where it gives one (logits mode, lite), else its 0/1
answer.

With k > 1 frames (the last k frames that hold a rendered image) the
per-frame P are combined by
- `threshold`: accept when the mean P >= threshold;
- `vote`: accept when a strict majority of frames has P >= threshold
  (a tie rejects: keeping a failure costs more than dropping a success).
The stored score is the mean P in both cases.

Several cameras (`judge.cameras`) are shown as one image, tiled left to
right in the listed order, in training and in judging alike: one PickCube
camera cannot tell a cube 5 cm in front of the goal from one at the goal
(the offset lies along its line of sight), a second viewpoint can.

Cross-fitted folds (`judge.folds: k`): the labelled calibration episodes are
dealt into k folds (per outcome, in a seeded order) and k compact judges are
trained, judge j on the demonstrations and every fold but j. Together they
judge a rollout by the mean of their P (`lrm.backends.lite.LiteEnsemble`:
any command given OUT/judge as a lite checkpoint loads them so); each calibration
episode is scored by the one judge that never saw it (`held_out_scores`), so
that the precision the floor reads (app.improve.rules) is measured on every
calibration episode instead of on a held-out tenth (`val_fraction` 0.1: 16
episodes with 6 successes of 160, too few to tell 70% from 85%). OUT/judge/folds.json
records which judge held out which episode.

The judge never sees the answer: `train_judge` builds the compact model's
training set from an explicit list of episode indices (the demonstrations,
plus calibration episodes on their own seeds when configured), never from
the rollouts it will judge, and returns a provenance record that the round
report prints.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TYPE_CHECKING

import numpy as np

from app.improve.config import JudgeConfig
from lrm.backends.lite import FOLDS_FILE
from lrm.types import RewardRequest
from lrm.training.dataset import Example, build_dataset
from recordings.selection import hash_rank, hashed_split

if TYPE_CHECKING:
    from lrm.types import RewardModel
    from recordings.episode import EpisodeSource

log = logging.getLogger(__name__)

__all__ = ["Verdict", "combine", "calibration_folds", "calibration_frames", "calibration_label",
           "calibration_split", "held_out_calibration", "held_out_scores", "judge_cameras", "load_judge",
           "score_frames", "watcher", "judge_episode", "judged_frames", "p_completed", "tile",
           "train_judge"]




@dataclass
class Verdict:
    accepted: bool
    score: float  # mean P(completed) over the judged frames
    frame_scores: list[float]
    frames: list[int]  # frame indices within the episode

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def combine(scores: Sequence[float], how: str, threshold: float) -> tuple[bool, float]:
    """(accepted, mean P) of per-frame P(completed) values (module doc)."""
    if not len(scores):
        raise ValueError("no frame scores to combine")
    p = np.asarray(scores, dtype=np.float64)
    mean = float(p.mean())
    if how == "threshold":
        return mean >= threshold, mean
    if how == "vote":
        yes = int((p >= threshold).sum())
        return 2 * yes > len(p), mean
    raise ValueError(f"unknown combine rule {how!r} (vote or threshold)")


def p_completed(reward: Any) -> float:
    """P(completed) of a completion Reward: its probability of "yes" if it has one, else its value."""
    probs = getattr(reward, "probs", None)
    if probs and "yes" in probs:
        return float(probs["yes"])
    return float(np.clip(reward.value, 0.0, 1.0))


def judged_frames(record: Any, k: int) -> list[int]:
    """Those of the last k frames of an episode that hold a rendered image (a rollout lists them; others have all)."""
    info = record.meta.extra.get("rollout") or {}
    captured = info.get("captured")
    frames = list(captured) if captured else list(range(record.length))
    return [t for t in frames if t >= record.length - k]


def judge_cameras(config: JudgeConfig, store: EpisodeSource) -> list[str]:
    """The store cameras the judge sees, in tiling order (the first camera by default)."""
    cameras = list(config.cameras or [config.camera or next(iter(store.cameras))])
    missing = [c for c in cameras if c not in store.cameras]
    if missing:
        raise ValueError(f"judge camera {missing[0]!r} is not in {store.path} (cameras: {', '.join(store.cameras)})")
    return cameras


def tile(images: dict[str, np.ndarray], cameras: Sequence[str]) -> np.ndarray:
    """The cameras' images (one frame, or whole episodes) side by side, left to right; one camera as is."""
    if len(cameras) == 1:
        return images[cameras[0]]
    heights = {images[c].shape[-3] for c in cameras}
    if len(heights) > 1:
        raise ValueError(f"cameras {list(cameras)} differ in height; they cannot be tiled")
    return np.concatenate([images[c] for c in cameras], axis=-2)


def score_frames(model: RewardModel, frames: Sequence[dict[str, np.ndarray]], cameras: Sequence[str], task: str,
                 ids: Sequence[int]) -> list[float]:
    """P(completed) of each frame (camera name -> image), its cameras tiled as the judge sees them."""
    requests = [RewardRequest(modality="completion", frames={"current": np.ascontiguousarray(tile(f, cameras))},
                              task=task, request_id=i) for f, i in zip(frames, ids, strict=True)]
    return [p_completed(r) for r in model.score(requests)]


def judge_episode(model: RewardModel, store: EpisodeSource, index: int, config: JudgeConfig) -> Verdict:
    """Score the last `config.frames` frames of episode `index` and combine them."""
    record = store.record(index)
    frames = judged_frames(record, config.frames)
    cameras = judge_cameras(config, store)
    images = store.load_episode(index).images
    scores = score_frames(model, [{c: images[c][t] for c in cameras} for t in frames], cameras, record.meta.task,
                          frames)
    accepted, score = combine(scores, config.combine, config.threshold)
    return Verdict(accepted=accepted, score=score, frame_scores=scores, frames=frames)


def calibration_frames(store: EpisodeSource, index: int, config: JudgeConfig, label_source: str) -> list[tuple[int, bool]]:
    """(frame, label) of one calibration episode: what the judge learns from it.

    For a watching judge (`watch_every`), which is asked about any frame,
    labelled by the oracle (sim) and recorded with its per-frame success
    trace: every rendered frame, labelled by the oracle at that frame (the
    start, the approach, the moment of success, a drift away after it). Else
    the judged frames, labelled by the episode's verdict (the oracle's final
    flag, or the operator's). An unlabelled episode gives nothing.
    """
    record = store.record(index)
    if label_source == "oracle" and config.watch_every and "success" in record.rewards:
        trace = store.load_episode(index).rewards["success"]
        captured = (record.meta.extra.get("rollout") or {}).get("captured") or range(record.length)
        return [(t, bool(trace[t] > 0.5)) for t in captured if np.isfinite(trace[t])]
    label = calibration_label(store, index, label_source)
    if label is None:
        return []
    return [(t, label) for t in judged_frames(record, config.frames)]


def watcher(model: RewardModel, config: JudgeConfig, cameras: Sequence[str], task: str) -> Any:
    """`run_rollout`'s stop_check: the judge looks at each rendered frame and ends the rollout at P >= threshold.

    The judge, not the oracle, then decides where a rollout ends, as an
    operator watching a robot would; the frame it called done is the
    terminal frame its verdict reads.
    """
    cameras = list(cameras)

    def check(images: dict[str, np.ndarray], step: int) -> str | None:
        p = score_frames(model, [images], cameras, task, [step])[0]
        return f"the judge: P(completed) = {p:.3f} at step {step}" if p >= config.threshold else None

    return check


def _with_calibration(dataset: Any, store: EpisodeSource, labelled: Sequence[tuple[int, list[tuple[int, bool]]]],
                      held_out: Sequence[int]) -> Any:
    """Add the labelled frames of calibration episodes (`calibration_frames`): rollouts like those judged.

    A calibration episode is a rollout of the same policy kind on its own
    seeds, so its frames are the kind a verdict reads. Those in `held_out`
    go to the validation split, the others to training.
    """
    held = set(held_out)
    train, val = list(dataset.train), list(dataset.val)
    for index, frames in labelled:
        task = store.record(index).meta.task
        for t, label in frames:
            ex = Example("completion", index, {"current": t}, task, float(label), "calibration", label)
            (val if index in held else train).append(ex)
    train_eps = [i for i, _ in labelled if i not in held]
    val_eps = [i for i, _ in labelled if i in held]
    view = _StoreView(store, [*dataset.train_episodes, *dataset.val_episodes, *train_eps, *val_eps],
                      dataset.store.sources)
    return dataclasses.replace(dataset, store=view, train=train, val=val,
                               train_episodes=[*dataset.train_episodes, *train_eps],
                               val_episodes=[*dataset.val_episodes, *val_eps])


def _labelled(store: EpisodeSource, calibration: Sequence[int], config: JudgeConfig,
              label_source: str) -> list[tuple[int, list[tuple[int, bool]]]]:
    return [(index, frames) for index in calibration if (frames := calibration_frames(store, index, config, label_source))]


def calibration_split(store: EpisodeSource, calibration: Sequence[int], config: JudgeConfig, label_source: str,
                      val_fraction: float, seed: int) -> tuple[list[tuple[int, list[tuple[int, bool]]]], list[int],
                                                               list[int]]:
    """(labelled episodes with their frames, those a single judge trains on, those held out): a seeded
    `val_fraction` of the labelled episodes, stratified by outcome."""
    labelled = _labelled(store, calibration, config, label_source)
    outcomes = [frames[-1][1] for _, frames in labelled]
    train_eps, val_eps = hashed_split([i for i, _ in labelled], val_fraction, seed, groups=outcomes)
    return labelled, train_eps, val_eps


def calibration_folds(labelled: Sequence[tuple[int, list[tuple[int, bool]]]], folds: int, seed: int) -> dict[int, int]:
    """Each labelled calibration episode's fold 0..folds-1: per outcome (its last frame's label), in seeded
    hash order, dealt round-robin, so that every fold holds its share of successes and failures."""
    assignment: dict[int, int] = {}
    for outcome in (False, True):
        group = sorted((i for i, frames in labelled if frames[-1][1] == outcome), key=lambda i: hash_rank(seed, i))
        assignment.update({index: n % folds for n, index in enumerate(group)})
    return assignment


def held_out_calibration(store: EpisodeSource, calibration: Sequence[int], config: JudgeConfig,
                         label_source: str) -> list[int]:
    """The labelled calibration episodes some judge never trained on: where its precision can be measured honestly.

    A single judge trained here (`train_from_store`) holds out the split of
    `calibration_split` (none with `judge.train.dataset.val_fraction: 0`);
    cross-fitted folds hold out every labelled episode (each from one fold's
    judge); any other judge never saw a calibration episode, so all labelled
    ones count.
    """
    if not config.train_from_store or config.folds > 1:
        return [i for i, _ in _labelled(store, calibration, config, label_source)]
    dataset = config.train.dataset
    return calibration_split(store, calibration, config, label_source, dataset.val_fraction, dataset.seed)[2]


def held_out_scores(model: RewardModel, store: EpisodeSource, indices: Sequence[int], config: JudgeConfig) -> list[list[float]]:
    """Per held-out calibration episode, the P(completed) of its judged frames by a judge that never saw it:
    its fold's judge for cross-fitted folds (`LiteEnsemble.held_out`), else `model` itself."""
    folds = getattr(model, "held_out", None) or {}
    return [judge_episode(folds.get(i, model), store, i, config).frame_scores for i in indices]


def calibration_label(store: EpisodeSource, index: int, label_source: str) -> bool | None:
    """The episode's truth as the calibration knows it: the oracle's final flag, or the operator's verdict."""
    meta = store.record(index).meta
    label = meta.oracle_success if label_source == "oracle" else meta.operator_verdict
    return None if label is None else bool(label)


class _StoreView:
    """The store as the dataset builder sees it: only the episodes in `indices`, with the judge's (tiled) camera."""

    def __init__(self, store: EpisodeSource, indices: Sequence[int], cameras: Sequence[str]) -> None:
        self._store = store
        self._indices = sorted(indices)
        self.sources = list(cameras)
        self.path = store.path
        self.camera = "+".join(self.sources)
        sizes = [store.cameras[c] for c in self.sources]
        self.cameras = {**store.cameras, self.camera: (sizes[0][0], sum(w for _, w in sizes))}

    def episodes(self, **filters: Any) -> list[Any]:
        return self._store.episodes(indices=self._indices, **filters)

    def record(self, index: int) -> Any:
        return self._store.record(index)

    def load_episode(self, index: int) -> Any:
        if index not in self._indices:
            raise KeyError(f"episode {index} is not part of the judge's training data")
        episode = self._store.load_episode(index)
        if len(self.sources) == 1:
            return episode
        return dataclasses.replace(episode, images={self.camera: tile(episode.images, self.sources)})


def _demo_labels_from_oracle(dataset: Any, store: EpisodeSource) -> Any:
    """Completion labels of simulated demonstrations from the simulator's per-frame success trace.

    By construction only a demonstration's last frame is "completed"; a demo
    recorded with its success held (`demos.hold_steps`) is completed at every
    held frame too, and its middle keyframes would otherwise teach the judge
    that a finished task is unfinished. Only for held demos, so that the
    measured default recipe stays as it was: elsewhere the trace marks only a
    few mid-demo frames where the cube passes through the goal (4 of 300
    keyframes in benchmarks/improve_judge.py's run), and relabelling them moved
    that judge's ROC-AUC from 0.85 to 0.75, within the spread of its training
    seeds (0.75-0.86). Demos without a trace (teleoperated on a
    robot) keep the labels by construction. Demonstrations are never judged, so
    the oracle labelling their frames tells the judge nothing about a rollout.
    """
    traces: dict[int, np.ndarray | None] = {}

    def relabel(ex: Any) -> Any:
        if ex.modality != "completion" or ex.kind == "clipped":
            return ex  # a clipped episode ends there: unfinished whatever the frame shows
        if ex.episode not in traces:
            rec = store.record(ex.episode)
            traces[ex.episode] = store.load_episode(ex.episode).rewards["success"] if "success" in rec.rewards else None
        trace = traces[ex.episode]
        if trace is None or not np.isfinite(trace[ex.frames["current"]]):
            return ex
        done = bool(trace[ex.frames["current"]] > 0.5)
        return dataclasses.replace(ex, label=float(done)) if done != (ex.label > 0.5) else ex

    return dataclasses.replace(dataset, train=[relabel(e) for e in dataset.train], val=[relabel(e) for e in dataset.val])


def train_judge(store: EpisodeSource, demos: Sequence[int], calibration: Sequence[int], config: JudgeConfig,
                out_dir: Path, *, label_source: str = "oracle", held_demos: bool = False,
                progress: bool = True) -> dict[str, Any]:
    """Train the compact completion model on these episodes only; save it to `out_dir`; return its provenance.

    Demonstrations are labelled by construction (the final frame completes the
    task; earlier keyframes and the clipped prefix do not). Calibration
    episodes give their judged frames, labelled by `label_source`: the
    simulator's oracle, or the operator's verdict. With `config.folds` > 1,
    one judge per fold in `out_dir`/fold-<j> and the episodes' folds in
    `out_dir`/folds.json (module doc); the provenance then gives the folds'
    precision and recall on the calibration episodes each held out.
    """
    from lrm.training.lite_train import train_lite

    train = config.train
    cameras = config.cameras or [config.camera or train.dataset.camera or next(iter(store.cameras))]
    view = _StoreView(store, demos, cameras)
    dataset_cfg = dataclasses.replace(train.dataset, camera=view.camera)
    base = build_dataset(view, dataset_cfg)
    if held_demos:
        base = _demo_labels_from_oracle(base, store)
    if config.folds > 1:  # (fold, the episodes it holds out) per judge; fold None: the one judge, in out_dir
        labelled = _labelled(store, calibration, config, label_source)
        assignment = calibration_folds(labelled, config.folds, dataset_cfg.seed)
        parts = [(j, [i for i, f in assignment.items() if f == j]) for j in range(config.folds)]
    else:
        labelled, _, held_out = calibration_split(store, calibration, config, label_source,
                                                  dataset_cfg.val_fraction, dataset_cfg.seed)
        assignment, parts = {}, [(None, held_out)]
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    histories, counts = [], {}
    for fold, held_out in parts:
        dataset = _with_calibration(base, store, labelled, held_out) if labelled else base
        if not dataset.train:
            raise ValueError("the judge has no training examples (no labelled demonstrations with images?)")
        train_cfg = dataclasses.replace(train.train, seed=train.train.seed + (fold or 0))
        _, history = train_lite(dataset, train_cfg, train.model, output_dir=tmp if fold is None else tmp / f"fold-{fold}",
                                progress=progress)
        histories.append(history)
        counts = counts or dataset.counts()
    if assignment:
        (tmp / FOLDS_FILE).write_text(json.dumps({"folds": config.folds,
                                                  "held_out": {str(i): f for i, f in sorted(assignment.items())}}))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)  # a checkpoint directory appears whole or not at all
    info = {
        "backend": "lite",
        "checkpoint": str(out_dir),
        "trained_on": {
            "demonstrations": sorted(demos),
            "calibration_episodes": sorted(calibration),
            "calibration_labels": label_source if calibration else None,
            "rollouts_judged": "none: the judge never trains on the rollouts it judges",
        },
        "examples": counts,
        "validation": histories[0].get("val", {}) if len(histories) == 1 else [h.get("val", {}) for h in histories],
        "train_seconds": sum(h.get("seconds") or 0 for h in histories),
        "steps": train.train.steps,
    }
    if assignment:
        info["folds"] = config.folds
        info["held_out"] = _held_out_summary(store, config, label_source, out_dir, sorted(assignment))
    return info


def _held_out_summary(store: EpisodeSource, config: JudgeConfig, label_source: str, checkpoint: Path,
                      indices: Sequence[int]) -> dict[str, Any]:
    """The folds' precision and recall at the configured threshold, and ROC-AUC, on the episodes each held out."""
    from app.improve.report import filter_metrics
    from lrm.evaluation.metrics import roc_auc

    model = load_judge(config, checkpoint)
    scores = held_out_scores(model, store, indices, config)
    labels = [bool(calibration_label(store, i, label_source)) for i in indices]
    kept = [combine(s, config.combine, config.threshold) for s in scores]
    m = filter_metrics([k for k, _ in kept], labels)
    auc = roc_auc([p for _, p in kept], [float(y) for y in labels]) if 0 < sum(labels) < len(labels) else None
    return {"episodes": len(indices), "successes": sum(labels), "threshold": config.threshold,
            "precision": m["precision"], "recall": m["recall"], "roc_auc": auc,
            "measured_on": "each calibration episode by the fold's judge that never trained on it"}


def load_judge(config: JudgeConfig, checkpoint: Path) -> Any:
    """The compact judge `train_judge` saved at `checkpoint`: one lite model, or its folds as a
    `lrm.backends.lite.LiteEnsemble` (the mean of their P)."""
    from lrm.backends import make_reward_backend

    backend = config.backend
    return make_reward_backend(dataclasses.replace(backend, lite=dataclasses.replace(backend.lite,
                                                                                      checkpoint=str(checkpoint))))
