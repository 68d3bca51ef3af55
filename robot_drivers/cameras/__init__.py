"""Cameras of the robot env: config (CameraConfig), classes (RealSenseCamera, LeRobotCamera), factory (make_camera).

Every camera offers `connect()`, `read() -> (H, W, 3) uint8` (reconnecting
after a dropout, CameraFault when that fails), `read_depth()` (the depth of
the last read, or None), `disconnect()`, `name`, `has_depth`, and the counters
`frames_read` and `reconnects`.
"""

from __future__ import annotations

from typing import Any

from robot_drivers.cameras.config import REALSENSE, CameraConfig
from robot_drivers.cameras.lerobot_camera import LeRobotCamera, lerobot_camera_config
from robot_drivers.cameras.realsense import RealSenseCamera
from robot_drivers.errors import RobotError

__all__ = ["CameraConfig", "LeRobotCamera", "RealSenseCamera", "make_camera", "make_cameras"]


def make_camera(name: str, config: CameraConfig) -> RealSenseCamera | LeRobotCamera:
    """Build (not connect) the camera a config describes."""
    if config.type == REALSENSE:
        return RealSenseCamera(name, config)
    from lerobot.cameras.utils import make_cameras_from_configs

    try:
        camera = make_cameras_from_configs({name: lerobot_camera_config(config)})[name]
    except RobotError:
        raise
    except Exception as exc:
        raise RobotError(f"camera {name!r}: LeRobot could not build a {config.type} camera: {exc}") from exc
    return LeRobotCamera(name, config, camera)


def make_cameras(configs: dict[str, CameraConfig]) -> dict[str, Any]:
    return {name: make_camera(name, config) for name, config in configs.items()}
