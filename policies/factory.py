"""The one place that picks a kind of policy: build, load, train and wrap for PPO (LeRobot's `make_policy`).

Two kinds exist, each in its own folder with a config, a class, a trainer and a PPO agent:

| kind | folder | checkpoint | trainer | PPO agent |
|---|---|---|---|---|
| `actor_critic` (`bc` in round configs) | `policies/actor_critic/` | config.json + model.safetensors | behaviour cloning (`bc_train`) | Gaussian chunk (`ppo_agent`) |
| `pi05` | `policies/pi05/` | LeRobot's pi0.5 folder | LeRobot fine-tuning (`finetune`) | flow-noise chain (`ppo_agent`) |

Everything else (the rounds, the operator, PPO, the commands) asks this module
and never branches on the kind itself, so a new kind is one folder plus one
entry per function here. The kind modules are imported inside the functions:
importing `policies` pulls in neither torch nor LeRobot.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from common.config import ConfigError, config_type, from_dict, load_config
from policies.base import PPOAgent, Policy
from policies.errors import PolicyError
from policies.pi05.policy import Pi05Config

__all__ = ["PPOPolicyConfig", "PolicyConfig", "TrainConfig", "checkpoint_kind", "load_policy", "load_train_config",
           "make_ppo_agent", "train_policy"]

Kind = Literal["actor_critic", "pi05"]
# `bc` is what a round config has always called the behaviour-cloned actor-critic
_KIND_NAMES: dict[str, Kind] = {"bc": "actor_critic", "actor_critic": "actor_critic", "pi05": "pi05"}

TrainConfig = Any  # BCTrainConfig | Pi05TrainConfig (kept lazy: each pulls in torch or LeRobot)


def _kind(name: str | None) -> Kind:
    try:
        return _KIND_NAMES[name or "actor_critic"]
    except KeyError:
        raise PolicyError(f"unknown policy type {name!r}; expected one of {sorted(_KIND_NAMES)}") from None


def _train_config_class(kind: Kind) -> type:
    if kind == "pi05":
        from policies.pi05.finetune import Pi05TrainConfig

        return Pi05TrainConfig
    from policies.actor_critic.bc_train import BCTrainConfig

    return BCTrainConfig


# -- checkpoints ------------------------------------------------------------------------------------------


def checkpoint_kind(path: str | Path) -> Kind:
    """The kind of the checkpoint folder `path` (LeRobot writes `type: pi05` into config.json)."""
    try:
        name = json.loads((Path(path) / "config.json").read_text()).get("type")
    except (OSError, ValueError, AttributeError):
        name = None
    return "pi05" if name == "pi05" else "actor_critic"


def load_policy(path: str | Path, *, runtime: Pi05Config | None = None, device: str = "cpu") -> Policy:
    """The policy saved in checkpoint folder `path`, of whichever kind.

    `runtime` (a pi0.5 section) says how env observations feed a pi0.5 checkpoint, which may then
    also be a hub id; without it camera X feeds observation.images.X.
    """
    if runtime is not None or checkpoint_kind(path) == "pi05":
        from policies.pi05.policy import make_policy

        return make_policy(dataclasses.replace(runtime or Pi05Config(), pretrained=str(path)))
    from policies.actor_critic.model import GaussianActorCritic

    try:
        return GaussianActorCritic.from_pretrained(path, device=device)
    except (FileNotFoundError, ValueError) as exc:
        raise PolicyError(str(exc)) from None


# -- training ---------------------------------------------------------------------------------------------


def load_train_config(path: str | Path, overrides: list[str]) -> TrainConfig:
    """`lrm-robot train-policy --config`: the trainer config of the kind the file's `type` key names."""
    return load_config(path, _train_config_class(_kind(config_type(path))), overrides)


def train_policy(config: TrainConfig) -> Any:
    """Run the trainer of `config`'s kind; the result has `checkpoint`, `train_loss` and `summary()`."""
    from policies.actor_critic.bc_train import BCTrainConfig, train_bc

    if isinstance(config, BCTrainConfig):
        return train_bc(config)
    from policies.pi05.finetune import finetune_pi05

    return finetune_pi05(config)


