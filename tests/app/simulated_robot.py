"""The robot the app tests drive: LeRobot's SO-101 over the simulated motor bus, a RealSense .bag as its camera."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from common.config import config_to_dict
from robot_drivers.arms import ArmConfig, SimulatedBusConfig
from robot_drivers.cameras import CameraConfig
from robot_drivers.cameras.realsense_bag import write_bag
from robot_drivers.config import ResetConfig, RobotEnvConfig
from robot_drivers.safety import SafetyConfig

H, W = 48, 64


def simulated_robot_yaml(tmp_path: Path, *, task: str, port: str, arm_id: str,
                         wait_for_operator: bool = False) -> str:
    """Write a robot YAML (configs/robot/ shape) for a simulated SO-101 whose front camera plays a 30-frame bag."""
    frames = [np.full((H, W, 3), 40 + 4 * i, np.uint8) for i in range(30)]
    bag = write_bag(tmp_path / "front.bag", frames, fps=30, serial_number="123456789012")
    config = RobotEnvConfig(
        task=task,
        arm=ArmConfig(type="so101_follower", port=port, id=arm_id, calibration_dir=tmp_path / "calibration",
                      simulated=True, simulation=SimulatedBusConfig(command_latency_s=0.001, max_speed=400.0)),
        cameras={"front": CameraConfig(width=W, height=H, fps=30, playback_file=bag, serial_number="123456789012",
                                       read_timeout_ms=300)},
        control_hz=50.0,
        safety=SafetyConfig(joint_low=[-90.0] * 5 + [0.0], joint_high=[90.0] * 5 + [100.0], max_delta_per_tick=4.0,
                            watchdog_timeout_s=0.5),
        reset=ResetConfig(wait_for_operator=wait_for_operator),
    )
    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(config)))
    return str(path)
