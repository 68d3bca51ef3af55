"""Demonstrations for a run: planned without cameras, then replayed into the run's store with the few renders
the judge's training reads (`demos.source: plan`, simulation); or copied from an existing store
(`demos.source: store`: teleoperated demos on a robot, or any a user brings), `copy_demos`: an
EpisodeStore, or a LeRobotDataset folder (`LeRobotDemos`: what LeRobot's recording tools write).

On a CPU a camera frame costs ~20-70x a physics step, and a PickCube
demonstration is ~75 steps, so rendering every frame of 100 demonstrations
takes minutes while the small policy reads state only and the judge's
training set uses 11 keyframes and the clipped-prefix frame per episode
(lrm.training.dataset). So: ManiSkill's motion planners record state-only demos into
OUT/demos-planned (fast), and each one is replayed (the CPU simulation is
deterministic: same seed, same actions, same states) through
`app.rollout.run_rollout` into the run's store, rendering exactly those
frames plus the first and the terminal one. Other frames hold black images
and the episode lists its rendered frames (`extra.rollout.captured`), as
any on-demand rollout does.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, TYPE_CHECKING

import numpy as np

from app.rollout import RolloutConfig, run_rollout
from recordings.episode import EpisodeMeta
from lrm.training.dataset import keyframe_indices
from recordings.episode import Episode
from recordings.errors import StoreError
from recordings.store import EpisodeStore

if TYPE_CHECKING:
    from sim.env import Env

log = logging.getLogger(__name__)

__all__ = ["LeRobotDemos", "ReplayPolicy", "copy_demos", "frames_to_render", "is_successful", "open_demos",
           "replay_demos"]


class ReplayPolicy:
    """Plays back recorded actions one per step, asking for a render before the steps in `render_at`."""

    camera_names: list[str] = []

    def __init__(self, actions: np.ndarray, render_at: set[int]) -> None:
        self.actions = np.asarray(actions, dtype=np.float32)
        self.render_at = set(render_at)
        self._t = 0

    @property
    def needs_images(self) -> bool:
        return self._t in self.render_at

    def reset(self) -> None:
        self._t = 0

    def act(self, observation: Any) -> np.ndarray:
        action = self.actions[self._t]
        self._t += 1
        return action


def frames_to_render(length: int, num_keyframes: int, clip_fractions: list[float]) -> set[int]:
    """The frames of an episode of `length` frames that the judge's dataset builder reads."""

    frames = set(keyframe_indices(length, num_keyframes))
    frames.update(int(round(c * (length - 1))) for c in clip_fractions)
    return frames | {0, length - 1}


def replay_demos(planned: EpisodeStore, store: EpisodeStore, env: Env, *, env_id: str, config_hash: str, num_keyframes: int,
                 clip_fractions: list[float], every_frame: bool = False, events: Any = None,
                 progress: bool = True) -> int:
    """Replay every planned demo that is not yet in `store` (by its seed); returns how many were added."""
    from common.progress import progress_bar

    done = {r.meta.seed for r in store.episodes(source="demo")}
    todo = [r for r in planned.episodes(source="demo", oracle_success=True) if r.meta.seed not in done]
    added = 0
    for rec in progress_bar(len(todo), desc="replay demos", unit="demo", enabled=progress and bool(todo),
                            iterable=todo):
        ep = planned.load_episode(rec.index)
        steps = len(ep)
        # the replay adds the terminal frame: steps + 1 frames
        render = set(range(steps)) if every_frame else frames_to_render(steps + 1, num_keyframes, clip_fractions)
        meta = EpisodeMeta(task=env.task, source="demo", env_id=env_id, policy_id=rec.meta.policy_id,
                           round=0, config_hash=config_hash,
                           extra={"improve": {"phase": "demo", "planned_index": rec.index},
                                  "state_mode": rec.meta.extra.get("state_mode"),
                                  "control_mode": rec.meta.extra.get("control_mode")})
        result = run_rollout(env, ReplayPolicy(ep.action, render), store, meta, seed=rec.meta.seed,
                             config=RolloutConfig(max_steps=steps, time_limit_s=None, capture="on_demand",
                                                  judge_frames=1, record_terminal=True))
        if not result.oracle_success:
            log.warning("demo seed %s did not succeed on replay (planned: success); stored as a failure",
                        rec.meta.seed)
        added += 1
        if events is not None:
            events("demo-replayed", {"seed": rec.meta.seed, "index": result.index})
    return added


