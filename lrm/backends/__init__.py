"""One config type and one factory for every reward backend (LeRobot style: config -> make).

A backend YAML (configs/lrm/backends/*.yaml) names its `type` and fills that
type's section; the other sections keep their defaults and are ignored:

    type: qwen3vl            # qwen3vl | roboreward | oracle | robometer | topreward | lite | remote | vllm
    qwen3vl:
      model: /models/Qwen3-VL-8B-Instruct
      adapters: {progress: /models/lrm-progress-lora}
      mode: logits

Backends and what they answer:
- `qwen3vl`: the LRM, all three modalities (lrm.backends.qwen3vl).
- `roboreward`: a Qwen3-VL video judge (RoboReward-8B), the 1-5 rubric after the
  episode video (lrm.backends.roboreward, configs/lrm/prompts/roboreward.yaml); answers progress only.
- `oracle`: the simulator's dense reward and success flag (lrm.backends.oracle); sim only.
- `robometer`, `topreward`: LeRobot's own `lerobot.rewards` classes over the
  episode video (lrm.backends.lerobot_rewards); progress and completion.
- `lite`: the compact CNN reward model (lrm.backends.lite), all three modalities, from
  a checkpoint written by `lrm.training.lite_train.train_lite`.
- `vllm`: the LRM on vLLM's OpenAI-compatible servers, contrastive and completion
  as LoRA modules, progress merged into its own model (lrm.backends.vllm; the
  `vllm serve` command lines are there).
- `remote`: any of the above served by `lrm-robot serve` on another machine
  (lrm.backends.remote, lrm.serving); `remote.serves` names which, and the
  modalities and trace names are that backend's.

`hold_protocol` is how this backend is meant to be queried in the RL loop when
the run's interval-hold config does not say (lrm.interval_hold): `paper` for
the published adapters (configs/lrm/backends/lrm_published.yaml), `legacy`
otherwise.

`trace_prefix` names the store traces of this backend, `<prefix><modality>`;
by default "" for qwen3vl and vllm (the LRM owns the plain modality names) and
"<type>_" for the baselines, so that baseline traces never overwrite LRM ones.

The modules of this package are the backends and what only they use: the
prompt templates (`prompts`) and the answer parser (`parsing`) of the
Qwen3-VL LRM, how the video baselines are shown an episode (`video`), the
compact model's configs (`lite_config`). This module
imports configs only; a backend's model code is imported when it is made.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Literal

from lrm.backends.lerobot_rewards import RobometerBackendConfig, TOPRewardBackendConfig
from lrm.backends.lite_config import LiteBackendConfig
from lrm.backends.oracle import OracleBackendConfig
from lrm.backends.qwen3vl import Qwen3VLBackendConfig
from lrm.backends.remote import RemoteBackendConfig
from lrm.backends.vllm import VLLMBackendConfig
from lrm.backends.roboreward import RoboRewardBackendConfig
from lrm.interval_hold import HoldProtocol
from lrm.types import MODALITIES, RewardModel

BackendType = Literal["qwen3vl", "roboreward", "oracle", "robometer", "topreward", "lite", "vllm", "remote"]

SUPPORTED_MODALITIES: dict[str, tuple[str, ...]] = {
    "qwen3vl": MODALITIES,
    "roboreward": ("progress",),
    "oracle": MODALITIES,
    "robometer": ("progress", "completion"),
    "topreward": ("progress", "completion"),
    "lite": MODALITIES,
    "vllm": MODALITIES,
}


@dataclasses.dataclass
class RewardBackendConfig:
    """Which backend scores requests, and its settings (module doc)."""

    type: BackendType = "qwen3vl"
    trace_prefix: str | None = None
    hold_protocol: HoldProtocol = "legacy"
    qwen3vl: Qwen3VLBackendConfig = dataclasses.field(default_factory=Qwen3VLBackendConfig)
    roboreward: RoboRewardBackendConfig = dataclasses.field(default_factory=RoboRewardBackendConfig)
    oracle: OracleBackendConfig = dataclasses.field(default_factory=OracleBackendConfig)
    robometer: RobometerBackendConfig = dataclasses.field(default_factory=RobometerBackendConfig)
    topreward: TOPRewardBackendConfig = dataclasses.field(default_factory=TOPRewardBackendConfig)
    lite: LiteBackendConfig = dataclasses.field(default_factory=LiteBackendConfig)
    vllm: VLLMBackendConfig = dataclasses.field(default_factory=VLLMBackendConfig)
    remote: RemoteBackendConfig = dataclasses.field(default_factory=RemoteBackendConfig)

    def __post_init__(self) -> None:
        if self.type != "remote" and self.type not in SUPPORTED_MODALITIES:
            raise ValueError(f"unknown reward backend {self.type!r}, expected one of "
                             f"{[*SUPPORTED_MODALITIES, 'remote']}")
        if self.type == "remote" and self.remote.serves not in SUPPORTED_MODALITIES:
            raise ValueError(f"remote.serves: unknown reward backend {self.remote.serves!r}, "
                             f"expected one of {list(SUPPORTED_MODALITIES)}")

    @property
    def serves(self) -> str:
        """The backend type that really scores: `remote.serves` for a remote backend, else `type`."""
        return self.remote.serves if self.type == "remote" else self.type

    @property
    def modalities(self) -> tuple[str, ...]:
        return SUPPORTED_MODALITIES[self.serves]

    def trace_name(self, modality: str) -> str:
        prefix = self.trace_prefix
        if prefix is None:
            prefix = "" if self.serves in ("qwen3vl", "vllm") else f"{self.serves}_"
        return f"{prefix}{modality}"

    def describe(self) -> dict[str, str]:
        """A short provenance record for the store and metrics (which model, which mode)."""
        section = getattr(self, self.type)
        out = {"backend": self.type}
        for name in ("model", "mode", "pretrained_path", "vlm_name", "checkpoint", "url", "serves", "loras"):
            if hasattr(section, name):
                out[name] = str(getattr(section, name))
        return out


# backend type -> (module, factory); the module (torch, transformers, LeRobot) is imported only when chosen
_FACTORIES: dict[str, tuple[str, str]] = {
    "qwen3vl": ("lrm.backends.qwen3vl", "Qwen3VLRewardModel"),
    "roboreward": ("lrm.backends.roboreward", "RoboRewardModel"),
    "oracle": ("lrm.backends.oracle", "OracleRewardModel"),
    "lite": ("lrm.backends.lite", "make_lite_backend"),
    "vllm": ("lrm.backends.vllm", "VLLMRewardModel"),
    "remote": ("lrm.backends.remote", "RemoteRewardModel"),
    "robometer": ("lrm.backends.lerobot_rewards", "RobometerRewardModel"),
    "topreward": ("lrm.backends.lerobot_rewards", "TOPRewardRewardModel"),
}


def make_reward_backend(config: RewardBackendConfig) -> RewardModel:
    """Build the configured backend from its own section of the config."""
    module, factory = _FACTORIES[config.type]
    return getattr(importlib.import_module(module), factory)(getattr(config, config.type))


def build_reward_backend(config: RewardBackendConfig) -> RewardModel:
    """make_reward_backend, with a backend that cannot be built (no model, no checkpoint) as one ValueError line."""
    try:
        return make_reward_backend(config)
    except (OSError, ValueError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"cannot build the {config.type} backend: {first}") from None


__all__ = ["SUPPORTED_MODALITIES", "RewardBackendConfig", "build_reward_backend", "make_reward_backend"]
