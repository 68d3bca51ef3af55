"""The small actor-critic under PPO (`policies.base.PPOAgent`), chunked or not.

A decision is one sampled action chunk; PPO credits only its executed part
(`executed_steps` actions): the unexecuted tail never touches the env, so it
carries no credit and would only add variance to the ratio. `stored` is the
sample in normalised units, from which `evaluate` recomputes the log-probability
of each executed element (N, executed_steps * action_dim).

The exploration std is the policy's learned log-std, reset at the start when
`log_std` is given and kept inside `log_std_bounds` (a std that collapses stops
exploring; one that grows drowns the cloned behaviour).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from policies.actor_critic.model import GaussianActorCritic
from policies.base import Decision

__all__ = ["ActorCriticAgent"]


class ActorCriticAgent:
    """`policies.actor_critic.GaussianActorCritic` under PPO, chunked or not."""

    def __init__(self, policy: GaussianActorCritic, action_low: np.ndarray, action_high: np.ndarray,
                 log_std: float | None = None, *, n_action_steps: int | None = None,
                 log_std_bounds: tuple[float, float] | None = None) -> None:
        if log_std_bounds is not None:
            low, high = log_std_bounds
            policy.config = dataclasses.replace(policy.config, log_std_min=low, log_std_max=high)
        if n_action_steps is not None:
            if not 1 <= n_action_steps <= policy.config.chunk_size:
                raise ValueError(f"policy.n_action_steps must be in [1, {policy.config.chunk_size}] (the chunk), "
                                 f"got {n_action_steps}")
            policy.config = dataclasses.replace(policy.config, n_action_steps=n_action_steps)
        self.policy = policy
        config = policy.config
        self.chunk = config.chunk_size
        self.executed_steps = config.executed_steps
        self.action_dim = int(config.action_dim or 0)
        self.camera_names = list(config.cameras)
        self.low, self.high = np.asarray(action_low, np.float32), np.asarray(action_high, np.float32)
        if log_std is not None:
            if config.state_dependent_std:
                raise ValueError("policy.log_std cannot reset a state-dependent std")
            with torch.no_grad():
                policy.log_std.fill_(min(max(float(log_std), config.log_std_min), config.log_std_max))

    @property
    def _executed(self) -> int:
        return self.executed_steps * self.action_dim

    def decide(self, obs: Mapping[str, Any]) -> Decision:
        with torch.no_grad():
            feats = self.policy.features(obs)
            dist = self.policy.distribution(feats)
            normed = dist.sample()
            log_prob = dist.log_prob(normed)[:, : self._executed]
            value = self.policy.critic(feats).squeeze(-1)
            actions = self.policy.unnormalize_action(normed, obs["state"])
        actions = actions.reshape(actions.shape[0], self.chunk, self.action_dim)[:, : self.executed_steps]
        env_actions = np.clip(actions.cpu().numpy(), self.low, self.high).astype(np.float32)
        return Decision(env_actions, normed, log_prob, value)

    def evaluate(self, obs: Mapping[str, Any], stored: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feats = self.policy.features(obs)
        dist = self.policy.distribution(feats)
        log_prob = dist.log_prob(stored)[:, : self._executed]
        entropy = dist.entropy()[:, : self._executed].sum(-1)
        return log_prob, entropy, self.policy.critic(feats).squeeze(-1)

    def value(self, obs: Mapping[str, Any]) -> torch.Tensor:
        return self.policy.value(obs)

    def parameters(self) -> Iterable[torch.nn.Parameter]:
        return [p for p in self.policy.parameters() if p.requires_grad]

    def value_parameters(self) -> list[torch.nn.Parameter]:
        """The critic's own parameters (the image encoders are shared with the actor and are not)."""
        return list(self.policy.critic.parameters())

    def exploration_std(self) -> float:
        if self.policy.config.state_dependent_std:
            return float("nan")  # depends on the state; the entropy is logged instead
        c = self.policy.config
        log_std = self.policy.log_std.detach().clamp(c.log_std_min, c.log_std_max)
        return float(log_std[: self._executed].exp().mean())

    def train(self, mode: bool = True) -> ActorCriticAgent:
        self.policy.train(mode)
        return self

    def save(self, path: Path) -> None:
        self.policy.save_pretrained(path)

    def load(self, path: Path) -> None:
        loaded = GaussianActorCritic.from_pretrained(path, device=self.policy.state_mean.device)
        self.policy.load_state_dict(loaded.state_dict())
