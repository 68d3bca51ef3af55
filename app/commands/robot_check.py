"""`lrm-robot robot-check`: connect a robot config's arm and cameras and report what they deliver.

Reads joints and every camera at the control rate for a few seconds and
prints the achieved rate, read times and frame statistics. It sends no joint
targets. A part that does not answer is a one-line error naming it (exit 2).
"""

from __future__ import annotations

import argparse
import json
import pathlib

from app.commands._conventions import add_command
from app.commands._options import add_config_option, add_set_option, load_command_config
from common.outputs import check_output_file

ORDER = 80


def _expected_errors() -> tuple[type[BaseException], ...]:
    from robot_drivers.errors import RobotError

    return (RobotError,)


EXPECTED_ERRORS = _expected_errors()


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers,
        "robot-check",
        help="connect a robot config's arm and cameras and report rates and frame statistics",
        description=(
            "Connect the arm and cameras of a robot config (configs/robot/), read the joints and every camera "
            "at the control rate for a few seconds, and print the achieved rate, read times, image and depth "
            "statistics and any joint outside the safety limits. No joint targets are sent. "
            "`--set arm.simulated=true` runs LeRobot's robot class on a simulated motor bus (a dry run)."
        ),
        example="lrm-robot robot-check --config configs/robot/so101.yaml --set arm.simulated=true --seconds 2",
    )
    add_config_option(parser, "robot YAML (see configs/robot/)")
    parser.add_argument("--seconds", type=float, default=3.0, help="how long to read (default 3)")
    parser.add_argument("--json", metavar="FILE", help="also write the statistics as JSON")
    add_set_option(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from app.errors import UsageError
    from robot_drivers.check import check_robot
    from robot_drivers.config import RobotEnvConfig
    from robot_drivers.env import make_robot_env

    if not 0 < args.seconds <= 3600:  # NaN fails this too
        raise UsageError(f"--seconds must be more than 0 and at most 3600, got {args.seconds}")
    config = load_command_config(args, RobotEnvConfig)
    if args.json:
        check_output_file(args.json, "--json")
    env = make_robot_env(config)
    try:
        report = check_robot(env, args.seconds)
    finally:
        env.close()
    print(report.summary())
    if args.json:
        out = {
            "arm": report.arm,
            "joints": dict(zip(report.joint_names, map(float, report.last))),
            "joint_reads": report.joint_reads,
            "rate": report.rate.to_json(),
            "cameras": {
                c.name: {
                    "kind": c.kind, "frames": c.frames, "shape": list(c.shape), "mean_intensity": c.mean_intensity,
                    "changing_frames": c.changing_frames, "depth_valid": c.depth_valid, "reconnects": c.reconnects,
                }
                for c in report.cameras
            },
            "outside_limits": report.outside_limits,
        }
        pathlib.Path(args.json).write_text(json.dumps(out, indent=2))
    return 0
