"""The Policy interface (DESIGN.md, "Interfaces"): the one seam the rollout loop, the rounds and PPO use.

Three levels, each a structural Protocol so that a wrapped LeRobot policy and
the small actor-critic need no common base class:

- `Policy`: `reset()` at an episode start, `act(observation)` -> one action
  (A,) or an action chunk (K, A) in the env's own units. `needs_images` tells
  the rollout loop whether it must render the cameras (on a CPU a frame costs
  ~20x a physics step, so it renders only when asked).
- `TrainablePolicy`: also `fit(...)`, behaviour cloning on recorded frames.
- `ActorCriticPolicy`: also `evaluate(observations, actions)` ->
  (log_prob, entropy, value), batched torch tensors, which is all PPO needs.

Observations are anything with `state`, `images` and `task` (the Env
interface's `sim.env.Observation` is one); `policies` does not import `sim`,
so the dependency arrows of DESIGN.md stay one-way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["ActorCriticPolicy", "ObservationLike", "Policy", "TrainablePolicy"]


@runtime_checkable
class ObservationLike(Protocol):
    """What a policy reads from an env observation."""

    state: np.ndarray  # (S,) float32
    images: Mapping[str, np.ndarray]  # camera name -> (H, W, 3) uint8; may be empty
    task: str


@runtime_checkable
class Policy(Protocol):
    """Maps observations to actions; stateful across the steps of one episode only."""

    @property
    def needs_images(self) -> bool:
        """True if `act` reads `observation.images` (the caller must capture before acting)."""
        ...

    @property
    def camera_names(self) -> list[str]:
        """The cameras `act` reads, in order; empty for a state-only policy."""
        ...

    def reset(self) -> None:
        """Forget per-episode state (action queues, recurrent state) before a new episode."""
        ...

    def act(self, observation: ObservationLike) -> np.ndarray:
        """One action (A,) or an action chunk (K, A), float32, in the env's action units."""
        ...


@runtime_checkable
class TrainablePolicy(Policy, Protocol):
    """A policy that can be fitted to recorded frames (behaviour cloning)."""

    def fit(self, train_data: Any, val_data: Any | None = None, **options: Any) -> Any:
        """Fit to `train_data`, report validation loss on `val_data`; returns a training report."""
        ...


@runtime_checkable
class ActorCriticPolicy(TrainablePolicy, Protocol):
    """A stochastic policy with a value head: what PPO needs."""

    def evaluate(self, observations: Mapping[str, Any], actions: Any) -> tuple[Any, Any, Any]:
        """(log_prob (B,), entropy (B,), value (B,)) of `actions` (B, A) under the policy at `observations`.

        `observations` is a batch: {"state": (B, S) float, "images": {camera: (B, H, W, 3) uint8}},
        torch tensors; actions are in the env's units.
        """
        ...
