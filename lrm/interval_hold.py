"""Interval-hold: query the reward model every K env steps and hold the value in between.

An LRM query costs a camera render plus a VLM call, far more than a physics step,
so the paper queries each env every K steps (K = 10) and holds the value:
r_t = w_m * r_m for one modality m, or the tri-faceted mix sum_m w_m * r_m.
The rollout loop asks `due()` which envs need a frame this step, renders only
those, and passes the frames to `step()`; all due envs and modalities go to the
reward model as one batched call.

The contrastive modality compares the frame of this query with the frame of the
previous query (dt = K steps ago); at an env's first query there is no earlier
frame. Contrastive can be used signed (+1/-1/0) or mapped to [0, 1] as
(r + 1) / 2 so that it mixes with the other two.

Two protocols say when the queries happen and what the anchors are:

- `paper`, as the paper's RL runs did it (envs/vlm_maniskill_env.py of the
  reference repository): the first query comes K steps after `reset` (then 2K,
  ...), the reward is 0 before it; the progress anchor is the reset
  observation, which the caller passes to `reset`; a contrastive value that does
  not exist (first query, failed request) adds 0 to the mix, also where
  contrastive is mapped; contrastive is mapped to [0, 1] when mixed with other
  modalities and signed alone; a failed request adds 0 rather than holding.
- `legacy`, this project's earlier schedule: the first query on the first step
  after `reset`, whose frame is also the progress anchor; a missing contrastive
  value is a signed 0 (0.5 when mapped); a failed request holds the value the
  guard (lrm.guarded) returns.

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
from typing import Literal

import numpy as np

from common.numbers import Positive
from lrm.types import MODALITIES, RewardModel, RewardRequest

logger = logging.getLogger(__name__)

HoldProtocol = Literal["paper", "legacy"]


@dataclasses.dataclass
class IntervalHoldConfig:
    """`every` is K; `weights` maps each queried modality to w_m (one entry: a single modality).

    `protocol` (module doc) None takes the reward backend's
    (`RewardBackendConfig.hold_protocol`, see `resolved`), else legacy.
    `contrastive_signed` None follows the protocol: legacy signed, paper signed
    only when contrastive is the one modality.
    """

    every: Positive = 10
    weights: dict[str, float] = dataclasses.field(default_factory=lambda: {"progress": 1.0})
    contrastive_signed: bool | None = None
    protocol: HoldProtocol | None = None

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"interval-hold: every must be >= 1, got {self.every}")
        if not self.weights:
            raise ValueError("interval-hold: weights must name at least one modality")
        for modality in self.weights:
            if modality not in MODALITIES:
                raise ValueError(f"interval-hold: unknown modality {modality!r} in weights, expected {MODALITIES}")

    def resolved(self, default_protocol: HoldProtocol) -> IntervalHoldConfig:
        """This config with `protocol` filled in from `default_protocol` where it names none."""
        return dataclasses.replace(self, protocol=self.protocol or default_protocol)

    @property
    def paper(self) -> bool:
        return self.protocol == "paper"

    @property
    def signed(self) -> bool:
        if self.contrastive_signed is not None:
            return self.contrastive_signed
        return not self.paper or set(self.weights) == {"contrastive"}


@dataclasses.dataclass
class _EnvState:
    task: str = ""
    steps: int = 0
    first: np.ndarray | None = None
    previous: np.ndarray | None = None
    values: dict[str, float | None] = dataclasses.field(default_factory=dict)  # None: no value (paper)
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

    @property
    def needs_reset_frame(self) -> bool:
        """Whether `reset` must be given the reset observation (the paper's progress anchor)."""
        return self.config.paper and "progress" in self.config.weights

    def reset(self, env: int, task: str, first_frame: np.ndarray | None = None) -> None:
        """Start a new episode in `env`; `first_frame` is its reset observation (paper protocol).

        Legacy: the next step is a query step and its frame the anchor.
        """
        self._envs[env] = _EnvState(task=task, first=first_frame if self.config.paper else None)

    def due(self) -> list[int]:
        """Envs whose frame must be rendered this step."""
        lag = 1 if self.config.paper else 0  # paper: K steps done when the first query comes
        return [i for i, s in enumerate(self._envs) if (s.steps + lag) % self.config.every == 0]

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
            if self.needs_reset_frame and self._envs[i].first is None:
                raise ValueError(
                    f"interval-hold: env {i} has no reset observation, the paper protocol's progress anchor; "
                    "pass it to reset(env, task, first_frame)"
                )
        needs_video = bool(getattr(self.model, "needs_video", False))
        if needs_video:
            for i in due:
                self._envs[i].history.append(frames[i])
        requests, owners = self._requests(due, frames, oracle or {}, needs_video)
        if requests:
            rewards = self.model.score(requests)
            self.queries += len(requests)
            for (env, modality), reward in zip(owners, rewards, strict=True):
                failed = self.config.paper and reward.failed
                self._envs[env].values[modality] = None if failed else reward.value
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
        """The held per-modality values of one env (for logging and plots); a missing value is left out."""
        return {m: v for m, v in self._envs[env].values.items() if v is not None}

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
                    if state.previous is None:  # nothing to compare with yet
                        state.values["contrastive"] = None if self.config.paper else 0.0
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
            if value is None:
                continue  # paper: a value that does not exist adds 0, mapped or not
            if modality == "contrastive" and not self.config.signed:
                value = (value + 1.0) / 2.0
            total += weight * value
        return total
