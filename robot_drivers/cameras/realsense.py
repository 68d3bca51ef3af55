"""Intel RealSense through pyrealsense2 directly: colour + depth, chosen by serial number, reconnecting.

LeRobot has a RealSense camera class too; this one exists for what the
operator loop needs beyond it: the device is picked by serial number (and a
wrong one is a one-line error listing those plugged in), depth is aligned to
the colour image, and a dropout (USB hiccup, cable pulled and replugged) is
survived by restarting the pipeline a few times before the episode is given up
as aborted. A recorded .bag plays back through the same pipeline
(`playback_file`), which is also how the tests run it without a camera.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from robot_drivers.cameras.config import CameraConfig
from robot_drivers.errors import CameraFault, RobotError

logger = logging.getLogger(__name__)


def connected_serials() -> list[str]:
    import pyrealsense2 as rs

    return [d.get_info(rs.camera_info.serial_number) for d in rs.context().query_devices()]


class RealSenseCamera:
    def __init__(self, name: str, config: CameraConfig) -> None:
        self.name = name
        self.config = config
        assert config.width is not None and config.height is not None
        self.width, self.height = config.width, config.height
        self.has_depth = config.use_depth
        self.reconnects = 0  # dropouts survived since connect
        self.frames_read = 0
        self._pipeline: Any = None
        self._align: Any = None
        self._depth: np.ndarray | None = None
        self.serial_number: str | None = None

    @property
    def is_connected(self) -> bool:
        return self._pipeline is not None

    def __repr__(self) -> str:
        source = self.config.playback_file or f"serial {self.config.serial_number}"
        return f"RealSense camera {self.name!r} ({source})"

    def connect(self) -> None:
        """Start the pipeline; a set-up error here (wrong serial, bad stream request) is a RobotError."""
        try:
            self._start()
        except RobotError:
            raise
        except RuntimeError as exc:
            raise RobotError(f"{self!r}: could not start: {exc}") from exc

    def _start(self) -> None:
        import pyrealsense2 as rs

        cfg = rs.config()
        c = self.config
        if c.playback_file is not None:
            if not c.playback_file.is_file():
                raise RobotError(f"{self!r}: playback file not found")
            # Always looped: librealsense 2.56 can crash (SIGSEGV) when a pipeline whose playback
            # reached its end is stopped, which is what a reconnection would do.
            cfg.enable_device_from_file(str(c.playback_file), repeat_playback=True)
        else:
            serials = connected_serials()
            if c.serial_number not in serials:
                plugged = ", ".join(serials) if serials else "none"
                raise RobotError(f"{self!r}: no RealSense with this serial number is connected (connected: {plugged})")
            cfg.enable_device(c.serial_number)
        cfg.enable_stream(rs.stream.color, c.width, c.height, rs.format.rgb8, c.fps)
        if c.use_depth:
            cfg.enable_stream(rs.stream.depth, c.width, c.height, rs.format.z16, c.fps)
        pipeline = rs.pipeline()
        # The serial is checked on the resolved device, before streaming: librealsense 2.56 can corrupt
        # its heap when a playback pipeline is stopped right after it started.
        serial = cfg.resolve(rs.pipeline_wrapper(pipeline)).get_device().get_info(rs.camera_info.serial_number)
        if c.serial_number is not None and serial != c.serial_number:
            raise RobotError(f"{self!r}: the device has serial number {serial}, not {c.serial_number}")
        # A playback runs in real time, like a live camera: a slow reader gets the latest frames, not a
        # backlog. (Non-real-time playback couples the reader to librealsense's playback thread, and
        # stopping such a pipeline crashed librealsense 2.56 now and then.)
        pipeline.start(cfg)
        self.serial_number = serial
        self._align = rs.align(rs.stream.color) if c.use_depth and c.align_depth else None
        self._pipeline = pipeline

    def _stop(self) -> None:
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            try:
                pipeline.stop()
            except RuntimeError as exc:  # already stopped by the dropout
                logger.debug("%r: stop failed: %s", self, exc)

    def read(self) -> np.ndarray:
        """The next colour frame (H, W, 3) uint8; depth of the same frameset goes to `read_depth()`.

        On a dropout (no frame within read_timeout_ms) the pipeline is
        restarted up to `reconnect_attempts` times; then CameraFault.
        """
        if self._pipeline is None:
            raise CameraFault(f"{self!r} is not connected", component=f"camera:{self.name}")
        try:
            return self._read_once()
        except RuntimeError as exc:
            logger.warning("%r: dropout (%s); reconnecting", self, exc)
            error: Exception = exc
        for attempt in range(1, self.config.reconnect_attempts + 1):
            self._stop()
            time.sleep(self.config.reconnect_backoff_s * attempt)
            try:
                self._start()
                image = self._read_once()
            except (RuntimeError, RobotError) as exc:
                logger.warning("%r: reconnection attempt %d failed: %s", self, attempt, exc)
                error = exc
                continue
            self.reconnects += 1
            logger.info("%r: reconnected after %d attempt(s)", self, attempt)
            return image
        self._stop()
        raise CameraFault(
            f"{self!r}: no frame after {self.config.reconnect_attempts} reconnection attempt(s): {error}",
            component=f"camera:{self.name}",
        )

    def _read_once(self) -> np.ndarray:
        frames = self._pipeline.wait_for_frames(self.config.read_timeout_ms)
        if self._align is not None:
            frames = self._align.process(frames)
        color = frames.get_color_frame()
        if not color:
            raise RuntimeError("frameset without a colour frame")
        image = np.asanyarray(color.get_data()).copy()
        if image.shape != (self.height, self.width, 3):
            raise RuntimeError(f"colour frame has shape {image.shape}, expected {(self.height, self.width, 3)}")
        if self.has_depth:
            depth = frames.get_depth_frame()
            if not depth:
                raise RuntimeError("frameset without a depth frame")
            self._depth = np.asanyarray(depth.get_data()).copy()
        self.frames_read += 1
        return image

    def read_depth(self) -> np.ndarray | None:
        """Depth (H, W) uint16 in the device's depth units, of the frameset the last `read()` returned."""
        return self._depth

    def disconnect(self) -> None:
        self._stop()
