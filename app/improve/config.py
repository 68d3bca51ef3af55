"""The `lrm-robot improve` config: one YAML (configs/improve/*.yaml) parsed into `ImproveConfig`.

Sections: `env` (where rollouts run, `app.env_choice`: `kind: sim` with a
ManiSkill `sim:` section, or `kind: robot` with a robot YAML), `demos` (the
demonstrations recorded into the run's store first: motion-planned in
simulation, or copied from an existing store, e.g. teleoperated demos on a
robot), `policy` (what is trained and rolled out: the small actor-critic by
behaviour cloning, or pi0.5 through LeRobot), `judge` (the completion reward
model and how it turns the last frames into a verdict), `rounds` (how many,
rollouts per round, caps, selection, evaluation). Nothing else differs
between the CPU default and the GPU config; a robot run differs in `env`,
`demos` and the checks of `_check_robot` (nothing that needs the oracle). The `policy.train` / `policy.finetune` mappings are the keyword
arguments of `policies.actor_critic.bc_train.BCTrainConfig` or `policies.pi05.finetune.
Pi05TrainConfig` (store, output_dir, select and resume are set by the round
loop); they are checked against those dataclasses when the config loads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from app.env_choice import EnvSection
from app.rollout import RolloutConfig
from common.numbers import Count, Fraction, NonNegative, NonNegativeFloat, Range, Seed, Steps, Threads
from lrm.backends import RewardBackendConfig
from lrm.backends.lite_config import LiteConfig, LiteTrainConfig
from lrm.training.dataset import DatasetConfig
from policies.factory import PolicyConfig
from recordings.selection import SelectionConfig
from sim.maniskill_env import SimEnvConfig, envs_with_solver
from common.config import config_to_dict
from common.tracking import ReportTo, parse_report_to, report_to_field

__all__ = [
    "DemosConfig",
    "EvalConfig",
    "ImproveConfig",
    "JudgeConfig",
    "LiteJudgeTraining",
]

# Seed blocks keep every use of the simulator apart: a policy is never evaluated on a seed it
# was trained on, and the judge is never trained on a seed it later judges.
DEMO_SEED = 0
CALIBRATION_SEED = 50_000
ROLLOUT_SEED = 100_000
EVAL_SEED = 900_000
# A run seed s (`seed`, `improve --seed`) repeats the same recipe independently: each block's first
# seed moves s strides into its block and the policy's and the judge's training seeds move by s; the
# evaluation seeds stay, so that every run seed is measured on the same episodes.
RUN_SEED_STRIDES = {"demos": 1_000, "calibration": 1_000, "rollouts": 10_000}


@dataclass
class DemosConfig:
    """The demonstrations recorded into the run's store first (source "demo").

    `source: plan`: ManiSkill's motion planners (simulation only).
    `source: store`: copied from the EpisodeStore or LeRobotDataset folder at
    `store` (teleoperated demos on a robot, e.g. recorded with LeRobot, or any
    demos a user brings to a sim run): the first `count` of its successful
    episodes, i.e. not aborted and with a verdict of success (the
    operator's, else the oracle's, else the LRM's) or, with no verdict at
    all, recorded as demonstrations (source "demo"); failures are never
    copied, because the judge's training takes every demonstration as a
    success.
    """

    count: Count = 50
    seed: Seed = DEMO_SEED  # plan: seeds seed, seed + 1, ...
    max_attempts: Count | None = None  # plan: solver runs before giving up; None = 3 * count
    # plan: judge_keyframes: render only the frames the judge's training reads (a state-only policy);
    # every_frame: render all (a policy that learns from images needs them)
    render: Literal["judge_keyframes", "every_frame"] = "judge_keyframes"
    source: Literal["plan", "store"] = "plan"
    store: str | None = None  # source: an EpisodeStore directory or a LeRobotDataset folder
    # plan: steps the successful end state is held and recorded, so that the policy learns to stay done
    # (sim.demos.run_solver); 0 = each demo ends at the moment of success
    hold_steps: Annotated[int, Range(0, 100_000)] = 0

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"count must be at least 1, got {self.count}")
        if self.hold_steps < 0:
            raise ValueError(f"demos.hold_steps must be >= 0, got {self.hold_steps}")
        if self.render not in ("judge_keyframes", "every_frame"):
            raise ValueError(f"demos.render must be judge_keyframes or every_frame, got {self.render!r}")
        if self.source not in ("plan", "store"):
            raise ValueError(f"demos.source must be 'plan' or 'store', got {self.source!r}")
        if self.source == "store" and not self.store:
            raise ValueError("demos.source is 'store' but demos.store names no store directory")
        if self.source == "plan" and self.store:
            raise ValueError("demos.store is set but demos.source is 'plan': set demos.source: store to copy it")


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
    cameras: list[str] | None = None  # several, shown tiled left to right as one image (instead of `camera`)
    frames: Annotated[int, Range(1, 10_000)] = 1  # judge the last k frames of each rollout
    combine: Literal["vote", "threshold"] = "threshold"  # vote: majority of per-frame verdicts; threshold: mean P
    threshold: Fraction = 0.5  # on P(completed)
    # k > 0: the judge watches every rollout, looking every k steps, and ends it when P(completed) >= threshold
    # (it, not the oracle, says when a rollout is done); calibration rollouts then render every k-th frame too,
    # each labelled by the oracle at that frame
    watch_every: NonNegative = 0
    calibration_episodes: Annotated[int, Range(0, 1_000_000)] = 0  # base-policy rollouts on their own seeds, labelled, added to the judge's data
    calibration_labels: Literal["oracle", "operator"] = "oracle"  # who labels them (sim: oracle; robot: operator)
    # k >= 2: k judges, each trained without one k-th of the calibration episodes, judge together (the mean of
    # their P): every calibration episode is then held out from one of them, and the precision the floor reads
    # is measured on all of them, not on the held-out tenth of one judge (app.improve.judge, "cross-fitted folds")
    folds: Annotated[int, Range(1, 20)] = 1
    # before each round's selection: the judge's precision on the held-out calibration episodes; below this floor
    # the round judges at the lowest higher threshold that reaches it (keeping a calibration success), else its
    # selection is skipped (app.improve.rules); 0 = no floor
    min_precision: Fraction = 0.8

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
        if self.camera is not None and self.cameras:
            raise ValueError("set judge.camera or judge.cameras, not both")
        if self.cameras is not None and not self.cameras:
            raise ValueError("judge.cameras is empty: list the cameras to tile, or leave it out")
        if self.watch_every < 0:
            raise ValueError(f"judge.watch_every must be >= 0, got {self.watch_every}")
        if self.calibration_episodes < 0:
            raise ValueError(f"judge.calibration_episodes must be >= 0, got {self.calibration_episodes}")
        if not 0.0 <= self.min_precision <= 1.0:
            raise ValueError(f"judge.min_precision must be between 0 and 1, got {self.min_precision}")
        if self.folds > 1 and not self.train_from_store:
            raise ValueError("judge.folds trains several compact judges: it needs judge.train_from_store: true")
        if self.folds > self.calibration_episodes > 0 or (self.folds > 1 and not self.calibration_episodes):
            raise ValueError(f"judge.folds: {self.folds} holds out calibration episodes from each judge: it needs at "
                             f"least {self.folds} judge.calibration_episodes, got {self.calibration_episodes}")


@dataclass
class EvalConfig:
    """Evaluation of every round's policy: in simulation the oracle's success on the same fresh seeds;
    on a robot `episodes` rollouts judged like the round's (the operator's verdict where given, else the LRM's).
    """

    episodes: Annotated[int, Range(0, 1_000_000)] = 100
    seed: Seed = EVAL_SEED
    max_steps: Steps | None = None  # None = rounds.rollout.max_steps
    # a round whose success on the eval seeds is below the best so far with exact McNemar p < this is not carried
    # forward: the next round starts from the best checkpoint (app.improve.rules); 0 = every round carried forward
    regression_alpha: Fraction = 0.05

    def __post_init__(self) -> None:
        if self.episodes < 0:
            raise ValueError(f"eval.episodes must be >= 0, got {self.episodes}")
        if not 0.0 <= self.regression_alpha <= 1.0:
            raise ValueError(f"eval.regression_alpha must be between 0 and 1, got {self.regression_alpha}")


@dataclass
class ExplorationConfig:
    """How a round's rollouts, and the calibration episodes the judge learns from, reach beyond the policy's mean.

    `parameter_noise`: each episode is rolled out by a copy of the policy whose actor weights carry
    Gaussian noise of this fraction of each weight matrix's std, drawn from the episode's seed
    (GaussianActorCritic.perturbed; 0 = the policy as it is). The round's evaluation never explores.
    """

    parameter_noise: NonNegativeFloat = 0.0

    def __post_init__(self) -> None:
        if self.parameter_noise < 0:
            raise ValueError(f"exploration.parameter_noise must be >= 0, got {self.parameter_noise}")


@dataclass
class ImproveConfig:
    """`lrm-robot improve`: demos -> base policy -> R rounds of roll out, judge, select, fine-tune, evaluate."""

    output_dir: Path = Path("outputs/improve")
    env: EnvSection = field(default_factory=lambda: EnvSection(sim=SimEnvConfig()))
    demos: DemosConfig = field(default_factory=DemosConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    rounds: Annotated[int, Range(0, 10_000)] = 2
    rollouts_per_round: Count = 60
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    rollout_seed: Seed = ROLLOUT_SEED
    seed: Seed = 0  # the run seed (RUN_SEED_STRIDES): 0, 1, 2 ... give independent repetitions of the run
    exploration: ExplorationConfig = field(default_factory=ExplorationConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    durable: bool = True  # fsync every committed episode (power-loss safe)
    num_threads: Threads | None = 1  # torch CPU threads (1 is fastest for these small nets on a shared CPU)
    progress: bool = True
    # where the per-round metrics go (OUT/metrics.jsonl; tensorboard, wandb, none: common.tracking); each
    # round's trainer reports the same way into its own folder (OUT/policy/round-<r>)
    report_to: ReportTo = report_to_field()

    def __post_init__(self) -> None:
        self.report_to = parse_report_to(self.report_to)
        if self.rounds < 0:
            raise ValueError(f"rounds must be >= 0, got {self.rounds}")
        if self.rollouts_per_round < 1:
            raise ValueError(f"rollouts_per_round must be at least 1, got {self.rollouts_per_round}")
        cams = None if self.env.is_robot else self.env.sim.cameras
        if cams is not None and not cams:
            raise ValueError("env.sim.cameras is empty: the judge needs a camera (e.g. [base_camera])")
        for camera in [self.judge.camera] if self.judge.camera is not None else self.judge.cameras or []:
            if cams is not None and camera not in cams:
                raise ValueError(f"judge camera {camera!r} is not among env.sim.cameras {cams}")
        if self.env.is_robot:
            self._check_robot()
        elif self.demos.source == "plan" and self.env.sim.env_id not in envs_with_solver():
            # said before the run starts, not after its set-up when the first round plans its demos
            raise ValueError(f"demos.source: plan needs a motion-planning solver and {self.env.sim.env_id} has none "
                             f"(solvers: {', '.join(envs_with_solver())}); set demos.source: store and demos.store")
        if self.exploration.parameter_noise and self.policy.type != "bc":
            raise ValueError(f"exploration.parameter_noise perturbs the small actor-critic (policy.type: bc); "
                             f"policy.type is {self.policy.type!r}")
        if self.judge.watch_every and self.rollout.stop_on_success:
            raise ValueError("judge.watch_every and rollout.stop_on_success both end rollouts: the judge or the "
                             "oracle, choose one")
        if self.judge.frames > 1 and self.rollout.capture == "on_demand" and self.rollout.stop_on_success:
            raise ValueError("judge.frames > 1 with rollout.stop_on_success needs rollout.capture: every_step "
                             "(an early end cannot be foreseen, so only the terminal frame would be rendered)")
        if self.judge.frames > 1 and self.rollout.capture == "on_demand" and self.rollout.judge_frames < self.judge.frames:
            self.rollout = dataclasses.replace(self.rollout, judge_frames=self.judge.frames)
        if self.policy.reads_images:
            # frames left black by on-demand rendering would be training images of the policy
            if self.demos.source == "plan" and self.demos.render != "every_frame":
                raise ValueError("the policy learns from images: set demos.render: every_frame")
            if self.rollout.capture != "every_step":
                raise ValueError("the policy learns from images: set rollout.capture: every_step")
        blocks = sorted([(DEMO_SEED, "demos"), (CALIBRATION_SEED, "calibration"), (self.rollout_seed, "rollouts"),
                         (self.eval.seed, "eval")])
        if len({s for s, _ in blocks}) != len(blocks):
            raise ValueError(f"seed blocks overlap: {blocks}")
        if self.seed:
            self._check_run_seed(dict((name, start) for start, name in blocks))

    def _check_run_seed(self, starts: dict[str, int]) -> None:
        """A run seed must keep each block's seeds inside the block (one line naming what overflows)."""
        used = {"demos": self.demos.max_attempts or 3 * self.demos.count,
                "calibration": self.judge.calibration_episodes,
                "rollouts": self.rounds * self.rollouts_per_round}
        for name, stride in RUN_SEED_STRIDES.items():
            if used[name] > stride:
                raise ValueError(f"seed: {self.seed} needs at most {stride} {name} seeds per run; this config uses "
                                 f"{used[name]} (run seeds apart from 0 move each block by {stride})")
            end = min([s for s in starts.values() if s > starts[name]], default=None)
            if end is not None and self.seed_of(name) + used[name] > end:
                raise ValueError(f"seed: {self.seed} moves the {name} seeds past {end}, where the next seed block "
                                 f"starts; use a smaller run seed")

    def seed_of(self, block: str) -> int:
        """The first simulator seed of `block` (demos, calibration, rollouts) for this run seed."""
        first = {"demos": self.demos.seed, "calibration": CALIBRATION_SEED, "rollouts": self.rollout_seed}[block]
        return first + self.seed * RUN_SEED_STRIDES[block]

    def run_judge(self) -> JudgeConfig:
        """The judge config with this run seed's training and split seeds (what trains and what is held out)."""
        if not self.seed:
            return self.judge
        train = self.judge.train
        train = dataclasses.replace(
            train, dataset=dataclasses.replace(train.dataset, seed=train.dataset.seed + self.seed),
            train=dataclasses.replace(train.train, seed=train.train.seed + self.seed))
        return dataclasses.replace(self.judge, train=train)

    def _check_robot(self) -> None:
        """What needs the simulator's oracle or planner cannot run on a robot (one line each, naming the key)."""
        if self.demos.source == "plan":
            raise ValueError("demos.source: plan (motion planning) needs the simulator; on a robot set "
                             "demos.source: store and demos.store: a store of teleoperated demonstrations")
        if self.judge.calibration_episodes and self.judge.calibration_labels == "oracle":
            raise ValueError("judge.calibration_labels: oracle needs the simulator; on a robot set "
                             "judge.calibration_labels: operator")
        if self.rollout.stop_on_success:
            raise ValueError("rollout.stop_on_success needs the simulator's oracle; on a robot set it to false "
                             "(rollout.time_limit_s caps an episode)")
        if self.rollout.time_limit_s is None:
            raise ValueError("rollout.time_limit_s is required on a robot (e.g. 30: the paper's cap)")
        if self.selection.rollouts == "oracle":
            raise ValueError("selection.rollouts: oracle needs the simulator; on a robot use accepted")

    def fingerprint(self) -> str:
        """A hash of everything that decides the run's results (not rounds, output_dir, progress or report_to)."""

        data = config_to_dict(self)
        for key in ("rounds", "output_dir", "progress", "report_to"):
            data.pop(key, None)
        if not data["seed"]:  # added later: run seed 0 is every run before it
            data.pop("seed")
        if not self.env.is_robot:
            # the shape before the env section and demos.source existed: earlier sim runs still resume
            data["env"] = data["env"]["sim"]
            if self.demos.source == "plan":
                for key in ("source", "store"):
                    data["demos"].pop(key)
        # keys added later, at their defaults, leave earlier runs' fingerprints as they were
        for section, key, default in (("judge", "cameras", None), ("judge", "watch_every", 0),
                                      ("rollout", "render_every", 0), ("demos", "hold_steps", 0),
                                      ("judge", "min_precision", 0.8), ("eval", "regression_alpha", 0.05),
                                      ("exploration", "parameter_noise", 0.0), ("judge", "folds", 1)):
            if data[section].get(key, default) == default:
                data[section].pop(key, None)
            if not data[section]:  # a section added later, every key at its default
                data.pop(section)
        # Only the judge's own backend decides results: the settings of backends it is not (new
        # ones, changed defaults) must not orphan a run folder.
        backend = data["judge"]["backend"]
        unused = [name for name in backend if isinstance(backend[name], dict) and name != backend["type"]]
        for name in unused:
            backend.pop(name)
        return hashlib.sha256(json.dumps(_portable(data), sort_keys=True, default=str).encode()).hexdigest()[:16]


_PROJECT = str(Path(__file__).resolve().parents[2]) + "/"


def _portable(value: Any) -> Any:
    """Paths inside the project relative to it: a run folder resumes wherever the project is checked out."""
    if isinstance(value, dict):
        return {k: _portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_portable(v) for v in value]
    if isinstance(value, str) and value.startswith(_PROJECT):
        return value[len(_PROJECT):]
    return value
