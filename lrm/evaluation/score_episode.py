"""Scoring a recorded episode offline with the interval-hold semantics of the RL loop.

`lrm-robot score` asks: what rewards would PPO have seen on this episode? So the
queries are exactly those of `IntervalHoldReward` with one env: the frames at
steps 0, K, 2K, ...; the first frame is the progress anchor; contrastive
compares each query frame with the previous query frame and is 0 at the first
query (nothing to compare with); an unparseable progress answer holds the
previous value, unless the model's `fallback_policy` is another than
`hold_previous` (the published preset's `reference`: its value stands). Offline, all queries are known up front, so they are sent to
the model in large batches instead of one query at a time (the only
sequential dependency, the progress fallback, is applied afterwards).

The result keeps one value per query step; `trace()` gives the store's
convention (NaN where no query happened), `held()` the reward PPO consumes.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from lrm.types import MODALITIES, Reward, RewardModel, RewardRequest

logger = logging.getLogger(__name__)

# Short names accepted on the command line.
MODALITY_ALIASES = {"cont": "contrastive", "prog": "progress", "comp": "completion"}


def resolve_modalities(name: str) -> tuple[str, ...]:
    """'cont'|'prog'|'comp'|'all' or a full modality name -> modality names (ValueError otherwise)."""
    if name == "all":
        return MODALITIES
    full = MODALITY_ALIASES.get(name, name)
    if full not in MODALITIES:
        raise ValueError(f"unknown modality {name!r}: use one of cont, prog, comp, all (or {', '.join(MODALITIES)})")
    return (full,)


def query_steps(length: int, every: int) -> np.ndarray:
    """The frame indices interval-hold queries in an episode of `length` frames: 0, K, 2K, ..."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    return np.arange(0, length, every, dtype=np.int64)


@dataclasses.dataclass
class EpisodeScores:
    """Per-modality rewards at the query steps of one episode."""

    steps: np.ndarray  # (Q,) frame indices of the queries
    rewards: dict[str, list[Reward]]  # modality -> Q rewards, values after the fallback policy

    def values(self, modality: str) -> np.ndarray:
        return np.array([r.value for r in self.rewards[modality]], dtype=np.float64)

    def failures(self, modality: str) -> int:
        return sum(not r.parsed_ok for r in self.rewards[modality])

    def trace(self, modality: str, length: int) -> np.ndarray:
        """(length,) float32: the value at each query step, NaN elsewhere (the store's convention)."""
        out = np.full(length, np.nan, np.float32)
        out[self.steps] = self.values(modality)
        return out

    def held(self, modality: str, length: int) -> np.ndarray:
        """(length,) float64: each query's value held until the next query (what PPO sees)."""
        index = np.searchsorted(self.steps, np.arange(length), side="right") - 1
        return self.values(modality)[index]


def score_query_frames(
    model: RewardModel,
    frames: Sequence[np.ndarray],
    task: str,
    modalities: Sequence[str],
    *,
    steps: np.ndarray | None = None,
    oracle: Sequence[Mapping[str, float]] | None = None,
    batch_requests: int = 32,
    progress: Callable[[int], None] | None = None,
    video_fps: float | None = None,
) -> EpisodeScores:
    """Score the query frames of one episode (frames[j] was taken at steps[j]); see module doc.

    `oracle[j]` are the simulator's values at query j (oracle backend only).
    `video_fps`: the rate of the query frames (the episode's fps / the query
    interval), passed to video models with the video; None: unknown.
    `batch_requests` bounds how many requests (and videos) exist at once;
    `progress(n)` is called with the number of requests just scored.
    """
    if not frames:
        raise ValueError("an episode needs at least one query frame")
    steps = np.arange(len(frames)) if steps is None else np.asarray(steps)
    if len(steps) != len(frames) or (oracle is not None and len(oracle) != len(frames)):
        raise ValueError("steps, frames and oracle must have one entry per query")
    needs_video = bool(getattr(model, "needs_video", False))
    rewards: dict[str, list[Reward | None]] = {m: [None] * len(frames) for m in modalities}
    if "contrastive" in rewards:  # interval-hold: no earlier frame at the first query
        rewards["contrastive"][0] = Reward(0.0, "", probs=None, parsed_ok=True)
    jobs = [(j, m) for j in range(len(frames)) for m in modalities if rewards[m][j] is None]
    for start in range(0, len(jobs), batch_requests):
        chunk = jobs[start : start + batch_requests]
        requests = [_request(frames, task, j, m, oracle, needs_video, video_fps) for j, m in chunk]
        for (j, m), reward in zip(chunk, model.score(requests), strict=True):
            rewards[m][j] = reward
        if progress is not None:
            progress(len(chunk))
    if getattr(model, "fallback_policy", "hold_previous") == "hold_previous":
        _hold_progress_on_failure(rewards.get("progress"))
    return EpisodeScores(steps=steps, rewards={m: list(v) for m, v in rewards.items()})  # type: ignore[misc]


def _request(
    frames: Sequence[np.ndarray],
    task: str,
    j: int,
    modality: str,
    oracle: Sequence[Mapping[str, float]] | None,
    needs_video: bool,
    video_fps: float | None = None,
) -> RewardRequest:
    current, first = frames[j], frames[0]
    if modality == "contrastive":
        images = {"current": current, "previous": frames[j - 1], "first": first}
    elif modality == "progress":
        images = {"current": current, "first": first}
    else:
        images = {"current": current}
    sim = None
    if oracle is not None:
        sim = dict(oracle[j])
        if j > 0 and "dense_reward" in oracle[j - 1]:
            sim["previous_dense_reward"] = float(oracle[j - 1]["dense_reward"])
    return RewardRequest(
        modality=modality,  # type: ignore[arg-type]
        frames=images,
        task=task,
        request_id=j,
        video=np.stack(frames[: j + 1]) if needs_video else None,
        oracle=sim,
        video_fps=video_fps if needs_video else None,
    )


def _hold_progress_on_failure(rewards: list[Reward | None] | None) -> None:
    """An unparseable progress answer holds the previous query's value (0 at the first)."""
    if rewards is None:
        return
    previous = 0.0
    for reward in rewards:
        assert reward is not None
        if not reward.parsed_ok:
            reward.value = previous
        previous = reward.value


__all__ = ["EpisodeScores", "MODALITY_ALIASES", "query_steps", "resolve_modalities", "score_query_frames"]
