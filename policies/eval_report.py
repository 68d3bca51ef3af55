"""An evaluation's outcome: the oracle's success rate with a 95% interval (pure: no env, no policy).

`app.evaluate.evaluate_policy` fills an `EvalReport` by rolling a policy out
through `app.rollout.run_rollout`.

The interval is Wilson's score interval: unlike the normal approximation it
stays inside [0, 1] and is sensible at 0 or N successes, which is exactly
where small evaluations of weak policies land.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["EvalReport", "wilson_interval"]


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default); (0, 1) when n == 0."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


@dataclass
class EvalReport:
    """Outcome of `app.evaluate.evaluate_policy`."""

    env_id: str
    policy_id: str
    episodes: int = 0
    successes: int = 0
    seeds: list[int] = field(default_factory=list)
    success_flags: list[bool] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    # The oracle's normalised dense reward (0..1), its best value in each episode: how far a
    # policy that rarely succeeds still gets (reach, grasp, lift), which success alone hides.
    max_dense_rewards: list[float] = field(default_factory=list)
    recorded: list[int] = field(default_factory=list)  # store indices of recorded episodes
    elapsed_s: float = 0.0

    @property
    def success_rate(self) -> float:
        return self.successes / self.episodes if self.episodes else 0.0

    @property
    def mean_max_dense_reward(self) -> float:
        return float(np.mean(self.max_dense_rewards)) if self.max_dense_rewards else 0.0

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson_interval(self.successes, self.episodes)

    def summary(self) -> str:
        lo, hi = self.ci95
        return (
            f"{self.env_id} {self.policy_id}: success {self.successes}/{self.episodes} = {self.success_rate:.1%} "
            f"(95% CI {lo:.1%}-{hi:.1%}), mean length {np.mean(self.lengths or [0]):.1f} steps, "
            f"mean best dense reward {self.mean_max_dense_reward:.3f}, "
            f"{self.elapsed_s:.1f} s"
        )

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.update(success_rate=self.success_rate, ci95=list(self.ci95),
                    mean_max_dense_reward=self.mean_max_dense_reward)
        return data