@dataclass
class PolicyConfig:
    """The policy a run trains and runs: its kind, the trainer's settings per round, how it runs.

    `train` is the trainer config of round 0 (BCTrainConfig / Pi05TrainConfig keys, without the
    store, output folder and selection that the round sets); `finetune` overrides it for later
    rounds; `runtime` (pi0.5) says how env observations feed the checkpoint at rollout time.
    """

    type: Literal["bc", "pi05"] = "bc"
    train: dict[str, Any] = field(default_factory=dict)
    finetune: dict[str, Any] = field(default_factory=dict)
    runtime: Pi05Config | None = None

    def __post_init__(self) -> None:
        if self.type not in ("bc", "pi05"):
            raise ValueError(f"policy.type must be 'bc' or 'pi05', got {self.type!r}")
        for name in ("store", "output_dir", "select", "resume"):
            if name in self.train or name in self.finetune:
                raise ValueError(f"policy.train/finetune must not set {name!r}: the round loop sets it")
        self.train_config(Path("store"), Path("out"), [], round_=0)  # fail at load time, not after an hour
        self.train_config(Path("store"), Path("out"), [], round_=1, init_from=Path("prev"))

    @property
    def kind(self) -> Kind:
        return _kind(self.type)

    @property
    def reads_images(self) -> bool:
        """Whether the policy is trained on camera images (pi0.5 always; the actor-critic if given cameras)."""
        if self.kind == "pi05":
            return True
        return bool((self.train.get("policy") or {}).get("cameras"))

    def train_config(self, store: Path, out: Path, select: list[Any], *, round_: int,
                     init_from: Path | None = None) -> TrainConfig:
        """The trainer config of one round (strictly checked, like any config); round 0 trains from scratch."""
        data = dict(self.train)
        if round_ > 0:
            data.update(self.finetune)
        data.update(store=str(store), output_dir=str(out), resume=True)
        if self.kind == "pi05":
            data.setdefault("pretrained", "lerobot/pi05_base")
            if init_from is not None:
                data["pretrained"] = str(init_from)
        elif init_from is not None:
            data["init_from"] = str(init_from)
        try:
            config = from_dict(_train_config_class(self.kind), data,
                               source="policy.finetune" if round_ > 0 else "policy.train")
        except ConfigError as exc:
            raise ValueError(str(exc).replace("key '", "key 'policy.train.", 1)) from None
        config.select = list(select) or config.select
        return config

    def load(self, checkpoint: str | Path) -> Policy:
        """The checkpoint a round trained, run as `runtime` says."""
        return load_policy(checkpoint, runtime=self.runtime)


# -- PPO --------------------------------------------------------------------------------------------------


@dataclass
class PPOPolicyConfig:
    """Where PPO starts: a checkpoint of the small actor-critic (`actor_critic`) or pi0.5 (`pi05`)."""

    type: Literal["actor_critic", "pi05"] = "actor_critic"
    checkpoint: str = ""  # actor-critic checkpoint directory, or pi0.5 checkpoint folder / hub id
    log_std: float | None = None  # actor-critic: reset the exploration std (log, normalised units); None keeps it
    # actor-critic: the learned log-std stays inside [low, high]; None keeps the checkpoint's bounds
    log_std_bounds: tuple[float, float] | None = None
    n_action_steps: int | None = None  # executed actions per decision; None = the checkpoint's
    # pi0.5 only (policies.pi05.ppo_agent.Pi05RLConfig): noise injected into the denoising chain
    noise_level: float = 0.5
    num_inference_steps: int | None = None
    train_vlm: bool = False  # False: only the action expert, projections and value head are trained
    device: str = "auto"
    tokenizer: str | None = None

    def __post_init__(self) -> None:
        if not self.checkpoint:
            raise ValueError("policy.checkpoint is required (a behaviour-cloned actor-critic or a pi0.5 checkpoint)")
        if self.noise_level <= 0:
            raise ValueError(f"noise_level must be positive, got {self.noise_level}")
        if self.log_std_bounds is not None and not self.log_std_bounds[0] < self.log_std_bounds[1]:
            raise ValueError(f"log_std_bounds must be [low, high] with low < high, got {list(self.log_std_bounds)}")
        if self.n_action_steps is not None and self.n_action_steps < 1:
            raise ValueError(f"n_action_steps must be at least 1, got {self.n_action_steps}")


def make_ppo_agent(config: PPOPolicyConfig, *, state_size: int, camera_names: list[str], action_low: np.ndarray,
                   action_high: np.ndarray, env_name: str, device: Any = "cpu") -> PPOAgent:
    """The policy of `config`, checked against the envs (`env_name` names them in errors), wrapped for PPO."""
    if _kind(config.type) == "pi05":
        from policies.pi05.ppo_agent import Pi05RLConfig, make_pi05_rl

        agent = make_pi05_rl(Pi05RLConfig(
            pretrained=config.checkpoint, noise_level=config.noise_level,
            num_inference_steps=config.num_inference_steps, n_action_steps=config.n_action_steps,
            train_vlm=config.train_vlm, device=config.device, tokenizer=config.tokenizer,
        ))
        expected = agent.pi05.state_dim
        if expected is not None and expected != state_size:
            raise PolicyError(f"pi0.5 checkpoint {config.checkpoint} reads a state of {expected} values but "
                              f"{env_name} gives {state_size}")
        missing = [c for c in agent.camera_names if c not in camera_names]
        if missing:
            raise PolicyError(f"pi0.5 needs camera {missing[0]!r}; env.sim.cameras gives {camera_names}")
        agent.set_action_bounds(action_low, action_high)
        return agent
    from policies.actor_critic.model import GaussianActorCritic
    from policies.actor_critic.ppo_agent import ActorCriticAgent

    try:
        policy = GaussianActorCritic.from_pretrained(config.checkpoint, device=device)
    except (FileNotFoundError, ValueError) as exc:
        raise PolicyError(f"policy.checkpoint: {exc}") from None
    if policy.state_dim != state_size:
        raise PolicyError(f"policy.checkpoint {config.checkpoint} reads a state of {policy.state_dim} values but "
                          f"{env_name} gives {state_size}")
    missing = [c for c in policy.camera_names if c not in camera_names]
    if missing:
        raise PolicyError(f"the policy needs camera {missing[0]!r}; env.sim.cameras gives {camera_names}")
    try:
        return ActorCriticAgent(policy, action_low, action_high, log_std=config.log_std,
                                n_action_steps=config.n_action_steps, log_std_bounds=config.log_std_bounds)
    except ValueError as exc:
        raise PolicyError(str(exc)) from None
