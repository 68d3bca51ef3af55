"""Interval-hold: query the reward model every K env steps and hold the value in between.

An LRM query costs a camera render plus a VLM call, far more than a physics step,
so the paper queries each env every K steps (K = 10) and holds the value:
r_t = w_m * r_m for one modality m, or the tri-faceted mix sum_m w_m * r_m.
The rollout loop asks `due()` which envs need a frame this step, renders only
those, and passes the frames to `step()`; all due envs and modalities go to the
reward model as one batched call.

The contrastive modality compares the frame of this query with the frame of the
previous query (dt = K steps ago); at an env's first query there is no earlier
frame and r_cont is 0. The first frame an env shows after `reset` is its anchor
(the progress modality's `first` frame). Contrastive can be used signed (+1/-1/0)
or mapped to [0, 1] as (r + 1) / 2 so that it mixes with the other two.

Baselines ride along: a model with `needs_video = True` (Robometer, TOPReward,
RoboReward) gets the env's query frames so far as `RewardRequest.video` (the
frames the loop rendered anyway, K steps apart; kept per env until `reset`, so
memory grows with episode length / K); the `oracle` backend gets the
simulator's values passed to `step(frames, oracle=...)`, with the previous
query's dense reward added for contrastive.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

import numpy as np

from common.numbers import Positive
from lrm.types import MODALITIES, RewardModel, RewardRequest

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class IntervalHoldConfig:
    """`every` is K; `weights` maps each queried modality to w_m (one entry: a single modality)."""

    every: Positive = 10
    weights: dict[str, float] = dataclasses.field(default_factory=lambda: {"progress": 1.0})
    contrastive_signed: bool = True

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"interval-hold: every must be >= 1, got {self.every}")
        if not self.weights:
            raise ValueError("interval-hold: weights must name at least one modality")
        for modality in self.weights:
            if modality not in MODALITIES:
                raise ValueError(f"interval-hold: unknown modality {modality!r} in weights, expected {MODALITIES}")


@dataclasses.dataclass
class _EnvState:
    task: str = ""
    steps: int = 0
    first: np.ndarray | None = None
    previous: np.ndarray | None = None
    values: dict[str, float] = dataclasses.field(default_factory=dict)
    reward: float = 0.0
    history: list[np.ndarray] = dataclasses.field(default_factory=list)  # query frames, for video models
    oracle: dict[str, float] | None = None  # the simulator's values at the previous query


class IntervalHoldReward:
    """Per-env query schedule, frame memory and held rewards around any RewardModel."""

    def __init__(self, model: RewardModel, config: IntervalHoldConfig, num_envs: int) -> None:
        self.model = model
        self.config = config
        self.num_envs = num_envs
        self._envs = [_EnvState() for _ in range(num_envs)]
        self.queries = 0  # reward-model requests sent, for cost accounting

    def reset(self, env: int, task: str) -> None:
        """Start a new episode in `env`: the next step is a query step and its frame the anchor."""
        self._envs[env] = _EnvState(task=task)

    def due(self) -> list[int]:
        """Envs whose frame must be rendered this step."""
        return [i for i, s in enumerate(self._envs) if s.steps % self.config.every == 0]

    def step(
        self, frames: Mapping[int, np.ndarray], oracle: Mapping[int, Mapping[str, float]] | None = None
    ) -> np.ndarray:
        """Advance every env by one step; returns r_t for all envs, shape (num_envs,).

        `frames` must hold a frame for every env in `due()` (others are ignored);
        `oracle` (sim only, for the oracle backend) the simulator's values of due envs.
        """
        due = self.due()
        missing = [i for i in due if i not in frames]
        if missing:
            raise ValueError(f"interval-hold: no frame for env(s) {missing}, which are due for a reward query")
        for i in due:
            if not self._envs[i].task:
                raise ValueError(f"interval-hold: env {i} has no task; call reset(env, task) first")
        needs_video = bool(getattr(self.model, "needs_video", False))
        if needs_video:
            for i in due:
                self._envs[i].history.append(frames[i])
        requests, owners = self._requests(due, frames, oracle or {}, needs_video)
        if requests:
            rewards = self.model.score(requests)
            self.queries += len(requests)
            for (env, modality), reward in zip(owners, rewards, strict=True):
                self._envs[env].values[modality] = reward.value
        for i in due:
            state = self._envs[i]
            if state.first is None:
                state.first = frames[i]
            state.previous = frames[i]
            if oracle and i in oracle:
                state.oracle = {k: float(v) for k, v in oracle[i].items() if k != "previous_dense_reward"}
            state.reward = self._mix(state)
        out = np.array([s.reward for s in self._envs], dtype=np.float64)
        for state in self._envs:
            state.steps += 1
        return out

    def values(self, env: int) -> dict[str, float]:
        """The held per-modality values of one env (for logging and plots)."""
        return dict(self._envs[env].values)

    def _requests(
        self,
        due: list[int],
        frames: Mapping[int, np.ndarray],
        oracle: Mapping[int, Mapping[str, float]],
        needs_video: bool,
    ) -> tuple[list[RewardRequest], list[tuple[int, str]]]:
        requests: list[RewardRequest] = []
        owners: list[tuple[int, str]] = []
        for i in due:
            state = self._envs[i]
            current = frames[i]
            first = state.first if state.first is not None else current
            video = np.stack(state.history) if needs_video else None
            sim = None
            if i in oracle:
                sim = dict(oracle[i])
                if state.oracle is not None and "dense_reward" in state.oracle:
                    sim["previous_dense_reward"] = state.oracle["dense_reward"]
            for modality in self.config.weights:
                if modality == "contrastive":
                    if state.previous is None:
                        state.values["contrastive"] = 0.0  # nothing to compare with yet
                        continue
                    images = {"current": current, "previous": state.previous, "first": first}
                elif modality == "progress":
                    images = {"current": current, "first": first}
                else:
                    images = {"current": current}
                requests.append(
                    RewardRequest(
                        modality=modality,  # type: ignore[arg-type]
                        frames=images,
                        task=state.task,
                        env_id=i,
                        previous_value=state.values.get(modality),
                        video=video,
                        oracle=sim,
                    )
                )
                owners.append((i, modality))
        return requests, owners

    def _mix(self, state: _EnvState) -> float:
        total = 0.0
        for modality, weight in self.config.weights.items():
            value = state.values.get(modality, 0.0)
            if modality == "contrastive" and not self.config.contrastive_signed:
                value = (value + 1.0) / 2.0
            total += weight * value
        return total
