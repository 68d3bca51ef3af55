"""A LeRobot camera (OpenCV, LeRobot's RealSense, ZMQ, ...) behind the env's camera interface.

LeRobot's cameras read on a background thread; `read()` here takes the next
frame with `async_read(timeout)`, and on a failure (thread died, timeout,
device gone) disconnects and reconnects a few times before it gives up with a
`CameraFault`, like the direct RealSense path.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from robot_drivers.cameras.config import CameraConfig
from robot_drivers.errors import CameraFault, RobotError

logger = logging.getLogger(__name__)


def lerobot_camera_config(config: CameraConfig) -> Any:
    from lerobot.cameras import CameraConfig as LeRobotCameraConfig

    cls = LeRobotCameraConfig.get_choice_class(config.type)
    kwargs = {k: getattr(config, k) for k in ("width", "height", "fps") if getattr(config, k) is not None}
    try:
        return cls(**kwargs, **config.options)
    except (TypeError, ValueError) as exc:
        raise RobotError(f"LeRobot's {cls.__name__} refused the camera options: {exc}") from None


class LeRobotCamera:
    has_depth = False

    def __init__(self, name: str, config: CameraConfig, camera: Any) -> None:
        self.name = name
        self.config = config
        self.camera = camera
        self.reconnects = 0
        self.frames_read = 0

    def __repr__(self) -> str:
        return f"camera {self.name!r} ({self.camera})"

    @property
    def width(self) -> int | None:
        return self.camera.width

    @property
    def height(self) -> int | None:
        return self.camera.height

    @property
    def is_connected(self) -> bool:
        return bool(self.camera.is_connected)

    def connect(self) -> None:
        try:
            self.camera.connect()
        except Exception as exc:
            raise RobotError(f"{self!r}: could not connect: {exc}") from exc

    def read(self) -> np.ndarray:
        try:
            return self._read_once()
        except Exception as exc:
            logger.warning("%r: read failed (%s); reconnecting", self, exc)
            error: Exception = exc
        for attempt in range(1, self.config.reconnect_attempts + 1):
            self._disconnect_quietly()
            time.sleep(self.config.reconnect_backoff_s * attempt)
            try:
                self.camera.connect()
                image = self._read_once()
            except Exception as exc:
                logger.warning("%r: reconnection attempt %d failed: %s", self, attempt, exc)
                error = exc
                continue
            self.reconnects += 1
            return image
        self._disconnect_quietly()
        raise CameraFault(
            f"{self!r}: no frame after {self.config.reconnect_attempts} reconnection attempt(s): {error}",
            component=f"camera:{self.name}",
        )

    def _read_once(self) -> np.ndarray:
        image = np.asarray(self.camera.async_read(timeout_ms=self.config.read_timeout_ms))
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise RuntimeError(f"frame of shape {image.shape} and dtype {image.dtype} is not H x W x 3 uint8")
        self.frames_read += 1
        return image

    def read_depth(self) -> np.ndarray | None:
        return None

    def _disconnect_quietly(self) -> None:
        try:
            if self.camera.is_connected:
                self.camera.disconnect()
        except Exception as exc:
            logger.debug("%r: disconnect failed: %s", self, exc)

    def disconnect(self) -> None:
        self._disconnect_quietly()
