"""Every shipped config under configs/, with the dataclass it loads into and the command that reads it.

The fuzz tests walk this table; `test_every_shipped_config_is_listed` keeps it complete, so a
new config file is fuzzed from the day it ships.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"


@dataclass(frozen=True)
class Shipped:
    pattern: str  # relative to the repository root
    cls: str  # "module:Class"
    command: list[str] | None  # argv before the config path (None: read only as part of another config)
    overrides: tuple[str, ...] = ()  # what the file needs to load here (a path it names that only a run makes)

    def load_class(self) -> Any:
        import importlib

        module, name = self.cls.split(":")
        return getattr(importlib.import_module(module), name)


SHIPPED = [
    Shipped("configs/demos_*.yaml", "app.commands.demos:DemosConfig", ["demos", "--config"]),
    Shipped("configs/improve/*.yaml", "app.improve.config:ImproveConfig", ["improve", "--config"]),
    Shipped("configs/operate/*.yaml", "app.operator.config:OperateConfig", ["operate", "--config"]),
    Shipped("configs/ppo/*.yaml", "app.ppo.config:PPOConfig", ["ppo", "--config"]),
    Shipped("configs/lrm/backends/*.yaml", "lrm.backends:RewardBackendConfig",
            ["score", "STORE", "--episode", "0", "--backend"]),
    Shipped("configs/lrm/prompts/roboreward.yaml", "lrm.backends.roboreward:RoboRewardPrompt", None),
    Shipped("configs/lrm/prompts/[!r]*.yaml", "lrm.backends.prompts:PromptTemplate", None),
    Shipped("configs/lrm/prompts/published/*.yaml", "lrm.backends.prompts:PromptTemplate", None),
    Shipped("configs/lrm/eval/*.yaml", "lrm.evaluation.reward_eval:RewardEvalConfig", ["eval-reward", "--config"]),
    Shipped("configs/lrm/train/lite_distill.yaml", "lrm.training.lite_runs:LiteDistillRun", ["train-lrm", "--config"],
            ("teacher=configs/lrm/backends/qwen3vl.yaml",)),
    Shipped("configs/lrm/train/lite_pickcube.yaml", "lrm.training.lite_runs:LiteTrainRun", ["train-lrm", "--config"]),
    Shipped("configs/lrm/train/lora_*.yaml", "lrm.training.lora_train:LoraRunConfig", ["train-lrm", "--config"]),
    Shipped("configs/policies/bc_*.yaml", "policies.actor_critic.bc_train:BCTrainConfig",
            ["train-policy", "--config"]),
    Shipped("configs/policies/pi05_finetune_*.yaml", "policies.pi05.finetune:Pi05TrainConfig",
            ["train-policy", "--config"]),
    Shipped("configs/policies/pi05_pickcube.yaml", "policies.pi05.policy:Pi05Config", None),
    Shipped("configs/policies/eval_*.yaml", "app.commands.eval_policy:EvalPolicyConfig", ["eval-policy", "--config"]),
    Shipped("configs/robot/*.yaml", "robot_drivers.config:RobotEnvConfig", ["robot-check", "--config"]),
    Shipped("configs/serve/*.yaml", "lrm.serving.config:ServeConfig", ["serve", "--config"]),
]


def shipped_files() -> list[pathlib.Path]:
    return sorted(p.relative_to(ROOT) for p in CONFIGS.rglob("*.yaml"))


def entry(path: pathlib.Path | str) -> Shipped:
    """The one table entry of the shipped config `path` (relative to the repository root)."""
    matches = [s for s in SHIPPED if pathlib.PurePath(path).match(s.pattern)]  # `*` stays within a folder
    if len(matches) != 1:
        raise LookupError(f"{path} matches {len(matches)} entries of SHIPPED")
    return matches[0]
