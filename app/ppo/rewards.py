"""PPO's per-step reward: a reward model through interval-hold, the env's dense reward, or a mix.

`StepReward.step(sim_result, render)` is called once per env step with the
simulator's oracle values; it asks the interval-hold wrapper which envs are
due for a query, has `render(indices)` capture only those envs' frames,
and returns r_t for every env:

    r_t = lrm_weight * held_lrm_t + env_weight * dense_t (+ success_bonus * success_t)

or, with `source: env` (the oracle arm), r_t = dense_t (+ success_bonus * success_t).
Under the paper's interval-hold protocol the progress anchor is each env's
observation right after the reset, so `reset` then takes those frames
(`needs_reset_frames`).

The reward model is queried through `lrm.guarded.GuardedRewardModel`, so a
failing backend costs an env its held reward, not the run; the failures are
counted per env.

Every query is also kept as (env, step, per-modality values, oracle dense
reward, oracle success) so that the metrics can say how well the reward
model agreed with the simulator in this iteration.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.ppo.config import RewardSection
from common.config import ConfigFile
from lrm.guarded import GuardedRewardModel
from lrm.interval_hold import IntervalHoldReward
from lrm.types import RewardModel
from sim.vector_env import StepResult

__all__ = ["QueryRecord", "StepReward"]


@dataclass
class QueryRecord:
    """One env's reward-model query and what the simulator said at that moment."""

    env: int
    step: int
    values: dict[str, float]
    reward: float  # the mixed, held reward from this query on
    dense_reward: float
    success: bool


@dataclass
class StepReward:
    """The per-step reward for all envs of a rollout (module doc). Build with `StepReward.make`."""

    config: RewardSection
    num_envs: int
    task: str
    hold: IntervalHoldReward | None = None
    guard: GuardedRewardModel | None = None
    queries: list[QueryRecord] = field(default_factory=list)
    score_seconds: float = 0.0
    render_seconds: float = 0.0
    renders: int = 0
    _step: int = 0

    @classmethod
    def make(cls, config: RewardSection, num_envs: int, task: str, model: RewardModel | None = None) -> StepReward:
        """`model` is the reward backend (built by the caller from `config.backend`); None for source env.

        The interval-hold protocol is the run's (`reward.hold.protocol`), else the backend file's.
        """
        if config.source == "env":
            return cls(config, num_envs, task)
        if model is None:
            raise ValueError("reward.source 'lrm' needs a reward model")
        guard = model if isinstance(model, GuardedRewardModel) else GuardedRewardModel(model)
        backend = config.backend.config if isinstance(config.backend, ConfigFile) and config.backend else None
        hold = config.hold.resolved(backend.hold_protocol if backend is not None else "legacy")
        return cls(config, num_envs, task, hold=IntervalHoldReward(guard, hold, num_envs), guard=guard)

    @property
    def uses_frames(self) -> bool:
        return self.hold is not None

    @property
    def needs_reset_frames(self) -> bool:
        """Whether `reset` needs every env's frame after the reset (the paper protocol's progress anchor)."""
        return self.hold is not None and self.hold.needs_reset_frame

    def reset(self, frames: Mapping[int, Mapping[str, np.ndarray]] | None = None, camera: str | None = None) -> None:
        """All envs start a new episode (they reset together); `frames`: the reset observations, if needed."""
        self._step = 0
        if self.hold is not None:
            for i in range(self.num_envs):
                first = _pick(frames[i], camera) if frames is not None else None
                self.hold.reset(i, self.task, first)

    def due(self) -> list[int]:
        return [] if self.hold is None else self.hold.due()

    def step(self, result: StepResult, frames: Mapping[int, Mapping[str, np.ndarray]], camera: str | None) -> np.ndarray:
        """r_t (num_envs,) after one env step; `frames` must hold the envs of `due()` (captured after the step)."""
        import time

        c = self.config
        env_weight = 1.0 if self.hold is None else c.env_weight  # source env: the dense reward is the reward
        reward = env_weight * result.dense_reward + c.success_bonus * result.success.astype(np.float64)
        if self.hold is not None:
            due = self.hold.due()
            pictures = {i: _pick(frames[i], camera) for i in due}
            oracle = {i: {"dense_reward": float(result.dense_reward[i]), "success": float(result.success[i])} for i in due}
            started = time.perf_counter()
            held = self.hold.step(pictures, oracle=oracle)
            self.score_seconds += time.perf_counter() - started
            for i in due:
                self.queries.append(QueryRecord(i, self._step, self.hold.values(i), float(held[i]),
                                                float(result.dense_reward[i]), bool(result.success[i])))
            reward = reward + c.lrm_weight * held
        self._step += 1
        return reward

    def timed_render(self, render: Callable[[list[int]], dict[int, Any]], indices: list[int]) -> dict[int, Any]:
        import time

        started = time.perf_counter()
        frames = render(indices)
        self.render_seconds += time.perf_counter() - started
        self.renders += len(indices)
        return frames

    def take_queries(self) -> list[QueryRecord]:
        out, self.queries = self.queries, []
        return out

    @property
    def query_count(self) -> int:
        return 0 if self.hold is None else self.hold.queries

    @property
    def failures(self) -> dict[int, int]:
        return {} if self.guard is None else dict(self.guard.failures)


def _pick(images: Mapping[str, np.ndarray], camera: str | None) -> np.ndarray:
    """The reward camera's frame: the named one, else the env's first."""
    if camera is not None:
        if camera not in images:
            raise ValueError(f"reward camera {camera!r} was not captured (have {', '.join(images)})")
        return images[camera]
    return next(iter(images.values()))
