"""The two pieces of PPO worth testing on their own: GAE and the clipped loss (pure torch, no envs).

Both follow CleanRL's ppo_continuous_action.py term by term, so a reader can
hold the two side by side.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["PPOLoss", "compute_gae", "linear_anneal", "ppo_loss"]


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    next_value: torch.Tensor,
    next_done: torch.Tensor,
    gamma: float | torch.Tensor,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns), each (T, N), by generalised advantage estimation.

    rewards, values, dones: (T, N); `dones[t]` says decision t started an
    episode (CleanRL's convention: the value of step t must not bootstrap into
    t from the previous episode). `next_value` / `next_done` (N,) belong to
    the observation after the last decision: a truncated episode bootstraps
    from V(s_T), a terminated one (next_done = 1) does not. `gamma` is the
    discount between two decisions (gamma**n for a chunk of n env steps), a
    number or one per decision (T,).
    """
    steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(next_value)
    for t in reversed(range(steps)):
        if t == steps - 1:
            nonterminal = 1.0 - next_done.float()
            following = next_value
        else:
            nonterminal = 1.0 - dones[t + 1].float()
            following = values[t + 1]
        g = gamma[t] if isinstance(gamma, torch.Tensor) and gamma.ndim else gamma
        delta = rewards[t] + g * following * nonterminal - values[t]
        last = delta + g * gae_lambda * nonterminal * last
        advantages[t] = last
    return advantages, advantages + values


@dataclass
class PPOLoss:
    """The total loss and its parts (detached floats for logging, except `total`)."""

    total: torch.Tensor
    policy: float
    value: float
    entropy: float
    approx_kl: float
    clipfrac: float


def ppo_loss(
    new_log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    new_value: torch.Tensor,
    old_value: torch.Tensor,
    returns: torch.Tensor,
    entropy: torch.Tensor,
    *,
    clip_coef: float,
    clip_vloss: bool,
    ent_coef: float,
    vf_coef: float,
    norm_adv: bool,
    policy_weight: float = 1.0,
) -> PPOLoss:
    """Clipped surrogate + (optionally clipped) value loss - entropy bonus, on one minibatch.

    pg = mean(max(-A * r, -A * clip(r, 1 - c, 1 + c))), r = exp(new - old);
    v = 0.5 * mean(max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2)) when clipped,
    else 0.5 * mean((V - R)^2); total = w * pg - ent_coef * mean(H) + vf_coef * v.
    `policy_weight` 0 trains the critic alone (a value warm-up).
    """
    log_ratio = new_log_prob - old_log_prob
    ratio = log_ratio.exp()
    with torch.no_grad():
        approx_kl = ((ratio - 1) - log_ratio).mean()  # the low-variance estimator CleanRL logs
        clipfrac = ((ratio - 1.0).abs() > clip_coef).float().mean()
    if norm_adv and advantages.numel() > 1:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    pg = torch.max(-advantages * ratio, -advantages * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef)).mean()
    if clip_vloss:
        unclipped = (new_value - returns) ** 2
        clipped = (old_value + torch.clamp(new_value - old_value, -clip_coef, clip_coef) - returns) ** 2
        v_loss = 0.5 * torch.max(unclipped, clipped).mean()
    else:
        v_loss = 0.5 * ((new_value - returns) ** 2).mean()
    ent = entropy.mean()
    total = policy_weight * pg - policy_weight * ent_coef * ent + vf_coef * v_loss
    return PPOLoss(total, float(pg.detach()), float(v_loss.detach()), float(ent.detach()),
                   float(approx_kl), float(clipfrac))


def linear_anneal(iteration: int, iterations: int) -> float:
    """CleanRL's LR factor for 0-based `iteration`: 1.0 at the first, 1/iterations at the last."""
    return 1.0 - iteration / iterations
