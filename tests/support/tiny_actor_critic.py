"""A tiny, untrained actor-critic checkpoint for PickCube's full state, loaded through the real loading code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from policies.actor_critic.model import ActorCriticConfig, NormStats, make_policy

STATE_DIM, ACTION_DIM = 42, 8  # PickCube-v1, state_mode full, pd_joint_pos


def save_tiny_actor_critic(directory: Path, state_dim: int = STATE_DIM) -> Path:
    """Write the checkpoint into `directory` (seeded: the same weights every time) for a state of
    `state_dim` values (another task's full state); its path."""
    torch.manual_seed(0)
    config = ActorCriticConfig(hidden_dims=[32, 32], relative_action_dims=list(range(7)), chunk_size=4,
                               n_action_steps=2, log_std_init=-1.0)
    stats = NormStats(np.zeros(state_dim, np.float32), np.ones(state_dim, np.float32),
                      np.zeros(ACTION_DIM, np.float32), np.full(ACTION_DIM, 0.05, np.float32))
    policy = make_policy(config, stats=stats, state_dim=state_dim, action_dim=ACTION_DIM)
    return Path(policy.save_pretrained(directory))
