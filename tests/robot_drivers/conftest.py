"""Hardware-free fixtures: a RealSense .bag written through pyrealsense2's software device, and a simulated arm.

The bag's colour frame i is filled with the value i and its depth frame with
1000 + i, so a test can tell which frame it got and that colour and depth
came from the same frameset.
"""

from __future__ import annotations

import itertools
import pathlib

import numpy as np
import pytest

from robot_drivers.arms import ArmConfig, SimulatedBusConfig
from robot_drivers.arms.simulated_bus import SimulatedMotorsBus
from robot_drivers.cameras import CameraConfig
from robot_drivers.cameras.realsense_bag import write_bag
from robot_drivers.config import ResetConfig, RobotEnvConfig
from robot_drivers.safety import SafetyConfig

H, W, FRAMES = 48, 64, 40
SERIAL = "123456789012"
JOINT_LOW = [-90.0, -90.0, -90.0, -90.0, -90.0, 0.0]
JOINT_HIGH = [90.0, 90.0, 90.0, 90.0, 90.0, 100.0]
_ports = itertools.count()


def color_frame(i: int) -> np.ndarray:
    return np.full((H, W, 3), i, np.uint8)


def depth_frame(i: int) -> np.ndarray:
    return np.full((H, W), 1000 + i, np.uint16)


@pytest.fixture(scope="session")
def bag_file(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("realsense") / "software.bag"
    return write_bag(
        path, [color_frame(i) for i in range(FRAMES)], [depth_frame(i) for i in range(FRAMES)], fps=30, serial_number=SERIAL
    )


@pytest.fixture(autouse=True)
def _fresh_simulated_devices():
    SimulatedMotorsBus.forget_devices()
    yield
    SimulatedMotorsBus.forget_devices()


def realsense_config(bag: pathlib.Path, **overrides) -> CameraConfig:
    options = dict(
        width=W, height=H, fps=30, use_depth=True, serial_number=SERIAL, playback_file=bag,
        read_timeout_ms=300, reconnect_attempts=2, reconnect_backoff_s=0.05,
    )
    options.update(overrides)
    return CameraConfig(**options)


def arm_config(tmp_path: pathlib.Path, **simulation) -> ArmConfig:
    return ArmConfig(
        type="so101_follower",
        port=f"/dev/simulated{next(_ports)}",
        id="test_arm",
        calibration_dir=tmp_path / "calibration",
        simulated=True,
        simulation=SimulatedBusConfig(**simulation),
    )


def env_config(tmp_path: pathlib.Path, bag: pathlib.Path | None = None, *, safety: dict | None = None, **fields) -> RobotEnvConfig:
    safety_fields = dict(joint_low=JOINT_LOW, joint_high=JOINT_HIGH, max_delta_per_tick=4.0, watchdog_timeout_s=0.25)
    safety_fields.update(safety or {})
    fields.setdefault("reset", ResetConfig(wait_for_operator=False))
    fields.setdefault("control_hz", 50.0)
    return RobotEnvConfig(
        task="pick up the red cube",
        arm=arm_config(tmp_path, command_latency_s=0.001, max_speed=400.0),
        cameras={"front": realsense_config(bag)} if bag is not None else {},
        safety=SafetyConfig(**safety_fields),
        **fields,
    )
