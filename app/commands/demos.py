"""`lrm-robot demos`: record motion-planning demonstrations into an episode store.

The solvers that ship with ManiSkill drive the simulator; every executed step
is recorded with its camera frames, and the oracle success flag and the task
sentence go into the episode attributes.

Run again into the same store, the command continues: N is the number of
successful demonstrations of the env the store should hold, so only the
missing ones are recorded, from the seed after the last one recorded; a store
that holds N already is left as it is. `--fresh` deletes a store this command
made (it holds the marker file) and records N anew.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from dataclasses import dataclass, field
from typing import Annotated, ClassVar, get_args

from app.commands._conventions import add_command, add_fresh_option, add_output_dir_option, start_fresh
from app.commands._options import add_config_option, add_set_option, load_command_config
from common.numbers import Count, Pixels, Range, Seed
from common.outputs import check_output_dir, is_marked, mark_output_dir
from sim.maniskill_env import SimEnvConfig


@dataclass
class DemosConfig:
    RENAMED_KEYS: ClassVar[dict[str, str]] = {"out": "output_dir"}  # `out:` still works, with a warning

    env: SimEnvConfig = field(default_factory=SimEnvConfig)
    num_episodes: Count = 20  # successful demonstrations the store holds when done (a rerun continues)
    output_dir: pathlib.Path = pathlib.Path("outputs/demos/store")  # the episode store
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
    parser = add_command(
        subparsers,
        "demos",
        help="record motion-planning demonstrations into an episode store",
        description=(
            "Record successful motion-planning demonstrations (the solvers shipped with ManiSkill) "
            "into an episode store, with camera frames, state, action, the task sentence and the "
            "oracle success flag. Flags override the config file. Run again into the same store, it continues: "
            "the store ends up holding N successful demonstrations of the env, the missing ones recorded from "
            "the seed after the last one recorded (a store holding N already is left as it is); --fresh starts "
            "the store over. Exit code 1 when fewer than N demonstrations succeeded within the attempt limit "
            "(those recorded are kept)."
        ),
        example="lrm-robot demos --env PickCube-v1 -n 20 --output-dir outputs/demos/pickcube",
    )
    add_config_option(parser, "YAML config (see configs/demos_pickcube.yaml)", required=False)
    parser.add_argument("--env", dest="env_id", metavar="ENV_ID", help="ManiSkill env id, e.g. PickCube-v1")
    parser.add_argument("-n", "--num-episodes", type=int, metavar="N",
                        help="successful demonstrations of the env the store holds when done")
    add_output_dir_option(parser, "episode store to record into (created if missing, continued if not)",
                          old=["--out"], metavar="STORE")
    add_fresh_option(parser, "the store")
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
        "output_dir": args.output_dir,
        "seed": args.seed,
        "max_attempts": args.max_attempts,
        "keep_failed": args.keep_failed,
        "env.camera_width": width,
        "env.camera_height": height,
    }
    return load_command_config(args, DemosConfig, flags)


def run(args: argparse.Namespace) -> int:
    from sim.demos import solver_for

    if args.env_id is not None:
        # A task without a solver is refused before its config asks for a task sentence it would not use.
        solver_for(args.env_id)
    config = config_from_args(args)
    store = config.output_dir
    check_output_dir(store, "output_dir")  # the store, created or continued
    if args.fresh:
        start_fresh(store)
    recorded, next_seed = recorded_demos(store, config.env.env_id)
    missing = config.num_episodes - recorded
    if missing <= 0:
        print(f"{store} already holds {recorded} successful demonstrations of {config.env.env_id} "
              f"(asked for {config.num_episodes}); nothing to record (--fresh starts over)")
        return 0
    if recorded:
        print(f"{store} holds {recorded} successful demonstrations of {config.env.env_id}; "
              f"recording {missing} more from seed {max(config.seed, next_seed)}")
    created = not store.exists() or not any(store.iterdir())
    try:
        report = _record(config, missing, max(config.seed, next_seed))
    finally:
        if created and store.is_dir() and not is_marked(store):
            mark_output_dir(store, "demos")  # made here: a later --fresh may delete it
    print(report.summary())
    if not report.complete:
        # What was recorded is committed and kept; the exit code tells a script it got fewer.
        print(
            f"lrm-robot demos: only {recorded + report.successes} of {config.num_episodes} demonstrations succeeded",
            file=sys.stderr,
        )
        return 1
    return 0


def recorded_demos(store_path: pathlib.Path, env_id: str) -> tuple[int, int]:
    """Successful demonstrations of `env_id` already in the store, and the seed after the last one recorded."""
    from recordings.store import EpisodeStore

    if not store_path.is_dir() or not any(store_path.iterdir()):
        return 0, 0  # no store yet
    with EpisodeStore.open(store_path, mode="r") as store:
        demos = store.episodes(source="demo")
    ours = [r.meta for r in demos if r.meta.env_id == env_id]
    seeds = [m.seed for m in ours if m.seed is not None]
    return sum(1 for m in ours if m.oracle_success), max(seeds, default=-1) + 1


def _record(config: DemosConfig, n: int, seed: int):
    from sim.demos import record_demos

    return record_demos(
        config.env.env_id,
        n,
        config.output_dir,
        seed=seed,
        camera_size=(config.env.camera_height, config.env.camera_width),
        max_attempts=config.max_attempts,
        keep_failed=config.keep_failed,
        settle_steps=config.settle_steps,
        hold_steps=config.hold_steps,
        env_config=config.env,
    )
