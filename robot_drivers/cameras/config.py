"""The config of one camera of the robot env.

`type: realsense` is an Intel RealSense read through pyrealsense2 directly
(colour and depth, chosen by serial number, reconnecting after a dropout);
any other type is a LeRobot camera (`opencv`, `intelrealsense`, `zmq`, ...),
built through LeRobot's camera registry with `options` passed to its config.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field
from typing import Any

from common.numbers import Pixels
from robot_drivers.lerobot_options import check_options

REALSENSE = "realsense"


@dataclass
class CameraConfig:
    type: str = REALSENSE
    width: Pixels | None = None  # None = the device's default (LeRobot cameras); required for realsense
    height: Pixels | None = None
    fps: int | None = None
    serial_number: str | None = None  # realsense: which device; required unless playback_file
    use_depth: bool = False  # realsense: also stream depth (z16), aligned to the colour image
    align_depth: bool = True
    playback_file: pathlib.Path | None = None  # realsense: play a recorded .bag (looped) through the real pipeline
    read_timeout_ms: int = 500  # no frame within this -> a dropout
    reconnect_attempts: int = 3  # after a dropout; all failing -> CameraFault, the episode is aborted
    reconnect_backoff_s: float = 0.2
    options: dict[str, Any] = field(default_factory=dict)  # LeRobot camera config fields (index_or_path, ...)

    def __post_init__(self) -> None:
        for name in ("width", "height", "fps"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.read_timeout_ms <= 0:
            raise ValueError(f"read_timeout_ms must be positive, got {self.read_timeout_ms}")
        if self.reconnect_attempts < 0:
            raise ValueError(f"reconnect_attempts must not be negative, got {self.reconnect_attempts}")
        if self.type == REALSENSE:
            if self.options:
                raise ValueError(f"options are for LeRobot cameras; a realsense camera takes none ({next(iter(self.options))!r})")
            if self.width is None or self.height is None or self.fps is None:
                raise ValueError("a realsense camera needs width, height and fps")
            if self.serial_number is None and self.playback_file is None:
                raise ValueError("a realsense camera needs serial_number (or playback_file to replay a .bag)")
        else:
            from lerobot.cameras import CameraConfig as LeRobotCameraConfig

            _register_lerobot_cameras()
            known = sorted(LeRobotCameraConfig.get_known_choices())
            if self.type not in known:
                raise ValueError(f"unknown camera type {self.type!r}; use 'realsense' or a LeRobot camera: {', '.join(known)}")
            if self.use_depth or self.serial_number or self.playback_file:
                raise ValueError("use_depth, serial_number and playback_file are for type 'realsense'")
            # width, height and fps are this section's own keys, set on LeRobot's config when it is built
            check_options(self.options, LeRobotCameraConfig.get_choice_class(self.type),
                          reserved=("width", "height", "fps"),
                          reserved_hint={k: f"the camera's {k}" for k in ("width", "height", "fps")})


def _register_lerobot_cameras() -> None:
    """Import LeRobot's camera config modules so that their types are registered."""
    import importlib
    import logging

    for name in ("opencv", "realsense", "zmq", "reachy2_camera"):
        try:
            importlib.import_module(f"lerobot.cameras.{name}")
        except Exception as exc:  # an optional dependency of one camera type
            logging.getLogger(__name__).debug("skipping LeRobot camera %s: %s", name, exc)
