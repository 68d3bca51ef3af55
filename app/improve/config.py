"""The `lrm-robot improve` config: one YAML (configs/improve/*.yaml) parsed into `ImproveConfig`.

Sections: `env` (the simulator, or later a robot), `demos` (the motion-planning
demonstrations recorded into the run's store), `policy` (what is trained and
rolled out: the small actor-critic by behaviour cloning, or pi0.5 through
LeRobot), `judge` (the completion reward model and how it turns the last
frames into a verdict), `rounds` (how many, rollouts per round, caps,
selection, evaluation). Nothing else differs between the CPU default and the
GPU config. The `policy.train` / `policy.finetune` mappings are the keyword
arguments of `policies.train.BCTrainConfig` or `policies.pi05_train.
Pi05TrainConfig` (store, output_dir, select and resume are set by the round
loop); they are checked against those dataclasses when the config loads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from app.rollout import RolloutConfig
from lrm.backends import RewardBackendConfig
from lrm.dataset import DatasetConfig
from lrm.lite_config import LiteConfig, LiteTrainConfig
from policies.pi05 import Pi05Config
from sim.maniskill_env import SimEnvConfig

__all__ = [
    "DemosConfig",
    "EvalConfig",
    "ImproveConfig",
    "JudgeConfig",
    "LiteJudgeTraining",
    "PolicySection",
    "SelectionConfig",
]

# Seed blocks keep every use of the simulator apart: a policy is never evaluated on a seed it
# was trained on, and the judge is never trained on a seed it later judges.
DEMO_SEED = 0
CALIBRATION_SEED = 50_000
ROLLOUT_SEED = 100_000
EVAL_SEED = 900_000


@dataclass
class DemosConfig:
    """Scripted demonstrations (ManiSkill's motion planners) recorded into the run's store first."""

    count: int = 50
    seed: int = DEMO_SEED  # seeds seed, seed + 1, ...
    max_attempts: int | None = None  # solver runs before giving up; None = 3 * count
    # judge_keyframes: render only the frames the judge's training reads (a state-only policy);
    # every_frame: render all (a policy that learns from images needs them)
    render: Literal["judge_keyframes", "every_frame"] = "judge_keyframes"

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"count must be at least 1, got {self.count}")
        if self.render not in ("judge_keyframes", "every_frame"):
            raise ValueError(f"demos.render must be judge_keyframes or every_frame, got {self.render!r}")


@dataclass
class PolicySection:
    """The policy: `bc` (small actor-critic, behaviour cloning) or `pi05` (pi0.5 through LeRobot)."""

    type: Literal["bc", "pi05"] = "bc"
    train: dict[str, Any] = field(default_factory=dict)  # round 0: trained on the demonstrations
    finetune: dict[str, Any] = field(default_factory=dict)  # rounds >= 1: overrides of `train`
    runtime: Pi05Config | None = None  # pi05: how env observations feed the checkpoint at rollout time

    def __post_init__(self) -> None:
        if self.type not in ("bc", "pi05"):
            raise ValueError(f"policy.type must be 'bc' or 'pi05', got {self.type!r}")
        for name in ("store", "output_dir", "select", "resume"):
            if name in self.train or name in self.finetune:
                raise ValueError(f"policy.train/finetune must not set {name!r}: the round loop sets it")
        self.train_config(Path("store"), Path("out"), [], round_=0)  # fail at load time, not after an hour
        self.train_config(Path("store"), Path("out"), [], round_=1, init_from=Path("prev"))

    @property
    def reads_images(self) -> bool:
        """Whether the policy is trained on camera images (pi0.5 always; the actor-critic if given cameras)."""
        if self.type == "pi05":
            return True
        return bool((self.train.get("policy") or {}).get("cameras"))

    def train_config(self, store: Path, out: Path, select: list[Any], *, round_: int,
                     init_from: Path | None = None) -> Any:
        """The BCTrainConfig / Pi05TrainConfig of one round (strictly checked, like any config)."""
        from app.config_loader import ConfigError, from_dict

        data = dict(self.train)
        if round_ > 0:
            data.update(self.finetune)
        data.update(store=str(store), output_dir=str(out), resume=True)
        if self.type == "bc":
            from policies.train import BCTrainConfig as cls
            if init_from is not None:
                data["init_from"] = str(init_from)
        else:
            from policies.pi05_train import Pi05TrainConfig as cls
            if init_from is not None:
                data["pretrained"] = str(init_from)
            data.setdefault("pretrained", "lerobot/pi05_base")
        try:
            config = from_dict(cls, data, source="policy.finetune" if round_ > 0 else "policy.train")
        except ConfigError as exc:
            raise ValueError(str(exc).replace("key '", "key 'policy.train.", 1)) from None
        config.select = list(select) or config.select
        return config


@dataclass
class LiteJudgeTraining:
    """How the compact judge is trained from the store (`judge.train`)."""

    dataset: DatasetConfig = field(default_factory=lambda: DatasetConfig(modalities=["completion"], val_fraction=0.1))
    model: LiteConfig = field(default_factory=LiteConfig)
    train: LiteTrainConfig = field(default_factory=lambda: LiteTrainConfig(steps=600))


@dataclass
class JudgeConfig:
    """The completion judge of each rollout's last frames (module doc of app.improve.judge).

    `backend.type: lite` with `train_from_store: true` trains the compact model
    on the run's demonstrations (and calibration episodes, if any) before round
    1 and fills in its checkpoint; any other completion backend (qwen3vl with
    the completion adapter, topreward, robometer) is used as configured.
    """

    backend: RewardBackendConfig = field(default_factory=lambda: RewardBackendConfig(type="lite"))
    train_from_store: bool = True
    train: LiteJudgeTraining = field(default_factory=LiteJudgeTraining)
    camera: str | None = None  # the store camera the judge sees; None = the first
    frames: int = 1  # judge the last k frames of each rollout
    combine: Literal["vote", "threshold"] = "threshold"  # vote: majority of per-frame verdicts; threshold: mean P
    threshold: float = 0.5  # on P(completed)
    calibration_episodes: int = 0  # base-policy rollouts on their own seeds, labelled, added to the judge's data
    calibration_labels: Literal["oracle", "operator"] = "oracle"  # who labels them (sim: oracle; robot: operator)

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ValueError(f"judge.frames must be at least 1, got {self.frames}")
        if self.combine not in ("vote", "threshold"):
            raise ValueError(f"judge.combine must be 'vote' or 'threshold', got {self.combine!r}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"judge.threshold must be strictly between 0 and 1, got {self.threshold}")
        if "completion" not in self.backend.modalities:
            raise ValueError(f"the judge needs a completion backend; {self.backend.type!r} has no completion")
        if self.train_from_store and self.backend.type != "lite":
            raise ValueError("judge.train_from_store trains the compact model: set judge.backend.type to 'lite'")
        if not self.train_from_store and self.backend.type == "lite" and not self.backend.lite.checkpoint:
            raise ValueError("judge.backend.lite.checkpoint is required when judge.train_from_store is false")
        if self.calibration_episodes < 0:
            raise ValueError(f"judge.calibration_episodes must be >= 0, got {self.calibration_episodes}")


@dataclass
class SelectionConfig:
    """Which episodes each round fine-tunes on (the union of demos and kept rollouts)."""

    demos: bool = True
    rollouts: Literal["accepted", "oracle", "all", "none"] = "accepted"  # accepted: operator verdict, else LRM
    rounds: int | None = None  # rollouts of the last n rounds (1 = this round only); None = this and every earlier

    def __post_init__(self) -> None:
        if self.rollouts not in ("accepted", "oracle", "all", "none"):
            raise ValueError(f"selection.rollouts must be accepted, oracle, all or none, got {self.rollouts!r}")
        if self.rounds is not None and self.rounds < 1:
            raise ValueError(f"selection.rounds must be at least 1 or null, got {self.rounds}")
        if not self.demos and self.rollouts == "none":
            raise ValueError("selection selects nothing (demos: false and rollouts: none)")


@dataclass
class EvalConfig:
    """Oracle evaluation of every round's policy on the same fresh seeds (sim only)."""

    episodes: int = 100
    seed: int = EVAL_SEED
    max_steps: int | None = None  # None = rounds.rollout.max_steps

    def __post_init__(self) -> None:
        if self.episodes < 0:
            raise ValueError(f"eval.episodes must be >= 0, got {self.episodes}")


@dataclass
class ImproveConfig:
    """`lrm-robot improve`: demos -> base policy -> R rounds of roll out, judge, select, fine-tune, evaluate."""

    output_dir: Path = Path("outputs/improve")
    env: SimEnvConfig = field(default_factory=SimEnvConfig)
    demos: DemosConfig = field(default_factory=DemosConfig)
    policy: PolicySection = field(default_factory=PolicySection)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    rounds: int = 2
    rollouts_per_round: int = 60
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    rollout_seed: int = ROLLOUT_SEED
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    durable: bool = True  # fsync every committed episode (power-loss safe)
    num_threads: int | None = 1  # torch CPU threads (1 is fastest for these small nets on a shared CPU)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.rounds < 0:
            raise ValueError(f"rounds must be >= 0, got {self.rounds}")
        if self.rollouts_per_round < 1:
            raise ValueError(f"rollouts_per_round must be at least 1, got {self.rollouts_per_round}")
        cams = self.env.cameras
        if cams is not None and not cams:
            raise ValueError("env.cameras is empty: the judge needs a camera (e.g. [base_camera])")
        if self.judge.camera is not None and cams is not None and self.judge.camera not in cams:
            raise ValueError(f"judge.camera {self.judge.camera!r} is not among env.cameras {cams}")
        if self.judge.frames > 1 and self.rollout.capture == "on_demand" and self.rollout.stop_on_success:
            raise ValueError("judge.frames > 1 with rollout.stop_on_success needs rollout.capture: every_step "
                             "(an early end cannot be foreseen, so only the terminal frame would be rendered)")
        if self.judge.frames > 1 and self.rollout.capture == "on_demand" and self.rollout.judge_frames < self.judge.frames:
            self.rollout = dataclasses.replace(self.rollout, judge_frames=self.judge.frames)
        if self.policy.reads_images:
            # frames left black by on-demand rendering would be training images of the policy
            if self.demos.render != "every_frame":
                raise ValueError("the policy learns from images: set demos.render: every_frame")
            if self.rollout.capture != "every_step":
                raise ValueError("the policy learns from images: set rollout.capture: every_step")
        blocks = sorted([(DEMO_SEED, "demos"), (CALIBRATION_SEED, "calibration"), (self.rollout_seed, "rollouts"),
                         (self.eval.seed, "eval")])
        if len({s for s, _ in blocks}) != len(blocks):
            raise ValueError(f"seed blocks overlap: {blocks}")

    def fingerprint(self) -> str:
        """A hash of everything that decides the run's results (not rounds, output_dir or progress)."""
        from app.config_loader import config_to_dict

        data = config_to_dict(self)
        for key in ("rounds", "output_dir", "progress"):
            data.pop(key, None)
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]
