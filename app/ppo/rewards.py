"""PPO's per-step reward: a reward model through interval-hold, the env's dense reward, or a mix.

`StepReward.step(sim_result, render)` is called once per env step with the
simulator's oracle values; it asks the interval-hold wrapper which envs are
due for a query, has `render(indices)` capture only those envs' frames,
and returns r_t for every env:

    r_t = lrm_weight * held_lrm_t + env_weight * dense_t (+ success_bonus * success_t)

or, with `source: env` (the oracle arm), r_t = dense_t (+ success_bonus * success_t).

A reward backend is an outside model (a VLM, a network service, a file on a
shared disk): one that raises or returns garbage (NaN, out of range, the
wrong count, not a Reward) must not end hours of RL. `GuardedRewardModel`
scores the batch; if the batch fails it scores each request alone, and a
request that still fails gets its env's previous value back
(`RewardRequest.previous_value`, 0 at the first query), so the interval-hold
wrapper holds that env's reward; every such failure is counted per env.

Every query is also kept as (env, step, per-modality values, oracle dense
reward, oracle success) so that the metrics can say how well the reward
model agreed with the simulator in this iteration.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.ppo.config import RewardSection
from lrm.interval_hold import IntervalHoldReward
from lrm.types import Reward, RewardModel, RewardRequest
from sim.vector_env import StepResult

log = logging.getLogger(__name__)

__all__ = ["GuardedRewardModel", "QueryRecord", "StepReward"]

_RANGES = {"progress": (0.0, 1.0), "completion": (0.0, 1.0), "contrastive": (-1.0, 1.0)}


class GuardedRewardModel:
    """Wraps a RewardModel so that one bad answer costs one env one held reward, not the run (module doc)."""

    def __init__(self, model: RewardModel, tolerance: float = 1e-6) -> None:
        self.model = model
        self.needs_video = bool(getattr(model, "needs_video", False))
        self.tolerance = tolerance
        self.failures: Counter[int] = Counter()  # env id -> failed requests
        self.last_error = ""

    def score(self, requests: Sequence[RewardRequest]) -> list[Reward]:
        try:
            rewards = self.model.score(requests)
            if isinstance(rewards, list) and len(rewards) == len(requests) and all(
                self._usable(r, q) for r, q in zip(rewards, requests, strict=True)
            ):
                return rewards
        except Exception as exc:  # noqa: BLE001 - any backend failure is survivable, see module doc
            self.last_error = f"{type(exc).__name__}: {exc}"
        if len(requests) == 1:
            return [self._held(requests[0])]
        return [self.score([request])[0] for request in requests]  # find which request(s) are bad

    def _usable(self, reward: Any, request: RewardRequest) -> bool:
        if not isinstance(reward, Reward):
            self.last_error = f"backend returned {type(reward).__name__}, not a Reward"
            return False
        try:
            value = float(reward.value)
        except (TypeError, ValueError):
            self.last_error = f"reward value {reward.value!r} is not a number"
            return False
        low, high = _RANGES.get(request.modality, (-math.inf, math.inf))
        if not math.isfinite(value) or not low - self.tolerance <= value <= high + self.tolerance:
            self.last_error = f"{request.modality} reward {value!r} outside [{low}, {high}]"
            return False
        return True

    def _held(self, request: RewardRequest) -> Reward:
        env = int(request.env_id) if request.env_id is not None else -1
        self.failures[env] += 1
        log.warning("reward backend failed for env %s (%s); holding its previous value", env, self.last_error)
        held = 0.0 if request.previous_value is None else float(request.previous_value)
        return Reward(held, raw_text=f"held after failure: {self.last_error}", parsed_ok=False)

    @property
    def failure_count(self) -> int:
        return sum(self.failures.values())


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
        """`model` is the reward backend (built by the caller from `config.backend`); None for source env."""
        if config.source == "env":
            return cls(config, num_envs, task)
        if model is None:
            raise ValueError("reward.source 'lrm' needs a reward model")
        guard = model if isinstance(model, GuardedRewardModel) else GuardedRewardModel(model)
        return cls(config, num_envs, task, hold=IntervalHoldReward(guard, config.hold, num_envs), guard=guard)

    @property
    def uses_frames(self) -> bool:
        return self.hold is not None

    def reset(self) -> None:
        """All envs start a new episode (they reset together)."""
        self._step = 0
        if self.hold is not None:
            for i in range(self.num_envs):
                self.hold.reset(i, self.task)

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
