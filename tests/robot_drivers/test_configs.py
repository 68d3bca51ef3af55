"""The example robot configs validate, and mistakes in a robot config are one-line errors naming the key."""

from __future__ import annotations

import pathlib

import pytest

from common.config import ConfigError, load_config
from robot_drivers.config import RobotEnvConfig

CONFIGS = sorted((pathlib.Path(__file__).resolve().parents[2] / "configs" / "robot").glob("*.yaml"))


def test_there_are_so101_and_koch_examples():
    names = {p.stem for p in CONFIGS}
    assert {"so101", "koch"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_example_config_validates(path):
    config = load_config(path, RobotEnvConfig)
    assert config.task and config.arm.type in ("so101_follower", "koch_follower")
    assert config.safety.joint_low is not None and len(config.safety.joint_low) == 6
    assert config.safety.episode_time_cap_s == 30.0
    assert config.reset.wait_for_operator
    from robot_drivers.arms.config import lerobot_robot_config, robot_config_class

    lerobot_config = lerobot_robot_config(config.arm)
    # LeRobot registers one config class for so100 and so101 (its `type` reads so100_follower for both).
    assert isinstance(lerobot_config, robot_config_class(config.arm.type)) and lerobot_config.use_degrees
    assert lerobot_config.port == config.arm.port and lerobot_config.id == config.arm.id


def test_so101_example_uses_a_realsense_with_depth():
    config = load_config(CONFIGS[[p.stem for p in CONFIGS].index("so101")], RobotEnvConfig)
    front = config.cameras["front"]
    assert front.type == "realsense" and front.use_depth and front.serial_number


@pytest.mark.parametrize(
    "override, message",
    [
        ("arm.type=so101_folower", "key 'arm': unknown arm type 'so101_folower' (did you mean 'so101_follower'?)"),
        ("arm.options.use_degree=true", "options.use_degree: not a field of LeRobot's SOFollowerRobotConfig"),
        ("cameras.front.serial_number=null", "needs serial_number"),
        ("cameras.front.fps=0", "fps must be positive"),
        ("safety.joint_low=[0, 0]", "key 'safety': joint_low has 2 values but joint_high has 6"),
        ("safety.max_delta_per_tick=[1, 2]", "safety.max_delta_per_tick has 2 values but the arm has 6 joints"),
        ("safety.max_delta_per_tick=-1", "max_delta_per_tick must be positive"),
        ("safety.watchdog_timeout_s=0.01", "shorter than one control period"),
        ("control_hz=0", "control_hz must be positive"),
        ("safety.watchdgo_timeout_s=1", "unknown key 'safety.watchdgo_timeout_s' (did you mean 'watchdog_timeout_s'?)"),
    ],
)
def test_config_mistakes_are_one_line_errors(override, message, tmp_path):
    path = CONFIGS[[p.stem for p in CONFIGS].index("so101")]
    with pytest.raises((ConfigError, ValueError)) as info:
        config = load_config(path, RobotEnvConfig, [override])
        # Per-joint list lengths are only known against the arm: the env checks them when it is built.
        from robot_drivers.safety import SafetyFilter

        SafetyFilter(config.safety, 6)
    assert message in str(info.value) and "\n" not in str(info.value)
