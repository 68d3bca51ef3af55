"""Every knob of `lrm-robot ppo` in one dataclass tree, loaded from YAML by `common.config`.

CleanRL keeps its hyper-parameters in one `Args` dataclass; `PPOConfig` is
that, plus where the policy starts, which envs run, where the reward comes
from and where results go. A run directory holds everything needed to resume.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from common.tracking import ReportTo, parse_report_to, report_to_field
from common.config import ConfigFile, config_file
from common.numbers import Count, Fraction, LearningRate, NonNegative, PositiveFloat, Range, Seed, Steps, Threads
from lrm.backends import RewardBackendConfig
from lrm.interval_hold import IntervalHoldConfig
from policies.factory import PPOPolicyConfig
from sim.maniskill_env import SimEnvConfig

__all__ = ["EnvSection", "PPOConfig", "PPOHyper", "RewardSection"]


@dataclass
class PPOHyper:
    """The PPO hyper-parameters (names as in CleanRL's ppo_continuous_action.py, plus what a cloned start needs)."""

    learning_rate: LearningRate = 3e-4
    # The critic's rate; None = learning_rate. A behaviour-cloned start has a good actor and an untrained
    # critic, and the small rate that keeps the actor near BC leaves such a critic useless for a long time.
    value_learning_rate: LearningRate | None = None
    anneal_lr: bool = False  # linear decay to 0 over the run's iterations (both rates); CleanRL's default is on
    gamma: Fraction = 0.99  # per env step; a chunk of n steps discounts by gamma**n
    gae_lambda: Fraction = 0.95
    num_minibatches: Count = 4
    update_epochs: Count = 4
    norm_adv: bool = True
    clip_coef: PositiveFloat = 0.2
    clip_vloss: bool = False  # value clipping (+-clip_coef per update) holds an untrained critic near 0
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: PositiveFloat = 0.5  # the actor's gradient norm clip
    value_max_grad_norm: PositiveFloat | None = None  # the critic's; None = max_grad_norm. Clipped apart, so
    # the critic's large early gradients do not shrink the actor's step
    target_kl: PositiveFloat | None = None  # stop the epochs of an update early past this approximate KL
    # "per_element": one ratio per executed action element (a chunk of 8 actions x 8 joints has 64), each
    # clipped on its own; "per_decision": one ratio for the whole chunk (CleanRL) — with many elements
    # it hits the clip after a tiny move of every mean.
    ratio: Literal["per_element", "per_decision"] = "per_element"
    normalize_reward: bool = True  # divide rewards by the running std of the discounted return (gym's)
    # The critic warms up before the actor trains: critic-only iterations until the critic explains
    # value_warmup_min_ev of a fresh rollout's returns, at most value_warmup_iterations of them,
    # each fitting its rollout for value_warmup_epochs epochs.
    value_warmup_iterations: NonNegative = 0
    value_warmup_min_ev: Annotated[float, Range(-1.0, 1.0)] = 0.5
    value_warmup_epochs: Count = 10

    def __post_init__(self) -> None:
        if self.learning_rate <= 0 or (self.value_learning_rate is not None and self.value_learning_rate <= 0):
            raise ValueError("learning_rate and value_learning_rate must be positive")
        if not 0 < self.gamma <= 1 or not 0 <= self.gae_lambda <= 1:
            raise ValueError("gamma must be in (0, 1] and gae_lambda in [0, 1]")
        if self.num_minibatches < 1 or self.update_epochs < 1 or self.value_warmup_epochs < 1:
            raise ValueError("num_minibatches, update_epochs and value_warmup_epochs must be at least 1")
        if self.clip_coef <= 0 or self.max_grad_norm <= 0 or (self.value_max_grad_norm or 1) <= 0:
            raise ValueError("clip_coef, max_grad_norm and value_max_grad_norm must be positive")
        if self.value_warmup_iterations < 0:
            raise ValueError("value_warmup_iterations must be >= 0")


@dataclass
class EnvSection:
    """Which task, how many parallel envs, on which backend.

    `backend`: "cpu" splits `num_envs` single ManiSkill envs in equal blocks
    over `workers` `AsyncVectorEnv` worker processes (0: one per CPU core;
    "cpu_sync": all in this process, one after another); "gpu" one
    ManiSkill env with `num_envs` sub-scenes on physx_cuda; "auto" picks gpu
    when torch sees CUDA. Every backend on the CPU gives the same numbers.
    """

    sim: SimEnvConfig = field(default_factory=lambda: SimEnvConfig(state_mode="full", cameras=[]))
    num_envs: Annotated[int, Range(1, 100_000)] = 4
    backend: Literal["auto", "cpu", "cpu_sync", "gpu"] = "auto"
    workers: Annotated[int, Range(0, 1024)] = 0  # "cpu": worker processes; must divide num_envs
    episode_steps: Steps = 100  # env steps per episode; all envs reset together (ManiSkill's partial_reset=False)
    seed: Seed = 0  # env seeds of iteration i: seed + i * num_envs + (0..num_envs-1)

    def __post_init__(self) -> None:
        if self.num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {self.num_envs}")
        if self.episode_steps < 1:
            raise ValueError(f"episode_steps must be at least 1, got {self.episode_steps}")
        if self.workers and self.num_envs % self.workers:
            raise ValueError(f"env.workers {self.workers} must divide num_envs {self.num_envs} (equal blocks)")


@dataclass
class RewardSection:
    """r_t = lrm_weight * (interval-held reward-model value) + env_weight * (env dense reward).

    `source: env` is the oracle arm: r_t is the simulator's normalised dense
    reward every step (env_weight is not used), no reward model, no rendering. `source: lrm` queries
    `backend` (a configs/lrm/backends/*.yaml, loaded with this config) through the interval-hold
    wrapper; `env_weight` > 0 mixes the env reward in (ablations).
    """

    source: Literal["lrm", "env"] = "lrm"
    backend: ConfigFile[RewardBackendConfig] = config_file(RewardBackendConfig, "configs/lrm/backends/lite.yaml")
    hold: IntervalHoldConfig = field(default_factory=IntervalHoldConfig)
    camera: str | None = None  # the camera the reward model sees; None = the env's first
    lrm_weight: float = 1.0
    env_weight: float = 0.0
    success_bonus: float = 0.0  # added on steps where the oracle reports success (privileged: ablations only)

    def __post_init__(self) -> None:
        if self.source == "lrm" and not self.backend:
            raise ValueError("reward.backend must name a backend YAML when reward.source is 'lrm'")


@dataclass
class PPOConfig:
    """`lrm-robot ppo --config CONFIG` (configs/ppo/*.yaml)."""

    output_dir: Path = Path("outputs/ppo/run")
    policy: PPOPolicyConfig = field(default_factory=lambda: PPOPolicyConfig(checkpoint="outputs/policies/bc_pickcube/checkpoints/last"))
    env: EnvSection = field(default_factory=EnvSection)
    reward: RewardSection = field(default_factory=RewardSection)
    ppo: PPOHyper = field(default_factory=PPOHyper)
    iterations: Count = 20  # each: one synchronised episode in every env, then one update
    checkpoint_every: Count = 5  # iterations; the last iteration always checkpoints
    resume: bool = True  # continue from OUTPUT/checkpoints/last when it exists (a killed run, same command)
    seed: Seed = 0  # torch seed of iteration i is (seed, i): a resumed run continues identically
    device: str = "cpu"  # where the actor-critic trains ("auto": cuda when available)
    num_threads: Threads | None = None  # torch CPU threads in the learner
    rerun: bool = True  # write OUTPUT/metrics.rrd
    plot: bool = True  # write OUTPUT/learning_curve.png
    progress: bool = True
    # OUTPUT/metrics.jsonl is always written (the plots and a resumed run read it); tensorboard and wandb
    # get the same rows (common.tracking); none: the JSONL alone
    report_to: ReportTo = report_to_field()

    def __post_init__(self) -> None:
        self.report_to = parse_report_to(self.report_to)
        if self.iterations < 1 or self.checkpoint_every < 1:
            raise ValueError("iterations and checkpoint_every must be at least 1")
