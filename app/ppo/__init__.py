"""Online PPO in simulation with reward-model rewards (`lrm-robot ppo`).

- `config`: the run's dataclasses (`PPOConfig`), loaded from configs/ppo/*.yaml;
- `algo`: GAE and the clipped PPO loss (pure torch);
- `rewards`: interval-hold reward-model rewards (through `lrm.guarded`), env-reward mixing;
- the envs are `sim.vector_env`; the policy under PPO is a `policies.base.PPOAgent` that
  `policies.factory.make_ppo_agent` builds;
- `report`: reward-vs-oracle agreement, metrics.jsonl / metrics.rrd / learning_curve.png;
- `loop`: `train_ppo`, the loop itself, with checkpoints and resume.
"""

from app.ppo.config import PPOConfig
from app.ppo.loop import PPOResult, train_ppo

__all__ = ["PPOConfig", "PPOResult", "train_ppo"]