def is_successful(meta: EpisodeMeta) -> bool:
    """Whether a source episode may become a demonstration (DemosConfig: never a failure).

    The first verdict given decides (the operator's, else the simulator's, else
    the LRM's); an episode without any is a success only when it was recorded
    as a demonstration (source "demo", e.g. teleoperated).
    """
    if meta.aborted:
        return False
    for verdict in (meta.operator_verdict, meta.oracle_success, meta.lrm_verdict):
        if verdict is not None:
            return bool(verdict)
    return meta.source == "demo"


def _dims(env: Env) -> tuple[int, int]:
    """(state dim, action dim) of an env: a robot gives action_shape, a ManiSkill env its action_space."""
    shape = getattr(env, "action_shape", None) or env.action_space.shape
    return int(env.state_size), int(np.prod(shape))


class LeRobotDemos:
    """A LeRobotDataset folder read like an episode store, for `copy_demos`.

    `lrm.training.lerobot_source.LeRobotSource` gives the episodes, their verdicts (our
    exporter's sidecar, `next.success`, or none: a teleoperated demonstration)
    and the decoded camera frames; LeRobot's own reader gives each frame's
    `observation.state`, `action` and `timestamp`, which a policy learns from.
    """

    def __init__(self, root: Path) -> None:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        from lrm.training.lerobot_source import LeRobotSource

        self.source = LeRobotSource(root)
        self.path = Path(root)
        self._data = LeRobotDataset(f"local/{self.path.name}", root=self.path)
        features = self._data.meta.features
        missing = [k for k in ("observation.state", "action") if k not in features]
        if missing:
            raise ValueError(f"demos.store {root}: the LeRobotDataset has no {missing[0]!r}: nothing a policy learns from")
        self.state_dim = int(np.prod(features["observation.state"]["shape"]))
        self.action_dim = int(np.prod(features["action"]["shape"]))
        self._starts = {int(row["episode_index"]): int(row["dataset_from_index"]) for row in self._data.meta.episodes}

    @property
    def cameras(self) -> dict[str, tuple[int, int]]:
        return self.source.cameras

    @property
    def num_episodes(self) -> int:
        return self.source.num_episodes

    def episodes(self) -> list[Any]:
        return self.source.episodes()

    def load_episode(self, index: int) -> Any:

        rec = self.source.record(index)
        start = self._starts[rec.index]
        rows = self._data.hf_dataset.select_columns(["observation.state", "action", "timestamp"])[
            start:start + rec.length]
        frames = self.source.load_episode(index).images
        return Episode(
            meta=rec.meta,
            images={c: np.stack([frames[c][t] for t in range(rec.length)]) for c in self.cameras},
            state=np.stack([np.asarray(x, np.float32).reshape(-1) for x in rows["observation.state"]]),
            action=np.stack([np.asarray(x, np.float32).reshape(-1) for x in rows["action"]]),
            timestamp=np.asarray([float(np.asarray(x).reshape(-1)[0]) for x in rows["timestamp"]], np.float64),
        )

    def __enter__(self) -> LeRobotDemos:
        return self

    def __exit__(self, *exc: object) -> None:
        self.source.close()


