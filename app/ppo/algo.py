"""The pieces of PPO worth testing on their own (pure torch / numpy, no envs).

GAE and the clipped loss follow CleanRL's ppo_continuous_action.py term by
term, so a reader can hold the two side by side; the reward scaler is gym's
NormalizeReward (what CleanRL wraps its envs in); the critic warm-up rule and
explained variance are ours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["PPOLoss", "RewardScaler", "compute_gae", "critic_is_warm", "explained_variance", "linear_anneal", "ppo_loss"]


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
    v = 0.5 * mean((V - R)^2), or with clipping 0.5 * mean(max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2));
    total = w * pg - w * ent_coef * mean(H) + vf_coef * v. `policy_weight` 0 trains the critic alone.

    Log-probabilities of shape (B,) give one ratio per decision (CleanRL). Shape (B, D) gives one
    ratio per action element (DPPO's per-denoising-step ratios, extended to every dimension): a
    decision of 8 actions x 8 joints is then 64 small policies that each keep their own trust
    region, instead of one ratio that hits the clip after a tiny move of every mean. Each
    element's surrogate is averaged, so the gradient at r = 1 is the policy gradient / D.
    approx_kl and the clip fraction are then per element too: summed over 64 elements of a small
    std, the KL of a decision passes any `target_kl` after one Adam step and stops the update.
    """
    log_ratio = new_log_prob - old_log_prob
    ratio = log_ratio.exp()
    with torch.no_grad():
        kl = (ratio - 1) - log_ratio  # the low-variance estimator CleanRL logs
        approx_kl = kl.mean()
        clipfrac = ((ratio - 1.0).abs() > clip_coef).float().mean()
    if norm_adv and advantages.numel() > 1:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    if ratio.ndim > 1:
        advantages = advantages[:, None]
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


def explained_variance(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """1 - Var(target - predicted) / Var(target): 1 is a perfect critic, 0 predicts the mean, < 0 worse."""
    var = float(torch.var(target))
    return float("nan") if var == 0 else 1.0 - float(torch.var(target - predicted)) / var


def critic_is_warm(iteration: int, explained: float, *, max_iterations: int, min_explained: float) -> bool:
    """Whether the critic warm-up is over at 0-based `iteration`.

    `explained` is the explained variance of this iteration's returns by the values the critic
    predicted *before* seeing them (an honest, held-out measure). The warm-up ends as soon as it
    reaches `min_explained`, and at the latest after `max_iterations` critic-only iterations.
    """
    return iteration >= max_iterations or (explained == explained and explained >= min_explained)


class RewardScaler:
    """Divides rewards by the running std of the discounted return (gym's NormalizeReward).

    Each env's return G = gamma * G + r restarts with its episode; the running variance of G over
    every step seen so far (Chan's parallel update) scales r. The scale keeps returns near unit
    size whatever the reward's units, so the critic's targets and the value loss stay O(1).
    Its statistics are saved with the checkpoint, so a resumed run scales exactly as before.
    """

    def __init__(self, num_envs: int, gamma: float, epsilon: float = 1e-8) -> None:
        self.gamma, self.epsilon = gamma, epsilon
        self.returns = np.zeros(num_envs)
        self.count, self.mean, self.var = 1e-4, 0.0, 1.0  # gym's initial values

    def reset(self) -> None:
        """Every env starts a new episode."""
        self.returns[:] = 0.0

    def __call__(self, rewards: np.ndarray) -> np.ndarray:
        """Update the statistics with one step of every env; the scaled rewards."""
        self.returns = self.returns * self.gamma + rewards
        batch_mean, batch_var, n = float(self.returns.mean()), float(self.returns.var()), len(self.returns)
        delta, total = batch_mean - self.mean, self.count + n
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        self.mean, self.var, self.count = self.mean + delta * n / total, m2 / total, total
        return rewards / np.sqrt(self.var + self.epsilon)

    def state_dict(self) -> dict[str, float]:
        return {"count": self.count, "mean": self.mean, "var": self.var}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.count, self.mean, self.var = float(state["count"]), float(state["mean"]), float(state["var"])
