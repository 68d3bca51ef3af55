"""Demonstrations for a run: planned without cameras, then replayed into the run's store with the few renders
the judge's training reads.

On a CPU a camera frame costs ~20-70x a physics step, and a PickCube
demonstration is ~75 steps, so rendering every frame of 100 demonstrations
takes minutes while the small policy reads state only and the judge's
training set uses 11 keyframes and the clipped-prefix frame per episode
(lrm.dataset). So: ManiSkill's motion planners record state-only demos into
OUT/demos-planned (fast), and each one is replayed (the CPU simulation is
deterministic: same seed, same actions, same states) through
`app.rollout.run_rollout` into the run's store, rendering exactly those
frames plus the first and the terminal one. Other frames hold black images
and the episode lists its rendered frames (`extra.rollout.captured`), as
any on-demand rollout does.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from app.rollout import RolloutConfig, run_rollout
from recordings.episode import EpisodeMeta

log = logging.getLogger(__name__)

__all__ = ["ReplayPolicy", "frames_to_render", "replay_demos"]


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
    from lrm.dataset import keyframe_indices

    frames = set(keyframe_indices(length, num_keyframes))
    frames.update(int(round(c * (length - 1))) for c in clip_fractions)
    return frames | {0, length - 1}


def replay_demos(planned: Any, store: Any, env: Any, *, env_id: str, config_hash: str, num_keyframes: int,
                 clip_fractions: list[float], every_frame: bool = False, events: Any = None,
                 progress: bool = True) -> int:
    """Replay every planned demo that is not yet in `store` (by its seed); returns how many were added."""
    from tqdm.auto import tqdm

    done = {r.meta.seed for r in store.episodes(source="demo")}
    todo = [r for r in planned.episodes(source="demo", oracle_success=True) if r.meta.seed not in done]
    added = 0
    for rec in tqdm(todo, desc="replay demos", unit="demo", disable=not progress or not todo, dynamic_ncols=True):
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


def planned_store_path(out: Path) -> Path:
    return out / "demos-planned"
