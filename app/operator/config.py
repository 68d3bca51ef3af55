"""The `lrm-robot operate` config: one YAML (configs/operate/*.yaml) parsed into `OperateConfig`.

Sections:
- `env`: `kind: sim` (a ManiSkill env, `sim:` is a `SimEnvConfig`) or
  `kind: robot` (`robot:` names a robot YAML of configs/robot/, built by
  `robot_drivers`); everything else is the same for both (`app.env_choice`,
  shared with `lrm-robot improve`).
- `improve_run`: optional directory of an `lrm-robot improve` run. Its
  latest trained policy and its trained judge fill in `policy.checkpoint`
  and the lite judge's checkpoint when those are left empty, and its store
  becomes the operator's store (so fine-tuning sees the demonstrations).
- `policy`: the checkpoint rolled out first (or, for dry runs, `dry_run:
  random` in simulation or `hold` on a robot), plus the `app.improve`
  policy section used to fine-tune it after every round.
- `judge`: the completion reward model that gives each rollout its verdict
  on the last frame(s) (`app.improve.judge`).
- `rewards`: the live reward traces shown as sparklines and stored with the
  frames: a backend (null: the judge's model) queried every `every` steps
  through `lrm.interval_hold`, one trace per modality in `weights`.
- `rounds`, `rollouts_per_round`, `rollout`, `selection`, `eval`: as in
  `lrm-robot improve`.
- `auto_next`: start the next rollout without waiting for the operator's
  `next` key (dry runs, tests).
- `rerun_dir`: save every committed episode as `<dir>/episode-<i>.rrd`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from app.env_choice import EnvSection
from app.improve.config import EvalConfig, JudgeConfig
from app.improve.state import run_path
from app.rollout import RolloutConfig
from common.numbers import Count, Fraction, Positive, Range, Seed, Threads
from lrm.backends import RewardBackendConfig
from lrm.types import MODALITIES
from policies.factory import PolicyConfig
from recordings.selection import SelectionConfig

__all__ = ["EnvSection", "JudgeSection", "LiveRewardsConfig", "OperateConfig", "OperatorPolicy"]


@dataclass
class OperatorPolicy:
    checkpoint: str | None = None  # a train-policy / improve checkpoint
    # Without a checkpoint: "random" (uniform actions; the simulator's default) or "hold" (command the
    # measured joints: a dry run that exercises cameras, safety, recording and the judge without moving).
    # A robot never gets random actions.
    dry_run: Literal["random", "hold"] | None = None
    random_seed: Seed = 0
    improve: PolicyConfig = field(default_factory=PolicyConfig)  # how each round fine-tunes (app.improve)


@dataclass
class JudgeSection:
    """The completion judge; `app.improve.config.JudgeConfig` without the training part."""

    backend: RewardBackendConfig = field(default_factory=lambda: RewardBackendConfig(type="lite"))
    camera: str | None = None
    frames: Annotated[int, Range(1, 10_000)] = 1
    combine: Literal["vote", "threshold"] = "threshold"
    threshold: Fraction = 0.5

    def judge_config(self) -> JudgeConfig:
        """The JudgeConfig that `app.improve.judge.judge_episode` takes (validated there)."""
        return JudgeConfig(backend=self.backend, train_from_store=False, camera=self.camera, frames=self.frames,
                           combine=self.combine, threshold=self.threshold)


@dataclass
class LiveRewardsConfig:
    backend: RewardBackendConfig | None = None  # null: the judge's model
    every: Positive = 10  # K of interval-hold: one query per K steps
    weights: dict[str, float] = field(default_factory=lambda: {"progress": 1.0, "completion": 1.0})
    camera: str | None = None  # null: the first camera
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"rewards.every must be at least 1, got {self.every}")
        bad = [m for m in self.weights if m not in MODALITIES]
        if bad:
            raise ValueError(f"rewards.weights: unknown modality {bad[0]!r}, expected one of {MODALITIES}")


@dataclass
class OperateConfig:
    output_dir: Path = Path("outputs/operate")
    store: Path | None = None  # null: <improve_run>/store if given, else <output_dir>/store
    improve_run: Path | None = None
    env: EnvSection = field(default_factory=EnvSection)
    policy: OperatorPolicy = field(default_factory=OperatorPolicy)
    judge: JudgeSection = field(default_factory=JudgeSection)
    rewards: LiveRewardsConfig = field(default_factory=LiveRewardsConfig)
    rounds: Annotated[int, Range(1, 10_000)] = 1
    rollouts_per_round: Count = 10
    rollout: RolloutConfig = field(default_factory=lambda: RolloutConfig(max_steps=100, capture="every_step"))
    rollout_seed: Seed = 200_000  # apart from improve's seed blocks: an operated rollout never repeats one
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    finetune: bool = True  # fine-tune after every round (false: only roll out and judge)
    eval: EvalConfig = field(default_factory=lambda: EvalConfig(episodes=0))
    auto_next: bool = False
    rerun_dir: Path | None = None
    durable: bool = True
    num_threads: Threads | None = 1

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ValueError(f"rounds must be at least 1, got {self.rounds}")
        if self.rollouts_per_round < 1:
            raise ValueError(f"rollouts_per_round must be at least 1, got {self.rollouts_per_round}")
        if self.env.kind == "robot" and self.eval.episodes:
            raise ValueError("eval.episodes needs the simulator's oracle; set it to 0 for env.kind: robot")
        if self.env.kind == "robot" and self.policy.checkpoint is None and self.improve_run is None:
            if self.policy.dry_run != "hold":
                raise ValueError("a robot needs policy.checkpoint (or policy.dry_run: hold, which holds the arm "
                                 "still); random actions are for the simulator only")
        if self.rewards.enabled and self.rollout.capture != "every_step":
            # A reward query needs a rendered frame, and only every_step renders frames on a fixed schedule.
            raise ValueError("rewards need rollout.capture: every_step (or set rewards.enabled: false)")

    @property
    def store_path(self) -> Path:
        if self.store is not None:
            return Path(self.store)
        if self.improve_run is not None:
            return Path(self.improve_run) / "store"
        return Path(self.output_dir) / "store"

    def resolved(self) -> OperateConfig:
        """A copy with the checkpoints an improve run provides filled in (module doc); ValueError if unusable."""
        if self.improve_run is None:
            return self
        run = Path(self.improve_run)
        state_file = run / "state.json"
        try:
            steps: dict[str, Any] = json.loads(state_file.read_text()).get("steps") or {}
        except (OSError, ValueError) as exc:
            raise ValueError(f"improve_run {run}: cannot read {state_file.name} ({exc}); run `lrm-robot improve` "
                             "there first, or set improve_run: null with policy.checkpoint and the judge's "
                             "checkpoint") from None
        policy = self.policy
        if policy.checkpoint is None:
            trained = sorted((int(k.split("-")[1]), v) for k, v in steps.items()
                             if k.startswith("train-") and k.split("-")[1].isdigit())
            if not trained:
                raise ValueError(f"improve_run {run} has no trained policy yet (no train-<r> step in state.json)")
            policy = dataclasses.replace(policy, checkpoint=str(run_path(trained[-1][1]["checkpoint"], run)))
        judge = self.judge
        if judge.backend.type == "lite" and not judge.backend.lite.checkpoint:
            done = steps.get("judge-train")
            if not done:
                raise ValueError(f"improve_run {run} has no trained judge (no judge-train step in state.json)")
            lite = dataclasses.replace(judge.backend.lite, checkpoint=str(run_path(done["checkpoint"], run)))
            judge = dataclasses.replace(judge, backend=dataclasses.replace(judge.backend, lite=lite))
        return dataclasses.replace(self, policy=policy, judge=judge)