def open_demos(path: Path) -> Any:
    """The demonstrations' source for reading: a LeRobotDataset folder (meta/info.json) or an episode store."""

    if (Path(path) / "meta" / "info.json").is_file():
        from lrm.training.lerobot_source import SourceError

        try:
            return LeRobotDemos(Path(path))
        except SourceError as exc:
            raise ValueError(f"demos.store: {exc}") from None
    try:
        return EpisodeStore.open(path, mode="r")
    except StoreError as exc:
        raise ValueError(f"demos.store: {exc}") from None


def copy_demos(source_path: Path, store: EpisodeStore, env: Env, cameras: dict[str, tuple[int, int]], *, count: int,
               episode_fields: dict[str, Any], events: Any = None) -> dict[str, Any]:
    """Copy the first `count` successful episodes at `source_path` (`open_demos`) into `store` as demonstrations.

    Only the env's cameras are copied. A resumed run counts the copies already
    in `store` (each names its source index) and copies only the rest. Raises
    ValueError (one line) when the source is not a store, holds too few
    successful episodes, or its cameras, state or action do not match the env.
    """
    with open_demos(source_path) as source:
        state_dim, action_dim = _dims(env)
        for name, size in cameras.items():
            if name not in source.cameras:
                raise ValueError(f"demos.store {source_path} has no camera {name!r} (it has "
                                 f"{', '.join(source.cameras) or 'none'}); the env's cameras are {', '.join(cameras)}")
            if tuple(source.cameras[name]) != tuple(size):
                raise ValueError(f"demos.store {source_path}: camera {name!r} is {source.cameras[name][0]}x"
                                 f"{source.cameras[name][1]}, the env's is {size[0]}x{size[1]} (height x width)")
        for what, theirs, ours in (("state", source.state_dim, state_dim), ("action", source.action_dim, action_dim)):
            if theirs is not None and theirs != ours:
                raise ValueError(f"demos.store {source_path}: {what} has {theirs} dimensions, the env's has {ours}")
        usable = [r for r in source.episodes() if is_successful(r.meta)]
        if len(usable) < count:
            raise ValueError(f"demos.store {source_path} holds {len(usable)} successful episodes of "
                             f"{source.num_episodes}; demos.count asks for {count}")
        wanted = usable[:count]
        key = str(Path(source_path).resolve())
        copied = {(r.meta.extra.get("improve") or {}).get("source_index") for r in store.episodes(source="demo")
                  if (r.meta.extra.get("improve") or {}).get("source_store") == key}
        todo = [r for r in wanted if r.index not in copied]
        if copied:
            log.info("demos: %d of %d copied earlier; %d to go", count - len(todo), count, len(todo))
        for rec in todo:
            ep = source.load_episode(rec.index)
            if rec.meta.task != env.task:
                log.warning("demo %d of %s is for %r; stored with the env's task %r", rec.index, source_path,
                            rec.meta.task, env.task)
            meta = EpisodeMeta(
                task=env.task, source="demo", env_id=episode_fields["env_id"], policy_id=rec.meta.policy_id,
                round=0, seed=rec.meta.seed, operator_verdict=rec.meta.operator_verdict,
                oracle_success=rec.meta.oracle_success, duration_s=rec.meta.duration_s,
                start_time=rec.meta.start_time, config_hash=rec.meta.config_hash,
                extra={**rec.meta.extra, "improve": {"phase": "demo", "source_store": key, "source_index": rec.index},
                       "source_task": rec.meta.task, "source_kind": rec.meta.source},
            )
            index = store.append(dataclasses.replace(ep, meta=meta, images={c: ep.images[c] for c in cameras}))
            if events is not None:
                events("demo-copied", {"source_index": rec.index, "index": index})
    demos = store.episodes(source="demo")
    return {"demos": len(demos), "frames": sum(r.length for r in demos), "source_store": key,
            "copied": [(r.meta.extra.get("improve") or {}).get("source_index") for r in demos],
            "rule": "successful episodes only (operator, else oracle, else LRM verdict; no verdict: source demo)"}


def planned_store_path(out: Path) -> Path:
    return out / "demos-planned"
