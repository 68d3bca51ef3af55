"""One episode of a store scored by a reward backend, its traces written back: what `lrm-robot score` does.

`EpisodeQueries.read` does everything that is cheap and can fail (the episode,
the camera, a recorder holding the store's writer lock, the oracle's recorded
values) before the model is built, which can take minutes. `score` queries the
model as the RL loop's interval-hold would (`lrm.score_episode`). `write` stores
each trace (`reward/<trace name>`: the value at query frames, NaN in between),
records where it came from in the episode's `extra["reward_traces"]`, and saves
a PNG of the traces against time and a metrics JSON.

Anything wrong with the request is a ValueError of one line.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import time
from collections.abc import Callable

import numpy as np

from lrm.backends import RewardBackendConfig
from lrm.evaluation.score_episode import EpisodeScores, query_steps, score_query_frames
from lrm.types import RewardModel
from recordings.errors import StoreLockedError
from recordings.store import EpisodeStore

log = logging.getLogger(__name__)

__all__ = ["EpisodeQueries", "ScoredEpisode"]


@dataclasses.dataclass
class EpisodeQueries:
    """The query frames of one stored episode, read and checked, ready for the model."""

    store_path: str
    episode: int
    config: RewardBackendConfig
    modalities: tuple[str, ...]
    every: int
    camera: str
    task: str
    length: int
    steps: np.ndarray  # the query frames' indices
    frames: list[np.ndarray]  # the camera image at each query
    times: np.ndarray  # every frame's timestamp
    oracle: list[dict[str, float]] | None  # the oracle backend's recorded sim values at each query
    video_fps: float | None = None  # the rate of the query frames (the store's fps / every), for video models

    @classmethod
    def read(cls, store_path: str, episode: int, config: RewardBackendConfig, modalities: tuple[str, ...], *,
             every: int, camera: str | None = None) -> EpisodeQueries:
        """Check and read episode `episode` of the store (camera None: the store's first)."""
        store = EpisodeStore.open(store_path, mode="r")
        if not 0 <= episode < store.num_episodes:
            raise ValueError(f"episode {episode} does not exist: {store_path} has {store.num_episodes} episodes")
        camera = camera or next(iter(store.cameras), None)
        if camera not in store.cameras:
            raise ValueError(f"camera {camera!r} is not in {store_path} (cameras: {', '.join(store.cameras) or 'none'})")
        try:  # fail now, not after minutes of scoring, if a recorder holds the writer lock
            EpisodeStore.open(store_path, mode="a").close()
        except StoreLockedError as exc:
            raise ValueError(f"{exc.args[0].split(';')[0]}; score it when that writer has finished") from None
        record = store.record(episode)
        steps = _real_query_steps(store, episode, camera, query_steps(record.length, every))
        frames, times, stored = _read_episode(store, episode, camera, set(steps.tolist()))
        oracle = _oracle_values(stored, steps) if config.serves == "oracle" else None
        video_fps = store.fps / every if store.fps else None
        return cls(store_path, episode, config, modalities, every, camera, record.meta.task, record.length, steps,
                   frames, times, oracle, video_fps)

    @property
    def total(self) -> int:
        """How many requests scoring sends."""
        return len(self.steps) * len(self.modalities)

    def score(self, model: RewardModel, progress: Callable[[int], None] | None = None) -> ScoredEpisode:
        """Query `model` (RequestError for a request it refuses); `progress(n)` after every n requests."""
        started = time.perf_counter()
        scores = score_query_frames(model, self.frames, self.task, self.modalities, steps=self.steps,
                                    oracle=self.oracle, progress=progress, video_fps=self.video_fps)
        seconds = time.perf_counter() - started
        scored = ScoredEpisode(self, scores, seconds)
        for name, count in scored.failures.items():
            if count:
                log.warning("%s: %d of %d answers could not be parsed (fallback values used)", name, count,
                            len(self.steps))
        return scored


@dataclasses.dataclass
class ScoredEpisode:
    """The model's answers at the query frames of one stored episode."""

    queries: EpisodeQueries
    scores: EpisodeScores
    seconds: float

    @property
    def failures(self) -> dict[str, int]:
        return {self.queries.config.trace_name(m): self.scores.failures(m) for m in self.queries.modalities}

    @property
    def traces(self) -> dict[str, np.ndarray]:
        """Trace name -> (length,) the value at each query frame, NaN elsewhere (the store's convention)."""
        q = self.queries
        return {q.config.trace_name(m): self.scores.trace(m, q.length) for m in q.modalities}

    def write(self, out_dir: str | pathlib.Path) -> pathlib.Path:
        """The traces into the store, the plot and the metrics JSON into `out_dir`; the plot's path."""
        q, traces = self.queries, self.traces
        provenance = {
            **q.config.describe(),
            "every": q.every,
            "camera": q.camera,
            "queries": len(q.steps),
            "scored_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        with EpisodeStore.open(q.store_path, mode="a") as writer:
            for name, trace in traces.items():
                writer.write_rewards(q.episode, name, trace)
            extra = dict(writer.record(q.episode).meta.extra)
            extra["reward_traces"] = {**extra.get("reward_traces", {}), **{n: provenance for n in traces}}
            writer.update_meta(q.episode, extra=extra)

        out = pathlib.Path(out_dir)
        stem = f"{pathlib.Path(q.store_path).name}_episode{q.episode}_{q.config.type}"
        png = self._plot(out / f"{stem}.png")
        metrics = {
            **provenance,
            "store": str(q.store_path),
            "episode": q.episode,
            "task": q.task,
            "frames": q.length,
            "seconds": round(self.seconds, 3),
            "seconds_per_query": round(self.seconds / max(1, sum(len(self.scores.rewards[m]) for m in q.modalities)), 4),
            "traces": {q.config.trace_name(m): _summary(self.scores.values(m)) for m in q.modalities},
            "parse_failures": self.failures,
        }
        (out / f"{stem}.json").write_text(json.dumps(metrics, indent=1))
        return png

    def _plot(self, path: pathlib.Path) -> pathlib.Path:
        from lrm.evaluation.plots import plot_traces

        q, scores = self.queries, self.scores
        names = {m: q.config.trace_name(m) for m in q.modalities}
        return plot_traces(
            path,
            q.times,
            {names[m]: scores.held(m, q.length) for m in q.modalities},
            q.times[scores.steps],
            {names[m]: scores.values(m) for m in q.modalities},
            title=f"{pathlib.Path(q.store_path).name} episode {q.episode}: {q.config.type}, every {q.every} frames",
        )


def _real_query_steps(store: EpisodeStore, episode: int, camera: str, steps: np.ndarray) -> np.ndarray:
    """The query frames whose image was rendered: a frame that was not holds a black placeholder, and a
    judge's answer on it says nothing about the episode. Where the schedule hits no rendered frame
    (a rollout that rendered only where its policy looked), every rendered frame is scored instead."""
    marks = store.real_marks(episode)
    if marks is None or camera not in marks:  # recorded before the mark was kept: read as it is
        return steps
    real = marks[camera]
    kept = steps[real[steps]]
    if len(kept) == 0:
        kept = np.flatnonzero(real)
        if len(kept) == 0:
            raise ValueError(f"episode {episode} of {store.path} has no rendered {camera!r} image to score")
        log.warning("episode %d: none of the query frames every %d steps was rendered; scoring its %d rendered "
                    "frames instead", episode, int(steps[1] - steps[0]) if len(steps) > 1 else 1, len(kept))
    elif len(kept) < len(steps):
        log.warning("episode %d: %d of %d query frames were not rendered (%r); scoring the %d that were",
                    episode, len(steps) - len(kept), len(steps), camera, len(kept))
    return kept


def _read_episode(store: EpisodeStore, index: int, camera: str, wanted: set[int]):
    """Query frames (copied: iter_frames yields views), all timestamps, all stored reward traces."""
    frames, times, stored = [], [], {}
    for t, frame in enumerate(store.iter_frames(index)):
        if t in wanted:
            frames.append(np.array(frame.images[camera]))
        times.append(frame.timestamp)
        for name, value in frame.rewards.items():
            stored.setdefault(name, []).append(value)
    return frames, np.asarray(times), {k: np.asarray(v) for k, v in stored.items()}


def _oracle_values(stored: dict[str, np.ndarray], steps: np.ndarray) -> list[dict[str, float]]:
    """The oracle of a stored episode reads the sim's values recorded as traces `dense_reward` and `success`."""
    if "dense_reward" not in stored:
        raise ValueError(
            "the oracle backend needs the simulator's per-frame values: this episode has no 'dense_reward' "
            "trace (record it in simulation, with 'success' for completion)"
        )
    values = []
    for t in steps:
        entry = {"dense_reward": float(stored["dense_reward"][t])}
        if "success" in stored:
            entry["success"] = float(stored["success"][t])
        values.append({k: v for k, v in entry.items() if not np.isnan(v)})
    return values


def _summary(values: np.ndarray) -> dict[str, float]:
    return {
        "mean": float(values.mean()),
        "min": float(values.min()),
        "max": float(values.max()),
        "last": float(values[-1]),
    }
