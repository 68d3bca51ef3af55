"""The Policy interface (DESIGN.md, "Interfaces"): the one seam the rollout loop, the rounds and PPO use.

Three levels, each a structural Protocol so that a wrapped LeRobot policy and
the small actor-critic need no common base class:

- `Policy`: `reset()` at an episode start, `act(observation)` -> one action
  (A,) or an action chunk (K, A) in the env's own units. `needs_images` tells
  the rollout loop whether it must render the cameras (on a CPU a frame costs
  ~20x a physics step, so it renders only when asked).
- `ActorCriticPolicy`: also `evaluate(observations, actions)` ->
  (log_prob, entropy, value), batched torch tensors.
- `PPOAgent`: a policy as PPO drives it, one *decision* (an action chunk of
  which `executed_steps` run) per env; each kind of policy has its agent beside
  it (`policies.actor_critic.ppo_agent`, `policies.pi05.ppo_agent`) and
  `policies.factory.make_ppo_agent` picks one.

Training is not a method of a policy: `policies.factory.train_policy` runs the
trainer of the config's kind, so a policy module never imports its trainer.

Observations are anything with `state`, `images` and `task` (the Env
interface's `sim.env.Observation` is one); `policies` does not import `sim`,
so the dependency arrows of DESIGN.md stay one-way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["ActorCriticPolicy", "Decision", "ObservationLike", "PPOAgent", "Policy"]


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
class ActorCriticPolicy(Policy, Protocol):
    """A stochastic policy with a value head: what PPO needs."""

    def evaluate(self, observations: Mapping[str, Any], actions: Any) -> tuple[Any, Any, Any]:
        """(log_prob (B,), entropy (B,), value (B,)) of `actions` (B, A) under the policy at `observations`.

        `observations` is a batch: {"state": (B, S) float, "images": {camera: (B, H, W, 3) uint8}},
        torch tensors; actions are in the env's units.
        """
        ...


@dataclass
class Decision:
    """One PPO decision for N envs: the executed actions plus what re-scores them in the update.

    `stored` is whatever the agent needs to recompute the log-probability of the same decision
    later (the Gaussian sample in normalised units for the actor-critic, the whole denoising chain
    for pi0.5). Observation batches are {"state": (N, S) float tensor, "images": {camera:
    (N, H, W, 3) uint8 tensor}, "task": [str] * N}.
    """

    env_actions: np.ndarray  # (N, executed_steps, A) in env units, inside the env's bounds
    stored: Any  # (N, ...) torch tensor for `evaluate`
    log_prob: Any  # (N, D) torch tensor: the log-density of each of the D elements that reach the env
    value: Any  # (N,) torch tensor


class PPOAgent(Protocol):
    """A policy as the PPO loop drives it: one decision (an action chunk) per env, re-scored in the update.

    A decision's log-probability is that of its executed actions only, one term per element (N, D)
    so that the loop can clip per element or per decision (`app.ppo.algo.ppo_loss`), and its
    reward is the discounted sum over its executed steps (app.ppo.loop).
    """

    executed_steps: int
    camera_names: list[str]

    def decide(self, obs: Mapping[str, Any]) -> Decision: ...

    def evaluate(self, obs: Mapping[str, Any], stored: Any) -> tuple[Any, Any, Any]: ...

    def value(self, obs: Mapping[str, Any]) -> Any: ...

    def parameters(self) -> Iterable[Any]: ...

    def value_parameters(self) -> list[Any]: ...

    def exploration_std(self) -> float:
        """The mean std of the sampled elements (logged per iteration)."""
        ...

    def train(self, mode: bool = True) -> Any: ...

    def save(self, path: Path) -> None: ...

    def load(self, path: Path) -> None: ...
