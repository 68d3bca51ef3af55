"""`lrm-robot demos`: record motion-planning demonstrations into an episode store.

The solvers that ship with ManiSkill drive the simulator; every executed step
is recorded with its camera frames, and the oracle success flag and the task
sentence go into the episode attributes.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from dataclasses import dataclass, field
from typing import Annotated, get_args

from app.commands._options import add_config_option, add_set_option, load_command_config
from common.numbers import Count, Pixels, Range, Seed
from common.outputs import check_output_dir
from sim.maniskill_env import SimEnvConfig


@dataclass
class DemosConfig:
    env: SimEnvConfig = field(default_factory=SimEnvConfig)
    num_episodes: Count = 20
    out: pathlib.Path = pathlib.Path("outputs/demos/store")
    seed: Seed = 0  # first env seed; each further attempt uses the next one
    # Give up after this many solver attempts (default: 3 x num_episodes).
    max_attempts: Count | None = None
    # Also store failed solves (oracle_success false): negatives for reward-model training.
    keep_failed: bool = False
    # After a solve, hold the last action up to this many steps until the oracle reports success
    # (a released ball or peg may still be moving when the solver returns).
    settle_steps: Annotated[int, Range(0, 100_000)] = 10
    # Then hold a successful end state this many steps more, recorded: a policy cloned from such demos
    # learns to stay done instead of drifting off after success.
    hold_steps: Annotated[int, Range(0, 100_000)] = 0

    def __post_init__(self) -> None:
        if self.num_episodes <= 0:
            raise ValueError(f"num_episodes must be positive, got {self.num_episodes}")
        if self.settle_steps < 0:
            raise ValueError(f"settle_steps must not be negative, got {self.settle_steps}")
        if self.hold_steps < 0:
            raise ValueError(f"hold_steps must not be negative, got {self.hold_steps}")


ORDER = 10

def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demos",
        help="record motion-planning demonstrations into an episode store",
        description=(
            "Record successful motion-planning demonstrations (the solvers shipped with ManiSkill) "
            "into an episode store, with camera frames, state, action, the task sentence and the "
            "oracle success flag. Flags override the config file. Exit code 1 when fewer than N "
            "demonstrations succeeded within the attempt limit (those recorded are kept)."
        ),
    )
    add_config_option(parser, "YAML config (see configs/demos_pickcube.yaml)", required=False)
    parser.add_argument("--env", dest="env_id", metavar="ENV_ID", help="ManiSkill env id, e.g. PickCube-v1")
    parser.add_argument("-n", "--num-episodes", type=int, metavar="N", help="successful demonstrations to record")
    parser.add_argument("--out", metavar="STORE", help="episode store to append to (created if missing)")
    parser.add_argument("--seed", type=int, help="first env seed; later attempts use the following seeds")
    parser.add_argument("--camera-size", metavar="WxH", type=camera_size, help="camera resolution, e.g. 128x128")
    parser.add_argument("--max-attempts", type=int, help="give up after this many solver attempts")
    parser.add_argument(
        "--keep-failed", action="store_true", default=None, help="also store failed solves (oracle success false)"
    )
    add_set_option(parser)
    parser.set_defaults(handler=run)


def camera_size(text: str) -> tuple[int, int]:
    """`--camera-size WxH` as (width, height), each side within the bounds of a camera side (Pixels)."""
    width, sep, height = text.lower().partition("x")
    if not sep or not width.strip().isdigit() or not height.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT (e.g. 128x128)")
    bounds = get_args(Pixels)[1]
    for side in (int(width), int(height)):
        if problem := bounds.problem(side):
            raise argparse.ArgumentTypeError(f"{text!r}: each side {problem}")
    return int(width), int(height)


def config_from_args(args: argparse.Namespace) -> DemosConfig:
    width, height = args.camera_size or (None, None)
    flags = {
        "env.env_id": args.env_id,
        "num_episodes": args.num_episodes,
        "out": args.out,
        "seed": args.seed,
        "max_attempts": args.max_attempts,
        "keep_failed": args.keep_failed,
        "env.camera_width": width,
        "env.camera_height": height,
    }
    return load_command_config(args, DemosConfig, flags)


def run(args: argparse.Namespace) -> int:
    from sim.demos import record_demos, solver_for

    if args.env_id is not None:
        # A task without a solver is refused before its config asks for a task sentence it would not use.
        solver_for(args.env_id)
    config = config_from_args(args)
    check_output_dir(config.out, "out")  # the store, created or appended to

    report = record_demos(
        config.env.env_id,
        config.num_episodes,
        config.out,
        seed=config.seed,
        camera_size=(config.env.camera_height, config.env.camera_width),
        max_attempts=config.max_attempts,
        keep_failed=config.keep_failed,
        settle_steps=config.settle_steps,
        hold_steps=config.hold_steps,
        env_config=config.env,
    )
    print(report.summary())
    if not report.complete:
        # What was recorded is committed and kept; the exit code tells a script it got fewer.
        print(
            f"lrm-robot demos: only {report.successes} of {config.num_episodes} demonstrations succeeded",
            file=sys.stderr,
        )
        return 1
    return 0
