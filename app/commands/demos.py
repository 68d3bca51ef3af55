"""`lrm-robot demos`: record motion-planning demonstrations into an episode store.

The solvers that ship with ManiSkill drive the simulator; every executed step
is recorded with its camera frames, and the oracle success flag and the task
sentence go into the episode attributes.
"""

from __future__ import annotations

import argparse
import pathlib
from dataclasses import dataclass

from app.config_loader import load_config


@dataclass
class DemosConfig:
    env_id: str = "PickCube-v1"
    num_episodes: int = 20
    out: pathlib.Path = pathlib.Path("outputs/demos/store")
    seed: int = 0
    camera_width: int = 128
    camera_height: int = 128
    # Give up after this many solver attempts (default: 3 x num_episodes); failed solves are not kept.
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.num_episodes <= 0:
            raise ValueError(f"num_episodes must be positive, got {self.num_episodes}")
        if self.camera_width <= 0 or self.camera_height <= 0:
            raise ValueError(f"camera size must be positive, got {self.camera_width}x{self.camera_height}")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demos",
        help="record motion-planning demonstrations into an episode store",
        description=(
            "Record successful motion-planning demonstrations (the solvers shipped with ManiSkill) "
            "into an episode store, with camera frames, state, action, the task sentence and the "
            "oracle success flag. Flags override the config file."
        ),
    )
    parser.add_argument("--config", metavar="FILE", help="YAML config (keys of DemosConfig)")
    parser.add_argument("--env", dest="env_id", metavar="ENV_ID", help="ManiSkill env id, e.g. PickCube-v1")
    parser.add_argument("-n", "--num-episodes", type=int, metavar="N", help="successful demonstrations to record")
    parser.add_argument("--out", metavar="STORE", help="episode store to append to (created if missing)")
    parser.add_argument("--seed", type=int, help="first env seed; later attempts use the following seeds")
    parser.add_argument("--camera-size", metavar="WxH", help="camera resolution, e.g. 128x128")
    parser.add_argument("--max-attempts", type=int, help="give up after this many solver attempts")
    parser.set_defaults(handler=run)


def config_from_args(args: argparse.Namespace) -> DemosConfig:
    overrides = []
    for key in ("env_id", "num_episodes", "out", "seed", "max_attempts"):
        value = getattr(args, key)
        if value is not None:
            overrides.append(f"{key}={value}")
    if args.camera_size is not None:
        width, _, height = args.camera_size.partition("x")
        overrides += [f"camera_width={width}", f"camera_height={height}"]
    return load_config(args.config, DemosConfig, overrides)


def run(args: argparse.Namespace) -> int:
    from sim.demos import record_demos

    config = config_from_args(args)
    report = record_demos(
        config.env_id,
        config.num_episodes,
        config.out,
        seed=config.seed,
        camera_size=(config.camera_height, config.camera_width),
        max_attempts=config.max_attempts,
    )
    print(report.summary())
    return 0
